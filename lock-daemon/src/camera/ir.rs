//! Is this frame from an infrared camera? The measured check behind `camera.expect_ir`.
//!
//! An infrared camera (a NoIR module or an IR USB camera, with an 850 nm illuminator and an
//! IR-pass filter) sees phone and tablet screens as blank, so a replayed photo or video
//! fails at the door. A lock that relies on that must notice when its camera stops being
//! one: a swapped camera, or an IR-pass filter taken off. Such frames are in colour; IR
//! frames are not. [`looks_colour`] tells them apart on every frame, before recognition,
//! at the cost of [`mean_luma`](super::mean_luma): a grid of about 64×48 sample points.
//!
//! # The statistic
//!
//! [`colourfulness`] is the 90th percentile, over the sample points, of the saturation
//! after a per-frame white balance:
//!
//! 1. Each sample point is the mean of the 4×4 pixel block around it. Sensor noise is
//!    independent per pixel and channel, so averaging cuts its false chroma by about 4;
//!    real colour covers areas and survives.
//! 2. Points darker than luma 32 (chroma there is mostly noise) and blocks with a channel
//!    at 250 or more (a clipped channel distorts the ratios) are left out. With fewer than
//!    32 points left the frame cannot be judged and scores 0: it is too dark or too
//!    bright to hold a usable face anyway.
//! 3. Grey-world white balance: each channel is scaled so that its mean over the kept
//!    points equals the mean of the three. A NoIR camera's cast (its Bayer filter passes
//!    850 nm a little unevenly, which tints IR frames magenta or pink) is a gain per
//!    channel, so this removes it exactly, however strong, as long as it is uniform.
//!    Subtracting the mean chroma instead would leave a tint that grows with brightness.
//! 4. Saturation per point: `(max − min) / (mean + 32)` of the balanced channels. It is
//!    a ratio, so it does not depend on exposure; the `+ 32` keeps dim points' leftover
//!    noise small.
//! 5. The 90th percentile. In a colour frame the colour is often only in part of it (a
//!    face and a shirt in front of a white wall), so the mean would dilute it; the top
//!    decile catches it. Up to 10 % of coloured points in an IR frame (an LED, a
//!    demosaicing fringe) are ignored.
//!
//! # The threshold, measured
//!
//! `cargo run --release -p lock-daemon --example ir_measure -- <folder>` on the
//! development photos (2,169 JPEGs: celebrity, LFW and example photos, and 275 frames of a
//! 640×360 video), each scaled to at most 640 px, gave (min / 1st percentile / median /
//! 99th percentile / max):
//!
//! | group | frames | min | p1 | median | p99 | max |
//! |---|---|---|---|---|---|---|
//! | colour photos and frames, as they are | 2,152 | 0.045 | 0.179 | 0.426 | 1.245 | 1.741 |
//! | of which the video frames | 275 | 0.251 | 0.275 | 0.428 | 0.506 | 0.515 |
//! | all images, saturation halved | 2,169 | 0.000 | 0.059 | 0.203 | 0.600 | 0.888 |
//! | photos that are greyscale at the source | 17 | 0.000 | 0.000 | 0.000 | 0.010 | 0.010 |
//! | every image converted to grey | 2,169 | 0 | 0 | 0 | 0 | 0 |
//! | simulated NoIR: grey, R and B ×1.1–1.3, noise σ 2–6, JPEG q75 | 2,169 | 0.000 | 0.017 | 0.030 | 0.052 | 0.058 |
//! | hard NoIR: tint drifting ±0.05 across the frame, noise σ 10, JPEG q75 | 2,169 | 0.000 | 0.059 | 0.077 | 0.103 | 0.106 |
//!
//! (A score of 0 in the NoIR rows is an image with fewer than 32 usable points: mostly
//! dark or blown out.)
//!
//! [`IR_MAX_COLOURFULNESS`] = 0.15 sits 2.6× above the highest simulated NoIR frame and
//! 1.4× above the hard case, and below 99.5 % of the colour images: 11 of the 2,152 score
//! under it. Three of those are sepia or tinted black-and-white photos (0.045–0.062),
//! which are rightly not colour; the others are heavily desaturated shots (a graded film
//! still at 0.094, muted photos at 0.106–0.147). All 275 video frames score above 0.25.
//! Errors go towards letting a rare dull colour frame through rather than refusing a real
//! IR frame: the camera delivers several frames a second, so a swapped camera is still
//! noticed at once, while a refused IR frame would keep an enrolled person out.
//!
//! What it cannot tell: a scene that is itself grey or uniformly tinted (a sepia print, a
//! black-and-white photo) looks like IR to it. That is by design: it checks the camera,
//! not the scene, and printed photos are not this check's business. A tint that changes
//! across the frame is not removed by the white balance: a drift of ±0.05 in the gains
//! scores up to 0.106; from roughly ±0.07 on (extrapolated) it would read as colour.

use image::RgbImage;

/// Frames scoring above this are colour (see the module documentation for the
/// measurement behind it).
pub const IR_MAX_COLOURFULNESS: f32 = 0.15;

/// Sample points whose block is darker than this luma (0–255) carry no usable chroma.
const DARK: u32 = 32;
/// A block with any channel at or above this is clipped: its channel ratios are wrong.
const CLIPPED: u8 = 250;
/// Added to the saturation's denominator so that dim points' noise counts less.
const SOFT: f32 = 32.0;
/// Side of the pixel block averaged at each sample point.
const BLOCK: u32 = 4;
/// Fewer kept sample points than this: the frame cannot be judged.
const MIN_POINTS: usize = 32;

/// How colourful the frame is, relative to its own white balance: the 90th percentile of
/// the per-point saturation over a grid of about 64×48 points (0 for grey, about 0.03 for
/// a tinted, noisy IR frame, 0.2–1.7 for colour photos; see the module documentation).
pub fn colourfulness(image: &RgbImage) -> f32 {
    let mut saturations = saturations(image);
    if saturations.is_empty() {
        return 0.0;
    }
    let k = (saturations.len() - 1) * 9 / 10;
    *saturations.select_nth_unstable_by(k, f32::total_cmp).1
}

/// Whether the frame is clearly in colour, so it cannot come from an infrared camera
/// ([`colourfulness`] above [`IR_MAX_COLOURFULNESS`]).
pub fn looks_colour(image: &RgbImage) -> bool {
    colourfulness(image) > IR_MAX_COLOURFULNESS
}

/// The saturation of each usable sample point after the grey-world white balance.
fn saturations(image: &RgbImage) -> Vec<f32> {
    let (w, h) = image.dimensions();
    if w == 0 || h == 0 {
        return Vec::new();
    }
    let (step_x, step_y) = ((w / 64).max(1), (h / 48).max(1));
    let mut kept = Vec::with_capacity(64 * 48);
    let mut sums = [0u64; 3];
    for y in (step_y / 2..h).step_by(step_y as usize) {
        for x in (step_x / 2..w).step_by(step_x as usize) {
            let (rgb, peak) = block_mean(image, x, y);
            let [r, g, b] = rgb;
            let luma = (77 * r + 150 * g + 29 * b) >> 8;
            if luma < DARK || peak >= CLIPPED {
                continue;
            }
            for (sum, c) in sums.iter_mut().zip(rgb) {
                *sum += u64::from(c);
            }
            kept.push(rgb);
        }
    }
    if kept.len() < MIN_POINTS {
        return Vec::new();
    }
    let n = kept.len() as f32;
    let means = sums.map(|s| (s as f32 / n).max(1.0));
    let level = (means[0] + means[1] + means[2]) / 3.0;
    let gains = means.map(|m| level / m);
    kept.iter()
        .map(|rgb| {
            let [r, g, b] = [0, 1, 2].map(|i| rgb[i] as f32 * gains[i]);
            let (max, min) = (r.max(g).max(b), r.min(g).min(b));
            (max - min) / ((r + g + b) / 3.0 + SOFT)
        })
        .collect()
}

/// The mean colour of the `BLOCK`×`BLOCK` pixels around (x, y), and the highest channel
/// value among them.
fn block_mean(image: &RgbImage, x: u32, y: u32) -> ([u32; 3], u8) {
    let (w, h) = image.dimensions();
    let (x0, y0) = (x.saturating_sub(BLOCK / 2), y.saturating_sub(BLOCK / 2));
    let (x1, y1) = ((x0 + BLOCK).min(w), (y0 + BLOCK).min(h));
    let (mut sum, mut peak) = ([0u32; 3], 0u8);
    for yy in y0..y1 {
        for xx in x0..x1 {
            for (s, &c) in sum.iter_mut().zip(&image.get_pixel(xx, yy).0) {
                *s += u32::from(c);
                peak = peak.max(c);
            }
        }
    }
    let n = (x1 - x0) * (y1 - y0);
    (sum.map(|s| (s + n / 2) / n), peak)
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::Rgb;

    /// xorshift64*: reproducible noise without a dependency.
    struct Rng(u64);

    impl Rng {
        fn unit(&mut self) -> f32 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            ((self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 40) as f32 + 0.5) / (1u64 << 24) as f32
        }

        /// Roughly Gaussian (sum of four uniforms), standard deviation `sigma`.
        fn noise(&mut self, sigma: f32) -> f32 {
            let sum: f32 = (0..4).map(|_| self.unit() - 0.5).sum();
            sum * sigma * 3f32.sqrt()
        }
    }

    /// A grey 640×480 scene with structure: a gradient, a darker "face" ellipse and bars,
    /// so that the luma varies from dark to bright as in a real frame.
    fn grey_scene() -> RgbImage {
        RgbImage::from_fn(640, 480, |x, y| {
            let mut l = 60.0 + 140.0 * x as f32 / 640.0;
            let (dx, dy) = ((x as f32 - 320.0) / 90.0, (y as f32 - 220.0) / 120.0);
            if dx * dx + dy * dy < 1.0 {
                l = 150.0 - 40.0 * dy;
            }
            if (x / 40) % 4 == 0 && y > 380 {
                l = 40.0;
            }
            let l = l.round() as u8;
            Rgb([l, l, l])
        })
    }

    fn tinted(image: &RgbImage, gain_r: f32, gain_b: f32) -> RgbImage {
        let mut out = image.clone();
        for p in out.pixels_mut() {
            let [r, g, b] = p.0.map(f32::from);
            *p = Rgb([
                (r * gain_r).round().min(255.0) as u8,
                g as u8,
                (b * gain_b).round().min(255.0) as u8,
            ]);
        }
        out
    }

    fn noisy(image: &RgbImage, sigma: f32, seed: u64) -> RgbImage {
        let mut rng = Rng(seed);
        let mut out = image.clone();
        for p in out.pixels_mut() {
            for c in &mut p.0 {
                *c = (f32::from(*c) + rng.noise(sigma)).round().clamp(0.0, 255.0) as u8;
            }
        }
        out
    }

    #[test]
    fn grey_frames_are_not_colour() {
        let grey = grey_scene();
        assert_eq!(colourfulness(&grey), 0.0);
        assert!(!looks_colour(&grey));
        let flat = RgbImage::from_pixel(640, 480, Rgb([128, 128, 128]));
        assert_eq!(colourfulness(&flat), 0.0);
    }

    #[test]
    fn uniformly_tinted_grey_frames_count_as_infrared() {
        // The NoIR cast: R and B raised against G, up to strongly magenta.
        for (gain_r, gain_b) in [(1.1, 1.1), (1.3, 1.2), (1.2, 1.3), (1.6, 1.4), (0.8, 1.0)] {
            let frame = tinted(&grey_scene(), gain_r, gain_b);
            let score = colourfulness(&frame);
            assert!(score < 0.02, "gains {gain_r}/{gain_b}: {score}");
            assert!(!looks_colour(&frame));
        }
    }

    #[test]
    fn noisy_tinted_grey_frames_count_as_infrared() {
        for (seed, sigma) in [(1, 3.0), (2, 6.0), (3, 10.0)] {
            let frame = noisy(&tinted(&grey_scene(), 1.25, 1.15), sigma, seed);
            let score = colourfulness(&frame);
            assert!(
                score < IR_MAX_COLOURFULNESS / 2.0,
                "noise sigma {sigma}: {score}"
            );
        }
    }

    #[test]
    fn a_few_coloured_pixels_do_not_make_an_infrared_frame_colour() {
        // A red LED and a green exit sign: 5 % of the frame, fully saturated.
        let mut frame = tinted(&grey_scene(), 1.2, 1.2);
        for y in 0..120 {
            for x in 0..64 {
                frame.put_pixel(x, y, Rgb([220, 20, 20]));
                frame.put_pixel(639 - x, y, Rgb([20, 200, 40]));
            }
        }
        assert!(!looks_colour(&frame), "{}", colourfulness(&frame));
    }

    #[test]
    fn colourful_scenes_are_colour() {
        let frame = RgbImage::from_fn(640, 480, |x, y| {
            let palette = [
                [200, 40, 40],
                [40, 160, 60],
                [50, 70, 200],
                [220, 200, 60],
                [150, 150, 150],
                [90, 60, 40],
            ];
            Rgb(palette[((x / 80 + y / 80) % 6) as usize])
        });
        let score = colourfulness(&frame);
        assert!(score > 2.0 * IR_MAX_COLOURFULNESS, "{score}");
        assert!(looks_colour(&frame));
        // Noise does not hide it.
        assert!(looks_colour(&noisy(&frame, 6.0, 7)));
    }

    #[test]
    fn a_skin_toned_face_on_a_coloured_background_is_colour() {
        // A skin-tone ellipse on a blue-grey wall, with a red shirt below it.
        let frame = RgbImage::from_fn(640, 480, |x, y| {
            let (dx, dy) = ((x as f32 - 320.0) / 90.0, (y as f32 - 200.0) / 120.0);
            if dx * dx + dy * dy < 1.0 {
                let shade = (20.0 * dy) as i32;
                Rgb([
                    (205 - shade) as u8,
                    (150 - shade) as u8,
                    (120 - shade) as u8,
                ])
            } else if y > 340 && (200..440).contains(&x) {
                Rgb([170, 40, 50])
            } else {
                Rgb([110, 125, 150])
            }
        });
        let frame = noisy(&frame, 4.0, 11);
        assert!(looks_colour(&frame), "{}", colourfulness(&frame));
    }

    #[test]
    fn a_face_in_a_neutral_room_is_still_colour() {
        // Only the face and the shirt carry colour (about 15 % of the frame).
        let mut frame = grey_scene();
        for y in 0..480 {
            for x in 0..640 {
                let (dx, dy) = ((x as f32 - 320.0) / 90.0, (y as f32 - 220.0) / 120.0);
                if dx * dx + dy * dy < 1.0 {
                    frame.put_pixel(x, y, Rgb([200, 145, 115]));
                } else if y > 350 && (230..410).contains(&x) {
                    frame.put_pixel(x, y, Rgb([60, 80, 160]));
                }
            }
        }
        assert!(looks_colour(&frame), "{}", colourfulness(&frame));
    }

    #[test]
    fn frames_without_usable_points_score_zero() {
        assert_eq!(colourfulness(&RgbImage::new(0, 0)), 0.0);
        assert_eq!(colourfulness(&RgbImage::new(1, 1)), 0.0);
        let black = RgbImage::from_pixel(640, 480, Rgb([10, 0, 20]));
        assert_eq!(colourfulness(&black), 0.0, "too dark to judge");
        let blown = RgbImage::from_pixel(640, 480, Rgb([255, 250, 255]));
        assert_eq!(colourfulness(&blown), 0.0, "clipped everywhere");
        assert!(!looks_colour(&black));
    }

    #[test]
    fn small_frames_are_measured_too() {
        let colour = RgbImage::from_fn(50, 40, |x, _| {
            if x < 25 {
                Rgb([200, 40, 40])
            } else {
                Rgb([40, 60, 200])
            }
        });
        assert!(looks_colour(&colour), "{}", colourfulness(&colour));
    }
}
