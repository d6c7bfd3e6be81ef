#!/usr/bin/env python3
"""FaceNet and P-Net timings in onnxruntime on the same ONNX files, for comparison
with `cargo run --release -p recognition --example bench`.

Usage: python bench_onnxruntime.py [MODEL_DIR] [RUNS]   (needs numpy, onnxruntime)
Single-threaded, like the Rust benchmark.
"""
import math
import os
import statistics
import sys
import time

import numpy as np
import onnxruntime as ort

models = sys.argv[1] if len(sys.argv) > 1 else os.path.expanduser("~/.cache/facelock/models")
runs = int(sys.argv[2]) if len(sys.argv) > 2 else 20
opts = ort.SessionOptions()
opts.intra_op_num_threads = 1
opts.inter_op_num_threads = 1


def median_ms(fn):
    fn()
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1e3


facenet = ort.InferenceSession(os.path.join(models, "facenet.onnx"), opts)
x = np.random.default_rng(0).standard_normal((1, 160, 160, 3)).astype(np.float32)
print(f"onnxruntime {ort.__version__}, 1 thread, {runs} runs, medians:")
print(f"  FaceNet embed              {median_ms(lambda: facenet.run(None, {'input': x})):8.1f} ms")

pnet = ort.InferenceSession(os.path.join(models, "pnet.onnx"), opts)
scales, m, minl = [], 12.0 / 40, 480 * 12.0 / 40
while minl >= 12:
    scales.append(m)
    m *= 0.709
    minl *= 0.709
inputs = [np.zeros((1, 3, math.ceil(480 * s), math.ceil(640 * s)), np.float32) for s in scales]
print(f"  P-Net pyramid ({len(scales)} scales)  {median_ms(lambda: [pnet.run(None, {'input': i}) for i in inputs]):8.1f} ms")
