#!/usr/bin/env bash
# The demo: a CA whose key is generated on a SoftHSM2 token, a server certificate it issues,
# both checked by OpenSSL and by card-verify. Installs what it needs, builds certman (release)
# and works in ./demo (a fresh store and a fresh token; nothing outside ./demo is touched).
set -euo pipefail
cd "$(dirname "$0")/.."

source scripts/setup.sh

cargo build --release --quiet
CERTMAN="$PWD/target/release/certman"

DEMO="$PWD/demo"
rm -rf "$DEMO"
mkdir -p "$DEMO/tokens"
cd "$DEMO"

# A throwaway SoftHSM2 token, and the profile that names it.
eval "$("$OLDPWD/softhsm-config/init-token.sh" "$DEMO/softhsm" demo-ca)"
cat > "$DEMO/tokens/softhsm.toml" <<TOML
kind = "pkcs11"
module-path = "/usr/lib/softhsm/libsofthsm2.so"
token-label = "demo-ca"
pin-source = "file:$DEMO/softhsm/user.pin"
max-sessions = 4
default = true
TOML
export CERTMAN_STORE="$DEMO/store" CERTMAN_TOKENS="$DEMO/tokens"

run() { echo "\$ certman $*"; "$CERTMAN" "$@"; }

run add name=ca-tpl common-name=demo-ca organization=certman key-usage=key-cert-sign,crl-sign days-valid=3650 key-type=ec key-size=prime256v1
run sign ca-tpl name=ca ca-crl-host=127.0.0.1:8080 on-smart-card=softhsm
run add name=srv common-name=srv.example subject-alt-name=DNS:srv.example,IP:127.0.0.1 key-usage=digital-signature,key-encipherment,tls-server
run sign srv ca=ca
run print
run card-verify ca
run token print
run export-certificate ca
run export-certificate srv
echo "\$ openssl verify -CAfile cert_export_ca.crt cert_export_srv.crt"
openssl verify -CAfile cert_export_ca.crt cert_export_srv.crt

cat <<MSG

The CA key was generated on the SoftHSM2 token "demo-ca" ($DEMO/softhsm) and never left it;
the server key is sealed in software in $CERTMAN_STORE. Serving the CA's CRL
(certman serve) arrives with its issue: see README "Status".
Files: $DEMO/cert_export_ca.crt $DEMO/cert_export_srv.crt
MSG
