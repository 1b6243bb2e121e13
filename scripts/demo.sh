#!/usr/bin/env bash
# The demo: a CA and an issued server certificate, checked by OpenSSL.
# Installs what it needs, builds certman (release) and works in ./demo (a fresh store).
set -euo pipefail
cd "$(dirname "$0")/.."

source scripts/setup.sh

cargo build --release --quiet
CERTMAN="$PWD/target/release/certman"

DEMO="$PWD/demo"
rm -rf "$DEMO"
mkdir -p "$DEMO"
cd "$DEMO"
export CERTMAN_STORE="$DEMO/store"

run() { echo "\$ certman $*"; "$CERTMAN" "$@"; }

run add name=ca-tpl common-name=demo-ca organization=certman key-usage=key-cert-sign,crl-sign days-valid=3650 key-type=ec key-size=prime256v1
run sign ca-tpl name=ca ca-crl-host=127.0.0.1:8080
run add name=srv common-name=srv.example subject-alt-name=DNS:srv.example,IP:127.0.0.1 key-usage=digital-signature,key-encipherment,tls-server
run sign srv ca=ca
run print
run export-certificate ca
run export-certificate srv
echo "\$ openssl verify -CAfile cert_export_ca.crt cert_export_srv.crt"
openssl verify -CAfile cert_export_ca.crt cert_export_srv.crt

cat <<MSG

The CA key is sealed in software in $CERTMAN_STORE (PKCS#11 tokens and serving the CRL
arrive with their issues: see README "Status").
Files: $DEMO/cert_export_ca.crt $DEMO/cert_export_srv.crt
MSG
