//! Per-stage timings and peak memory of the recognition pipeline on real
//! photos placed in a 640×480 frame (the daemon's camera size).
//!
//! `cargo run --release -p recognition --example bench -- PHOTO [RUNS]`
//! Single-threaded; run on an otherwise idle machine.

use std::time::{Duration, Instant};

use image::{imageops, RgbImage};
use recognition::{detect::pyramid, DetectorConfig, FacePipeline, ModelDir, PipelineConfig};

fn median(mut v: Vec<Duration>) -> f64 {
    v.sort();
    v[v.len() / 2].as_secs_f64() * 1e3
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

/// The photo scaled to 300 px high, centred on a grey 640×480 canvas.
fn frame_from(photo: &RgbImage) -> RgbImage {
    let h = 300;
    let w = (photo.width() * h / photo.height()).min(600);
    let face = imageops::resize(photo, w, h, imageops::FilterType::Triangle);
    let mut frame = RgbImage::from_pixel(640, 480, image::Rgb([120, 120, 120]));
    imageops::overlay(&mut frame, &face, i64::from((640 - w) / 2), 90);
    frame
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    env_logger::init();
    let mut args = std::env::args().skip(1);
    let photo = args.next().ok_or("usage: bench PHOTO [RUNS]")?;
    let runs: usize = args.next().map_or(Ok(20), |r| r.parse())?;
    let frame = frame_from(&recognition::photo::load_rgb(photo.as_ref())?);

    let t = Instant::now();
    let models = ModelDir::open(ModelDir::default_location())?;
    let config = PipelineConfig {
        detector: DetectorConfig {
            min_face_px: 40.0,
            ..Default::default()
        },
        crop_margin: 0.0,
    };
    let mut pipeline = FacePipeline::load(&models, config.clone())?;
    let load = t.elapsed();
    let t = Instant::now();
    pipeline.mtcnn.prepare_for_frame_size(640, 480)?;
    let prepare = t.elapsed();

    let scales = pyramid(640, 480, &config.detector);
    let (mut pnet, mut full_detect, mut crop, mut embed, mut total) =
        (vec![], vec![], vec![], vec![], vec![]);
    let mut faces = 0;
    for _ in 0..runs {
        let t = Instant::now();
        for s in &scales {
            let n = 3 * s.width * s.height;
            pipeline.mtcnn.run_network(
                recognition::detect::Stage::PNet,
                vec![1, 3, s.height, s.width],
                vec![0.0; n],
            )?;
        }
        pnet.push(t.elapsed());

        let t0 = Instant::now();
        let found = pipeline.detect(&frame)?;
        full_detect.push(t0.elapsed());
        faces = found.len();
        let Some(face) = found.first() else {
            return Err("no face found in the benchmark frame".into());
        };
        let t = Instant::now();
        let aligned = recognition::align::crop_face(&frame, &face.bbox, 0.0);
        crop.push(t.elapsed());
        let t = Instant::now();
        pipeline.embedder.embed(&aligned)?;
        embed.push(t.elapsed());
        total.push(t0.elapsed());
    }
    println!(
        "frame 640x480, min face 40 px, {} pyramid scales, {faces} face(s), {runs} runs, medians:",
        scales.len()
    );
    println!(
        "  model load + optimise      {:8.1} ms (once)",
        load.as_secs_f64() * 1e3
    );
    println!(
        "  per-scale P-Net plans      {:8.1} ms (once)",
        prepare.as_secs_f64() * 1e3
    );
    println!("  P-Net pyramid (nets only)  {:8.1} ms", median(pnet));
    println!(
        "  detect (resize + P/R/O)    {:8.1} ms",
        median(full_detect)
    );
    println!("  crop + resize 160x160      {:8.2} ms", median(crop));
    println!("  FaceNet embed              {:8.1} ms", median(embed));
    println!("  detect + embed, one face   {:8.1} ms", median(total));
    println!("  peak RSS                   {:8.1} MiB", peak_rss_mib());
    Ok(())
}
