#!/usr/bin/env bash
# FaceNet load time and peak RSS from ONNX (as recognition loads it: weight sha256 on a
# second thread) against tract's NNEF tar written once from the decluttered model (issue 14).
# recognition has no direct tract-nnef dependency, so this builds a scratch crate in a
# temporary directory (tract-onnx/tract-nnef =0.23.9, the workspace's Cargo.lock).
#
#   scripts/nnef-load.sh [RUNS]     (default 3; one process per measurement)
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-3}
models=${FACELOCK_MODELS:-${FACELOCK_CACHE:-$HOME/.cache/facelock}/models}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/src"
cp Cargo.lock "$work/"
cat > "$work/Cargo.toml" <<'TOML'
[package]
name = "nnef-load"
version = "0.1.0"
edition = "2021"

[dependencies]
tract-onnx = { version = "=0.23.9", default-features = false }
tract-nnef = { version = "=0.23.9" }
tract-linalg = { version = "=0.23.9", features = ["multithread-mm"] }
sha2 = "0.10"

[profile.release]
debug = false
incremental = true
TOML
cat > "$work/src/main.rs" <<'RUST'
//! FaceNet load time and peak RSS: from ONNX (as recognition loads it) vs tract's NNEF tar.
//!   nnef-load write MODELS/facenet.onnx OUT.nnef.tar
//!   nnef-load onnx  MODELS/facenet.onnx        (one measurement a process: peak RSS)
//!   nnef-load nnef  OUT.nnef.tar
use std::time::Instant;
use tract_nnef::internal::Nnef;
use tract_onnx::prelude::*;

fn hwm_mib() -> f64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    let l = s.lines().find(|l| l.starts_with("VmHWM")).unwrap();
    l.split_whitespace().nth(1).unwrap().parse::<f64>().unwrap() / 1024.0
}

fn sha256(path: &str) -> String {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    let mut f = std::fs::File::open(path).unwrap();
    std::io::copy(&mut f, &mut h).unwrap();
    format!("{:x}", h.finalize())
}

fn onnx_typed(path: &str) -> TypedModel {
    tract_onnx::onnx()
        .model_for_path(path)
        .unwrap()
        .with_input_fact(0, f32::fact([1, 160, 160, 3]).into())
        .unwrap()
        .into_typed()
        .unwrap()
}

fn nnef() -> Nnef {
    use tract_onnx::WithOnnx;
    tract_nnef::nnef().with_onnx()
}

fn run_once(plan: &std::sync::Arc<TypedRunnableModel>) {
    let input = Tensor::zero::<f32>(&[1, 160, 160, 3]).unwrap();
    let t = Instant::now();
    plan.run(tvec!(input.into())).unwrap();
    eprintln!("  first run {:.0} ms", t.elapsed().as_secs_f64() * 1e3);
}

fn main() {
    let a: Vec<String> = std::env::args().collect();
    let t = Instant::now();
    match a[1].as_str() {
        "write" => {
            let model = onnx_typed(&a[2]).into_decluttered().unwrap();
            let f = std::fs::File::create(&a[3]).unwrap();
            nnef().write_to_tar(&model, f).unwrap();
            eprintln!("wrote {} in {:.0} ms", a[3], t.elapsed().as_secs_f64() * 1e3);
        }
        "onnx" | "nnef" => {
            // The weight hash on another thread, as recognition does.
            let hashed = if a[1] == "onnx" { format!("{}.data", a[2]) } else { a[2].clone() };
            let hash = std::thread::spawn(move || sha256(&hashed));
            let typed = if a[1] == "onnx" {
                onnx_typed(&a[2])
            } else {
                nnef().model_for_path(&a[2]).unwrap()
            };
            let parsed = t.elapsed().as_secs_f64() * 1e3;
            let plan = typed.into_optimized().unwrap().into_runnable().unwrap();
            let planned = t.elapsed().as_secs_f64() * 1e3;
            hash.join().unwrap();
            eprintln!(
                "{}: parsed {parsed:.0} ms, optimised {planned:.0} ms, hashed+ready {:.0} ms, peak RSS {:.0} MiB",
                a[1],
                t.elapsed().as_secs_f64() * 1e3,
                hwm_mib()
            );
            run_once(&plan);
        }
        _ => panic!("write|onnx|nnef"),
    }
}
RUST
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-${FACELOCK_CACHE:-$HOME/.cache/facelock}/cargo-target}
cargo build --release --manifest-path "$work/Cargo.toml"
bin=$CARGO_TARGET_DIR/release/nnef-load
"$bin" write "$models/facenet.onnx" "$work/facenet.nnef.tar"
ls -l "$models/facenet.onnx.data" "$work/facenet.nnef.tar"
for _ in $(seq "$runs"); do
    "$bin" onnx "$models/facenet.onnx"
    "$bin" nnef "$work/facenet.nnef.tar"
done
