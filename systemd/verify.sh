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
systemd-analyze verify "$tmp/lock-daemon.service"
# Fail if the sandbox gets weaker than "SAFE" (exposure above 2.0).
systemd-analyze security --offline=yes --threshold=20 "$tmp/lock-daemon.service" | tail -1
echo "verify.sh: lock-daemon.service OK"
# With the HTTP API's drop-in: network for the API only, still "SAFE" or better.
mkdir "$tmp/lock-daemon.service.d"
cp "$here/lock-daemon-http.conf" "$tmp/lock-daemon.service.d/http.conf"
systemd-analyze verify "$tmp/lock-daemon.service"
systemd-analyze security --offline=yes --threshold=30 "$tmp/lock-daemon.service" | tail -1
rm -r "$tmp/lock-daemon.service.d"
echo "verify.sh: lock-daemon.service with lock-daemon-http.conf OK"
# The optional CSI camera feed (its ExecStart is /bin/sh, which exists everywhere).
cp "$here/facelock-camera.service" "$tmp/"
systemd-analyze verify "$tmp/facelock-camera.service"
echo "verify.sh: facelock-camera.service OK"
