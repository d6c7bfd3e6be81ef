//! Measures FaceNet in f16 against f32 (issue 14): the same detected face of each photo
//! embedded both ways.
//!
//! ```sh
//! # cosine between the two embeddings of each photo; JSON lines in `trainer embed`'s
//! # format for scripts/lfw-pairs.py; with --classifier, the gate's decisions both ways
//! cargo run --release -p recognition --example f16 -- compare \
//!     [--keep NODE,...] [--classifier C.onnx] [--out-f32 A.jsonl] [--out-f16 B.jsonl] PHOTO...
//! # one precision embedding one crop N times (for instruction counts under qemu)
//! cargo run --release -p recognition --example f16 -- repeat f32|f16 N
//! ```
//!
//! Pi 5 numerics and instruction counts: the aarch64 cross build of this example under
//! `qemu-aarch64 -cpu cortex-a76` with `TRACT_CPU_AARCH64_KIND=a75` (qemu 7.2 shows tract
//! the host's /proc/cpuinfo, so tract would not see FP16 otherwise) and an
//! instruction-counting plugin; instructions per embed = (`repeat P 3` − `repeat P 1`) / 2.
//!
//! `--keep` keeps the nodes whose names contain one of the patterns in f32 (e.g.
//! `Bottleneck` for the final dense layer). On x86 tract runs f16 through an emulated
//! path: fine for accuracy, not for speed.

use std::io::Write;
use std::path::Path;
use std::time::Instant;

use recognition::classify::{load_trusted, Expected};
use recognition::embed::Precision;
use recognition::photo::{load_photo, DecodeLimits, DETECT_MAX_SIDE, MAX_PHOTO_SIDE};
use recognition::{Embedder, Embedding, FacePipeline, ModelDir, PipelineConfig};

fn percentile(sorted: &[f32], p: f32) -> f32 {
    sorted[((sorted.len() - 1) as f32 * p).round() as usize]
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let models = ModelDir::open(ModelDir::default_location()).expect("models: run models/fetch.sh");
    match args.first().map(String::as_str) {
        Some("compare") => compare(&models, &args[1..]),
        Some("repeat") => repeat(&models, &args[1..]),
        _ => {
            eprintln!("usage: f16 compare [--keep N,..] [--classifier C] [--out-f32 A] [--out-f16 B] PHOTO... | f16 repeat f32|f16 N");
            std::process::exit(2);
        }
    }
}

fn repeat(models: &ModelDir, args: &[String]) {
    let precision: Precision = args[0].parse().expect("f32 or f16");
    let n: usize = args[1].parse().expect("a count");
    let started = Instant::now();
    let embedder = Embedder::load_with(models, precision).expect("FaceNet loads");
    eprintln!("load {:.0} ms", started.elapsed().as_secs_f64() * 1e3);
    let mut seed = 0x2545_f491_u32;
    let crop = image::RgbImage::from_fn(160, 160, |_, _| {
        seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        image::Rgb([(seed >> 24) as u8, (seed >> 16) as u8, (seed >> 8) as u8])
    });
    let mut times = Vec::new();
    for _ in 0..n {
        let t = Instant::now();
        std::hint::black_box(embedder.embed(&crop).expect("embeds"));
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(f64::total_cmp);
    if !times.is_empty() {
        eprintln!(
            "{precision}: {n} embeds, median {:.1} ms",
            times[times.len() / 2]
        );
    }
}

fn compare(models: &ModelDir, args: &[String]) {
    let (mut keep, mut classifier, mut out32, mut out16) = (None, None, None, None);
    let mut photos = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--keep" => keep = it.next().cloned(),
            "--classifier" => classifier = it.next().cloned(),
            "--out-f32" => out32 = it.next().cloned(),
            "--out-f16" => out16 = it.next().cloned(),
            _ => photos.push(a.clone()),
        }
    }
    let pipeline = FacePipeline::load(models, PipelineConfig::default()).expect("pipeline loads");
    let half = match &keep {
        None => Embedder::load_with(models, Precision::F16),
        Some(k) => Embedder::load_f16_keeping(models, &k.split(',').collect::<Vec<_>>()),
    }
    .expect("FaceNet loads in f16");
    let classifier = classifier.map(|c| {
        load_trusted(Path::new(&c), None, &Expected::of(&pipeline)).expect("classifier loads")
    });
    let open = |p: &Option<String>| {
        p.as_ref()
            .map(|p| std::io::BufWriter::new(std::fs::File::create(p).expect("output")))
    };
    let (mut w32, mut w16) = (open(&out32), open(&out16));
    let mut cosines = Vec::new();
    let (mut t32, mut t16) = (0.0, 0.0);
    let (mut flips, mut decisions, mut closest) = (0, 0, f32::INFINITY);
    let (mut max_dp, mut max_ds) = (0f32, 0f32);
    let limits = DecodeLimits::photos(MAX_PHOTO_SIDE);
    for (i, path) in photos.iter().enumerate() {
        let Ok(photo) = load_photo(Path::new(path), &limits, DETECT_MAX_SIDE) else {
            eprintln!("{path}: unreadable");
            continue;
        };
        let faces = pipeline.detect(&photo.image).expect("detects");
        let (w, h) = photo.image.dimensions();
        let Some(main) = recognition::subject::main_face(&faces, w, h) else {
            continue;
        };
        let crop = recognition::align::crop_face(
            &photo.image,
            &faces[main].bbox,
            pipeline.config.crop_margin,
        );
        let t = Instant::now();
        let a = pipeline.embedder.embed(&crop).expect("f32 embeds");
        t32 += t.elapsed().as_secs_f64();
        let t = Instant::now();
        let b = half.embed(&crop).expect("f16 embeds");
        t16 += t.elapsed().as_secs_f64();
        cosines.push(a.cosine(b.as_slice()));
        let bbox = photo.to_original(&faces[main].bbox);
        for (w, e) in [(&mut w32, &a), (&mut w16, &b)] {
            if let Some(w) = w {
                let line = serde_json::json!({
                    "path": path, "box": bbox, "faces": faces.len(), "embedding": e.as_slice(),
                });
                writeln!(w, "{line}").expect("writes");
            }
        }
        if let Some(c) = &classifier {
            let (pa, pb) = (classify(c, &a), classify(c, &b));
            decisions += 1;
            if pa.identity != pb.identity {
                flips += 1;
                println!("FLIP {path}: {} -> {}", pa.label(), pb.label());
            }
            max_dp = max_dp.max((pa.probability - pb.probability).abs());
            max_ds = max_ds.max((pa.similarity - pb.similarity).abs());
            let th = &c.meta().thresholds;
            closest = closest
                .min((pa.probability - th.min_probability).abs())
                .min((pa.similarity - th.min_similarity).abs());
        }
        if (i + 1) % 100 == 0 {
            eprintln!("{} / {}", i + 1, photos.len());
        }
    }
    let n = cosines.len();
    cosines.sort_by(f32::total_cmp);
    println!(
        "{n} faces; cosine(f32, f16): min {:.6} p1 {:.6} p5 {:.6} median {:.6} mean {:.6}",
        cosines[0],
        percentile(&cosines, 0.01),
        percentile(&cosines, 0.05),
        percentile(&cosines, 0.5),
        cosines.iter().sum::<f32>() / n as f32
    );
    println!(
        "mean embed time: f32 {:.1} ms, f16 {:.1} ms (f16 is emulated off FP16 CPUs)",
        t32 * 1e3 / n as f64,
        t16 * 1e3 / n as f64
    );
    if decisions > 0 {
        println!(
            "gate: {flips} of {decisions} decisions flip; largest change: probability {max_dp:.5}, \
             similarity {max_ds:.5}; closest f32 score to a threshold {closest:.4}"
        );
    }
}

fn classify(c: &recognition::Classifier, e: &Embedding) -> recognition::Prediction {
    c.classify(e).expect("classifies")
}
