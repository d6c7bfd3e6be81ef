#!/bin/sh
# Checks the units with systemd-analyze (Debian package `systemd`), as CI does.
#
# `verify` insists that every Exec*= binary exists, so the unit is checked as a temporary
# copy whose /usr/bin/lock-daemon is replaced by a binary that does exist: the one given
# as $1 (e.g. the release build), else /bin/true.
# Usage: systemd/verify.sh [path/to/lock-daemon]
set -eu
here=$(cd "$(dirname "$0")" && pwd)
binary=${1:-/bin/true}
command -v systemd-analyze >/dev/null || { echo "verify.sh: systemd-analyze not installed (apt-get install systemd)" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
sed "s|/usr/bin/lock-daemon|$(realpath "$binary")|g" "$here/lock-daemon.service" >"$tmp/lock-daemon.service"
# `security N [UNIT]` fails when UNIT's exposure (default: the daemon's) is above N/10:
# `systemd-analyze security --threshold=N` exits non-zero then. Its output is kept in a
# variable rather than piped, so that the exit status is not lost (sh has no pipefail) and
# set -e stops the script.
security() {
    target=${2:-$tmp/lock-daemon.service}
    out=$(systemd-analyze security --offline=yes --threshold="$1" "$target") ||
        { printf '%s\n' "$out" >&2; echo "verify.sh: $(basename "$target"): exposure above $1/10" >&2; exit 1; }
    printf '%s\n' "$out" | tail -1
}
systemd-analyze verify "$tmp/lock-daemon.service"
# Fail if the sandbox gets weaker than "SAFE" (exposure above 2.0).
security 20
echo "verify.sh: lock-daemon.service OK"
# With the HTTP API's drop-in: network for the API only; exposure at most 3.0 ("OK").
mkdir "$tmp/lock-daemon.service.d"
cp "$here/lock-daemon-http.conf" "$tmp/lock-daemon.service.d/http.conf"
systemd-analyze verify "$tmp/lock-daemon.service"
security 30
rm -r "$tmp/lock-daemon.service.d"
echo "verify.sh: lock-daemon.service with lock-daemon-http.conf OK"
# With the MQTT drop-in: outgoing network to the broker only; exposure at most 3.0 ("OK").
mkdir "$tmp/lock-daemon.service.d"
cp "$here/lock-daemon-mqtt.conf" "$tmp/lock-daemon.service.d/mqtt.conf"
systemd-analyze verify "$tmp/lock-daemon.service"
security 30
echo "verify.sh: lock-daemon.service with lock-daemon-mqtt.conf OK"
# With both drop-ins, as a lock with the HTTP API and MQTT runs; the same limit.
cp "$here/lock-daemon-http.conf" "$tmp/lock-daemon.service.d/http.conf"
systemd-analyze verify "$tmp/lock-daemon.service"
security 30
rm -r "$tmp/lock-daemon.service.d"
echo "verify.sh: lock-daemon.service with lock-daemon-http.conf and lock-daemon-mqtt.conf OK"
# The optional CSI camera feed (its ExecStart is /bin/sh, which exists everywhere). It runs
# next to the lock, so it is held to the daemon's own bar: exposure at most 2.0 (1.0 today).
cp "$here/facelock-camera.service" "$tmp/"
systemd-analyze verify "$tmp/facelock-camera.service"
security 20 "$tmp/facelock-camera.service"
echo "verify.sh: facelock-camera.service OK"
# Every unit in this directory, including any added later, at most 3.0 ("OK").
for unit in "$here"/*.service; do
    name=$(basename "$unit")
    [ -f "$tmp/$name" ] || cp "$unit" "$tmp/"
    security 30 "$tmp/$name" >/dev/null
done
echo "verify.sh: every unit at most 3.0"
