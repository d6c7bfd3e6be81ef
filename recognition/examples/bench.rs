//! Per-stage timings and peak memory of the recognition pipeline on real
//! 640×480 frames (the daemon's camera size): one face, four faces, none.
//!
//! ```text
//! bench --write-frames DIR            compose the benchmark frames from the sample photos
//! bench --frames DIR [--classifier FILE] [--runs N] [--json FILE]
//!       [--detector-min-face PX] [--threads N]
//! ```
//! Single-threaded; run on an otherwise idle machine. `scripts/bench.sh` runs it
//! next to the onnxruntime pipeline of `models/bench_onnxruntime.py` on the
//! same frames.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use image::{imageops, RgbImage};
use recognition::{DetectorConfig, FacePipeline, ModelDir, PipelineConfig};

/// The daemon's defaults: the detector looks for faces from 60 px, faces
/// under 80 px never reach FaceNet.
const DETECTOR_MIN_FACE: f32 = 60.0;
const MIN_FACE: f32 = 80.0;

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

/// `photo` scaled to fit `w`×`h`, pasted centred at (`x`, `y`) + cell offset.
fn paste(frame: &mut RgbImage, photo: &RgbImage, x: u32, y: u32, w: u32, h: u32) {
    let scale =
        (f64::from(w) / f64::from(photo.width())).min(f64::from(h) / f64::from(photo.height()));
    let pw = (f64::from(photo.width()) * scale) as u32;
    let ph = (f64::from(photo.height()) * scale) as u32;
    let scaled = imageops::resize(photo, pw, ph, imageops::FilterType::Triangle);
    imageops::overlay(
        frame,
        &scaled,
        i64::from(x + (w - pw) / 2),
        i64::from(y + (h - ph) / 2),
    );
}

fn first_photo(dir: &Path) -> Result<RgbImage, Box<dyn std::error::Error>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    files.sort();
    Ok(recognition::photo::load_rgb(&files[0])?)
}

fn write_frames(out: &Path) -> Result<(), Box<dyn std::error::Error>> {
    let data = ModelDir::default_location().parent().unwrap().join("data");
    let val = data.join("celeb5/val");
    std::fs::create_dir_all(out)?;
    let grey = image::Rgb([128, 128, 128]);

    let mut one = RgbImage::from_pixel(640, 480, grey);
    paste(
        &mut one,
        &first_photo(&val.join("madonna"))?,
        0,
        0,
        640,
        480,
    );
    one.save(out.join("1_one_face.png"))?;

    let mut four = RgbImage::from_pixel(640, 480, grey);
    for (i, person) in ["elton_john", "jerry_seinfeld", "madonna", "mindy_kaling"]
        .iter()
        .enumerate()
    {
        let (x, y) = ((i as u32 % 2) * 320, (i as u32 / 2) * 240);
        paste(&mut four, &first_photo(&val.join(person))?, x, y, 320, 240);
    }
    four.save(out.join("2_four_faces.png"))?;

    let mut none = RgbImage::from_pixel(640, 480, grey);
    let present = recognition::photo::load_rgb(&data.join("extra/noface/present.png"))?;
    paste(&mut none, &present, 0, 0, 640, 480);
    none.save(out.join("3_no_face.png"))?;
    println!("wrote 3 frames to {}", out.display());
    Ok(())
}

#[derive(Default)]
struct Samples {
    stages: BTreeMap<&'static str, Vec<f64>>,
    faces: usize,
    embedded: usize,
}

impl Samples {
    fn push(&mut self, stage: &'static str, d: Duration) {
        self.stages.entry(stage).or_default().push(ms(d));
    }
}

const STAGES: [&str; 8] = [
    "decode", "pnet", "rnet", "onet", "crop", "facenet", "head", "total",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    env_logger::init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let flag = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
    };
    if let Some(dir) = flag("--write-frames") {
        return write_frames(Path::new(dir));
    }
    let frames_dir = PathBuf::from(
        flag("--frames")
            .ok_or("usage: bench --frames DIR [--classifier FILE] [--runs N] [--json FILE]")?,
    );
    let runs: usize = flag("--runs").map_or(Ok(20), |r| r.parse())?;
    let detector_min_face: f32 =
        flag("--detector-min-face").map_or(Ok(DETECTOR_MIN_FACE), |r| r.parse())?;
    let threads: usize = flag("--threads").map_or(Ok(1), |r| r.parse())?;
    recognition::set_threads(threads);

    let started = Instant::now();
    let models = ModelDir::open(ModelDir::default_location())?;
    let config = PipelineConfig {
        detector: DetectorConfig {
            min_face_px: detector_min_face,
            ..Default::default()
        },
        crop_margin: 0.0,
    };
    let mut pipeline = FacePipeline::load(&models, config)?;
    pipeline.mtcnn.prepare_for_frame_size(640, 480)?;
    let classifier = flag("--classifier")
        .map(|c| pipeline.load_classifier(Path::new(c), None))
        .transpose()?;
    let load = started.elapsed();

    let mut files: Vec<PathBuf> = std::fs::read_dir(&frames_dir)?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    files.retain(|p| p.extension().is_some_and(|e| e == "png"));
    files.sort();
    let mut results = BTreeMap::new();
    for path in &files {
        let frame = recognition::photo::load_rgb(path)?;
        // The camera delivers MJPEG: time decoding a JPEG of this frame.
        let mut jpeg = Vec::new();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 90).encode_image(&frame)?;
        let mut s = Samples::default();
        for _ in 0..runs {
            let t0 = Instant::now();
            let decoded = recognition::photo::decode_rgb(&jpeg)?;
            s.push("decode", t0.elapsed());
            let (faces, times) = pipeline.mtcnn.detect_profiled(&decoded)?;
            s.push("pnet", times.pnet);
            s.push("rnet", times.rnet);
            s.push("onet", times.onet);
            let big: Vec<_> = faces.iter().filter(|f| f.bbox.side() >= MIN_FACE).collect();
            let (mut crop, mut embed, mut head) = (Duration::ZERO, Duration::ZERO, Duration::ZERO);
            for face in &big {
                let t = Instant::now();
                let aligned = recognition::align::crop_face(&decoded, &face.bbox, 0.0);
                crop += t.elapsed();
                let t = Instant::now();
                let e = pipeline.embedder.embed(&aligned)?;
                embed += t.elapsed();
                if let Some(c) = &classifier {
                    let t = Instant::now();
                    c.classify(&e)?;
                    head += t.elapsed();
                }
            }
            s.push("crop", crop);
            s.push("facenet", embed);
            s.push("head", head);
            s.push("total", t0.elapsed());
            s.faces = faces.len();
            s.embedded = big.len();
        }
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        println!(
            "{name}: {} face(s) detected, {} embedded (>= {MIN_FACE} px), medians of {runs} runs:",
            s.faces, s.embedded
        );
        let mut medians = BTreeMap::new();
        for stage in STAGES {
            let m = median(s.stages[stage].clone());
            println!("  {stage:<8} {m:8.2} ms");
            medians.insert(stage, m);
        }
        results.insert(
            name,
            serde_json::json!({ "faces": s.faces, "embedded": s.embedded, "ms": medians }),
        );
    }
    let rss = peak_rss_mib();
    println!(
        "model load + optimise + per-scale plans: {:.0} ms; peak RSS {rss:.0} MiB",
        ms(load)
    );
    if let Some(out) = flag("--json") {
        let doc = serde_json::json!({ "runtime": "facelock (tract)", "frames": results, "load_ms": ms(load), "peak_rss_mib": rss });
        std::fs::write(out, serde_json::to_vec_pretty(&doc)?)?;
    }
    Ok(())
}
