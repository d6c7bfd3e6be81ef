//! Where frames come from: the [`FrameSource`] seam, the source-agnostic layer (rotation,
//! dark-frame check) and [`open`], which builds the configured source.

mod files;
pub mod ir;
mod pipe;
#[cfg(feature = "v4l2")]
mod v4l2;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use image::RgbImage;

use crate::config::{CameraSettings, CameraSource, Rotation};
pub use files::{fit, ReplayDir};
pub use pipe::{JpegSplitter, MjpegPipe};
#[cfg(feature = "v4l2")]
pub use v4l2::{yuyv_to_rgb, V4l2Camera};

/// One captured frame, owned by the caller.
#[derive(Debug, Clone)]
pub struct Frame {
    pub image: RgbImage,
    /// When the frame was taken off the device (monotonic).
    pub captured: Instant,
    /// Counts frames handed out by this source, from 0.
    pub sequence: u64,
}

/// A source of frames: a camera, an MJPEG stream, or a folder replayed for tests and the demo.
pub trait FrameSource {
    /// Waits up to `timeout` for the next frame.
    ///
    /// `Ok(None)` means no frame arrived in time (a stalled camera, or a replay that has
    /// ended): the caller should carry on — re-lock on time, ping the watchdog — and call
    /// again. An `Err` means the source is broken and must be reopened.
    fn next_frame(&mut self, timeout: Duration) -> Result<Option<Frame>, CameraError>;

    /// Whether the source will never deliver another frame (a replay that has ended and
    /// does not loop). Cameras never finish.
    fn finished(&self) -> bool {
        false
    }
}

impl<S: FrameSource + ?Sized> FrameSource for Box<S> {
    fn next_frame(&mut self, timeout: Duration) -> Result<Option<Frame>, CameraError> {
        (**self).next_frame(timeout)
    }

    fn finished(&self) -> bool {
        (**self).finished()
    }
}

/// Camera failures, each with what the operator can do about it.
#[derive(Debug, thiserror::Error)]
pub enum CameraError {
    /// Nothing at the configured path: unplugged, or the wrong name.
    #[error(
        "no camera at {device} (check `ls /dev/v4l/by-id/` and set camera.device to the \
         camera's stable name)"
    )]
    NotFound { device: PathBuf },
    /// Another process has the camera open and streaming.
    #[error(
        "camera {device} busy (another program uses it: `fuser {}`; stop it, or another \
         lock-daemon instance)",
        device.display()
    )]
    Busy { device: PathBuf },
    /// The service user may not open the device.
    #[error(
        "permission denied on camera {device}: add the service user to the `video` group \
         (`usermod -aG video facelock`) and check the unit's DeviceAllow"
    )]
    PermissionDenied { device: PathBuf },
    /// The device vanished while streaming (USB cable, power).
    #[error("camera {device} disconnected (check the cable and `dmesg`); it will be reopened")]
    Disconnected { device: PathBuf },
    /// The device cannot deliver the configured format.
    #[error("camera {device} cannot deliver the configured format: {reason}")]
    Format { device: PathBuf, reason: String },
    /// Any other device error.
    #[error("camera {device}: {operation} failed: {source}")]
    Io {
        device: PathBuf,
        operation: &'static str,
        source: std::io::Error,
    },
    /// The configured MJPEG FIFO does not exist.
    #[error(
        "no camera stream at {path}: start the program that writes it (`systemctl start \
         facelock-camera`, which runs rpicam-vid) or fix camera.mjpeg_pipe"
    )]
    PipeMissing { path: PathBuf },
    /// The MJPEG stream cannot be opened or read, or it ended (the writer exited).
    #[error("camera stream {name}: {reason}")]
    Pipe { name: String, reason: String },
    /// The replay directory cannot be listed or holds no images.
    #[error("cannot replay {dir}: {reason}")]
    ReplayDir { dir: PathBuf, reason: String },
    /// A replayed image cannot be decoded; the replay moves on to the next file.
    #[error("cannot replay frame: {reason}")]
    ReplayFrame { reason: String },
}

/// Opens the configured source, with the configured rotation applied to every frame.
pub fn open(settings: &CameraSettings) -> Result<Box<dyn FrameSource>, CameraError> {
    let source: Box<dyn FrameSource> = match &settings.source {
        #[cfg(feature = "v4l2")]
        CameraSource::V4l2 { device } => Box::new(V4l2Camera::open(
            device,
            settings.width,
            settings.height,
            settings.fps,
            settings.pixel_format,
        )?),
        #[cfg(not(feature = "v4l2"))]
        CameraSource::V4l2 { device } => {
            return Err(CameraError::Format {
                device: device.clone(),
                reason: "this lock-daemon was built without V4L2 support (`cargo build \
                         --no-default-features`); build it with the default features \
                         (needs libclang-dev), or use camera.mjpeg_pipe or camera.replay_dir"
                    .into(),
            })
        }
        CameraSource::MjpegPipe { input } => Box::new(MjpegPipe::open(
            input,
            Some((settings.width, settings.height)),
        )?),
        CameraSource::Replay { dir, fps, looping } => Box::new(ReplayDir::open(
            dir,
            *fps,
            *looping,
            Some((settings.width, settings.height)),
        )?),
    };
    Ok(match settings.rotation {
        Rotation::None => source,
        rotation => Box::new(Rotated {
            inner: source,
            rotation,
        }),
    })
}

/// The frame size after rotation (width and height swap at 90° and 270°).
pub fn rotated_size(settings: &CameraSettings) -> (u32, u32) {
    match settings.rotation {
        Rotation::Cw90 | Rotation::Cw270 => (settings.height, settings.width),
        Rotation::None | Rotation::Cw180 => (settings.width, settings.height),
    }
}

/// The time between two frames the source delivers: `1 / fps` for a camera or a
/// paced replay; `None` for a replay as fast as possible.
pub fn frame_interval(settings: &CameraSettings) -> Option<Duration> {
    let fps = match &settings.source {
        CameraSource::Replay { fps, .. } => (*fps)?,
        _ => f64::from(settings.fps),
    };
    (fps > 0.0).then(|| Duration::from_secs_f64(1.0 / fps))
}

/// Wraps a source and rotates its frames clockwise.
#[derive(Debug)]
pub struct Rotated<S> {
    pub inner: S,
    pub rotation: Rotation,
}

impl<S: FrameSource> FrameSource for Rotated<S> {
    fn next_frame(&mut self, timeout: Duration) -> Result<Option<Frame>, CameraError> {
        Ok(self.inner.next_frame(timeout)?.map(|frame| Frame {
            image: rotate(&frame.image, self.rotation),
            ..frame
        }))
    }

    fn finished(&self) -> bool {
        self.inner.finished()
    }
}

impl std::fmt::Debug for dyn FrameSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("dyn FrameSource")
    }
}

/// Rotates an image clockwise by the given right angle.
pub fn rotate(image: &RgbImage, rotation: Rotation) -> RgbImage {
    use image::imageops;
    match rotation {
        Rotation::None => image.clone(),
        Rotation::Cw90 => imageops::rotate90(image),
        Rotation::Cw180 => imageops::rotate180(image),
        Rotation::Cw270 => imageops::rotate270(image),
    }
}

/// Mean luma (BT.601, 0–255) over a grid of about 64×48 sample points: cheap enough to run
/// on every frame before any inference.
pub fn mean_luma(image: &RgbImage) -> f32 {
    let (w, h) = image.dimensions();
    if w == 0 || h == 0 {
        return 0.0;
    }
    let (step_x, step_y) = ((w / 64).max(1), (h / 48).max(1));
    let (mut sum, mut n) = (0u64, 0u64);
    for y in (step_y / 2..h).step_by(step_y as usize) {
        for x in (step_x / 2..w).step_by(step_x as usize) {
            let [r, g, b] = image.get_pixel(x, y).0;
            sum += (77 * u64::from(r) + 150 * u64::from(g) + 29 * u64::from(b)) >> 8;
            n += 1;
        }
    }
    sum as f32 / n as f32
}

/// Whether a frame is too dark to use (mean luma below `threshold`; 0 = never dark).
pub fn is_dark(image: &RgbImage, threshold: u8) -> bool {
    threshold > 0 && mean_luma(image) < f32::from(threshold)
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::Rgb;

    #[test]
    fn dark_frames_are_detected_by_mean_luma() {
        let black = RgbImage::from_pixel(640, 480, Rgb([5, 5, 5]));
        let grey = RgbImage::from_pixel(640, 480, Rgb([120, 120, 120]));
        assert!(is_dark(&black, 20));
        assert!(!is_dark(&grey, 20));
        assert!(!is_dark(&black, 0), "threshold 0 disables the check");
        assert!(
            (mean_luma(&grey) - 119.0).abs() < 1.5,
            "{}",
            mean_luma(&grey)
        );
        // Half bright, half black: the subsampling sees both halves.
        let mut half = black.clone();
        for y in 0..240 {
            for x in 0..640 {
                half.put_pixel(x, y, Rgb([200, 200, 200]));
            }
        }
        let m = mean_luma(&half);
        assert!((95.0..110.0).contains(&m), "{m}");
        assert!(!is_dark(&RgbImage::new(1, 1), 0));
        assert!(is_dark(&RgbImage::new(0, 0), 1));
    }

    #[test]
    fn rotation_turns_frames_clockwise() {
        let mut image = RgbImage::new(4, 2);
        image.put_pixel(0, 0, Rgb([255, 0, 0])); // top-left marker
        let cw90 = rotate(&image, Rotation::Cw90);
        assert_eq!(cw90.dimensions(), (2, 4));
        assert_eq!(
            *cw90.get_pixel(1, 0),
            Rgb([255, 0, 0]),
            "top-left moves to top-right"
        );
        let cw180 = rotate(&image, Rotation::Cw180);
        assert_eq!(*cw180.get_pixel(3, 1), Rgb([255, 0, 0]));
        let cw270 = rotate(&image, Rotation::Cw270);
        assert_eq!(
            *cw270.get_pixel(0, 3),
            Rgb([255, 0, 0]),
            "top-left moves to bottom-left"
        );
    }

    #[test]
    fn rotated_source_rotates_every_frame() {
        struct One(Option<Frame>);
        impl FrameSource for One {
            fn next_frame(&mut self, _: Duration) -> Result<Option<Frame>, CameraError> {
                Ok(self.0.take())
            }
        }
        let frame = Frame {
            image: RgbImage::new(640, 480),
            captured: Instant::now(),
            sequence: 7,
        };
        let mut source = Rotated {
            inner: One(Some(frame)),
            rotation: Rotation::Cw270,
        };
        let out = source.next_frame(Duration::ZERO).unwrap().unwrap();
        assert_eq!((out.image.dimensions(), out.sequence), ((480, 640), 7));
        assert!(source.next_frame(Duration::ZERO).unwrap().is_none());
    }
}
