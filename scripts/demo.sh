#!/usr/bin/env bash
# The facelock demo, end to end on this machine:
#   1. fetch and convert the models and the sample photos (models/fetch.sh);
#   2. enrol four of the five sample people (ben_afflek is kept out: he plays the stranger),
#      with a signing key, as an office admin would on the workstation;
#   3. replay a "hallway" of frames through the lock daemon with the simulated relay and a
#      simulated door contact: the stranger walks up, then madonna, then jerry_seinfeld
#      (each opens and closes the door once let in), then the door is forced open and left
#      open, then another stranger walks up;
#   4. print, in time order, who was let in, who was refused and what the door did.
# Everything is written under out/demo/.
set -euo pipefail
cd "$(dirname "$0")/.."
export FACELOCK_CACHE=${FACELOCK_CACHE:-$HOME/.cache/facelock}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$FACELOCK_CACHE/cargo-target}

bash models/fetch.sh --quiet
# Without the V4L2 camera adapter (the demo replays photos): its bindings need libclang,
# which a fresh machine does not have. The Pi packages and the tests build it.
cargo build --release --locked --no-default-features -p trainer -p lock-daemon
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
madonna_at=$((n + 1))       # the first frame showing madonna
walk_up madonna             # enrolled: let in after 3 frames
empty 45                    # she opens and closes the door: it re-locks as it closes
jerry_at=$((n + 1))
walk_up jerry_seinfeld      # enrolled: let in, and through the door likewise
empty 45                    # nobody let in: the door is forced open and left open
stranger_at=$((n + 1))
for _ in 1 2 3; do frame "$data/extra/stranger/grace_hopper.jpg"; done   # another stranger
empty 10
echo "   $n frames in $out/frames"

echo "== scripting the door contact to match the replay"
# The simulated door contact's events are timed in seconds since the daemon's inputs start,
# just before the replay's first frame (the camera opens in between: about 0.1 s). Frame i
# (from 1) is shown (i - 1) / 5 s after the first (camera.replay_fps = 5 in config/demo.toml)
# and a face is let in on its 3rd frame (policy.frames_required = 3), once it is recognised:
# about 4.5-4.7 s into the inputs for madonna's 3rd frame at 4.4 s. A door opening 1 s after
# that frame is shown is thus ~0.5 s after the unlock, with room for a slow start or a slow
# inference; every other event keeps 1 s or more from the decisions around it.
at() { # at FRAME TENTHS: the time FRAME is shown, plus TENTHS of a second, as seconds
    local t=$((($1 - 1) * 2 + $2))
    printf '%d.%d' $((t / 10)) $((t % 10))
}
madonna_in=$((madonna_at + 2)) jerry_in=$((jerry_at + 2))   # the frames that let them in
cat >"$out/door-inputs.txt" <<SCRIPT
# The demo's door contact (written by scripts/demo.sh): seconds since the inputs start.
# madonna's 3rd frame is shown at $(at $madonna_in 0) s and lets her in: she opens the door 1 s
# later and closes it 1.5 s after that; the door locks again as it closes.
$(at $madonna_in 10) door open
$(at $madonna_in 25) door closed
# jerry_seinfeld likewise, whose 3rd frame is shown at $(at $jerry_in 0) s.
$(at $jerry_in 10) door open
$(at $jerry_in 25) door closed
# Nobody let in: the door is forced open 5 s before the next stranger walks up, stands
# open past door.held_open_secs (3 s in config/demo.toml) and is closed 1 s before.
$(at $stranger_at -50) door open
$(at $stranger_at -10) door closed
SCRIPT
grep -v '^#' "$out/door-inputs.txt" | sed 's/^/   /'

echo "== running the lock daemon on the replay (simulated relay and door contact)"
RUST_LOG=${RUST_LOG:-info} "$bin/lock-daemon" run --config config/demo.toml --exit-when-replay-ends

echo "== what happened"
python3 - "$out/audit.jsonl" "$out/relay.log" <<'PY'
import json, re, sys
events = [json.loads(line) for line in open(sys.argv[1])]

def say(tag, text):
    print(f"  {tag:<8} {text}")

def following(i, name):
    """The first `name` event after events[i], or None."""
    return next((e for e in events[i + 1:] if e["event"] == name), None)

def secs(e):
    """The whole seconds in a held-open record's message ("open for 3 s")."""
    m = re.search(r"(\d+) s", e.get("message", ""))
    return m.group(1) if m else "?"

held = None  # the held-open alarm, until the door closes
for i, e in enumerate(events):
    kind, person = e["event"], e.get("person", "")
    if kind == "unlock":
        say("LET IN", f"{person:<15} after {e['frames']} frames "
            f"(p >= {e['probability']:.2f}, similarity >= {e['similarity']:.2f})")
    elif kind == "denied-unknown":
        say("REFUSED", f"unknown face     (p {e['probability']:.2f}, similarity {e['similarity']:.2f})")
    elif kind == "refused":
        say("REFUSED", e.get("message", ""))
    elif kind == "entry":
        closed, relock = following(i, "door-closed"), following(i, "relock")
        if closed is None:
            say("ENTRY", f"{person} opened the door")
        elif relock is not None and relock.get("message") == "door closed":
            say("ENTRY", f"{person} opened and closed the door; locked again on close")
        else:
            say("ENTRY", f"{person} opened and closed the door")
    elif kind == "relock" and e.get("message") == "time over":
        say("RELOCKED", f"nobody opened the door for {person}; locked again on time")
    elif kind == "door-opened":
        say("OPENED", f"the door was opened ({e.get('message', '')})")
    elif kind == "forced-open":
        say("FORCED", "the door was opened while locked")
    elif kind == "held-open":
        held = e
    elif kind == "held-open-end":
        say("HELD", f"the door stood open {secs(e)} s (held-open alarm after "
            f"{secs(held or e)} s), then closed")
        held = None
    elif kind in ("error", "input-error"):
        say("ERROR", e.get("message", ""))
if held is not None:
    say("HELD", f"the door stood open over {secs(held)} s (held-open alarm), still open at the end")
relay = [line.split()[-1] for line in open(sys.argv[2]) if line.strip()]
print(f"  relay transitions: {' -> '.join(relay)}")
PY
