#!/usr/bin/env bash
# Runs facelock's tests: unit tests and the end-to-end tests on the real
# models and photos (fetched into ~/.cache/facelock by models/fetch.sh).
#
# Every test process, and every daemon or trainer it starts, runs under an
# address-space cap (FACELOCK_TEST_MEMORY_CAP, default 6 GiB), so a memory
# regression such as an image bomb fails a test instead of getting the machine's
# OOM killer involved. Set it to 0 to run without the cap.
set -euo pipefail
cd "$(dirname "$0")/.."
# System packages the tests need, checked first so a fresh machine is told at once.
missing=()
if command -v dpkg >/dev/null && ! dpkg -s libclang-dev >/dev/null 2>&1; then
    missing+=(libclang-dev) # the v4l crate's bindings
fi
command -v mosquitto >/dev/null || [[ -x /usr/sbin/mosquitto ]] || missing+=(mosquitto) # MQTT tests
if ((${#missing[@]})); then
    echo "scripts/test.sh: the tests need ${missing[*]}; install with:" >&2
    # As root (a fresh container often has no sudo), the command needs no sudo.
    if ((EUID == 0)); then sudo=""; else sudo="sudo "; fi
    echo "  ${sudo}apt-get install ${missing[*]}" >&2
    exit 1
fi
bash models/fetch.sh --quiet
cap=${FACELOCK_TEST_MEMORY_CAP:-$((6 << 30))}
if ((cap > 0)) && command -v prlimit >/dev/null; then
    host=$(rustc -vV | sed -n 's/^host: //p')
    runner_var="CARGO_TARGET_$(echo "$host" | tr 'a-z-' 'A-Z_')_RUNNER"
    export "$runner_var=prlimit --as=$cap --"
    echo "test processes run under an address-space cap of $((cap >> 20)) MiB ($runner_var)"
fi
cargo test --release --workspace --locked "$@"
