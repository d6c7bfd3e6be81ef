#!/usr/bin/env python3
"""Verification accuracy on LFW-style pairs, from `trainer embed` output.

    trainer -q embed IMAGES/*/*.jpg > run.jsonl
    scripts/lfw-pairs.py --pairs pairsDevTest.txt run.jsonl [other-run.jsonl ...]

Pairs file: LFW's format (a count line, then `name n1 n2` for the same person and
`name1 n1 name2 n2` for two people); photos are `<name>/<name>_NNNN.jpg` anywhere in the
embedded paths. Each run is scored by cosine similarity with 10-fold cross-validation: the
threshold is chosen on nine folds and applied to the tenth, as FaceNet's evaluation does.
With two or more runs it also lists the photos whose chosen face moved between them and
the pairs whose answer changed at each run's threshold.

Needs only Python 3's standard library.
"""

import argparse
import json
import math
import sys


def load_run(path):
    faces = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            name = row["path"].replace("\\", "/").split("/")[-1]
            faces[name] = row
    return faces


def load_pairs(path):
    pairs = []
    with open(path, encoding="utf-8") as f:
        lines = f.read().split("\n")[1:]
    for line in lines:
        p = line.split()
        if len(p) == 3:
            pairs.append((f"{p[0]}_{int(p[1]):04d}.jpg", f"{p[0]}_{int(p[2]):04d}.jpg", True))
        elif len(p) == 4:
            pairs.append((f"{p[0]}_{int(p[1]):04d}.jpg", f"{p[2]}_{int(p[3]):04d}.jpg", False))
    return pairs


def cosine(a, b):
    dot = sum(x * y for x, y in zip(a, b))
    na = math.sqrt(sum(x * x for x in a))
    nb = math.sqrt(sum(y * y for y in b))
    return dot / (na * nb)


def best_threshold(scored):
    """The threshold with the highest accuracy on these (score, same) pairs."""
    candidates = sorted({s for s, _ in scored})
    best, best_acc = 0.0, -1.0
    for i, t in enumerate(candidates):
        # Midpoints between neighbouring scores generalise better than the scores themselves.
        t = (t + candidates[i + 1]) / 2 if i + 1 < len(candidates) else t + 1e-6
        acc = sum((s >= t) == same for s, same in scored) / len(scored)
        if acc > best_acc:
            best, best_acc = t, acc
    return best


def evaluate(scored, folds=10):
    n = len(scored)
    accs = []
    for k in range(folds):
        test = [scored[i] for i in range(n) if i % folds == k]
        train = [scored[i] for i in range(n) if i % folds != k]
        t = best_threshold(train)
        accs.append(sum((s >= t) == same for s, same in test) / len(test))
    mean = sum(accs) / folds
    sd = math.sqrt(sum((a - mean) ** 2 for a in accs) / folds)
    return mean, sd, best_threshold(scored)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pairs", required=True)
    ap.add_argument("runs", nargs="+")
    args = ap.parse_args()
    pairs = load_pairs(args.pairs)
    runs = [(path, load_run(path)) for path in args.runs]
    results = []
    for path, faces in runs:
        usable = [(a, b, same) for a, b, same in pairs if a in faces and b in faces]
        scored = [(cosine(faces[a]["embedding"], faces[b]["embedding"]), same) for a, b, same in usable]
        mean, sd, t = evaluate(scored)
        multi = sum(1 for r in faces.values() if r.get("faces", 1) > 1)
        same_scores = sorted(s for s, same in scored if same)
        diff_scores = sorted(s for s, same in scored if not same)
        print(
            f"{path}: accuracy {100 * mean:.2f} % ± {100 * sd:.2f} (10-fold) on "
            f"{len(scored)}/{len(pairs)} pairs; threshold on all {t:.3f}; "
            f"{multi} of {len(faces)} photos show several faces"
        )
        print(
            f"  same-person similarity 5th percentile {same_scores[len(same_scores) // 20]:.3f}; "
            f"different-person 99th percentile {diff_scores[len(diff_scores) * 99 // 100]:.3f}"
        )
        results.append((path, faces, usable, scored, t))
    if len(results) > 1:
        base_path, base, _, _, _ = results[0]
        for path, faces, _, _, _ in results[1:]:
            moved = [n for n in faces if n in base and faces[n]["box"] != base[n]["box"]]
            print(f"{len(moved)} photos use a different face in {path} than in {base_path}:")
            for n in sorted(moved):
                print(f"  {n}: {base[n]['box']} -> {faces[n]['box']}")
        for path, faces, usable, scored, t in results[1:]:
            _, _, base_usable, base_scored, base_t = results[0]
            before = {(a, b): (s >= base_t) == same for (a, b, same), (s, _) in zip(base_usable, base_scored)}
            after = {(a, b): (s >= t) == same for (a, b, same), (s, _) in zip(usable, scored)}
            fixed = [k for k in after if k in before and after[k] and not before[k]]
            broke = [k for k in after if k in before and before[k] and not after[k]]
            print(f"{path}: {len(fixed)} pairs now right, {len(broke)} now wrong")
    return 0


if __name__ == "__main__":
    sys.exit(main())
