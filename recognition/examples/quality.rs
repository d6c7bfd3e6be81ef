//! Measures the capture quality checks (`recognition::quality`) on real photos, to set
//! their thresholds: each photo's main face as it is, blurred, and darkened; and, for a
//! sequence of video frames, how much consecutive frames differ.
//!
//! ```sh
//! cargo run --release -p recognition --example quality -- photos PHOTO...
//! cargo run --release -p recognition --example quality -- frames FRAME...   # in order
//! ```

use image::RgbImage;
use recognition::quality::{measure, thumb_difference, Measures};
use recognition::{FacePipeline, ModelDir, PipelineConfig};

fn percentile(values: &mut [f32], p: f32) -> f32 {
    values.sort_by(|a, b| a.total_cmp(b));
    values[((values.len() - 1) as f32 * p).round() as usize]
}

fn report(name: &str, measures: &[Measures]) {
    let column = |f: fn(&Measures) -> f32| -> Vec<f32> { measures.iter().map(f).collect() };
    let mut sharp = column(|m| m.sharpness);
    let mut bright = column(|m| m.brightness);
    let mut contrast = column(|m| m.contrast);
    println!(
        "{name:>9} ({} faces): sharpness p5 {:.0} p50 {:.0} p95 {:.0} | brightness p5 {:.0} p50 {:.0} p95 {:.0} | contrast p5 {:.0} p50 {:.0} p95 {:.0}",
        measures.len(),
        percentile(&mut sharp, 0.05),
        percentile(&mut sharp, 0.5),
        percentile(&mut sharp, 0.95),
        percentile(&mut bright, 0.05),
        percentile(&mut bright, 0.5),
        percentile(&mut bright, 0.95),
        percentile(&mut contrast, 0.05),
        percentile(&mut contrast, 0.5),
        percentile(&mut contrast, 0.95),
    );
}

fn darken(image: &RgbImage, factor: f32) -> RgbImage {
    let mut out = image.clone();
    for p in out.pixels_mut() {
        for c in p.0.iter_mut() {
            *c = (f32::from(*c) * factor) as u8;
        }
    }
    out
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (mode, paths) = args.split_first().expect("photos|frames PATH...");
    let pipeline = FacePipeline::load(
        &ModelDir::open(ModelDir::default_location()).expect("models: run models/fetch.sh"),
        PipelineConfig::default(),
    )
    .expect("pipeline loads");
    let (mut plain, mut blurred, mut dark) = (Vec::new(), Vec::new(), Vec::new());
    let mut previous: Option<Measures> = None;
    let (mut looks, mut poses) = (Vec::new(), Vec::new());
    for path in paths {
        let Ok(image) = image::open(path).map(|i| i.to_rgb8()) else {
            eprintln!("{path}: unreadable");
            continue;
        };
        let faces = pipeline.detect(&image).expect("detection runs");
        let Some(face) = faces.first() else {
            continue;
        };
        let m = measure(&image, face);
        if mode == "frames" {
            if let Some(p) = &previous {
                looks.push(thumb_difference(p, &m));
                poses.push((p.pose.yaw - m.pose.yaw).abs() + (p.pose.pitch - m.pose.pitch).abs());
            }
            previous = Some(m);
            continue;
        }
        plain.push(m);
        // σ = 3 px at the embedder's 160 px face scale.
        let sigma = 3.0 * face.bbox.side() / 160.0;
        blurred.push(measure(&image::imageops::blur(&image, sigma), face));
        dark.push(measure(&darken(&image, 0.25), face));
    }
    if mode == "frames" {
        println!(
            "consecutive frames ({}): thumbnail difference p5 {:.1} p25 {:.1} p50 {:.1} p95 {:.1}; pose change p25 {:.3} p50 {:.3} p95 {:.3}",
            looks.len(),
            percentile(&mut looks, 0.05),
            percentile(&mut looks, 0.25),
            percentile(&mut looks, 0.5),
            percentile(&mut looks, 0.95),
            percentile(&mut poses, 0.25),
            percentile(&mut poses, 0.5),
            percentile(&mut poses, 0.95),
        );
        return;
    }
    report("as is", &plain);
    report("blurred", &blurred);
    report("darkened", &dark);
}
