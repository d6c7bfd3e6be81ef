//! Replaying a directory of JPEG/PNG files as if they came from a camera (demo and tests).
//!
//! Files are played in file-name order (name them `0001.jpg`, `0002.jpg`, ...). With an fps
//! the replay is paced like a camera: frame *i* is due *i / fps* seconds after the first call.
//! Unlike a camera it never drops frames: when the loop falls behind, late frames are handed
//! out immediately, so every file is seen exactly once per pass and runs are reproducible.
//! Without an fps, frames are handed out as fast as they are asked for.
//!
//! Every image is fitted to the configured frame size (scaled to fit, centred on grey), so a
//! replay exercises exactly what a camera at that size would. A file declaring more than
//! twice the frame's longer side in either direction (1280 px at 640×480; either direction,
//! as replayed photos may be portrait) is refused before it is decoded, like any
//! undecodable file: reported once as [`CameraError::ReplayFrame`], then skipped.
//!
//! When the last file has been played and the replay does not loop, `next_frame` behaves like
//! a stalled camera: it waits out the timeout and returns `Ok(None)`, so the service keeps
//! ticking (and re-locks on time); [`FrameSource::finished`] then reports `true`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use image::{imageops, Rgb, RgbImage};
use recognition::photo::DecodeLimits;

use super::{CameraError, Frame, FrameSource};

/// A directory of images played back as frames.
#[derive(Debug)]
pub struct ReplayDir {
    files: Vec<PathBuf>,
    fps: Option<f64>,
    looping: bool,
    /// Frame size every image is fitted to; `None` keeps the files' own sizes.
    size: Option<(u32, u32)>,
    /// How large a file may be before it is decoded.
    limits: DecodeLimits,
    /// Frames handed out so far (across loops); also the next frame's sequence number.
    delivered: u64,
    /// When the first frame was asked for: the pacing's time origin.
    start: Option<Instant>,
}

impl ReplayDir {
    /// Lists the `.jpg`, `.jpeg` and `.png` files of `dir` (case-insensitive), in name order.
    /// `fps` = `None` replays as fast as frames are asked for; `size` fits every image to
    /// that frame size.
    pub fn open(
        dir: &Path,
        fps: Option<f64>,
        looping: bool,
        size: Option<(u32, u32)>,
    ) -> Result<ReplayDir, CameraError> {
        let fail = |reason: String| CameraError::ReplayDir {
            dir: dir.to_owned(),
            reason,
        };
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(|e| fail(e.to_string()))?
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter(|p| p.is_file() && is_image(p))
            .collect();
        if files.is_empty() {
            return Err(fail("it holds no .jpg, .jpeg or .png files".into()));
        }
        files.sort();
        let limits = match size {
            Some((w, h)) => DecodeLimits::frames(w.max(h), w.max(h)),
            None => DecodeLimits::default(),
        };
        Ok(ReplayDir {
            files,
            fps: fps.filter(|f| *f > 0.0),
            looping,
            size,
            limits,
            delivered: 0,
            start: None,
        })
    }

    /// The files in replay order.
    pub fn files(&self) -> &[PathBuf] {
        &self.files
    }

    fn due(&self, start: Instant) -> Instant {
        match self.fps {
            Some(fps) => start + Duration::from_secs_f64(self.delivered as f64 / fps),
            None => start,
        }
    }
}

/// Scales `image` to fit `width`×`height` and centres it on a mid-grey frame.
pub fn fit(image: &RgbImage, width: u32, height: u32) -> RgbImage {
    if image.dimensions() == (width, height) {
        return image.clone();
    }
    let scale = (f64::from(width) / f64::from(image.width()))
        .min(f64::from(height) / f64::from(image.height()));
    let w = ((f64::from(image.width()) * scale).round() as u32).clamp(1, width);
    let h = ((f64::from(image.height()) * scale).round() as u32).clamp(1, height);
    let scaled = imageops::resize(image, w, h, imageops::FilterType::Triangle);
    let mut frame = RgbImage::from_pixel(width, height, Rgb([128, 128, 128]));
    imageops::overlay(
        &mut frame,
        &scaled,
        i64::from((width - w) / 2),
        i64::from((height - h) / 2),
    );
    frame
}

fn is_image(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| ["jpg", "jpeg", "png"].contains(&e.to_ascii_lowercase().as_str()))
}

impl FrameSource for ReplayDir {
    fn next_frame(&mut self, timeout: Duration) -> Result<Option<Frame>, CameraError> {
        let now = Instant::now();
        if self.finished() {
            std::thread::sleep(timeout);
            return Ok(None);
        }
        let start = *self.start.get_or_insert(now);
        let due = self.due(start);
        if due > now + timeout {
            std::thread::sleep(timeout);
            return Ok(None);
        }
        std::thread::sleep(due.saturating_duration_since(now));
        let path = &self.files[(self.delivered % self.files.len() as u64) as usize];
        let sequence = self.delivered;
        // Advance first: an undecodable file is reported once, then skipped.
        self.delivered += 1;
        let mut image = recognition::photo::load_rgb_limited(path, &self.limits).map_err(|e| {
            CameraError::ReplayFrame {
                reason: e.to_string(),
            }
        })?;
        if let Some((w, h)) = self.size {
            image = fit(&image, w, h);
        }
        Ok(Some(Frame {
            image,
            captured: Instant::now(),
            sequence,
        }))
    }

    fn finished(&self) -> bool {
        !self.looping && self.delivered >= self.files.len() as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A directory with images whose red channel is their index, plus distractors.
    fn replay_dir(n: u8) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for i in (0..n).rev() {
            let ext = if i % 2 == 0 { "png" } else { "JPG" };
            RgbImage::from_pixel(8, 6, Rgb([i * 50, 0, 0]))
                .save_with_format(
                    dir.path().join(format!("{i:04}.{ext}")),
                    if i % 2 == 0 {
                        image::ImageFormat::Png
                    } else {
                        image::ImageFormat::Jpeg
                    },
                )
                .unwrap();
        }
        std::fs::write(dir.path().join("notes.txt"), "not a frame").unwrap();
        std::fs::create_dir(dir.path().join("sub.png")).unwrap();
        dir
    }

    fn red(frame: &Frame) -> u8 {
        frame.image.get_pixel(4, 3).0[0]
    }

    #[test]
    fn replayed_images_are_fitted_to_the_frame_size() {
        let image = RgbImage::from_pixel(100, 200, Rgb([255, 0, 0]));
        let frame = fit(&image, 640, 480);
        assert_eq!(frame.dimensions(), (640, 480));
        assert_eq!(*frame.get_pixel(320, 240), Rgb([255, 0, 0]));
        assert_eq!(*frame.get_pixel(10, 240), Rgb([128, 128, 128]));
    }

    #[test]
    fn replays_images_in_name_order_then_reports_the_end() {
        let dir = replay_dir(3);
        let mut source = ReplayDir::open(dir.path(), None, false, None).unwrap();
        assert_eq!(source.files().len(), 3);
        let mut seen = Vec::new();
        while let Some(frame) = source.next_frame(Duration::from_millis(10)).unwrap() {
            seen.push((frame.sequence, (red(&frame) + 25) / 50));
        }
        assert_eq!(seen, [(0, 0), (1, 1), (2, 2)]);
        assert!(source.finished());
        let t = Instant::now();
        assert!(source
            .next_frame(Duration::from_millis(30))
            .unwrap()
            .is_none());
        assert!(
            t.elapsed() >= Duration::from_millis(30),
            "an ended replay waits like a stalled camera"
        );
    }

    #[test]
    fn looping_replay_starts_over() {
        let dir = replay_dir(2);
        let mut source = ReplayDir::open(dir.path(), None, true, None).unwrap();
        let sequences: Vec<u64> = (0..5)
            .map(|_| source.next_frame(Duration::ZERO).unwrap().unwrap().sequence)
            .collect();
        assert_eq!(sequences, [0, 1, 2, 3, 4]);
        assert!(!source.finished());
    }

    #[test]
    fn paced_replay_keeps_the_frame_rate() {
        let dir = replay_dir(4);
        let mut source = ReplayDir::open(dir.path(), Some(50.0), false, None).unwrap();
        let t = Instant::now();
        for _ in 0..4 {
            source.next_frame(Duration::from_secs(1)).unwrap().unwrap();
        }
        // Frames due at 0, 20, 40 and 60 ms.
        let elapsed = t.elapsed();
        assert!(elapsed >= Duration::from_millis(60), "{elapsed:?}");
        assert!(elapsed < Duration::from_millis(500), "{elapsed:?}");
    }

    #[test]
    fn paced_replay_times_out_before_a_frame_is_due() {
        let dir = replay_dir(2);
        let mut source = ReplayDir::open(dir.path(), Some(2.0), false, None).unwrap();
        assert!(source
            .next_frame(Duration::from_millis(10))
            .unwrap()
            .is_some());
        // The next frame is due 500 ms after the first.
        assert!(source
            .next_frame(Duration::from_millis(10))
            .unwrap()
            .is_none());
    }

    #[test]
    fn empty_or_missing_directory_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let err = ReplayDir::open(dir.path(), None, false, None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("no .jpg"), "{err}");
        let err = ReplayDir::open(&dir.path().join("missing"), None, false, None).unwrap_err();
        assert!(matches!(err, CameraError::ReplayDir { .. }), "{err}");
    }

    #[test]
    fn an_oversize_file_is_refused_before_decoding_then_skipped() {
        let dir = replay_dir(2);
        // A real PNG of 130×40: more than twice the 64×48 frame's longer side.
        RgbImage::from_pixel(130, 40, Rgb([9, 9, 9]))
            .save(dir.path().join("0000.png"))
            .unwrap();
        let mut source = ReplayDir::open(dir.path(), None, false, Some((64, 48))).unwrap();
        let err = source.next_frame(Duration::ZERO).unwrap_err();
        assert!(matches!(err, CameraError::ReplayFrame { .. }), "{err}");
        let text = err.to_string();
        assert!(text.contains("declares 130x40 pixels"), "{text}");
        assert!(text.contains("0000.png"), "{text}");
        let frame = source.next_frame(Duration::ZERO).unwrap().unwrap();
        assert_eq!((frame.sequence, frame.image.dimensions()), (1, (64, 48)));
    }

    #[test]
    fn undecodable_file_is_reported_then_skipped() {
        let dir = replay_dir(2);
        std::fs::write(dir.path().join("0000.jpg"), b"truncated").unwrap();
        let mut source = ReplayDir::open(dir.path(), None, false, None).unwrap();
        let err = source.next_frame(Duration::ZERO).unwrap_err().to_string();
        assert!(err.contains("0000.jpg"), "{err}");
        let frame = source.next_frame(Duration::ZERO).unwrap().unwrap();
        assert_eq!(frame.sequence, 1);
    }
}
