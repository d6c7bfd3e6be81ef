#!/usr/bin/env python3
"""Where one network spends its time in onnxruntime, per node: the counterpart
of `recognition/examples/profile.rs`, on the same ONNX file and the same input
(a deterministic pseudo-random tensor in [-1, 1]). Single-threaded.

Usage: profile_onnxruntime.py MODEL.onnx SHAPE [RUNS]
       profile_onnxruntime.py ~/.cache/facelock/models/facenet.onnx 1x160x160x3 20
Needs onnxruntime and numpy (scripts/bench.sh's venv has both).
"""
import collections
import json
import os
import statistics
import sys
import tempfile
import time

import numpy as np
import onnxruntime as ort


def lcg_input(shape):
    """The same values as ModelDir::profile in the Rust code."""
    seed = 0x2545F491
    out = np.empty(int(np.prod(shape)), dtype=np.float32)
    for i in range(out.size):
        seed = (seed * 1664525 + 1013904223) & 0xFFFFFFFF
        out[i] = (seed >> 8) / float(1 << 23) - 1.0
    return out.reshape(shape)


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    path, shape = sys.argv[1], [int(d) for d in sys.argv[2].split("x")]
    runs = int(sys.argv[3]) if len(sys.argv) > 3 else 20
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    opts.enable_profiling = True
    opts.profile_file_prefix = os.path.join(tempfile.mkdtemp(), "ort")
    session = ort.InferenceSession(path, opts)
    feed = {session.get_inputs()[0].name: lcg_input(shape)}
    for _ in range(2):
        session.run(None, feed)
    totals = []
    for _ in range(runs):
        t = time.perf_counter()
        session.run(None, feed)
        totals.append((time.perf_counter() - t) * 1e3)
    with open(session.end_profiling()) as f:
        events = json.load(f)
    print(f"{os.path.basename(path)} {shape}: median {statistics.median(totals):.2f} ms per run ({runs} runs)")
    calls = runs + 2
    by_op, by_node = collections.Counter(), collections.Counter()
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            by_op[e["args"]["op_name"]] += e["dur"] / 1e3 / calls
            by_node[e["name"][: -len("_kernel_time")]] += e["dur"] / 1e3 / calls
    print(f"\n{'operator':<28} {'ms':>9}")
    for op, ms in by_op.most_common():
        print(f"{op:<28} {ms:>9.3f}")
    print("\nslowest nodes")
    for node, ms in by_node.most_common(20):
        print(f"{ms:>8.3f} ms  {node}")


if __name__ == "__main__":
    main()
