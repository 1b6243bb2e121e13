#!/usr/bin/env bash
# Fuzzing (not part of CI): builds the cargo-fuzz targets in fuzz/, seeds their corpora, runs
# each target for SECONDS (one target at a time, one process) and prints per target:
# executions, exec/s, corpus size and crashes (count and the crash files).
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET…]     (default: 60 s, every target)
#
# Needs a nightly toolchain (`rustup toolchain install nightly`), cargo-fuzz
# (`cargo install cargo-fuzz`) and the openssl CLI. Corpora are in fuzz/corpus/<target>/
# (not committed), crash files in fuzz/artifacts/<target>/. Seeding is idempotent: seeds are
# named by their content hash and made again only when missing.
# FUZZ_ARGS adds libFuzzer options (e.g. FUZZ_ARGS="-max_len=65536").
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
FUZZ=$ROOT/fuzz

SECONDS_PER_TARGET=${1:-60}
shift || true
ALL_TARGETS=(certificate import_file csr pkcs8_encrypted private_key pkcs12 crl scep_request
    scep_cert_rep scep_ca_certs key_uri token_profile cli_args cms_ber)
if [ $# -gt 0 ]; then TARGETS=("$@"); else TARGETS=("${ALL_TARGETS[@]}"); fi
for t in "${TARGETS[@]}"; do
    [ -f "$FUZZ/fuzz_targets/$t.rs" ] || { echo "fuzz.sh: no target $t (${ALL_TARGETS[*]})" >&2; exit 2; }
done

command -v openssl >/dev/null || { echo "fuzz.sh: needs the openssl CLI" >&2; exit 2; }
cargo fuzz --version >/dev/null 2>&1 || { echo "fuzz.sh: needs cargo-fuzz: cargo install cargo-fuzz" >&2; exit 2; }
TOOLCHAIN=+nightly
rustup run nightly rustc --version >/dev/null 2>&1 || {
    echo "fuzz.sh: needs a nightly toolchain: rustup toolchain install nightly" >&2; exit 2; }

# --- build (all targets and the SCEP seed writer; debug assertions on: overflow checks)
echo "== building fuzz targets"
(cd "$FUZZ" && cargo $TOOLCHAIN fuzz build -O --debug-assertions)
BIN=$FUZZ/target/x86_64-unknown-linux-gnu/release

# --- seeds
CORPUS=$FUZZ/corpus
SEEDS=$(mktemp -d)
trap 'rm -rf "$SEEDS"' EXIT

# seed TARGET FILE…: copies each file into the target's corpus under its content hash.
seed() {
    local target=$1; shift
    mkdir -p "$CORPUS/$target"
    local f h
    for f in "$@"; do
        [ -s "$f" ] || continue
        h=$(sha1sum "$f" | cut -c1-40)
        [ -e "$CORPUS/$target/seed-$h" ] || cp "$f" "$CORPUS/$target/seed-$h"
    done
}
# seed_text TARGET STRING: one seed from a string.
seed_text() {
    local f
    f=$(mktemp -p "$SEEDS")
    printf '%s' "$2" > "$f"
    seed "$1" "$f"
}

make_seeds() {
    local S=$SEEDS O="openssl"
    cd "$S"
    local pass=fuzz
    # keys
    $O genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out rsa2048.pem 2>/dev/null
    $O genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:1024 -out rsa1024.pem 2>/dev/null
    $O genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out p256.pem
    $O genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-384 -out p384.pem
    $O genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-521 -out p521.pem
    $O genpkey -algorithm ED25519 -out ed25519.pem
    local k
    for k in rsa2048 rsa1024 p256 p384 p521 ed25519; do
        $O pkey -in $k.pem -outform DER -out $k.pk8.der
    done
    for k in rsa2048 rsa1024; do
        $O rsa -in $k.pem -traditional -out $k.pkcs1.pem 2>/dev/null
        $O rsa -in $k.pem -traditional -outform DER -out $k.pkcs1.der 2>/dev/null
    done
    for k in p256 p384 p521; do
        $O ec -in $k.pem -out $k.sec1.pem 2>/dev/null
        $O ec -in $k.pem -outform DER -out $k.sec1.der 2>/dev/null
        $O ec -in $k.pem -param_out -out $k.params.pem 2>/dev/null || true
    done
    # encrypted PKCS#8, passphrase "fuzz", small work factors so that seeds run fast
    $O pkcs8 -topk8 -in p256.pem -v2 aes-256-cbc -v2prf hmacWithSHA256 -iter 1 -passout pass:$pass -outform DER -out enc-aes256-sha256.der
    $O pkcs8 -topk8 -in rsa2048.pem -v2 aes-128-cbc -v2prf hmacWithSHA1 -iter 2 -passout pass:$pass -outform DER -out enc-aes128-sha1.der
    $O pkcs8 -topk8 -in p384.pem -v2 aes-192-cbc -v2prf hmacWithSHA512 -iter 1 -passout pass:$pass -outform DER -out enc-aes192-sha512.der
    $O pkcs8 -topk8 -in ed25519.pem -v2 des3 -iter 1 -passout pass:$pass -outform DER -out enc-des3.der
    $O pkcs8 -topk8 -in p256.pem -scrypt -scrypt_N 16 -scrypt_r 1 -scrypt_p 1 -passout pass:$pass -outform DER -out enc-scrypt.der
    $O pkcs8 -topk8 -in rsa1024.pem -v1 PBE-SHA1-3DES -iter 1 -passout pass:$pass -outform DER -out enc-pbe-sha1-3des.der 2>/dev/null || true
    $O pkcs8 -topk8 -in p521.pem -v2 aes-256-cbc -iter 1 -passout pass:$pass -out enc-aes256.pem
    # certificates
    local ext="-addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign,digitalSignature"
    $O req -x509 -new -key rsa2048.pem -subj "/C=LV/ST=Riga/L=Riga/O=certman/OU=fuzz/CN=rsa ca" -days 30 $ext \
        -addext "nameConstraints=permitted;DNS:.example,excluded;IP:10.0.0.0/255.0.0.0" \
        -addext "certificatePolicies=1.2.3.4" -out rsa-ca.pem
    $O req -x509 -new -key p256.pem -subj "/CN=leaf.example" -days 30 \
        -addext "subjectAltName=DNS:leaf.example,DNS:*.leaf.example,IP:127.0.0.1,IP:::1,email:a@b.example,URI:http://x.example/" \
        -addext "keyUsage=digitalSignature,keyEncipherment" -addext "extendedKeyUsage=serverAuth,clientAuth,codeSigning" \
        -addext "crlDistributionPoints=URI:http://127.0.0.1:8080/crl/ca.crl" -addext "authorityInfoAccess=OCSP;URI:http://ocsp.example/" \
        -out p256-leaf.pem
    $O req -x509 -new -key p384.pem -subj "/CN=p384" -days 30 -sha384 -out p384.crt.pem
    $O req -x509 -new -key p521.pem -subj "/CN=p521" -days 30 -sha512 -out p521.crt.pem
    $O req -x509 -new -key ed25519.pem -subj "/CN=ed25519" -days 30 -out ed25519.crt.pem
    $O req -x509 -new -key rsa1024.pem -subj "/CN=rsa1024/serialNumber=123" -days 30 -sha1 -out rsa1024.crt.pem
    $O req -x509 -new -key rsa2048.pem -subj "/CN=pss" -days 30 -sigopt rsa_padding_mode:pss -sigopt rsa_pss_saltlen:32 -out pss.crt.pem
    $O req -new -key p256.pem -subj "/CN=issued" -out issued.csr.pem
    $O x509 -req -in issued.csr.pem -CA rsa-ca.pem -CAkey rsa2048.pem -days 30 -set_serial 0x00ff00ff00ff00ff00ff -out issued.crt.pem 2>/dev/null
    for c in rsa-ca p256-leaf p384.crt p521.crt ed25519.crt rsa1024.crt pss.crt issued.crt; do
        $O x509 -in $c.pem -outform DER -out $c.der
    done
    cp "$FUZZ/fixtures/ca.crt.der" fixture-ca.crt.der
    cp "$FUZZ/fixtures/requester.crt.der" fixture-requester.crt.der
    cat rsa-ca.pem issued.crt.pem > chain.pem
    cat p256-leaf.pem p256.pem > leaf-and-key.pem
    cat issued.crt.pem p256.sec1.pem > leaf-and-sec1.pem
    # CSRs
    $O req -new -key rsa2048.pem -subj "/C=LV/O=certman/CN=req rsa" -out rsa.csr.pem \
        -addext "subjectAltName=DNS:a.example,IP:10.1.2.3,email:x@y.example,URI:urn:x" \
        -addext "keyUsage=critical,digitalSignature" -addext "extendedKeyUsage=clientAuth" \
        -addext "basicConstraints=critical,CA:FALSE"
    printf '[req]\nprompt=no\ndistinguished_name=dn\nattributes=attr\nreq_extensions=ext\n[dn]\nCN=scep client\n[attr]\nchallengePassword=otp-123\n[ext]\nsubjectAltName=DNS:scep.example\nbasicConstraints=CA:TRUE\n' > req.cnf
    $O req -new -key p256.pem -config req.cnf -out challenge.csr.pem
    $O req -new -key ed25519.pem -subj "/CN=req ed25519" -out ed25519.csr.pem
    $O req -new -key p521.pem -subj "/CN=req p521" -sha512 -out p521.csr.pem
    $O req -new -key rsa1024.pem -subj "/CN=req rsa1024" -sha1 -out rsa1024.csr.pem
    $O req -new -key "$FUZZ/fixtures/requester.key.der" -keyform DER -subj "/CN=certman fuzz requester" -outform DER -out requester.csr.der
    for c in rsa challenge ed25519 p521 rsa1024; do
        $O req -in $c.csr.pem -outform DER -out $c.csr.der
    done
    # PKCS#12 (passphrase "fuzz"): PBES2/AES with few iterations, legacy 3DES/RC2, no MAC, no key
    $O pkcs12 -export -in p256-leaf.pem -inkey p256.pem -certfile rsa-ca.pem -name "leaf" -passout pass:$pass -iter 1 -out aes.p12
    $O pkcs12 -export -in rsa1024.crt.pem -inkey rsa1024.pem -passout pass:$pass -iter 1 -macalg sha1 -keypbe PBE-SHA1-3DES -certpbe PBE-SHA1-3DES -out 3des.p12
    $O pkcs12 -export -in rsa-ca.pem -inkey rsa2048.pem -passout pass:$pass -iter 1 -legacy -out legacy.p12 2>/dev/null || true
    $O pkcs12 -export -in ed25519.crt.pem -inkey ed25519.pem -passout pass:$pass -iter 1 -nomac -out nomac.p12
    $O pkcs12 -export -in issued.crt.pem -nokeys -passout pass:$pass -iter 1 -out certonly.p12
    $O pkcs12 -export -in p384.crt.pem -inkey p384.pem -passout pass:$pass -iter 1 -keypbe NONE -certpbe NONE -out clear.p12
    # CRLs signed by the fixture CA (the crl target checks signatures with its key)
    mkdir -p ca && touch ca/index.txt && echo 1000 > ca/crlnumber
    $O x509 -in "$FUZZ/fixtures/ca.crt.der" -inform DER -out ca/ca.pem
    $O pkey -in "$FUZZ/fixtures/ca.key.der" -inform DER -out ca/ca.key
    printf '[ca]\ndefault_ca=c\n[c]\ndatabase=ca/index.txt\ncrlnumber=ca/crlnumber\ncertificate=ca/ca.pem\nprivate_key=ca/ca.key\ndefault_md=sha256\ndefault_crl_days=30\ncrl_extensions=crlext\n[crlext]\nauthorityKeyIdentifier=keyid:always\n' > ca.cnf
    $O ca -config ca.cnf -gencrl -out empty.crl.pem 2>/dev/null
    local r
    for r in unspecified keyCompromise CACompromise affiliationChanged superseded cessationOfOperation certificateHold removeFromCRL; do
        printf 'R\t301231000000Z\t250101000000Z,%s\t%X\tunknown\t/CN=r%s\n' "$r" "$((RANDOM + 4096))" "$r" >> ca/index.txt
    done
    $O ca -config ca.cnf -gencrl -out full.crl.pem 2>/dev/null
    for c in empty full; do
        $O crl -in $c.crl.pem -outform DER -out $c.crl.der
        { $O crl -in $c.crl.pem -noout -text; cat $c.crl.pem; } > $c.crl.txt
    done
    $O crl2pkcs7 -nocrl -certfile chain.pem -outform DER -out getcacert.p7b
    $O crl2pkcs7 -in full.crl.pem -certfile chain.pem -outform DER -out crl-and-certs.p7b
    # BER: OpenSSL's -stream writes indefinite lengths and chunked OCTET STRINGs
    head -c 3000 /dev/urandom > blob
    $O cms -sign -in blob -signer p256-leaf.pem -inkey p256.pem -stream -outform DER -out signed.ber -binary
    $O cms -encrypt -in blob -recip rsa-ca.pem -aes128 -stream -outform DER -out enveloped.ber -binary
    $O cms -sign -in blob -signer rsa-ca.pem -inkey rsa2048.pem -outform DER -out signed.der -binary -nodetach
    # the SCEP seeds, made with certman's own encoders
    "$BIN/make_scep_seeds" "$S/scep" requester.csr.der full.crl.der >/dev/null
    cd "$ROOT"
}

echo "== seeding fuzz/corpus"
make_seeds
S=$SEEDS
CERTS_DER=("$S"/*.crt.der "$S"/rsa-ca.der "$S"/p256-leaf.der)
CERTS_PEM=("$S"/rsa-ca.pem "$S"/p256-leaf.pem "$S"/*.crt.pem "$S"/chain.pem)
KEYS_DER=("$S"/*.pk8.der "$S"/*.pkcs1.der "$S"/*.sec1.der)
KEYS_PEM=("$S"/rsa2048.pem "$S"/p256.pem "$S"/ed25519.pem "$S"/*.pkcs1.pem "$S"/*.sec1.pem "$S"/*.params.pem)
ENC=("$S"/enc-*.der)
P12=("$S"/*.p12)
CSRS=("$S"/*.csr.pem "$S"/*.csr.der)
CRLS=("$S"/*.crl.pem "$S"/*.crl.der "$S"/*.crl.txt)
seed certificate "${CERTS_DER[@]}" "${CERTS_PEM[@]}"
seed import_file "${CERTS_DER[@]}" "${CERTS_PEM[@]}" "${KEYS_DER[@]}" "${KEYS_PEM[@]}" "${ENC[@]}" \
    "$S"/enc-aes256.pem "${P12[@]}" "$S"/leaf-and-key.pem "$S"/leaf-and-sec1.pem
seed csr "${CSRS[@]}"
seed pkcs8_encrypted "${ENC[@]}"
seed private_key "${KEYS_DER[@]}"
seed pkcs12 "${P12[@]}"
seed crl "${CRLS[@]}"
seed scep_request "$S"/scep/scep_request/*
seed scep_cert_rep "$S"/scep/scep_cert_rep/*
seed scep_ca_certs "$S"/scep/scep_ca_certs/* "$S"/getcacert.p7b "$S"/crl-and-certs.p7b
seed cms_ber "$S"/scep/cms_ber/* "$S"/signed.ber "$S"/enveloped.ber "$S"/signed.der "$S"/getcacert.p7b \
    "${CERTS_DER[@]}" "${CSRS[@]}"
for u in 'pkcs11:token=CA;object=root;id=%01%a0?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/etc/ca.pin' \
    'pkcs11:token=demo-ca;serial=0123456789abcdef;slot-id=3;type=private?pin-value=1234&module-name=softhsm2' \
    'piv:slot-id=9c;serial=12345678?pin-source=env:PIN&management-key-source=file:/etc/mgm' \
    'yubikey:slot-id=9a;reader=Yubico%20YubiKey%20OTP%2BFIDO%2BCCID%2000%2000?pin-value=123456' \
    'soft:id=00112233445566778899aabbccddeeff' 'PKCS11:TOKEN=A%3bB;x-vendor=%ff%00?PIN-SOURCE=fd:3' \
    'piv:slot-id=82;x-extra=a%3Db'; do
    seed_text key_uri "$u"
done
seed_text token_profile $'kind = "pkcs11"\nmodule-path = "/usr/lib/softhsm/libsofthsm2.so"\ntoken-label = "demo-ca"\npin-source = "file:/tmp/user.pin"\nmax-sessions = 4\ndefault = true\n'
seed_text token_profile $'kind = "piv"\nserial = "12345678"\nslot = "9c"\npin-source = "env:CERTMAN_PIN"\nmanagement-key-source = "fd:3"\n'
seed_text token_profile $'kind = "piv"\nreader = "Yubico YubiKey"\npin-source = "prompt"\n'
seed_text token_profile $'kind = "pkcs11"\nmodule-path = \'/usr/lib/x.so\'\ntoken-serial = "0a1b"\n[extra]\n'
# Command lines from the README (one argument per NUL-separated field) and a few more.
python3 - "$SEEDS/cli" "$ROOT/README.md" <<'PY'
import hashlib, os, re, shlex, sys
out, readme = sys.argv[1], sys.argv[2]
os.makedirs(out, exist_ok=True)
lines = []
for line in open(readme, encoding="utf-8"):
    m = re.match(r"\s*(?:\$\s+)?certman\s+(.*)$", line)
    if not m or m.group(1).startswith(("is ", "rebuilt")):
        continue
    text = m.group(1).split(" #")[0].rstrip(" &\n")
    try:
        lines.append(shlex.split(text))
    except ValueError:
        pass
lines += [
    ["print", "detail", "where", "name=ca"], ["--json", "print"], ["import", "--help"],
    ["add", "name=x", "common-name=x", "days-valid=0", "key-size=1024", "key-type=rsa"],
    ["add", "name=x", "subject-alt-name=IP:::1,DNS:a,email:e@x,URI:u:v", "trusted=yes"],
    ["set", "x", "name=y", "trusted=no"], ["verify", "x", "--dns-name", "a.example", "--at", "2030-01-01"],
    ["crl", "renew", "ca"], ["serve", "listen=127.0.0.1:0"], ["--store", "/tmp/s", "remove", "--", "-x"],
    ["scep-server", "otp", "generate", "minutes-valid=60"], ["settings", "crl-download=yes", "crl-use=no"],
]
for args in lines:
    data = b"\0".join(a.encode() for a in args)
    with open(os.path.join(out, "seed-" + hashlib.sha1(data).hexdigest()), "wb") as f:
        f.write(data)
PY
seed cli_args "$SEEDS"/cli/*

# --- runs
ART=$FUZZ/artifacts
declare -A R_EXECS R_RATE R_SECS R_CORPUS R_CRASHES R_FILES R_SLOW
for t in "${TARGETS[@]}"; do
    mkdir -p "$ART/$t" "$CORPUS/$t"
    before=$(ls "$ART/$t")
    log=$ART/$t.log
    echo "== $t: ${SECONDS_PER_TARGET}s ($(ls "$CORPUS/$t" | wc -l) inputs in its corpus)"
    start=$(date +%s)
    # One process (no -jobs/-workers: they would fork more); a crash stops the run.
    # shellcheck disable=SC2086
    "$BIN/$t" "$CORPUS/$t" -max_total_time="$SECONDS_PER_TARGET" -print_final_stats=1 \
        -artifact_prefix="$ART/$t/" -timeout=60 -rss_limit_mb=2048 ${FUZZ_ARGS:-} \
        > "$log" 2>&1 || true
    end=$(date +%s)
    R_EXECS[$t]=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    R_RATE[$t]=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
    R_SECS[$t]=$((end - start))
    R_CORPUS[$t]=$(ls "$CORPUS/$t" | wc -l)
    new=$(comm -13 <(echo "$before" | sort) <(ls "$ART/$t" | sort))
    crashes=$(echo "$new" | grep -E '^(crash|leak|timeout|oom)-' || true)
    R_CRASHES[$t]=$(echo -n "$crashes" | grep -c . || true)
    R_SLOW[$t]=$(echo -n "$new" | grep -c '^slow-unit-' || true)
    R_FILES[$t]=$(echo -n "$crashes" | sed "s|^|$ART/$t/|" | tr '\n' ' ')
    if [ "${R_CRASHES[$t]}" -eq 0 ] && grep -q "^==[0-9]*==ERROR\|panicked at\|^SUMMARY: " "$log"; then
        R_CRASHES[$t]=1
        R_FILES[$t]="(no crash file: see $log)"
    fi
done

echo
printf '%-16s %12s %10s %7s %8s %8s %5s  %s\n' target executions exec/s seconds corpus crashes slow "crash files"
for t in "${TARGETS[@]}"; do
    printf '%-16s %12s %10s %7s %8s %8s %5s  %s\n' "$t" "${R_EXECS[$t]:-?}" "${R_RATE[$t]:-?}" \
        "${R_SECS[$t]}" "${R_CORPUS[$t]}" "${R_CRASHES[$t]}" "${R_SLOW[$t]}" "${R_FILES[$t]:-}"
done
echo "(slow: inputs that took over 10 s, kept as slow-unit-* beside the crash files; logs in $ART/<target>.log)"
