#!/usr/bin/env bash
# Builds the facelock Debian package with cargo-deb (metadata: [package.metadata.deb] in
# lock-daemon/Cargo.toml; maintainer scripts: packaging/deb/).
#
#   scripts/package.sh                                       amd64 (workstation tests)
#   scripts/package.sh --target aarch64-unknown-linux-gnu    also arm64 (Raspberry Pi OS)
#   scripts/package.sh --target armv7-unknown-linux-gnueabihf  also armhf (32-bit Raspberry Pi OS)
#
# amd64 is built here (release, `-p lock-daemon` only). arm64 / armhf are packaged from the
# binary the cross build left in
#   ${FACELOCK_CACHE:-~/.cache/facelock}/cargo-target-{aarch64,armv7}/<target>/release/
# (scripts/cross-aarch64.sh [--armv7]): cargo-deb runs with that target dir, --target and
# --no-build.
# The packages are written to out/deb/. cargo-deb is installed with `cargo install` into the
# default cargo bin directory when missing (~1.5 min on 2 cores).
set -euo pipefail
cd "$(dirname "$0")/.."

CARGO_DEB_VERSION=3.8.0
AARCH64=aarch64-unknown-linux-gnu
ARMV7=armv7-unknown-linux-gnueabihf

export FACELOCK_CACHE=${FACELOCK_CACHE:-$HOME/.cache/facelock}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$FACELOCK_CACHE/cargo-target}
out=$PWD/out/deb
targets=()
while (($#)); do
    case "$1" in
        --target) targets+=("${2:?--target needs a triple}"); shift 2 ;;
        --target=*) targets+=("${1#--target=}"); shift ;;
        *) echo "usage: scripts/package.sh [--target $AARCH64|$ARMV7]..." >&2; exit 2 ;;
    esac
done
for t in "${targets[@]}"; do
    [[ $t == "$AARCH64" || $t == "$ARMV7" ]] ||
        { echo "package.sh: only --target $AARCH64 or $ARMV7 is supported" >&2; exit 2; }
done
start=$(date +%s)
stamp() { echo "=== [$(($(date +%s) - start)) s] $*"; }

# cargo-deb, pinned. `cargo install` honours CARGO_TARGET_DIR, so unset it there: the
# tool's build stays out of the project's target directory.
if [[ $(cargo deb --version 2>/dev/null) != "cargo-deb $CARGO_DEB_VERSION" ]]; then
    stamp "installing cargo-deb $CARGO_DEB_VERSION"
    env -u CARGO_TARGET_DIR cargo install cargo-deb --version "$CARGO_DEB_VERSION" --locked --quiet
fi
mkdir -p "$out"

stamp "amd64: building lock-daemon"
cargo build --release --locked -p lock-daemon
stamp "amd64: packaging"
cargo deb -p lock-daemon --no-build --locked --output "$out"

for target in "${targets[@]}"; do
    # arch, target dir, cross script flag, ELF e_machine (bytes 18-19), binutils prefix
    if [[ $target == "$AARCH64" ]]; then
        arch=arm64 dir=$FACELOCK_CACHE/cargo-target-aarch64 flag="" machine=b700 tools=aarch64-linux-gnu
    else
        arch=armhf dir=$FACELOCK_CACHE/cargo-target-armv7 flag=" --armv7" machine=2800 tools=arm-linux-gnueabihf
    fi
    binary=$dir/$target/release/lock-daemon
    if [[ ! -x $binary ]]; then
        echo "package.sh: no cross-built binary at $binary; build it first (scripts/cross-aarch64.sh$flag)" >&2
        exit 1
    fi
    [[ $(od -An -tx1 -j18 -N2 "$binary" | tr -d ' \n') == "$machine" ]] ||
        { echo "package.sh: $binary is not an $arch executable" >&2; exit 1; }
    newer=$(git ls-files -z lock-daemon recognition Cargo.lock |
        xargs -0 find 2>/dev/null -newer "$binary" -print -quit || true)
    if [[ -n $newer ]]; then
        echo "package.sh: WARNING: $binary is older than $newer; rebuild it (scripts/cross-aarch64.sh$flag) unless that is intended" >&2
    fi
    # The host's strip cannot read ARM objects: use the cross binutils if present.
    strip=()
    if command -v "$tools-strip" >/dev/null; then
        strip=(env "STRIP_$tools=$(command -v "$tools-strip")"
            "OBJCOPY_$tools=$(command -v "$tools-objcopy")")
        no_strip=()
    else
        no_strip=(--no-strip)
    fi
    stamp "$arch: packaging $binary"
    CARGO_TARGET_DIR=$dir "${strip[@]}" cargo deb -p lock-daemon --target "$target" \
        --no-build --locked "${no_strip[@]}" --output "$out"
done

stamp "done"
ls -l "$out"/*.deb
