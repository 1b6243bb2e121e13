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

echo "== cargo clippy (all targets, -D warnings)"
cargo clippy --all-targets --all-features -- -D warnings

echo "== cargo test"
# Benches are built by clippy above but not run here: they measure, they do not test.
cargo test --lib --bins --tests
