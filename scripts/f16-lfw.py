#!/usr/bin/env python3
"""FaceNet in f16 against f32 on LFW-style pairs, embedding in f16 only the photos that can
change an answer (tract emulates f16 at seconds a face off FP16 CPUs).

    trainer -q embed --no-cache IMAGES/*/*.jpg > f32.jsonl
    scripts/f16-lfw.py --pairs pairsDevTest.txt select f32.jsonl > near.txt
    cargo run --release -p recognition --example f16 -- compare \\
        --out-f16 f16.jsonl $(cat near.txt)
    scripts/f16-lfw.py --pairs pairsDevTest.txt score f32.jsonl f16.jsonl

`select` lists the photos of every pair whose f32 score lies within --window (0.05) of any
fold's threshold. `score` replaces those photos' embeddings by their f16 ones and reports
both accuracies, the largest pair score change and how far the nearest pair left in f32
lies from the threshold: the result is exact while that distance exceeds any change an
f16 embedding can make. Needs only Python 3 and scripts/lfw-pairs.py.
"""

import argparse
import importlib.util
import os

spec = importlib.util.spec_from_file_location(
    "lfw_pairs", os.path.join(os.path.dirname(os.path.abspath(__file__)), "lfw-pairs.py")
)
lp = importlib.util.module_from_spec(spec)
spec.loader.exec_module(lp)


def scores(run, pairs):
    return [(lp.cosine(run[a]["embedding"], run[b]["embedding"]), same) for a, b, same in pairs]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pairs", required=True)
    ap.add_argument("--window", type=float, default=0.05)
    ap.add_argument("command", choices=["select", "score"])
    ap.add_argument("runs", nargs="+")
    args = ap.parse_args()
    pairs = lp.load_pairs(args.pairs)
    f32 = lp.load_run(args.runs[0])
    s32 = scores(f32, pairs)
    if args.command == "select":
        n = len(s32)
        ths = [lp.best_threshold([s32[i] for i in range(n) if i % 10 != k]) for k in range(10)]
        lo, hi = min(ths) - args.window, max(ths) + args.window
        near = sorted({p for (a, b, _), (s, _) in zip(pairs, s32) if lo <= s <= hi for p in (a, b)})
        for name in near:
            print(f32[name]["path"])
        return
    f16 = {}
    for path in args.runs[1:]:
        f16.update(lp.load_run(path))
    mixed = dict(f32)
    mixed.update(f16)
    s16 = scores(mixed, pairs)
    for name, s in (("f32", s32), ("f16", s16)):
        mean, sd, t = lp.evaluate(s)
        print(f"{name}: accuracy {mean * 100:.2f} % ± {sd * 100:.2f}; threshold on all {t:.4f}")
    t = lp.evaluate(s32)[2]
    print(f"photos in f16: {len(f16)}")
    print(f"largest pair score change: {max(abs(a[0] - b[0]) for a, b in zip(s32, s16)):.4f}")
    print(f"answers changed at the f32 threshold: {sum((a[0] >= t) != (b[0] >= t) for a, b in zip(s32, s16))}")
    left = [abs(s - t) for (a, b, _), (s, _) in zip(pairs, s32) if a not in f16 or b not in f16]
    print(f"nearest pair left in f32: {min(left):.4f} from the threshold")


if __name__ == "__main__":
    main()
