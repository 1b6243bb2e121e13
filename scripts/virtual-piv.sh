#!/usr/bin/env bash
# A virtual PIV card behind a real pcscd, for certman's card tests (see tools/virtual-piv).
#
#   scripts/virtual-piv.sh start [STATE_DIR]   builds the card if needed, starts pcscd with a
#                                             private vpcd reader and the card; prints the
#                                             reader's name as the last line of stdout
#   scripts/virtual-piv.sh stop  [STATE_DIR]   stops the card, then pcscd, and waits (10 s at
#                                             most) until both have ended and vpcd's ports
#                                             are closed
#
# `start` prints the reader only once the card answers `yubico-piv-tool -a status` in it; a
# start that fails (pcscd or the card exits, the card does not show up) is retried from
# scratch, 3 attempts in all, 60 s at most; then it exits non-zero with the reason.
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
# vpcd listens on CHANNELID (the card's reader, " 00 00") and CHANNELID + 1 (the empty " 00 01").
VPCD_PORTS=(35963 35964)
VPCD_LIB=/usr/lib/pcsc/drivers/serial/libifdvpcd.so
PCSCD_SOCKET=/run/pcscd/pcscd.comm

say() { echo "virtual-piv: $*" >&2; }
die() {
    say "$*"
    exit 1
}

# Milliseconds since the epoch (bash 5's EPOCHREALTIME; its separator follows the locale).
now_ms() {
    local t="${EPOCHREALTIME/[.,]/}"
    echo $((t / 1000))
}

# Sets STATE to the state letter (R, S, D, Z, …) in the /proc stat file $1, or to nothing
# when there is no such file. (A variable, not output: no subshell per call in polling loops.)
STATE=""
read_state() {
    local stat
    STATE=""
    { read -r stat <"$1"; } 2>/dev/null || return 0
    stat="${stat##*) }" # after "PID (comm) ", comm may hold spaces
    STATE="${stat%% *}"
}

# True while any thread of PID runs. Not the leader's state alone: the leader of a
# multi-threaded process (pcscd) reads Z while its other threads are still exiting, and they
# still hold the process's files, sockets and ports. A zombie whose threads have all ended has
# released them. (Not by command line: that reads empty while a process execs or exits, and a
# child that has not exec'd yet still shows this script's.)
running() {
    local t
    [[ "${1:-}" =~ ^[0-9]+$ ]] && [ -d "/proc/$1" ] || return 1
    for t in "/proc/$1/task/"*; do
        read_state "$t/stat"
        [ -n "$STATE" ] && [ "$STATE" != Z ] && [ "$STATE" != X ] && return 0
    done
    return 1
}

# True when PID (from a PID file) runs and is WORD: its comm (which an exiting process keeps)
# is WORD, or its command line contains WORD. Guards against PID reuse.
alive_as() {
    local pid="$1" word="$2" comm cmdline
    running "$pid" || return 1
    { read -r comm <"/proc/$pid/comm"; } 2>/dev/null || return 1
    [ "$comm" = "$word" ] && return 0
    # No `… | grep -q` under pipefail: grep quitting at the first match can SIGPIPE the
    # writer and fail the pipeline although the process is there.
    cmdline="$(tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline")" && [[ "$cmdline" == *"$word"* ]]
}

# The PID in a PID file (pcscd's own ends in a NUL byte), or nothing.
pid_from() { if [ -r "$1" ]; then tr -cd '0-9' <"$1"; fi; }

# PIDs of running processes named pcscd (no pgrep needed; zombies left out; no command per
# process: this runs in polling loops).
pcscd_pids() {
    local d comm
    for d in /proc/[0-9]*; do
        { read -r comm <"$d/comm"; } 2>/dev/null || continue
        [ "$comm" = pcscd ] && running "${d#/proc/}" && echo "${d#/proc/}"
    done
    return 0
}

# Ends PID if it is WORD: TERM, KILL once GRACE_MS have passed, and waits until every thread
# of it has ended (its port and socket are free again) or the clock passes DEADLINE (ms since
# the epoch). False, with a message, when it still runs at DEADLINE.
end_pid() {
    local pid="$1" word="$2" grace_ms="$3" deadline="$4" kill_at now killed=""
    alive_as "$pid" "$word" || return 0
    kill -TERM "$pid" 2>/dev/null || true
    kill_at=$(($(now_ms) + grace_ms))
    while running "$pid"; do
        now="$(now_ms)"
        if [ -z "$killed" ] && ((now >= kill_at)); then
            say "$word (PID $pid) did not stop on TERM within $((grace_ms / 1000)) s; killing it"
            kill -KILL "$pid" 2>/dev/null || true
            killed=1
        fi
        if ((now >= deadline)); then
            read_state "/proc/$pid/stat"
            say "could not end $word (PID $pid, state ${STATE:-gone})"
            return 1
        fi
        sleep 0.02
    done
    return 0
}

# The inodes of the sockets listening on TCP port $1 (IPv4 and IPv6), one a line. Read from
# /proc/net/tcp* (no probe connection, which vpcd would take for a card), parsed with
# builtins: this runs in polling loops.
listen_inodes() {
    local f hex data addr state inode
    printf -v hex '%04X' "$1"
    for f in /proc/net/tcp /proc/net/tcp6; do
        [ -r "$f" ] || continue
        # The whole file in one read: `read` line by line from a /proc file seeks back after
        # each line, and the kernel regenerates the file each time (~10 ms a line).
        data="$(<"$f")" || continue
        # sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode …
        while read -r _ addr _ state _ _ _ _ _ inode _; do
            if [ "$state" = 0A ] && [ "${addr##*:}" = "$hex" ]; then echo "$inode"; fi
        done <<<"$data"
    done
    return 0
}

# The inodes of the sockets PID holds, space-separated between spaces (" 1 2 "), or " ".
# (One stat for all of them: this runs in polling loops.)
socket_inodes() {
    local fds=("/proc/$1/fd/"*) word list=" "
    if [ -e "${fds[0]}" ]; then
        # "socket:INODE" per socket; other types print other words
        for word in $(stat -L -c '%F:%i' "${fds[@]}" 2>/dev/null || true); do
            [[ "$word" == socket:* ]] && list+="${word#socket:} "
        done
    fi
    echo "$list"
}

# The inodes of vpcd's listening sockets (any port of VPCD_PORTS) that PID holds.
vpcd_inodes_of() {
    local port inode held
    held="$(socket_inodes "$1")"
    for port in "${VPCD_PORTS[@]}"; do
        while IFS= read -r inode; do
            [[ -n "$inode" && "$held" == *" $inode "* ]] && echo "$inode"
        done < <(listen_inodes "$port")
    done
    return 0
}

# True when PID itself listens on vpcd's card port (not a pcscd that is still shutting down).
vpcd_listening_in() {
    local inode held
    held="$(socket_inodes "$1")"
    while IFS= read -r inode; do
        [[ -n "$inode" && "$held" == *" $inode "* ]] && return 0
    done < <(listen_inodes "$VPCD_PORT")
    return 1
}

# True while any of the socket inodes $@ still listens on a port of VPCD_PORTS.
still_listening() {
    local port inode open=" "
    for port in "${VPCD_PORTS[@]}"; do
        while IFS= read -r inode; do open+="$inode "; done < <(listen_inodes "$port")
    done
    for inode in "$@"; do
        [[ "$open" == *" $inode "* ]] && return 0
    done
    return 1
}

# The ports of VPCD_PORTS that something listens on, space-separated.
busy_vpcd_ports() {
    local port busy=()
    for port in "${VPCD_PORTS[@]}"; do
        [ -n "$(listen_inodes "$port")" ] && busy+=("$port")
    done
    echo "${busy[*]}"
}

# "PID (comm)" of the processes holding socket inode $1 (for error messages).
socket_owners() {
    local fd pid comm owners=()
    while IFS= read -r fd; do
        pid="${fd#/proc/}"
        pid="${pid%%/*}"
        [[ " ${owners[*]} " == *" $pid ("* ]] && continue
        comm="$(cat "/proc/$pid/comm" 2>/dev/null || true)"
        owners+=("$pid ($comm)")
    done < <(find /proc/[0-9]*/fd -maxdepth 1 -lname "socket:\[$1\]" 2>/dev/null || true)
    echo "${owners[*]:-unknown}"
}

# Who listens on PORT, for error messages.
port_holders() {
    local inode out=()
    while IFS= read -r inode; do
        [ -n "$inode" ] && out+=("$(socket_owners "$inode")")
    done < <(listen_inodes "$1")
    echo "${out[*]:-nobody}"
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

# True when the card in reader $1 answers: SELECT of the PIV application, then its version,
# CHUID, CCC and slot objects read.
card_answers() {
    yubico-piv-tool -r "$1" -a status >/dev/null 2>&1
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

# Removes the socket and PID file a pcscd killed hard leaves behind (a new one refuses to
# start beside them), when no pcscd runs.
clear_stale_pcscd_socket() {
    if [ -e "$PCSCD_SOCKET" ] && [ -z "$(pcscd_pids)" ]; then
        rm -f "$PCSCD_SOCKET" /run/pcscd/pcscd.pid
    fi
}

# Stops a pcscd this script did not start now: one from another STATE_DIR (its card first),
# or a system one. Found by PID file or by PID listing; ended by PID, and waited for until
# its threads and vpcd's ports are gone (10 s at most each). False when one would not end.
stop_other_pcscd() {
    local pids pid conf other_dir deadline inodes
    pids="$(pid_from /run/pcscd/pcscd.pid) $(pcscd_pids)"
    for pid in $(echo "$pids" | tr ' ' '\n' | sort -u); do
        alive_as "$pid" pcscd || continue
        deadline=$(($(now_ms) + 10000))
        conf="$(tr '\0' '\n' <"/proc/$pid/cmdline" 2>/dev/null | grep -A1 -x -e -c -e --config | tail -n 1 || true)"
        other_dir="$(dirname "$conf" 2>/dev/null || true)"
        if [ -n "$conf" ] && [ -f "$other_dir/card.pid" ]; then
            say "stopping the virtual card of $other_dir"
            end_pid "$(pid_from "$other_dir/card.pid")" virtual-piv 2000 "$deadline" || return 1
            rm -f "$other_dir/card.pid"
        fi
        say "stopping the running pcscd (PID $pid): one pcscd per machine"
        mapfile -t inodes < <(vpcd_inodes_of "$pid")
        end_pid "$pid" pcscd 3000 "$deadline" || return 1
        wait_closed "$deadline" "${inodes[@]}" || return 1
        if [ -n "$conf" ] && [ "$(pid_from "$other_dir/pcscd.pid")" = "$pid" ]; then
            rm -f "$other_dir/pcscd.pid" "$other_dir/reader"
        fi
    done
    clear_stale_pcscd_socket
}

# Waits until none of the listening socket inodes $2… is open any more, or the clock passes
# $1 (ms since the epoch: then false, with a message).
wait_closed() {
    local deadline="$1"
    shift
    (($#)) || return 0
    while still_listening "$@"; do
        if (($(now_ms) >= deadline)); then
            say "vpcd's port ${VPCD_PORTS[*]} is still open after its pcscd ended (held by: $(port_holders "$VPCD_PORT"))"
            return 1
        fi
        sleep 0.02
    done
}

# Stops this STATE_DIR's card, then its pcscd, by PID: TERM, KILL after a grace period; returns
# once both have ended (every thread) and pcscd's vpcd ports are closed, 10 s at most. The PID
# files go only then (a failed stop can be run again). Idempotent.
stop() {
    local card_pid pcscd_pid deadline inodes=() ok=1
    deadline=$(($(now_ms) + 10000))
    card_pid="$(pid_from "$STATE_DIR/card.pid")"
    pcscd_pid="$(pid_from "$STATE_DIR/pcscd.pid")"
    if [ -n "$card_pid" ]; then
        if end_pid "$card_pid" virtual-piv 2000 "$deadline"; then
            rm -f "$STATE_DIR/card.pid"
        else
            ok=""
        fi
    fi
    if [ -n "$pcscd_pid" ]; then
        alive_as "$pcscd_pid" pcscd && mapfile -t inodes < <(vpcd_inodes_of "$pcscd_pid")
        if end_pid "$pcscd_pid" pcscd 3000 "$deadline" && wait_closed "$deadline" "${inodes[@]}"; then
            rm -f "$STATE_DIR/pcscd.pid"
            clear_stale_pcscd_socket
        else
            ok=""
        fi
    fi
    rm -f "$STATE_DIR/reader"
    [ -n "$ok" ] || {
        say "stop: not everything ended within 10 s (PID files kept in $STATE_DIR; run stop again)"
        return 1
    }
}

# The reason the last start attempt failed.
FAIL=""
# Set when another attempt would fail the same way.
FATAL=""

# The smaller of now + $1 ms and START_DEADLINE.
step_deadline() {
    local d=$(($(now_ms) + $1))
    echo $((d < START_DEADLINE ? d : START_DEADLINE))
}

# One attempt: pcscd, then (once pcscd itself listens on vpcd's port) the card, then the
# reader once the card answers in it. Prints the reader; false with FAIL set otherwise. Runs
# in an `if` (where `set -e` is off): every step is checked by hand.
start_once() {
    local pcscd_bin pcscd_pid card_pid deadline reader busy conf_dir="$STATE_DIR/reader.conf.d"

    stop_other_pcscd || {
        FAIL="could not stop the running pcscd"
        FATAL=1
        return 1
    }
    # vpcd's ports must be free (a pcscd that is still shutting down holds them, and a new
    # card would connect to it and then lose it).
    deadline="$(step_deadline 10000)"
    while busy="$(busy_vpcd_ports)" && [ -n "$busy" ]; do
        if (($(now_ms) >= deadline)); then
            FAIL="TCP port $busy (vpcd) is in use, by: $(port_holders "${busy%% *}")"
            FATAL=1
            return 1
        fi
        sleep 0.05
    done
    clear_stale_pcscd_socket

    if ! { mkdir -p "$conf_dir" && rm -f "$conf_dir"/* && cat >"$conf_dir/virtual-piv"; } <<EOF; then
# Written by scripts/virtual-piv.sh: vpcd's reader, on TCP port $VPCD_PORT (0x8C7B).
# ykcs11 only uses readers whose name contains "Yubico"; yubico-piv-tool's default -r is "Yubikey".
FRIENDLYNAME "$FRIENDLY_NAME"
DEVICENAME   /dev/null:0x8C7B
LIBPATH      $VPCD_LIB
CHANNELID    0x8C7B
EOF
        FAIL="cannot write $conf_dir/virtual-piv"
        FATAL=1
        return 1
    fi

    pcscd_bin="$(command -v pcscd 2>/dev/null || echo /usr/sbin/pcscd)"
    # setsid + no inherited stdio: survives the caller's process group, and never holds the
    # pipe of a caller that reads our stdout with $(...).
    setsid "$pcscd_bin" --foreground -c "$conf_dir" </dev/null >"$STATE_DIR/pcscd.log" 2>&1 &
    pcscd_pid=$!
    echo "$pcscd_pid" >"$STATE_DIR/pcscd.pid"
    deadline="$(step_deadline 10000)"
    # our own child: by state, not by command line (see `running`)
    until vpcd_listening_in "$pcscd_pid" && [ -S "$PCSCD_SOCKET" ]; do
        if ! running "$pcscd_pid"; then
            tail -n 5 "$STATE_DIR/pcscd.log" >&2 || true
            FAIL="pcscd exited at start (log: $STATE_DIR/pcscd.log)"
            return 1
        fi
        if (($(now_ms) >= deadline)); then
            FAIL="pcscd (PID $pcscd_pid) is not listening on port $VPCD_PORT after 10 s (log: $STATE_DIR/pcscd.log)"
            return 1
        fi
        sleep 0.05
    done

    # The card connects to vpcd on the loopback, whatever the caller's environment says.
    VIRTUAL_PIV_VPCD="127.0.0.1:$VPCD_PORT" setsid "$CARD_BIN" </dev/null >"$STATE_DIR/card.log" 2>&1 &
    card_pid=$!
    echo "$card_pid" >"$STATE_DIR/card.pid"

    deadline="$(step_deadline 15000)"
    while :; do
        if ! running "$card_pid"; then
            tail -n 5 "$STATE_DIR/card.log" >&2 || true
            FAIL="the virtual card exited at start (log: $STATE_DIR/card.log)"
            return 1
        fi
        if ! running "$pcscd_pid"; then
            tail -n 5 "$STATE_DIR/pcscd.log" >&2 || true
            FAIL="pcscd exited while the card started (log: $STATE_DIR/pcscd.log)"
            return 1
        fi
        reader="$(answering_reader)"
        # Answered once; then once more, with both processes still there, so that a card that
        # connected and lost its connection is not reported.
        if [ -n "$reader" ] && running "$card_pid" && vpcd_listening_in "$pcscd_pid" &&
            card_answers "$reader"; then
            echo "$reader" >"$STATE_DIR/reader" || {
                FAIL="cannot write $STATE_DIR/reader"
                FATAL=1
                return 1
            }
            say "card PID $card_pid, pcscd PID $pcscd_pid, logs in $STATE_DIR"
            echo "$reader"
            return 0
        fi
        if (($(now_ms) >= deadline)); then
            FAIL="the card did not answer in pcscd within 15 s (logs: $STATE_DIR/pcscd.log, $STATE_DIR/card.log)"
            return 1
        fi
        sleep 0.1
    done
}

start() {
    check_packages
    mkdir -p "$STATE_DIR"
    STATE_DIR="$(cd "$STATE_DIR" && pwd)"

    local card_pid pcscd_pid reader attempt attempts=3
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
    stop || die "could not stop the previous card of $STATE_DIR"

    build_card

    START_DEADLINE=$(($(now_ms) + 60000))
    for ((attempt = 1; attempt <= attempts; attempt++)); do
        if start_once; then
            return 0
        fi
        stop || FATAL=1
        if [ -n "$FATAL" ] || ((attempt == attempts)) || (($(now_ms) >= START_DEADLINE)); then
            break
        fi
        say "start attempt $attempt failed: $FAIL; starting again"
    done
    die "the virtual card did not start (attempt $attempt of $attempts): $FAIL"
}

case "$ACTION" in
start) start ;;
stop) stop ;;
*)
    echo "usage: $0 start|stop [STATE_DIR]" >&2
    exit 2
    ;;
esac
