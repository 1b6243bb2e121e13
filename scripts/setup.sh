#!/usr/bin/env bash
# Installs what certman's build, demo and tests need on Debian 12, idempotently.
# Usage: scripts/setup.sh            (run as root, or with sudo available)
set -euo pipefail

# Debian packages: OpenSSL is the independent verifier of everything certman writes;
# pkg-config + a C compiler build AWS-LC and SQLite (bundled) from source; SoftHSM2 is the
# PKCS#11 token of the demo and the tests, OpenSC's pkcs11-tool their independent PKCS#11 peer;
# libpcsclite-dev builds the PC/SC (PIV) support; pcscd, vsmartcard-vpcd and libclang-dev (for the
# virtual card's littlefs2) run the virtual PIV card of the tests, yubico-piv-tool and ykcs11 are
# its independent peers; curl fetches the CRL that `certman serve` publishes in the demo;
# strace kills commands at each of their writes in the crash tests; scep (micromdm's scepclient
# and scepserver) and certmonger (with dbus for its private session bus) are the SCEP peers;
# GNU time measures the peak RSS of hostile inputs; iproute2 brings up lo in the private network
# namespace micromdm's scepserver runs in. man-db's `man -l` renders certman's man page in the tests;
# headless chromium renders the status page (tests/status_page.rs). postgresql (15) is the store
# of several serve nodes (issue 16): scripts/postgres.sh runs a private cluster of its own on a
# unix socket in a temp dir (any cluster Debian's postinst made is left alone).
PACKAGES=(openssl ca-certificates pkg-config gcc g++ make softhsm2 opensc libpcsclite-dev
          pcscd vsmartcard-vpcd libclang-dev yubico-piv-tool ykcs11 curl strace
          scep certmonger dbus time iproute2 man-db chromium postgresql)

missing=()
for p in "${PACKAGES[@]}"; do
    [[ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null)" == "install ok installed" ]] || missing+=("$p")
done

if ((${#missing[@]})); then
    echo "setup: installing ${missing[*]}" >&2
    SUDO=""
    if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
    echo "setup: system packages present" >&2
fi

if ! command -v cargo >/dev/null 2>&1; then
    for d in "$HOME/.cargo/bin" /usr/local/cargo/bin; do
        if [ -x "$d/cargo" ]; then export PATH="$d:$PATH"; break; fi
    done
fi
if ! command -v cargo >/dev/null 2>&1; then
    echo "setup: cargo not found: install a Rust toolchain >= 1.85 with rustup (https://rustup.rs)" >&2
    exit 1
fi
