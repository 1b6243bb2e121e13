#!/usr/bin/env bash
# Creates a throwaway SoftHSM2 token in DIR and prints the SOFTHSM2_CONF to export.
# Usage: softhsm-config/init-token.sh DIR [LABEL] [SO_PIN] [USER_PIN]
# The token lands in a random slot: always find it by LABEL, never by slot number.
set -euo pipefail
dir=${1:?usage: init-token.sh DIR [LABEL] [SO_PIN] [USER_PIN]}
label=${2:-certman}
so_pin=${3:-12345678}
pin=${4:-123456}

if ! command -v softhsm2-util >/dev/null 2>&1; then
    echo "init-token: softhsm2-util not found (apt-get install softhsm2)" >&2
    exit 1
fi
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$dir/tokens"
dir=$(cd "$dir" && pwd)
chmod 700 "$dir"
sed "s|@TOKENDIR@|$dir/tokens|" "$here/softhsm2.conf.in" > "$dir/softhsm2.conf"
export SOFTHSM2_CONF="$dir/softhsm2.conf"
if softhsm2-util --show-slots 2>/dev/null | grep -q "Label:.*\b$label\b"; then
    echo "init-token: token '$label' already exists in $dir" >&2
else
    softhsm2-util --init-token --free --label "$label" --so-pin "$so_pin" --pin "$pin" >/dev/null
fi
umask 077
printf '%s\n' "$pin" > "$dir/user.pin"
echo "export SOFTHSM2_CONF=$dir/softhsm2.conf"
