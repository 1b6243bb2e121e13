#!/usr/bin/env bash
# A private PostgreSQL 15 cluster (Debian's postgresql) for certman's tests and benchmarks.
#
#   scripts/postgres.sh start [DIR]   initialises a cluster in DIR/data if there is none, starts
#                                     it unless it runs, makes sure role and database `certman`
#                                     exist; prints the URL as the last line of stdout
#   scripts/postgres.sh stop  [DIR]   stops the cluster (pg_ctl stop -m fast, else by the
#                                     postmaster's PID); nothing to do when it does not run
#   scripts/postgres.sh url   [DIR]   prints the URL of the running cluster
#   scripts/postgres.sh url-tls [DIR] prints the URL of its TLS listener (see below)
#
# The URL: postgresql:///certman?host=DIR/socket&user=certman (DIR absolute). The server listens
# on a unix socket only, in DIR/socket (mode 0700: its owner and root get in), with trust
# authentication; it is independent of any cluster Debian's package made (/var/run/postgresql).
# Role `certman` may LOGIN and CREATEDB (the tests make and drop a database per test) and is in
# pg_signal_backend: a test's DROP DATABASE … WITH (FORCE) once failed with "must be a member of
# the role whose process is being terminated or member of pg_signal_backend" (a process of no
# role in the database, an autovacuum worker as far as we can tell); the superuser is `postgres`. initdb refuses root: run as root, DIR belongs to the `postgres` system
# user and the server runs as it (runuser); otherwise as the invoking user.
#
# With CERTMAN_PG_TLS_PORT=PORT, `start` also opens a TLS listener on 127.0.0.1:PORT (ssl=on,
# TLS only: plain TCP is refused), and the socket URL gains `&port=PORT` (the socket's name
# follows the port). Its certificates are made once by openssl in DIR/tls: a throwaway test CA
# (ca.crt), the server's (CN 127.0.0.1, subjectAltName 127.0.0.1 and localhost) and a client
# certificate for role `certman_cert` (client.crt/client.key). pg_hba: role certman_cert (whose
# database is `certman_cert`) must present that client certificate; everyone else is trusted
# over TLS from 127.0.0.1. `url-tls` prints
# postgresql://certman@127.0.0.1:PORT/certman?sslmode=verify-full&sslrootcert=DIR/tls/ca.crt.
# A later `start` without the variable goes back to the socket only (restarting the server).
#
# DIR defaults to /tmp/certman-postgres. The server's log is DIR/postgres.log. Everything but
# the URL goes to stderr. Fsync stays on (the benchmarks use this server).
set -euo pipefail

ACTION="${1:-}"
DIR="${2:-/tmp/certman-postgres}"
TLS_PORT="${CERTMAN_PG_TLS_PORT:-}"
[[ "$TLS_PORT" =~ ^[0-9]*$ ]] || { echo "postgres: CERTMAN_PG_TLS_PORT=$TLS_PORT: not a port" >&2; exit 2; }

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
    TLS_DIR="$DIR/tls"
    TLS_CONF="$DATA/certman-tls.conf"
    # the TLS listener's port: the one asked for at `start`, else the one configured
    local port="${TLS_PORT:-}"
    if [ -z "$port" ] && [ "$ACTION" != start ] && [ -r "$TLS_CONF" ]; then
        port="$(sed -n "s/^port = \([0-9]*\)$/\1/p" "$TLS_CONF")"
    fi
    local suffix=""
    [ -z "$port" ] || suffix="&port=$port"
    URL="postgresql:///certman?host=$(url_encode "$SOCKET")&user=certman$suffix"
    ADMIN_URL="postgresql:///postgres?host=$(url_encode "$SOCKET")&user=postgres$suffix"
    TLS_URL=""
    [ -z "$port" ] ||
        TLS_URL="postgresql://certman@127.0.0.1:$port/certman?sslmode=verify-full&sslrootcert=$(url_encode "$TLS_DIR/ca.crt")"
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
    psql_admin -c "GRANT pg_signal_backend TO certman" ||
        die "cannot grant pg_signal_backend to certman (log: $LOG)"
    if [ "$(psql_admin -Atc "SELECT count(*) FROM pg_database WHERE datname = 'certman'")" != 1 ]; then
        psql_admin -c "CREATE DATABASE certman OWNER certman" ||
            die "cannot create database certman (log: $LOG)"
    fi
    [ "$("$PG_BIN/psql" "$URL" -X -Atqc 'SELECT current_user')" = certman ] ||
        die "psql does not get in as certman by $URL (log: $LOG)"
    [ -n "$TLS_URL" ] || return 0
    if [ "$(psql_admin -Atc "SELECT count(*) FROM pg_roles WHERE rolname = 'certman_cert'")" != 1 ]; then
        psql_admin -c "CREATE ROLE certman_cert LOGIN" || die "cannot create role certman_cert (log: $LOG)"
    fi
    if [ "$(psql_admin -Atc "SELECT count(*) FROM pg_database WHERE datname = 'certman_cert'")" != 1 ]; then
        psql_admin -c "CREATE DATABASE certman_cert OWNER certman_cert" ||
            die "cannot create database certman_cert (log: $LOG)"
    fi
}

# The test CA, the server's and the client's certificates in $TLS_DIR, made when missing.
make_certs() {
    [ -s "$TLS_DIR/client.crt" ] && return 0
    command -v openssl >/dev/null || die "missing: openssl (apt-get install openssl)"
    say "making the test CA and certificates in $TLS_DIR"
    as_owner rm -rf "$TLS_DIR"
    as_owner mkdir -m 0700 "$TLS_DIR"
    as_owner tee "$TLS_DIR/server.ext" >/dev/null <<EOF
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=serverAuth
subjectAltName=IP:127.0.0.1,DNS:localhost
EOF
    as_owner tee "$TLS_DIR/client.ext" >/dev/null <<EOF
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=clientAuth
EOF
    (
        cd "$TLS_DIR"
        umask 077
        as_owner openssl req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
            -keyout ca.key -out ca.crt -days 3650 -subj "/CN=certman test CA" \
            -addext "basicConstraints=critical,CA:TRUE" \
            -addext "keyUsage=critical,keyCertSign,cRLSign" &&
            as_owner openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
                -keyout server.key -out server.csr -subj "/CN=127.0.0.1" &&
            as_owner openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial \
                -out server.crt -days 3650 -extfile server.ext &&
            as_owner openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
                -keyout client.key -out client.csr -subj "/CN=certman_cert" &&
            as_owner openssl x509 -req -in client.csr -CA ca.crt -CAkey ca.key -CAcreateserial \
                -out client.crt -days 3650 -extfile client.ext
    ) >"$DIR/openssl.log" 2>&1 || {
        as_owner rm -f "$TLS_DIR/client.crt"
        die "openssl failed (log: $DIR/openssl.log)"
    }
    # the certificates are public; the keys stay 0600
    as_owner chmod 0644 "$TLS_DIR/ca.crt" "$TLS_DIR/server.crt" "$TLS_DIR/client.crt"
}

# The TLS listener's configuration (certman-tls.conf, included by postgresql.conf, and a block
# at the top of pg_hba.conf) as $TLS_PORT asks: on that port, or none. Sets CHANGED=1 when
# the files change.
configure_tls() {
    local conf="" hba="$DATA/pg_hba.conf" block="" new
    CHANGED=""
    if [ -n "${TLS_PORT:-}" ]; then
        make_certs
        conf="# Written by scripts/postgres.sh (CERTMAN_PG_TLS_PORT): TLS on 127.0.0.1 too.
listen_addresses = '127.0.0.1'
port = $TLS_PORT
ssl = on
ssl_cert_file = '$TLS_DIR/server.crt'
ssl_key_file = '$TLS_DIR/server.key'
ssl_ca_file = '$TLS_DIR/ca.crt'"
        block="# certman-tls begin (scripts/postgres.sh)
hostssl all certman_cert 127.0.0.1/32 cert
hostssl all all 127.0.0.1/32 trust
# certman-tls end"
    fi
    grep -qx "include_if_exists = 'certman-tls.conf'" "$DATA/postgresql.conf" ||
        as_owner tee -a "$DATA/postgresql.conf" >/dev/null <<<"include_if_exists = 'certman-tls.conf'" ||
        die "cannot write $DATA/postgresql.conf"
    if [ "$(cat "$TLS_CONF" 2>/dev/null)" != "$conf" ]; then
        as_owner tee "$TLS_CONF" >/dev/null <<<"$conf" || die "cannot write $TLS_CONF"
        CHANGED=1
    fi
    new="$(sed '/^# certman-tls begin/,/^# certman-tls end/d' "$hba")"
    [ -z "$block" ] || new="$block
$new"
    if [ "$(cat "$hba")" != "$new" ]; then
        as_owner tee "$hba" >/dev/null <<<"$new" || die "cannot write $hba"
        CHANGED=1
    fi
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
    CHANGED=""
    if [ -f "$DATA/PG_VERSION" ] && [ "$(cat "$DATA/PG_VERSION")" = 15 ]; then
        configure_tls
    fi
    if [ -n "$pid" ] && [ -n "$CHANGED" ]; then
        say "restarting for the new TLS listener settings (postmaster PID $pid)"
        as_owner "$PG_BIN/pg_ctl" -D "$DATA" -l "$LOG" -m fast -w -t 60 restart >&2 9>&- || {
            tail -n 5 "$LOG" >&2 || true
            die "the server did not restart (log: $LOG)"
        }
        pid="$(postmaster_pid)"
        [ -n "$pid" ] || die "pg_ctl restarted the server but it is gone (log: $LOG)"
        say "restarted (postmaster PID $pid, log $LOG)"
    elif [ -n "$pid" ]; then
        say "already running (postmaster PID $pid, log $LOG)"
    else
        if [ -f "$DATA/PG_VERSION" ]; then
            [ "$(cat "$DATA/PG_VERSION")" = 15 ] ||
                die "$DATA holds a PostgreSQL $(cat "$DATA/PG_VERSION") cluster, not 15: remove $DIR"
        else
            init_cluster
            configure_tls
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
    TLS_PORT=""
    set_paths
    [ -n "$(postmaster_pid)" ] || die "the cluster in $DIR does not run (log: $LOG)"
    if [ "${1:-}" = tls ]; then
        [ -n "$TLS_URL" ] || die "the cluster in $DIR has no TLS listener (CERTMAN_PG_TLS_PORT at start)"
        echo "$TLS_URL"
    else
        echo "$URL"
    fi
}

case "$ACTION" in
start) start ;;
stop) stop ;;
url) url ;;
url-tls) url tls ;;
*)
    echo "usage: $0 start|stop|url|url-tls [DIR]" >&2
    exit 2
    ;;
esac
