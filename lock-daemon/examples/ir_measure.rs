//! Measures `camera::ir::colourfulness` on a folder of colour photos or frames, and on the
//! same images turned into simulated infrared frames, to choose `IR_MAX_COLOURFULNESS`.
//!
//! ```sh
//! cargo run --release -p lock-daemon --example ir_measure -- <folder> [--list N]
//! ```
//!
//! Every `.jpg`/`.jpeg`/`.png` under the folder is read (recursively) and scaled to at most
//! 640 px on the long side, like a camera frame. For each image it measures:
//!
//! - `colour`: the image as it is (images that are greyscale at the source, with at most
//!   1 % of pixels more than 8 levels away from grey, are counted apart as `grey-source`);
//! - `colour-half`: the image with its saturation halved (a dull colour camera, dim light);
//! - `grey`: the image converted to luma (R = G = B);
//! - `ir`: a simulated NoIR frame: luma, R and B multiplied by a gain in 1.1–1.3 each (the
//!   magenta cast), Gaussian sensor noise (σ 2–6 per channel), JPEG quality 75 (MJPEG);
//! - `ir-hard`: the same with a tint that drifts across the frame (R gain 1.15 → 1.25 and
//!   B gain 1.25 → 1.15 from left to right, like uncorrected lens shading) and σ 10 noise.
//!
//! It prints min / 1st percentile / median / 99th percentile / max per group, and the
//! images nearest the threshold with `--list N`. The random draws are seeded: two runs on
//! the same folder print the same numbers.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use image::{codecs::jpeg::JpegEncoder, imageops, Rgb, RgbImage};
use lock_daemon::camera::ir::{colourfulness, IR_MAX_COLOURFULNESS};

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let Some(folder) = args.next() else {
        anyhow::bail!("usage: ir_measure <folder> [--list N]");
    };
    let list = match (args.next().as_deref(), args.next()) {
        (Some("--list"), Some(n)) => n.parse()?,
        (None, _) => 0,
        _ => anyhow::bail!("usage: ir_measure <folder> [--list N]"),
    };
    let mut files = Vec::new();
    walk(Path::new(&folder), &mut files)?;
    files.sort();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let groups = [
        "colour",
        "grey-source",
        "colour-half",
        "grey",
        "ir",
        "ir-hard",
    ];
    let mut timing = (Duration::ZERO, 0u32);
    let mut scores: Vec<Vec<(f32, String)>> = vec![Vec::new(); groups.len()];
    for path in &files {
        let image = match image::open(path) {
            Ok(image) => shrink(image.to_rgb8()),
            Err(e) => {
                eprintln!("skipped {}: {e}", path.display());
                continue;
            }
        };
        let name = path.display().to_string();
        let mut add = |group: usize, image: &RgbImage| {
            scores[group].push((colourfulness(image), name.clone()));
        };
        add(usize::from(is_grey_source(&image)), &image);
        add(2, &desaturate(&image, 0.5));
        let grey = to_grey(&image);
        add(3, &grey);
        let (gr, gb) = (rng.uniform(1.1, 1.3), rng.uniform(1.1, 1.3));
        let sigma = rng.uniform(2.0, 6.0);
        add(
            4,
            &jpeg(&noisy(&tint(&grey, |_| (gr, gb)), sigma, &mut rng))?,
        );
        let w = grey.width().max(2) as f32 - 1.0;
        let hard = tint(&grey, |x| {
            let t = x as f32 / w;
            (1.15 + 0.1 * t, 1.25 - 0.1 * t)
        });
        add(5, &jpeg(&noisy(&hard, 10.0, &mut rng))?);
        let started = Instant::now();
        std::hint::black_box(colourfulness(&image));
        timing.0 += started.elapsed();
        timing.1 += 1;
    }
    println!("threshold IR_MAX_COLOURFULNESS = {IR_MAX_COLOURFULNESS}");
    if timing.1 > 0 {
        println!(
            "colourfulness: {:.0} µs per image on average",
            timing.0.as_secs_f64() * 1e6 / f64::from(timing.1)
        );
    }
    println!(
        "{:<12} {:>5} {:>7} {:>7} {:>7} {:>7} {:>7} {:>8}",
        "group", "n", "min", "p1", "median", "p99", "max", "> thr"
    );
    for (group, values) in groups.iter().zip(&mut scores) {
        values.sort_by(|a, b| a.0.total_cmp(&b.0));
        if values.is_empty() {
            println!("{group:<12} {:>5}", 0);
            continue;
        }
        let q = |p: f64| values[((values.len() - 1) as f64 * p).round() as usize].0;
        let above = values.iter().filter(|v| v.0 > IR_MAX_COLOURFULNESS).count();
        println!(
            "{group:<12} {:>5} {:>7.4} {:>7.4} {:>7.4} {:>7.4} {:>7.4} {:>8}",
            values.len(),
            q(0.0),
            q(0.01),
            q(0.5),
            q(0.99),
            q(1.0),
            above
        );
    }
    for (group, values) in groups.iter().zip(&scores) {
        if list == 0 {
            break;
        }
        let colour = group.starts_with("colour");
        let shown: Vec<_> = if colour {
            values.iter().take(list).collect()
        } else {
            values.iter().rev().take(list).collect()
        };
        println!("{group}: {}", if colour { "lowest" } else { "highest" });
        for (v, name) in shown {
            println!("  {v:.4}  {name}");
        }
    }
    Ok(())
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            walk(&path, out)?;
        } else if path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| ["jpg", "jpeg", "png"].contains(&e.to_ascii_lowercase().as_str()))
        {
            out.push(path);
        }
    }
    Ok(())
}

/// At most 640 px on the long side, like a camera frame.
fn shrink(image: RgbImage) -> RgbImage {
    let (w, h) = image.dimensions();
    if w.max(h) <= 640 {
        return image;
    }
    let scale = 640.0 / f64::from(w.max(h));
    let (nw, nh) = (
        ((f64::from(w) * scale).round() as u32).max(1),
        ((f64::from(h) * scale).round() as u32).max(1),
    );
    imageops::resize(&image, nw, nh, imageops::FilterType::Triangle)
}

/// At most 1 % of pixels more than 8 levels from grey: a greyscale photo saved as RGB.
fn is_grey_source(image: &RgbImage) -> bool {
    let coloured = image
        .pixels()
        .filter(|p| {
            let [r, g, b] = p.0;
            r.max(g).max(b) - r.min(g).min(b) > 8
        })
        .count();
    coloured * 100 <= image.pixels().len()
}

fn luma(p: &Rgb<u8>) -> f32 {
    let [r, g, b] = p.0.map(f32::from);
    0.299 * r + 0.587 * g + 0.114 * b
}

fn to_grey(image: &RgbImage) -> RgbImage {
    RgbImage::from_fn(image.width(), image.height(), |x, y| {
        let l = luma(image.get_pixel(x, y)).round() as u8;
        Rgb([l, l, l])
    })
}

fn desaturate(image: &RgbImage, keep: f32) -> RgbImage {
    RgbImage::from_fn(image.width(), image.height(), |x, y| {
        let p = image.get_pixel(x, y);
        let l = luma(p);
        Rgb(p
            .0
            .map(|c| (l + keep * (f32::from(c) - l)).round().clamp(0.0, 255.0) as u8))
    })
}

/// Multiplies R and B by the gains for each column.
fn tint(image: &RgbImage, gains: impl Fn(u32) -> (f32, f32)) -> RgbImage {
    RgbImage::from_fn(image.width(), image.height(), |x, y| {
        let [r, g, b] = image.get_pixel(x, y).0.map(f32::from);
        let (gr, gb) = gains(x);
        Rgb([
            (r * gr).round().min(255.0) as u8,
            g as u8,
            (b * gb).round().min(255.0) as u8,
        ])
    })
}

fn noisy(image: &RgbImage, sigma: f32, rng: &mut Rng) -> RgbImage {
    let mut out = image.clone();
    for p in out.pixels_mut() {
        for c in &mut p.0 {
            *c = (f32::from(*c) + sigma * rng.gaussian())
                .round()
                .clamp(0.0, 255.0) as u8;
        }
    }
    out
}

/// A JPEG round trip at quality 75, as an MJPEG camera delivers frames.
fn jpeg(image: &RgbImage) -> anyhow::Result<RgbImage> {
    let mut bytes = Vec::new();
    JpegEncoder::new_with_quality(&mut bytes, 75).encode_image(image)?;
    Ok(image::load_from_memory(&bytes)?.to_rgb8())
}

/// xorshift64*: deterministic draws without a dependency.
struct Rng(u64);

impl Rng {
    fn next_f32(&mut self) -> f32 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        ((self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 40) as f32 + 0.5) / (1u64 << 24) as f32
    }

    fn uniform(&mut self, lo: f32, hi: f32) -> f32 {
        lo + (hi - lo) * self.next_f32()
    }

    fn gaussian(&mut self) -> f32 {
        let (u, v) = (self.next_f32(), self.next_f32());
        (-2.0 * u.ln()).sqrt() * (std::f32::consts::TAU * v).cos()
    }
}
