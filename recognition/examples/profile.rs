//! Where one network spends its time in the engine, per operator.
//!
//! ```text
//! profile NETWORK SHAPE [RUNS] [--models DIR]
//! profile facenet 1x160x160x3 20
//! profile onet 1x3x48x48 200
//! ```
//! Prints the median time of a run, the time per operator type, and the
//! slowest nodes. `models/profile_onnxruntime.py` prints the same for
//! onnxruntime on the same file, for a layer-by-layer comparison.
//! Single-threaded; run on an otherwise idle machine.

use std::collections::BTreeMap;

use recognition::ModelDir;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let models = match args.iter().position(|a| a == "--models") {
        Some(i) => {
            let dir = args.get(i + 1).ok_or("--models needs a directory")?.clone();
            args.drain(i..=i + 1);
            dir.into()
        }
        None => ModelDir::default_location(),
    };
    let [name, shape, rest @ ..] = args.as_slice() else {
        return Err(
            "usage: profile NETWORK SHAPE [RUNS] [--models DIR], e.g. profile facenet 1x160x160x3"
                .into(),
        );
    };
    let shape: Vec<usize> = shape.split('x').map(str::parse).collect::<Result<_, _>>()?;
    let runs: usize = rest.first().map_or(Ok(20), |r| r.parse())?;

    let profile = ModelDir::open(models)?.profile(name, &shape, runs)?;
    println!(
        "{name} {shape:?}: median {:.2} ms per run ({runs} runs)",
        profile.median_ms
    );

    let mut by_op: BTreeMap<&str, (f64, usize)> = BTreeMap::new();
    for op in &profile.ops {
        let entry = by_op.entry(&op.op).or_default();
        entry.0 += op.ms;
        entry.1 += 1;
    }
    let mut by_op: Vec<_> = by_op.into_iter().collect();
    by_op.sort_by(|a, b| b.1 .0.total_cmp(&a.1 .0));
    println!("\n{:<28} {:>6} {:>9}", "operator", "nodes", "ms");
    for (op, (ms, n)) in by_op {
        println!("{op:<28} {n:>6} {ms:>9.3}");
    }
    println!("\nslowest nodes");
    for op in profile.ops.iter().take(20) {
        println!(
            "{:>8.3} ms  {:<14} {} {:?}",
            op.ms, op.op, op.node, op.output_shape
        );
    }
    Ok(())
}
