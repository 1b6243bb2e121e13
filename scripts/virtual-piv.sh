#!/usr/bin/env bash
# A virtual PIV card behind a real pcscd, for certman's card tests (see tools/virtual-piv).
#
#   scripts/virtual-piv.sh start [STATE_DIR]   builds the card if needed, starts pcscd with a
#                                             private vpcd reader and the card; prints the
#                                             reader's name as the last line of stdout
#   scripts/virtual-piv.sh stop  [STATE_DIR]   stops the card, then pcscd
#
# STATE_DIR defaults to /tmp/certman-virtual-piv (PID files, reader.conf.d, logs). Everything
# but the reader name goes to stderr. There is one pcscd per machine: `start` stops any other
# pcscd (by PID), so card tests run one at a time. A restart of the card is a factory reset
# (PIN 123456, PUK 12345678, 3DES management key 010203040506070801020304050607080102030405060708).
# VIRTUAL_PIV_DEBUG=1 makes the card log every APDU to STATE_DIR/card.log.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
ACTION="${1:-}"
STATE_DIR="${2:-/tmp/certman-virtual-piv}"

FRIENDLY_NAME="Yubico YubiKey virtual PIV certman"
VPCD_PORT=35963
VPCD_LIB=/usr/lib/pcsc/drivers/serial/libifdvpcd.so
PCSCD_SOCKET=/run/pcscd/pcscd.comm

say() { echo "virtual-piv: $*" >&2; }
die() {
    say "$*"
    exit 1
}

# The state letter of PID (R, S, D, Z, …), or nothing when there is no such process.
proc_state() {
    local stat
    stat="$(cat "/proc/$1/stat" 2>/dev/null)" || return 0
    stat="${stat##*) }" # after "PID (comm) ", comm may hold spaces
    echo "${stat%% *}"
}

# True while PID runs. A zombie has ended: its files, sockets and ports are released. (Not by
# its command line: that reads empty while a process execs or exits, and a child that has not
# exec'd yet still shows this script's.)
running() {
    local state
    [[ "$1" =~ ^[0-9]+$ ]] || return 1
    state="$(proc_state "$1")"
    [ -n "$state" ] && [ "$state" != Z ] && [ "$state" != X ]
}

# True when PID (from a PID file) runs and its command line contains WORD (guards against PID
# reuse).
alive_as() {
    local pid="$1" word="$2"
    # No `… | grep -q` under pipefail: grep quitting at the first match can SIGPIPE the
    # writer and fail the pipeline although the process is there.
    local cmdline
    running "$pid" && cmdline="$(tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline")" &&
        [[ "$cmdline" == *"$word"* ]]
}

# The PID in a PID file (pcscd's own ends in a NUL byte), or nothing.
pid_from() { if [ -r "$1" ]; then tr -cd '0-9' <"$1"; fi; }

# PIDs of running processes named pcscd (no pgrep needed; zombies left out).
pcscd_pids() {
    local d
    for d in /proc/[0-9]*; do
        [ "$(cat "$d/comm" 2>/dev/null)" = pcscd ] && running "${d#/proc/}" && echo "${d#/proc/}"
    done
    return 0
}

# Ends PID (TERM, then KILL after 5 s) and waits until it has ended (a zombie or gone: its
# port and socket are free again).
end_pid() {
    local pid="$1" word="$2" i
    alive_as "$pid" "$word" || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do
        running "$pid" || return 0
        sleep 0.1
    done
    say "$word (PID $pid) did not stop on TERM; killing it"
    kill -KILL "$pid" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do
        running "$pid" || return 0
        sleep 0.1
    done
    die "could not end $word (PID $pid)"
}

vpcd_listening() {
    # Port 35963 = 0x8C7B, state 0A = LISTEN. No probe connection: vpcd would take it for a card.
    # (one awk, no `| grep -q`: under pipefail an early grep exit can fail the pipeline)
    local f files=()
    for f in /proc/net/tcp /proc/net/tcp6; do [ -r "$f" ] && files+=("$f"); done
    ((${#files[@]})) &&
        awk 'toupper($2) ~ /:8C7B$/ && $4 == "0A" { found = 1 } END { exit !found }' "${files[@]}"
}

check_packages() {
    local missing=()
    command -v pcscd >/dev/null 2>&1 || [ -x /usr/sbin/pcscd ] || missing+=(pcscd)
    [ -e "$VPCD_LIB" ] || missing+=(vsmartcard-vpcd)
    command -v yubico-piv-tool >/dev/null 2>&1 || missing+=(yubico-piv-tool)
    if ((${#missing[@]})); then
        die "missing Debian package(s): ${missing[*]} (run scripts/setup.sh, or apt-get install ${missing[*]})"
    fi
}

# The full name (FRIENDLYNAME plus pcscd's " 00 00") of the reader whose card answers. vpcd
# makes two readers per channel, " 00 00" (port 35963, the card) and an empty " 00 01".
answering_reader() {
    local r
    while IFS= read -r r; do
        [ -n "$r" ] && card_answers "$r" && { echo "$r"; return 0; }
    done < <(yubico-piv-tool -r "$FRIENDLY_NAME" -a list-readers 2>/dev/null || true)
    return 0
}

card_answers() {
    yubico-piv-tool -r "$1" -a version >/dev/null 2>&1
}

build_card() {
    if ! command -v cargo >/dev/null 2>&1; then
        for d in "$HOME/.cargo/bin" /usr/local/cargo/bin; do
            if [ -x "$d/cargo" ]; then export PATH="$d:$PATH"; break; fi
        done
    fi
    command -v cargo >/dev/null 2>&1 || die "cargo not found (needed to build tools/virtual-piv)"
    # littlefs2-sys runs bindgen, which needs libclang.
    if ! compgen -G '/usr/lib/llvm-*/lib/libclang.so' >/dev/null &&
        ! compgen -G '/usr/lib/*/libclang.so' >/dev/null; then
        die "missing Debian package: libclang-dev (needed to build tools/virtual-piv; run scripts/setup.sh)"
    fi
    say "building tools/virtual-piv (release)"
    (cd "$ROOT" && cargo build --release -p virtual-piv 1>&2) || die "cargo build -p virtual-piv failed"
    local target="${CARGO_TARGET_DIR:-$ROOT/target}"
    [[ "$target" = /* ]] || target="$ROOT/$target"
    CARD_BIN="$target/release/virtual-piv"
    [ -x "$CARD_BIN" ] || die "built, but $CARD_BIN is missing"
}

# Stops a pcscd this script did not start now: one from another STATE_DIR (its card first),
# or a system one. Found by PID file or by PID listing; ended by PID.
stop_other_pcscd() {
    local pids pid conf other_dir
    pids="$(pid_from /run/pcscd/pcscd.pid) $(pcscd_pids)"
    for pid in $(echo "$pids" | tr ' ' '\n' | sort -u); do
        alive_as "$pid" pcscd || continue
        conf="$(tr '\0' '\n' <"/proc/$pid/cmdline" | grep -A1 -x -e -c -e --config | tail -n 1 || true)"
        other_dir="$(dirname "$conf" 2>/dev/null || true)"
        if [ -n "$conf" ] && [ -f "$other_dir/card.pid" ]; then
            say "stopping the virtual card of $other_dir"
            end_pid "$(pid_from "$other_dir/card.pid")" virtual-piv
            rm -f "$other_dir/card.pid" "$other_dir/pcscd.pid" "$other_dir/reader"
        fi
        say "stopping the running pcscd (PID $pid): one pcscd per machine"
        end_pid "$pid" pcscd
    done
    # A pcscd that was killed hard leaves its socket behind, and a new one refuses to start.
    if [ -e "$PCSCD_SOCKET" ] && [ -z "$(pcscd_pids)" ]; then
        rm -f "$PCSCD_SOCKET" /run/pcscd/pcscd.pid
    fi
}

stop() {
    local card_pid pcscd_pid
    card_pid="$(pid_from "$STATE_DIR/card.pid")"
    pcscd_pid="$(pid_from "$STATE_DIR/pcscd.pid")"
    [ -n "$card_pid" ] && end_pid "$card_pid" virtual-piv
    [ -n "$pcscd_pid" ] && end_pid "$pcscd_pid" pcscd
    rm -f "$STATE_DIR/card.pid" "$STATE_DIR/pcscd.pid" "$STATE_DIR/reader"
    return 0
}

start() {
    check_packages
    mkdir -p "$STATE_DIR"
    STATE_DIR="$(cd "$STATE_DIR" && pwd)"

    local card_pid pcscd_pid reader
    card_pid="$(pid_from "$STATE_DIR/card.pid")"
    pcscd_pid="$(pid_from "$STATE_DIR/pcscd.pid")"
    if alive_as "$card_pid" virtual-piv && alive_as "$pcscd_pid" pcscd && [ -s "$STATE_DIR/reader" ]; then
        reader="$(cat "$STATE_DIR/reader")"
        if card_answers "$reader"; then
            say "already running (card PID $card_pid, pcscd PID $pcscd_pid)"
            echo "$reader"
            return 0
        fi
        say "running but the card does not answer: restarting"
    fi
    stop

    build_card

    stop_other_pcscd

    local conf_dir="$STATE_DIR/reader.conf.d"
    mkdir -p "$conf_dir"
    rm -f "$conf_dir"/*
    cat >"$conf_dir/virtual-piv" <<EOF
# Written by scripts/virtual-piv.sh: vpcd's reader, on TCP port $VPCD_PORT (0x8C7B).
# ykcs11 only uses readers whose name contains "Yubico"; yubico-piv-tool's default -r is "Yubikey".
FRIENDLYNAME "$FRIENDLY_NAME"
DEVICENAME   /dev/null:0x8C7B
LIBPATH      $VPCD_LIB
CHANNELID    0x8C7B
EOF

    local pcscd_bin i
    pcscd_bin="$(command -v pcscd 2>/dev/null || echo /usr/sbin/pcscd)"
    # setsid + no inherited stdio: survives the caller's process group, and never holds the
    # pipe of a caller that reads our stdout with $(...).
    setsid "$pcscd_bin" --foreground -c "$conf_dir" </dev/null >"$STATE_DIR/pcscd.log" 2>&1 &
    pcscd_pid=$!
    echo "$pcscd_pid" >"$STATE_DIR/pcscd.pid"
    for ((i = 0; i < 100; i++)); do
        vpcd_listening && [ -S "$PCSCD_SOCKET" ] && break
        # our own child: by state, not by command line (see `running`)
        running "$pcscd_pid" || {
            tail -n 5 "$STATE_DIR/pcscd.log" >&2 || true
            stop
            die "pcscd exited at start (log: $STATE_DIR/pcscd.log)"
        }
        sleep 0.1
    done
    vpcd_listening || {
        stop
        die "vpcd is not listening on port $VPCD_PORT after 10 s (log: $STATE_DIR/pcscd.log)"
    }

    setsid "$CARD_BIN" </dev/null >"$STATE_DIR/card.log" 2>&1 &
    card_pid=$!
    echo "$card_pid" >"$STATE_DIR/card.pid"

    reader=""
    for ((i = 0; i < 150; i++)); do
        running "$card_pid" || {
            tail -n 5 "$STATE_DIR/card.log" >&2 || true
            stop
            die "the virtual card exited at start (log: $STATE_DIR/card.log)"
        }
        reader="$(answering_reader)"
        if [ -n "$reader" ]; then
            echo "$reader" >"$STATE_DIR/reader"
            say "card PID $card_pid, pcscd PID $pcscd_pid, logs in $STATE_DIR"
            echo "$reader"
            return 0
        fi
        sleep 0.1
    done
    stop
    die "the card did not show up in pcscd within 15 s (logs: $STATE_DIR/pcscd.log, $STATE_DIR/card.log)"
}

case "$ACTION" in
start) start ;;
stop) stop ;;
*)
    echo "usage: $0 start|stop [STATE_DIR]" >&2
    exit 2
    ;;
esac
