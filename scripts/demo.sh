#!/usr/bin/env bash
# The facelock demo, end to end on this machine:
#   1. fetch and convert the models and the sample photos (models/fetch.sh);
#   2. enrol four of the five sample people (ben_afflek is kept out: he plays the stranger),
#      with a signing key, as an office admin would on the workstation;
#   3. replay a "hallway" of frames through the lock daemon with the simulated relay:
#      the stranger walks up, then madonna, then jerry_seinfeld, then another stranger;
#   4. print who was let in and who was refused.
# Everything is written under out/demo/.
set -euo pipefail
cd "$(dirname "$0")/.."
export FACELOCK_CACHE=${FACELOCK_CACHE:-$HOME/.cache/facelock}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$FACELOCK_CACHE/cargo-target}

bash models/fetch.sh --quiet
cargo build --release --locked -p trainer -p lock-daemon
bin=$CARGO_TARGET_DIR/release
data=$FACELOCK_CACHE/data

out=out/demo
rm -rf "$out"
mkdir -p "$out/images" "$out/frames" "$out/keys"

echo "== enrolling staff (ben_afflek is kept out as the stranger)"
for person in elton_john jerry_seinfeld madonna mindy_kaling; do
    cp -r "$data/celeb5/train/$person" "$out/images/"
done
"$bin/trainer" --quiet keygen --out "$out/keys"
"$bin/trainer" --quiet train "$out/images" -o "$out/classifier.onnx" --sign "$out/keys/facelock-signing.key"

echo "== building the replay: 5 frames per second"
n=0
frame() { n=$((n + 1)); cp "$1" "$(printf '%s/frames/%04d.%s' "$out" "$n" "${1##*.}")"; }
empty() { for _ in $(seq "$1"); do frame "$data/extra/noface/present.png"; done; }
walk_up() { for f in "$data/celeb5/val/$1"/*.jpg; do frame "$f"; done; }
empty 5
walk_up ben_afflek          # the stranger: refused
empty 10
walk_up madonna             # enrolled: let in after 3 frames
empty 45                    # door re-locks after 5 s, then 3 s cooldown
walk_up jerry_seinfeld      # enrolled: let in
empty 45
for _ in 1 2 3; do frame "$data/extra/stranger/grace_hopper.jpg"; done   # another stranger
empty 10
echo "   $n frames in $out/frames"

echo "== running the lock daemon on the replay (simulated relay)"
RUST_LOG=${RUST_LOG:-info} "$bin/lock-daemon" run --config config/demo.toml --exit-when-replay-ends

echo "== what happened"
python3 - "$out/audit.jsonl" "$out/relay.log" <<'PY'
import json, sys
events = [json.loads(line) for line in open(sys.argv[1])]
for e in events:
    if e["event"] == "unlock":
        print(f"  LET IN   {e['person']:<15} after {e['frames']} frames "
              f"(p >= {e['probability']:.2f}, similarity >= {e['similarity']:.2f})")
    elif e["event"] == "denied-unknown":
        print(f"  REFUSED  unknown face     (p {e['probability']:.2f}, similarity {e['similarity']:.2f})")
relay = [line.split()[-1] for line in open(sys.argv[2]) if line.strip()]
print(f"  relay transitions: {' -> '.join(relay)}")
PY
