#!/usr/bin/env bash
# A private PostgreSQL 15 cluster (Debian's postgresql) for certman's tests and benchmarks.
#
#   scripts/postgres.sh start [DIR]   initialises a cluster in DIR/data if there is none, starts
#                                     it unless it runs, makes sure role and database `certman`
#                                     exist; prints the URL as the last line of stdout
#   scripts/postgres.sh stop  [DIR]   stops the cluster (pg_ctl stop -m fast, else by the
#                                     postmaster's PID); nothing to do when it does not run
#   scripts/postgres.sh url   [DIR]   prints the URL of the running cluster
#
# The URL: postgresql:///certman?host=DIR/socket&user=certman (DIR absolute). The server listens
# on a unix socket only, in DIR/socket (mode 0700: its owner and root get in), with trust
# authentication; it is independent of any cluster Debian's package made (/var/run/postgresql).
# Role `certman` may LOGIN and CREATEDB (the tests make and drop a database per test); the
# superuser is `postgres`. initdb refuses root: run as root, DIR belongs to the `postgres` system
# user and the server runs as it (runuser); otherwise as the invoking user.
#
# DIR defaults to /tmp/certman-postgres. The server's log is DIR/postgres.log. Everything but
# the URL goes to stderr. Fsync stays on (the benchmarks use this server).
set -euo pipefail

ACTION="${1:-}"
DIR="${2:-/tmp/certman-postgres}"

PG_BIN=/usr/lib/postgresql/15/bin
# The caller's libpq defaults must not steer our commands elsewhere.
unset PGHOST PGHOSTADDR PGPORT PGUSER PGDATABASE PGSERVICE PGSERVICEFILE PGOPTIONS PGDATA

say() { echo "postgres: $*" >&2; }
die() {
    say "$*"
    exit 1
}

if [ "$(id -u)" -eq 0 ]; then
    OWNER=postgres
    as_owner() { runuser -u postgres -- "$@"; }
else
    OWNER="$(id -un)"
    as_owner() { "$@"; }
fi

# $1 percent-encoded for a URL's query value (unreserved characters and '/' kept).
url_encode() {
    local s="$1" out="" c i
    for ((i = 0; i < ${#s}; i++)); do
        c="${s:i:1}"
        case "$c" in
        [A-Za-z0-9._~/-]) out+="$c" ;;
        *) printf -v c '%%%02X' "'$c" && out+="$c" ;;
        esac
    done
    echo "$out"
}

set_paths() {
    DATA="$DIR/data"
    SOCKET="$DIR/socket"
    LOG="$DIR/postgres.log"
    URL="postgresql:///certman?host=$(url_encode "$SOCKET")&user=certman"
    ADMIN_URL="postgresql:///postgres?host=$(url_encode "$SOCKET")&user=postgres"
}

# The postmaster's PID when the cluster runs (its PID file names a live postgres, not a
# zombie: where PID 1 does not reap, a killed postmaster stays one), or nothing.
postmaster_pid() {
    local pid comm stat
    [ -r "$DATA/postmaster.pid" ] || return 0
    { read -r pid <"$DATA/postmaster.pid"; } 2>/dev/null || return 0
    [[ "$pid" =~ ^[0-9]+$ ]] || return 0
    { read -r comm <"/proc/$pid/comm" && read -r stat <"/proc/$pid/stat"; } 2>/dev/null || return 0
    stat="${stat##*) }" # after "PID (comm) ": the state letter
    if [ "$comm" = postgres ] && [[ "$stat" != [ZX]* ]]; then echo "$pid"; fi
    return 0
}

psql_admin() {
    "$PG_BIN/psql" "$ADMIN_URL" -X -q -v ON_ERROR_STOP=1 "$@"
}

# Creates role and database `certman` when missing, then checks that psql gets in by the URL.
ensure_certman() {
    if [ "$(psql_admin -Atc "SELECT count(*) FROM pg_roles WHERE rolname = 'certman'")" != 1 ]; then
        psql_admin -c "CREATE ROLE certman LOGIN CREATEDB" ||
            die "cannot create role certman (log: $LOG)"
    fi
    if [ "$(psql_admin -Atc "SELECT count(*) FROM pg_database WHERE datname = 'certman'")" != 1 ]; then
        psql_admin -c "CREATE DATABASE certman OWNER certman" ||
            die "cannot create database certman (log: $LOG)"
    fi
    [ "$("$PG_BIN/psql" "$URL" -X -Atqc 'SELECT current_user')" = certman ] ||
        die "psql does not get in as certman by $URL (log: $LOG)"
}

# A new cluster in $DATA (which must not hold one), configured for the tests.
init_cluster() {
    rm -rf "$DATA"
    say "initdb in $DATA (as $OWNER)"
    as_owner "$PG_BIN/initdb" -D "$DATA" -U postgres --auth-local=trust --auth-host=reject \
        --encoding=UTF8 --locale=C --no-sync >"$DIR/initdb.log" 2>&1 ||
        die "initdb failed (log: $DIR/initdb.log)"
    # Appended: the last setting wins over Debian's defaults above (its socket directory).
    as_owner tee -a "$DATA/postgresql.conf" >/dev/null <<EOF || die "cannot write $DATA/postgresql.conf"

# Written by scripts/postgres.sh: a unix socket only, in a directory only its owner (and root)
# can enter; room for many test processes with a pool each, on a small machine.
listen_addresses = ''
port = 5432
unix_socket_directories = '$SOCKET'
unix_socket_permissions = 0700
max_connections = 200
shared_buffers = 128MB
fsync = on
EOF
}

start() {
    [ -x "$PG_BIN/initdb" ] ||
        die "missing Debian package: postgresql (15) (run scripts/setup.sh, or apt-get install postgresql)"
    mkdir -p "$DIR"
    DIR="$(cd "$DIR" && pwd)"
    set_paths
    # The owner writes the log beside the data; nobody else gets in.
    chmod 0700 "$DIR"
    [ "$OWNER" = "$(id -un)" ] || chown "$OWNER:" "$DIR"
    as_owner test -w "$DIR" ||
        die "$OWNER cannot write $DIR (is a directory above it closed to $OWNER?)"
    # Commands run as the owner start in a directory it can enter.
    cd "$DIR"

    # One start or stop at a time per DIR.
    exec 9>>"$DIR/lock"
    flock 9

    local pid
    pid="$(postmaster_pid)"
    if [ -n "$pid" ]; then
        say "already running (postmaster PID $pid, log $LOG)"
    else
        if [ -f "$DATA/PG_VERSION" ]; then
            [ "$(cat "$DATA/PG_VERSION")" = 15 ] ||
                die "$DATA holds a PostgreSQL $(cat "$DATA/PG_VERSION") cluster, not 15: remove $DIR"
        else
            init_cluster
        fi
        install -d -m 0700 -o "$OWNER" -g "$(id -gn "$OWNER")" "$SOCKET" || die "cannot make $SOCKET"
        # Without fd 9: the server would hold the lock for as long as it runs.
        as_owner "$PG_BIN/pg_ctl" -D "$DATA" -l "$LOG" -w -t 60 start >&2 9>&- || {
            tail -n 5 "$LOG" >&2 || true
            die "the server did not start (log: $LOG)"
        }
        pid="$(postmaster_pid)"
        [ -n "$pid" ] || die "pg_ctl started the server but it is gone (log: $LOG)"
        say "started (postmaster PID $pid, log $LOG)"
    fi
    ensure_certman
    echo "$URL"
}

stop() {
    [ -d "$DIR" ] || return 0
    DIR="$(cd "$DIR" && pwd)"
    set_paths
    cd "$DIR"
    # One start or stop at a time per DIR.
    exec 9>>"$DIR/lock"
    flock 9

    local pid i
    pid="$(postmaster_pid)"
    [ -n "$pid" ] || return 0
    if as_owner "$PG_BIN/pg_ctl" -D "$DATA" -m fast -w -t 20 stop >&2; then
        return 0
    fi
    say "pg_ctl stop failed; ending the postmaster (PID $pid) by signal"
    # SIGINT: fast shutdown; SIGQUIT after 5 s: immediate; SIGKILL after 10 s.
    kill -INT "$pid" 2>/dev/null || true
    for ((i = 0; i < 150; i++)); do
        [ -n "$(postmaster_pid)" ] || return 0
        if ((i == 50)); then kill -QUIT "$pid" 2>/dev/null || true; fi
        if ((i == 100)); then kill -KILL "$pid" 2>/dev/null || true; fi
        sleep 0.1
    done
    die "the postmaster (PID $pid) still runs (log: $LOG)"
}

url() {
    [ -d "$DIR" ] || die "no cluster in $DIR"
    DIR="$(cd "$DIR" && pwd)"
    set_paths
    [ -n "$(postmaster_pid)" ] || die "the cluster in $DIR does not run (log: $LOG)"
    echo "$URL"
}

case "$ACTION" in
start) start ;;
stop) stop ;;
url) url ;;
*)
    echo "usage: $0 start|stop|url [DIR]" >&2
    exit 2
    ;;
esac
