#!/usr/bin/env bash
# The whole test suite: formatting, lints, unit and integration tests (which run the real
# binary and hand every artefact to OpenSSL). Installs what it needs first.
# In CI (CI=true) tests that need SoftHSM or the virtual PIV card fail when it is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

source scripts/setup.sh

if [ "${CI:-}" = "true" ]; then
    export CERTMAN_REQUIRE_TOKENS=1
fi

echo "== cargo fmt --check"
cargo fmt --all -- --check

echo "== cargo clippy (all targets, -D warnings; with and without PC/SC)"
cargo clippy --all-targets --all-features -- -D warnings
cargo clippy --all-targets --no-default-features -- -D warnings

# The virtual PIV card behind pcscd (one per machine), stopped by PID when the tests end.
PIV_STATE="${TMPDIR:-/tmp}/certman-virtual-piv-tests"
echo "== virtual PIV card"
if reader=$(scripts/virtual-piv.sh start "$PIV_STATE" | tail -n 1) && [ -n "$reader" ]; then
    trap 'scripts/virtual-piv.sh stop "$PIV_STATE" || true' EXIT
    export CERTMAN_PIV_READER="$reader"
    echo "card in reader: $reader"
elif [ "${CI:-}" = "true" ]; then
    echo "the virtual PIV card did not start (see $PIV_STATE/*.log)" >&2
    exit 1
else
    echo "no virtual PIV card: its tests will skip (see $PIV_STATE/*.log)" >&2
fi

echo "== cargo test"
# Benches are built by clippy above but not run here: they measure, they do not test.
cargo test --lib --bins --tests
