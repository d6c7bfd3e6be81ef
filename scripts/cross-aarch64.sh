#!/usr/bin/env bash
# Cross-builds facelock for the Raspberry Pi (aarch64, 64-bit Raspberry Pi OS)
# and runs the tests that matter on the Pi under qemu-user.
#
#   scripts/cross-aarch64.sh            build + the Pi tests below under qemu (~1 min warm)
#   scripts/cross-aarch64.sh --full     also detection on all 118 sample photos (+6 min under qemu)
#   scripts/cross-aarch64.sh --build    build only (lock-daemon and trainer binaries)
#
# rustup cannot add targets on this machine, so the standard library is built
# from source (-Zbuild-std) with Debian's rustc-web and rust-web-src. The
# linker, the qemu runner and bindgen's sysroot are in .cargo/config.toml.
# Artifacts go to their own target dir, never mixed with the host build's:
#   ${FACELOCK_CACHE:-~/.cache/facelock}/cargo-target-aarch64 (or $FACELOCK_AARCH64_TARGET_DIR)
# Binaries: <that dir>/aarch64-unknown-linux-gnu/release/{lock-daemon,trainer}
#
# Under qemu (all of them also run natively in scripts/test.sh):
#   - unit tests of recognition, lock-daemon (policy, config, relay, camera, ...) and trainer;
#   - tests/ golden:: (P/R/O-Net and FaceNet outputs against the reference tensors);
#   - tests/ detection:: on a face photo, a photo without a face and a blank frame.
# Not under qemu: detection on all 118 sample photos unless --full (9 s native,
# ~6 min emulated), daemon:: (spawns a nested host `cargo build`) and training::
# (FaceNet over the sample set: 21 s native, many minutes emulated).
set -euo pipefail
cd "$(dirname "$0")/.."

TARGET=aarch64-unknown-linux-gnu
BUILD_ONLY=0
FULL=0
for arg in "$@"; do
    case $arg in
        --build) BUILD_ONLY=1 ;;
        --full) FULL=1 ;;
        -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "usage: $0 [--build | --full]" >&2; exit 2 ;;
    esac
done

export FACELOCK_CACHE=${FACELOCK_CACHE:-$HOME/.cache/facelock}
# Deliberately not CARGO_TARGET_DIR, which .ci/run exports for the host build.
export CARGO_TARGET_DIR=${FACELOCK_AARCH64_TARGET_DIR:-$FACELOCK_CACHE/cargo-target-aarch64}
export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}
start=$(date +%s)
stamp() { echo "=== aarch64 [$(($(date +%s) - start)) s] $*"; }

# --- Debian packages -------------------------------------------------------
stamp "system packages"
pkgs=(
    rustc-web             # rustc 1.96 (bookworm-security) whose std sources build for aarch64
    rust-web-src          # std sources for -Zbuild-std
    gcc-aarch64-linux-gnu # linker
    libc6-dev-arm64-cross # arm64 glibc + headers (link, bindgen sysroot, qemu -L)
    qemu-user             # qemu-aarch64 runs the tests
    libclang-dev          # v4l's bindgen
)
need=()
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || need+=("$p")
done
if ((${#need[@]})); then
    echo "installing: ${need[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
for t in /usr/bin/rustc /usr/bin/rustdoc aarch64-linux-gnu-gcc qemu-aarch64; do
    command -v "$t" >/dev/null || { echo "missing $t after install" >&2; exit 1; }
done
[[ -f /usr/lib/rustlib/src/rust/library/Cargo.lock ]] ||
    { echo "rust-web-src did not install the std sources" >&2; exit 1; }

# Debian's compiler for this target dir only; the host keeps rustup's toolchain.
export RUSTC=/usr/bin/rustc RUSTDOC=/usr/bin/rustdoc
export RUSTC_BOOTSTRAP=1 # -Zbuild-std on a stable compiler
xargs=(-Zbuild-std --target "$TARGET" --release --locked)
echo "rustc: $($RUSTC --version); cargo: $(cargo --version); qemu: $(qemu-aarch64 --version | head -n1)"

# --- models and photos (the golden/detection tests read them) ---------------
if ((!BUILD_ONLY)); then
    stamp "models and sample photos"
    bash models/fetch.sh --quiet
fi

# --- build -------------------------------------------------------------------
# One resolution for everything (all targets, dev-dependencies included), so
# the test runs below reuse these artifacts instead of rebuilding dependencies
# with other features.
stamp "cross build (release, $TARGET)"
cargo build "${xargs[@]}" --workspace --all-targets
out=$CARGO_TARGET_DIR/$TARGET/release
for b in lock-daemon trainer; do
    [[ -x $out/$b ]] || { echo "no $out/$b" >&2; exit 1; }
done
file -b "$out/lock-daemon" | grep -q 'ARM aarch64' ||
    { echo "lock-daemon is not an aarch64 binary: $(file -b "$out/lock-daemon")" >&2; exit 1; }
qemu-aarch64 -L /usr/aarch64-linux-gnu "$out/lock-daemon" --help >/dev/null
if ((BUILD_ONLY)); then
    stamp "done"
    echo "aarch64: built $out/lock-daemon and $out/trainer"
    exit 0
fi

# --- tests under qemu --------------------------------------------------------
log=$(mktemp)
trap 'rm -f "$log"' EXIT
stamp "unit tests under qemu (recognition, lock-daemon, trainer)"
cargo test "${xargs[@]}" --workspace --lib --bins 2>&1 | tee -a "$log"
stamp "end-to-end under qemu: golden:: detection::"
skip=(--skip detection::detections_match_the_reference_on_the_sample_photos)
((FULL)) && skip=()
cargo test "${xargs[@]}" --workspace --test facelock -- golden:: detection:: "${skip[@]}" 2>&1 |
    tee -a "$log"

read -r passed failed < <(awk '/^test result:/ { for (i = 1; i <= NF; i++) {
    if ($(i + 1) ~ /^passed/) p += $i; if ($(i + 1) ~ /^failed/) f += $i } }
    END { print p + 0, f + 0 }' "$log")
stamp "done"
echo "aarch64 binaries: $out/lock-daemon ($(du -h "$out/lock-daemon" | cut -f1)), $out/trainer ($(du -h "$out/trainer" | cut -f1))"
echo "aarch64: $passed passed, $failed failed"
