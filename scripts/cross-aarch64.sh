#!/usr/bin/env bash
# Cross-builds facelock for the Raspberry Pi (aarch64, 64-bit Raspberry Pi OS)
# and runs the tests that matter on the Pi under qemu-user.
#
#   scripts/cross-aarch64.sh            build + the Pi tests below under qemu (~1 min warm)
#   scripts/cross-aarch64.sh --full     also detection on all 118 sample photos (+6 min under qemu)
#   scripts/cross-aarch64.sh --build    build only (lock-daemon and trainer binaries)
#   scripts/cross-aarch64.sh --armv7    the same for 32-bit Raspberry Pi OS
#                                       (armv7-unknown-linux-gnueabihf, qemu-arm)
#
# rustup cannot add targets on this machine, so the standard library is built
# from source (-Zbuild-std) with Debian's rustc-web and rust-web-src. The
# linker, the qemu runner and bindgen's sysroot are in .cargo/config.toml.
# Artifacts go to their own target dir, never mixed with the host build's:
#   ${FACELOCK_CACHE:-~/.cache/facelock}/cargo-target-aarch64 (or $FACELOCK_AARCH64_TARGET_DIR)
#   ${FACELOCK_CACHE:-~/.cache/facelock}/cargo-target-armv7 (or $FACELOCK_ARMV7_TARGET_DIR)
# Binaries: <that dir>/<target>/release/{lock-daemon,trainer}
# The armv7 cross packages come from the host's (amd64) package index, like the
# arm64 ones: no armhf architecture is added to dpkg.
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

ARCH=aarch64
BUILD_ONLY=0
FULL=0
for arg in "$@"; do
    case $arg in
        --build) BUILD_ONLY=1 ;;
        --full) FULL=1 ;;
        --armv7) ARCH=armv7 ;;
        -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "usage: $0 [--build | --full] [--armv7]" >&2; exit 2 ;;
    esac
done

export FACELOCK_CACHE=${FACELOCK_CACHE:-$HOME/.cache/facelock}
# Deliberately not CARGO_TARGET_DIR, which .ci/run exports for the host build.
if [[ $ARCH == aarch64 ]]; then
    TARGET=aarch64-unknown-linux-gnu
    GCC=aarch64-linux-gnu-gcc SYSROOT=/usr/aarch64-linux-gnu QEMU=qemu-aarch64
    CROSS_PKGS=(gcc-aarch64-linux-gnu libc6-dev-arm64-cross) FILE_ARCH='ARM aarch64'
    export CARGO_TARGET_DIR=${FACELOCK_AARCH64_TARGET_DIR:-$FACELOCK_CACHE/cargo-target-aarch64}
else
    TARGET=armv7-unknown-linux-gnueabihf
    GCC=arm-linux-gnueabihf-gcc SYSROOT=/usr/arm-linux-gnueabihf QEMU=qemu-arm
    CROSS_PKGS=(gcc-arm-linux-gnueabihf libc6-dev-armhf-cross) FILE_ARCH='32-bit .* ARM'
    export CARGO_TARGET_DIR=${FACELOCK_ARMV7_TARGET_DIR:-$FACELOCK_CACHE/cargo-target-armv7}
fi
export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}
start=$(date +%s)
stamp() { echo "=== $ARCH [$(($(date +%s) - start)) s] $*"; }

# --- Debian packages -------------------------------------------------------
stamp "system packages"
pkgs=(
    rustc-web             # rustc 1.96 (bookworm-security) whose std sources build for the Pi
    rust-web-src          # std sources for -Zbuild-std
    "${CROSS_PKGS[@]}"    # linker; the target's glibc + headers (link, bindgen sysroot, qemu -L)
    qemu-user             # qemu-aarch64 / qemu-arm run the tests
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
for t in /usr/bin/rustc /usr/bin/rustdoc "$GCC" "$QEMU"; do
    command -v "$t" >/dev/null || { echo "missing $t after install" >&2; exit 1; }
done
[[ -f /usr/lib/rustlib/src/rust/library/Cargo.lock ]] ||
    { echo "rust-web-src did not install the std sources" >&2; exit 1; }

# Debian's compiler for this target dir only; the host keeps rustup's toolchain.
export RUSTC=/usr/bin/rustc RUSTDOC=/usr/bin/rustdoc
export RUSTC_BOOTSTRAP=1 # -Zbuild-std on a stable compiler
xargs=(-Zbuild-std --target "$TARGET" --release --locked)
echo "rustc: $($RUSTC --version); cargo: $(cargo --version); qemu: $($QEMU --version | head -n1)"

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
file -b "$out/lock-daemon" | grep -q "$FILE_ARCH" ||
    { echo "lock-daemon is not an $ARCH binary: $(file -b "$out/lock-daemon")" >&2; exit 1; }
$QEMU -L "$SYSROOT" "$out/lock-daemon" --help >/dev/null
if ((BUILD_ONLY)); then
    stamp "done"
    echo "$ARCH: built $out/lock-daemon and $out/trainer"
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
echo "$ARCH binaries: $out/lock-daemon ($(du -h "$out/lock-daemon" | cut -f1)), $out/trainer ($(du -h "$out/trainer" | cut -f1))"
echo "$ARCH: $passed passed, $failed failed"
