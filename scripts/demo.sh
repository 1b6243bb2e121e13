#!/usr/bin/env bash
# The demo: a CA whose key is generated on a SoftHSM2 token, a server certificate it issues,
# both checked by OpenSSL and by card-verify; its CRL served, a revocation; and a device
# enrolling over SCEP (micromdm's scepclient, then a second certman store with add-scep) through an
# RSA RA on the same token. Installs what it needs, builds certman (release), installs its bash
# completion and man page, and works in ./demo (a fresh store and a fresh token; nothing else
# outside ./demo is touched).
set -euo pipefail
cd "$(dirname "$0")/.."

source scripts/setup.sh

cargo build --release --quiet
CERTMAN="$PWD/target/release/certman"

# `certman <TAB>` and `man certman`, made by the binary just built.
if [ "$(id -u)" -eq 0 ]; then
    COMPLETIONS_DIR=/usr/share/bash-completion/completions
    MAN_DIR=/usr/local/share/man/man1
else
    COMPLETIONS_DIR="${XDG_DATA_HOME:-$HOME/.local/share}/bash-completion/completions"
    MAN_DIR="${XDG_DATA_HOME:-$HOME/.local/share}/man/man1"
fi
mkdir -p "$COMPLETIONS_DIR" "$MAN_DIR"
"$CERTMAN" completions bash > "$COMPLETIONS_DIR/certman"
"$CERTMAN" man > "$MAN_DIR/certman.1"
echo "installed $COMPLETIONS_DIR/certman and $MAN_DIR/certman.1"

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

PORT="${CERTMAN_DEMO_PORT:-8080}"
run add name=ca-tpl common-name=demo-ca organization=certman key-usage=key-cert-sign,crl-sign days-valid=3650 key-type=ec key-size=prime256v1
run sign ca-tpl name=ca ca-crl-host=127.0.0.1:$PORT on-smart-card=softhsm
run add name=srv common-name=srv.example subject-alt-name=DNS:srv.example,IP:127.0.0.1 key-usage=digital-signature,key-encipherment,tls-server
run sign srv ca=ca
run add name=old common-name=old.example key-usage=digital-signature,tls-server
run sign old ca=ca
# SCEP for the EC CA: an RSA RA on the same token decrypts and signs the SCEP messages.
run add name=ra common-name=demo-scep-ra key-type=rsa key-size=2048 key-usage=digital-signature,key-encipherment
run sign ra ca=ca on-smart-card=softhsm
run scep-server add ca-cert=ca path=/scep/demo ra-cert=ra days-valid=30
run print
run card-verify ca
run token print
run export-certificate ca
run export-certificate srv
run export-certificate old
echo "\$ openssl verify -CAfile cert_export_ca.crt cert_export_srv.crt"
openssl verify -CAfile cert_export_ca.crt cert_export_srv.crt

# The service: the CA's CRL at the CDP its certificates name. Stopped by PID on exit.
echo "\$ certman serve listen=127.0.0.1:$PORT &"
"$CERTMAN" serve "listen=127.0.0.1:$PORT" 2> "$DEMO/serve.log" &
SERVE_PID=$!
trap 'kill -TERM "$SERVE_PID" 2>/dev/null; wait "$SERVE_PID" 2>/dev/null || true' EXIT
for _ in $(seq 100); do
    curl -sf "http://127.0.0.1:$PORT/health" >/dev/null && break
    kill -0 "$SERVE_PID" 2>/dev/null || { cat "$DEMO/serve.log" >&2; exit 1; }
    sleep 0.1
done
echo "\$ curl http://127.0.0.1:$PORT/health"
curl -sf "http://127.0.0.1:$PORT/health"; echo
CDP=$(openssl x509 -in cert_export_srv.crt -noout -ext crlDistributionPoints | grep -o 'http://[^ ]*')
echo "\$ curl -o ca.crl $CDP   # the CDP in srv's certificate"
curl -sf -o ca.crl "$CDP"
openssl crl -inform DER -in ca.crl -out ca-crl.pem
openssl crl -in ca-crl.pem -noout -crlnumber -CAfile cert_export_ca.crt -verify

# A revocation, signed on the token; the daemon serves the new CRL at once.
run issued-revoke old reason=superseded
curl -sf -o ca.crl "$CDP"
openssl crl -inform DER -in ca.crl -out ca-crl.pem
echo "\$ openssl crl -in ca-crl.pem -noout -crlnumber -CAfile cert_export_ca.crt -verify"
openssl crl -in ca-crl.pem -noout -crlnumber -CAfile cert_export_ca.crt -verify
echo "\$ openssl verify -crl_check -CRLfile ca-crl.pem -CAfile cert_export_ca.crt cert_export_old.crt"
if openssl verify -crl_check -CRLfile ca-crl.pem -CAfile cert_export_ca.crt cert_export_old.crt; then
    echo "demo: the revoked certificate still verified" >&2; exit 1
fi
echo "\$ openssl verify -crl_check -CRLfile ca-crl.pem -CAfile cert_export_ca.crt cert_export_srv.crt"
openssl verify -crl_check -CRLfile ca-crl.pem -CAfile cert_export_ca.crt cert_export_srv.crt
run crl print

# A device enrols over SCEP with a one-time password (the RA's fingerprint pins it: micromdm's
# client encrypts to the one certificate it names).
run export-certificate ra
OTP=$("$CERTMAN" scep-server otp generate minutes-valid=10 --json | sed -n 's/.*"password":"\([0-9A-F]*\)".*/\1/p')
RA_FP=$(openssl x509 -in cert_export_ra.crt -noout -fingerprint -sha256 | cut -d= -f2 | tr -d : )
mkdir -p device && (
    cd device
    openssl genrsa -traditional -out device.key 2048 2>/dev/null
    echo "\$ scepclient -private-key device.key -server-url=http://127.0.0.1:$PORT/scep/demo/pkiclient.exe -challenge=<otp> -cn=device1 -ca-fingerprint=$RA_FP"
    timeout 60 scepclient -private-key device.key -server-url="http://127.0.0.1:$PORT/scep/demo/pkiclient.exe" \
        -challenge="$OTP" -cn=device1 -ca-fingerprint="$RA_FP" 2>scepclient.log \
        || { cat scepclient.log >&2; exit 1; }
)
echo "\$ openssl verify -CAfile cert_export_ca.crt device/client.pem"
openssl verify -CAfile cert_export_ca.crt device/client.pem

# A RouterOS-style client: a second certman store (a "router") enrols with add-scep, the CA
# pinned by its fingerprint; certman serve there would renew it at 3/4 of its lifetime.
CA_FP=$(openssl x509 -in cert_export_ca.crt -noout -fingerprint -sha256 | cut -d= -f2)
OTP2=$("$CERTMAN" scep-server otp generate minutes-valid=10 --json | sed -n 's/.*"password":"\([0-9A-F]*\)".*/\1/p')
router() { CERTMAN_STORE="$DEMO/router" "$CERTMAN" "$@"; }
echo "\$ certman --store router add name=tpl_1 common-name=router1 key-type=rsa"
router add name=tpl_1 common-name=router1 key-type=rsa
echo "\$ certman --store router add-scep template=tpl_1 scep-url=http://127.0.0.1:$PORT/scep/demo/pkiclient.exe challenge-password=<otp> ca-fingerprint=$CA_FP"
router add-scep template=tpl_1 scep-url="http://127.0.0.1:$PORT/scep/demo/pkiclient.exe" \
    challenge-password="$OTP2" ca-fingerprint="$CA_FP"
echo "\$ certman --store router print"
router print
router export-certificate tpl_1 >/dev/null
echo "\$ openssl verify -CAfile cert_export_ca.crt cert_export_tpl_1.crt"
openssl verify -CAfile cert_export_ca.crt cert_export_tpl_1.crt
run scep-server requests print

# The operator's console: the CAs with what they issued, a filter, a RouterOS script, and the
# status page certman serve draws at /.
run print tree
run print where issued and !revoked count-only
cat > "$DEMO/more.rsc" <<'RSC'
# more.rsc: RouterOS /certificate lines, run in one process on the same store
/certificate
add name=www common-name=www.example subject-alt-name=DNS:www.example key-usage=tls-server
sign www ca=ca
print where name=www
RSC
run script "$DEMO/more.rsc"
# Many commands in a row: `certman agent` keeps a store open and runs them (here a store with a
# CA in software: a command that needs a token's PIN is run by certman itself, as ever).
bulk() { CERTMAN_STORE="$DEMO/bulk" "$CERTMAN" "$@"; }
bulk add name=bulk-ca common-name="bulk CA" key-usage=key-cert-sign,crl-sign key-type=ec >/dev/null
bulk sign bulk-ca >/dev/null
echo "\$ certman agent idle-timeout=1m &"
bulk agent idle-timeout=1m > "$DEMO/agent.log" 2>&1 &
AGENT_PID=$!
trap 'kill -TERM "$SERVE_PID" "$AGENT_PID" 2>/dev/null; wait "$SERVE_PID" "$AGENT_PID" 2>/dev/null || true' EXIT
for _ in $(seq 100); do grep -q serving "$DEMO/agent.log" && break; sleep 0.1; done
cat "$DEMO/agent.log"
echo "\$ time (for i in \$(seq 50); do certman add name=leaf\$i common-name=leaf\$i.example key-type=ec; certman sign leaf\$i ca=bulk-ca; done)"
time (for i in $(seq 50); do
    CERTMAN_AGENT=require bulk add name=leaf$i common-name=leaf$i.example key-type=ec >/dev/null
    CERTMAN_AGENT=require bulk sign leaf$i ca=bulk-ca >/dev/null
done)
kill -TERM "$AGENT_PID"; wait "$AGENT_PID" || true
echo "\$ certman print where issued count-only   # in the bulk store"
bulk print where issued count-only
echo "\$ curl -o status.html http://127.0.0.1:$PORT/"
curl -sf -o "$DEMO/status.html" "http://127.0.0.1:$PORT/"

cat <<MSG

The CA key was generated on the SoftHSM2 token "demo-ca" ($DEMO/softhsm) and never left it: it
signed the certificates and every CRL. The SCEP RA's RSA key is on the same token: it decrypted
the device's request and signed the reply; the device's certificate is $DEMO/device/client.pem;
the "router" store ($DEMO/router) enrolled tpl_1 with add-scep. The server keys are sealed in software in
$CERTMAN_STORE. certman serve published the CRL at $CDP
(log: $DEMO/serve.log); it stops as the demo ends. Run it again with
  CERTMAN_STORE=$CERTMAN_STORE CERTMAN_TOKENS=$CERTMAN_TOKENS $CERTMAN serve listen=127.0.0.1:$PORT
Files: $DEMO/cert_export_ca.crt $DEMO/cert_export_srv.crt $DEMO/ca.crl; the status page
(CA tree, expiry timeline, tokens, CRLs, SCEP) as it was: $DEMO/status.html (live at
http://127.0.0.1:$PORT/ when serve runs again). In a new shell \`certman <TAB>\` completes, and
\`man certman\` has every command.
MSG
