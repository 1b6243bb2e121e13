#!/usr/bin/env bash
# The whole test suite: formatting, lints, unit and integration tests (which run the real
# binary and hand every artefact to OpenSSL). Installs what it needs first.
# In CI (CI=true) tests that need SoftHSM, the virtual PIV card or PostgreSQL fail when it is
# missing.
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

# The virtual PIV card behind pcscd (one per machine) and a private PostgreSQL cluster, both
# stopped by PID when the tests end.
PIV_STATE="${TMPDIR:-/tmp}/certman-virtual-piv-tests"
PG_DIR="${TMPDIR:-/tmp}/certman-postgres-tests"
PIV_STARTED=""
PG_STARTED=""
cleanup() {
    if [ -n "$PIV_STARTED" ]; then scripts/virtual-piv.sh stop "$PIV_STATE" || true; fi
    if [ -n "$PG_STARTED" ]; then scripts/postgres.sh stop "$PG_DIR" || true; fi
}
trap cleanup EXIT

echo "== virtual PIV card"
if reader=$(scripts/virtual-piv.sh start "$PIV_STATE" | tail -n 1) && [ -n "$reader" ]; then
    PIV_STARTED=1
    export CERTMAN_PIV_READER="$reader"
    # the hot-plug tests signal the card's runner (its PID file is there) to leave and re-enter
    export CERTMAN_PIV_STATE_DIR="$PIV_STATE"
    echo "card in reader: $reader"
elif [ "${CI:-}" = "true" ]; then
    echo "the virtual PIV card did not start (see $PIV_STATE/*.log)" >&2
    exit 1
else
    echo "no virtual PIV card: its tests will skip (see $PIV_STATE/*.log)" >&2
fi

echo "== PostgreSQL"
PG_STARTED=1 # stopped at exit even when `start` fails half-way (stop is idempotent)
if pg_url=$(scripts/postgres.sh start "$PG_DIR" | tail -n 1) && [ -n "$pg_url" ]; then
    export CERTMAN_TEST_POSTGRES_URL="$pg_url"
    echo "PostgreSQL at: $pg_url"
elif [ "${CI:-}" = "true" ]; then
    echo "PostgreSQL did not start (see $PG_DIR/postgres.log)" >&2
    exit 1
else
    echo "no PostgreSQL: its tests will skip (see $PG_DIR/postgres.log)" >&2
fi

echo "== cargo test"
# Benches are built by clippy above but not run here: they measure, they do not test.
cargo test --lib --bins --tests

if [ -n "${CERTMAN_TEST_POSTGRES_URL:-}" ]; then
    echo "== cargo test: the CLI integration tests on the PostgreSQL store"
    CERTMAN_TEST_BACKEND=postgres cargo test --test cli --test crl_cli --test import_cli \
        --test scep_cli --test requests_cli --test store_reseal
fi
