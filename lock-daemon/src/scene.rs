//! Idle frames: while nobody is in view and the picture does not change, the
//! networks need not run on every frame. Saves most of the CPU (and heat) of an
//! empty hallway; decisions are unaffected because only frames after a frame
//! with no face, looking the same as it, are skipped, and never for long.

use std::time::{Duration, Instant};

use image::RgbImage;

/// Side of the luma thumbnail grid compared between frames.
const GRID_W: u32 = 64;
const GRID_H: u32 = 48;

/// Decides which frames may skip recognition.
#[derive(Debug)]
pub struct IdleSkip {
    /// Mean absolute luma difference (0–255) below which two frames look the same.
    threshold: f32,
    /// A frame is always recognised at least this often.
    max_skip: Duration,
    /// The last recognised frame, when it showed no face: its thumbnail and time.
    empty: Option<(Vec<u8>, Instant)>,
}

impl IdleSkip {
    pub fn new(threshold: f32, max_skip: Duration) -> IdleSkip {
        IdleSkip {
            threshold,
            max_skip,
            empty: None,
        }
    }

    /// Whether `frame` may skip recognition. If it may not, call
    /// [`IdleSkip::recognised`] with the result.
    pub fn skip(&self, frame: &RgbImage, now: Instant) -> bool {
        if self.threshold <= 0.0 {
            return false;
        }
        match &self.empty {
            Some((thumb, at)) => {
                now.saturating_duration_since(*at) < self.max_skip
                    && mean_abs_diff(thumb, &thumbnail(frame)) < self.threshold
            }
            None => false,
        }
    }

    /// Records what recognition found in a frame that was not skipped.
    pub fn recognised(&mut self, frame: &RgbImage, faces: usize, now: Instant) {
        self.empty = (faces == 0 && self.threshold > 0.0).then(|| (thumbnail(frame), now));
    }
}

/// Luma sampled on a 64×48 grid.
fn thumbnail(image: &RgbImage) -> Vec<u8> {
    let (w, h) = image.dimensions();
    let mut out = Vec::with_capacity((GRID_W * GRID_H) as usize);
    for gy in 0..GRID_H {
        for gx in 0..GRID_W {
            let x = ((2 * gx + 1) * w / (2 * GRID_W)).min(w.saturating_sub(1));
            let y = ((2 * gy + 1) * h / (2 * GRID_H)).min(h.saturating_sub(1));
            let [r, g, b] = image.get_pixel(x, y).0;
            out.push(((77 * u32::from(r) + 150 * u32::from(g) + 29 * u32::from(b)) >> 8) as u8);
        }
    }
    out
}

fn mean_abs_diff(a: &[u8], b: &[u8]) -> f32 {
    let sum: u32 = a
        .iter()
        .zip(b)
        .map(|(x, y)| u32::from(x.abs_diff(*y)))
        .sum();
    sum as f32 / a.len().max(1) as f32
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::Rgb;

    fn frame(level: u8) -> RgbImage {
        RgbImage::from_pixel(640, 480, Rgb([level, level, level]))
    }

    #[test]
    fn an_unchanged_empty_scene_is_skipped() {
        let mut idle = IdleSkip::new(3.0, Duration::from_secs(1));
        let t = Instant::now();
        assert!(!idle.skip(&frame(100), t));
        idle.recognised(&frame(100), 0, t);
        assert!(idle.skip(&frame(101), t + Duration::from_millis(100)));
    }

    #[test]
    fn a_changed_scene_is_recognised() {
        let mut idle = IdleSkip::new(3.0, Duration::from_secs(1));
        let t = Instant::now();
        idle.recognised(&frame(100), 0, t);
        let mut someone = frame(100);
        for y in 100..400 {
            for x in 200..440 {
                someone.put_pixel(x, y, Rgb([200, 150, 120]));
            }
        }
        assert!(!idle.skip(&someone, t + Duration::from_millis(100)));
    }

    #[test]
    fn frames_after_a_face_are_never_skipped() {
        let mut idle = IdleSkip::new(3.0, Duration::from_secs(1));
        let t = Instant::now();
        idle.recognised(&frame(100), 1, t);
        assert!(!idle.skip(&frame(100), t + Duration::from_millis(100)));
    }

    #[test]
    fn a_frame_is_recognised_at_least_every_max_skip() {
        let mut idle = IdleSkip::new(3.0, Duration::from_secs(1));
        let t = Instant::now();
        idle.recognised(&frame(100), 0, t);
        assert!(!idle.skip(&frame(100), t + Duration::from_millis(1001)));
    }

    #[test]
    fn a_zero_threshold_turns_skipping_off() {
        let mut idle = IdleSkip::new(0.0, Duration::from_secs(1));
        let t = Instant::now();
        idle.recognised(&frame(100), 0, t);
        assert!(!idle.skip(&frame(100), t));
    }
}
