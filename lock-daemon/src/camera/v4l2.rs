//! V4L2 capture (USB webcams, the Pi camera through its V4L2 driver): the only module that
//! imports `v4l`.
//!
//! # Newest frame, without a thread
//!
//! The device gets two memory-mapped buffers. While the service runs inference (hundreds of
//! milliseconds on a Pi) the driver fills whatever buffer is queued and then drops frames, so
//! a buffer waiting in the queue is stale by the time the loop asks again. Each
//! [`next_frame`](FrameSource::next_frame) call therefore first *drains*: every buffer that is
//! already filled is dequeued and handed straight back, without decoding. It then waits
//! (`poll` on the device, bounded by the timeout) for the next buffer to complete — a frame
//! whose capture finished after the call began. That costs at most one frame interval
//! (67 ms at 15 fps) and needs no capture thread, no locking and no shutdown protocol, and
//! a stalled camera simply yields `Ok(None)` when the timeout passes.
//!
//! The `v4l` crate's own blocking `next()` is only called once `poll` has reported a
//! completed buffer, so it never blocks; its built-in timeout is not used because a timeout
//! inside `next()` leaves its queue bookkeeping inconsistent (the next call would queue an
//! already queued buffer).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use image::RgbImage;
use v4l::buffer::{Flags as BufferFlags, Type};
use v4l::device::Handle;
use v4l::io::mmap::Stream;
use v4l::io::traits::{CaptureStream, Stream as _};
use v4l::video::capture::Parameters;
use v4l::video::Capture;
use v4l::{Device, Format, FourCC};

use super::{CameraError, Frame, FrameSource};
use crate::config::PixelFormat;

/// `POLLIN` from `<poll.h>` (the same value on every Linux architecture).
const POLLIN: i16 = 0x001;
const ENXIO: i32 = 6;
const ENODEV: i32 = 19;

/// Buffers asked of the driver: one being filled, one held by us.
const BUFFERS: u32 = 2;

const MJPG: &[u8; 4] = b"MJPG";
const YUYV: &[u8; 4] = b"YUYV";

/// How a captured buffer is turned into RGB.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Encoding {
    Mjpeg,
    /// Packed YUV 4:2:2 with this many bytes per line.
    Yuyv {
        stride: usize,
    },
}

/// An open, streaming V4L2 capture device.
pub struct V4l2Camera {
    device: PathBuf,
    handle: Arc<Handle>,
    // The buffers live as long as the stream; 'static is the `v4l` crate's way of saying
    // "not tied to the Device value" (the stream holds its own handle to the fd).
    stream: GuardedStream,
    encoding: Encoding,
    width: u32,
    height: u32,
    sequence: u64,
}

impl std::fmt::Debug for V4l2Camera {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("V4l2Camera")
            .field("device", &self.device)
            .field("encoding", &self.encoding)
            .field("size", &(self.width, self.height))
            .finish()
    }
}

/// The `v4l` stream, stopped on drop without the crate's panic. `v4l`'s own
/// `Drop` panics when VIDIOC_STREAMOFF fails with anything but ENODEV; on a
/// flaky camera that would turn a reopen into a daemon crash (the door stays
/// locked, but the service restarts). Here the failure is logged instead.
struct GuardedStream(Option<Stream<'static>>);

impl std::ops::Deref for GuardedStream {
    type Target = Stream<'static>;
    fn deref(&self) -> &Self::Target {
        self.0.as_ref().expect("the stream is only taken on drop")
    }
}

impl std::ops::DerefMut for GuardedStream {
    fn deref_mut(&mut self) -> &mut Self::Target {
        self.0.as_mut().expect("the stream is only taken on drop")
    }
}

impl Drop for GuardedStream {
    fn drop(&mut self) {
        let Some(mut stream) = self.0.take() else {
            return;
        };
        if let Err(e) = stream.stop() {
            log::warn!("camera: stopping the stream failed ({e}); releasing the device anyway");
        }
        // `v4l` stops the stream again on drop and panics if that fails.
        if std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || drop(stream))).is_err() {
            log::warn!("camera: the stream's buffers were released after a failed stop");
        }
    }
}

/// Maps an OS error to the operator-facing camera error.
fn map_io(device: &Path, operation: &'static str, e: std::io::Error) -> CameraError {
    let device = device.to_owned();
    match (e.kind(), e.raw_os_error()) {
        (std::io::ErrorKind::NotFound, _) | (_, Some(ENXIO)) => CameraError::NotFound { device },
        (_, Some(ENODEV)) if operation == "capture" => CameraError::Disconnected { device },
        (_, Some(ENODEV)) => CameraError::NotFound { device },
        (std::io::ErrorKind::PermissionDenied, _) => CameraError::PermissionDenied { device },
        (std::io::ErrorKind::ResourceBusy, _) => CameraError::Busy { device },
        _ => CameraError::Io {
            device,
            operation,
            source: e,
        },
    }
}

impl V4l2Camera {
    /// Opens `device`, negotiates `width`×`height` in the preferred pixel format (falling
    /// back to the other one), asks for `fps` and starts streaming.
    pub fn open(
        device: &Path,
        width: u32,
        height: u32,
        fps: u32,
        preferred: PixelFormat,
    ) -> Result<V4l2Camera, CameraError> {
        let io = |operation| move |e| map_io(device, operation, e);
        let format_error = |reason: String| CameraError::Format {
            device: device.to_owned(),
            reason,
        };
        let dev = Device::with_path(device).map_err(io("open"))?;
        let offered: Vec<FourCC> = dev
            .enum_formats()
            .map_err(io("listing formats"))?
            .into_iter()
            .map(|d| d.fourcc)
            .collect();
        let order: [&[u8; 4]; 2] = match preferred {
            PixelFormat::Mjpeg => [MJPG, YUYV],
            PixelFormat::Yuyv => [YUYV, MJPG],
        };
        let candidates: Vec<FourCC> = order
            .iter()
            .map(|code| FourCC::new(code))
            .filter(|code| offered.contains(code))
            .collect();
        if candidates.is_empty() {
            return Err(format_error(format!(
                "it offers neither MJPEG nor YUYV (it offers: {}); if this is a camera's \
                 second /dev/video node (metadata), use the first one (`-video-index0` in \
                 /dev/v4l/by-id/)",
                fourccs(&offered)
            )));
        }
        let mut negotiated = None;
        for fourcc in &candidates {
            let got = dev
                .set_format(&Format::new(width, height, *fourcc))
                .map_err(io("setting the format"))?;
            if got.fourcc == *fourcc && got.width == width && got.height == height {
                negotiated = Some(got);
                break;
            }
        }
        let Some(format) = negotiated else {
            return Err(format_error(format!(
                "{width}x{height} is not offered in {}; sizes offered: {}; set camera.width \
                 and camera.height to one of them",
                fourccs(&candidates),
                frame_sizes(&dev, &candidates)
            )));
        };
        if let Err(e) = dev.set_params(&Parameters::with_fps(fps)) {
            log::warn!(
                "camera {}: cannot set {fps} fps ({e}); using the camera's rate",
                device.display()
            );
        }
        let encoding = if format.fourcc == FourCC::new(MJPG) {
            Encoding::Mjpeg
        } else {
            Encoding::Yuyv {
                stride: (format.stride as usize).max(2 * width as usize),
            }
        };
        let mut stream: Stream<'static> = Stream::with_buffers(&dev, Type::VideoCapture, BUFFERS)
            .map_err(io("allocating buffers"))?;
        // Queue every buffer but the first and start. The crate's `next()` queues "the
        // buffer last handed out" (index 0 at first) before dequeuing, so buffer 0 counts
        // as held by us and the crate's bookkeeping matches the driver's from the start.
        // Queuing past the last granted buffer fails (EINVAL), which ends the loop.
        let count = 1
            + (1..16)
                .take_while(|&i| CaptureStream::queue(&mut stream, i).is_ok())
                .count();
        if count < 2 {
            return Err(format_error(
                "the driver granted a single buffer; two are needed".into(),
            ));
        }
        stream.start().map_err(io("starting the stream"))?;
        log::info!(
            "camera {}: {width}x{height} {} at {fps} fps requested, {count} buffers",
            device.display(),
            fourccs(&[format.fourcc]),
        );
        Ok(V4l2Camera {
            device: device.to_owned(),
            handle: stream.handle(),
            stream: GuardedStream(Some(stream)),
            encoding,
            width,
            height,
            sequence: 0,
        })
    }

    /// Waits up to `timeout` for a completed buffer.
    fn poll(&self, timeout: Duration) -> Result<bool, CameraError> {
        let ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
        match self.handle.poll(POLLIN, ms) {
            Ok(n) => Ok(n > 0),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => Ok(false),
            Err(e) => Err(map_io(&self.device, "capture", e)),
        }
    }
}

impl Encoding {
    /// Decodes one buffer, or `None` for a corrupt or short one.
    fn decode(self, bytes: &[u8], width: u32, height: u32) -> Option<RgbImage> {
        match self {
            // Checked against twice the negotiated size before decoding, like the pipe:
            // a broken or hostile device cannot make one frame cost a gigabyte.
            Encoding::Mjpeg => recognition::photo::decode_rgb_limited(
                bytes,
                &recognition::photo::DecodeLimits::frames(width, height),
            )
            .map_err(|e| log::warn!("camera: skipping a corrupt or oversize MJPEG frame: {e}"))
            .ok(),
            Encoding::Yuyv { stride } => yuyv_to_rgb(bytes, width, height, stride),
        }
    }
}

impl FrameSource for V4l2Camera {
    fn next_frame(&mut self, timeout: Duration) -> Result<Option<Frame>, CameraError> {
        let deadline = Instant::now() + timeout;
        // Drain: hand back every buffer filled while we were busy (bounded, in case the
        // camera is faster than the loop below).
        for _ in 0..=BUFFERS {
            if !self.poll(Duration::ZERO)? {
                break;
            }
            self.stream
                .next()
                .map_err(|e| map_io(&self.device, "capture", e))?;
        }
        // Wait for a frame completed after this call began; skip corrupt ones.
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if !self.poll(left)? {
                return Ok(None);
            }
            let (encoding, width, height) = (self.encoding, self.width, self.height);
            let (bytes, meta) = self
                .stream
                .next()
                .map_err(|e| map_io(&self.device, "capture", e))?;
            let captured = Instant::now();
            let used = (meta.bytesused as usize).min(bytes.len());
            let image = if meta.flags.contains(BufferFlags::ERROR) || used == 0 {
                None
            } else {
                encoding.decode(&bytes[..used], width, height)
            };
            if let Some(image) = image {
                self.sequence += 1;
                return Ok(Some(Frame {
                    image,
                    captured,
                    sequence: self.sequence - 1,
                }));
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
        }
    }
}

/// Converts packed YUYV (YUV 4:2:2, BT.601 limited range) to RGB. `None` when the buffer is
/// shorter than `height` lines of `stride` bytes.
pub fn yuyv_to_rgb(bytes: &[u8], width: u32, height: u32, stride: usize) -> Option<RgbImage> {
    let (w, h) = (width as usize, height as usize);
    if w % 2 != 0 || stride < 2 * w || bytes.len() < stride * (h - 1) + 2 * w {
        return None;
    }
    let mut rgb = Vec::with_capacity(w * h * 3);
    for line in bytes.chunks(stride).take(h) {
        for quad in line[..2 * w].chunks_exact(4) {
            let (y0, u, y1, v) = (quad[0], quad[1], quad[2], quad[3]);
            rgb.extend_from_slice(&yuv_pixel(y0, u, v));
            rgb.extend_from_slice(&yuv_pixel(y1, u, v));
        }
    }
    RgbImage::from_raw(width, height, rgb)
}

/// One BT.601 limited-range YUV pixel to RGB (integer arithmetic).
fn yuv_pixel(y: u8, u: u8, v: u8) -> [u8; 3] {
    let c = 298 * (i32::from(y) - 16);
    let d = i32::from(u) - 128;
    let e = i32::from(v) - 128;
    let clamp = |x: i32| ((x + 128) >> 8).clamp(0, 255) as u8;
    [
        clamp(c + 409 * e),
        clamp(c - 100 * d - 208 * e),
        clamp(c + 516 * d),
    ]
}

fn fourccs(codes: &[FourCC]) -> String {
    if codes.is_empty() {
        return "nothing".into();
    }
    codes
        .iter()
        .map(|c| c.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

fn frame_sizes(dev: &Device, codes: &[FourCC]) -> String {
    let mut sizes = Vec::new();
    for code in codes {
        for size in dev.enum_framesizes(*code).unwrap_or_default() {
            sizes.push(format!("{code} {size}"));
        }
    }
    if sizes.is_empty() {
        "unknown".into()
    } else {
        sizes.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yuyv_converts_black_white_and_colours() {
        // Two pixels per quad: black+white, then a red pixel pair (BT.601: Y=81 U=90 V=240).
        let bytes = [16, 128, 235, 128, 81, 90, 81, 240];
        let image = yuyv_to_rgb(&bytes, 4, 1, 8).unwrap();
        assert_eq!(image.get_pixel(0, 0).0, [0, 0, 0]);
        assert_eq!(image.get_pixel(1, 0).0, [255, 255, 255]);
        let [r, g, b] = image.get_pixel(2, 0).0;
        assert!(r > 250 && g < 5 && b < 5, "{:?}", (r, g, b));
    }

    #[test]
    fn yuyv_honours_the_line_stride() {
        // 2x2 image, 8 bytes per line of which 4 carry pixels.
        let bytes = [
            235, 128, 235, 128, 0, 0, 0, 0, //
            16, 128, 16, 128, 0, 0, 0, 0,
        ];
        let image = yuyv_to_rgb(&bytes, 2, 2, 8).unwrap();
        assert_eq!(image.get_pixel(1, 0).0, [255, 255, 255]);
        assert_eq!(image.get_pixel(0, 1).0, [0, 0, 0]);
    }

    #[test]
    fn short_yuyv_buffer_is_refused() {
        assert!(yuyv_to_rgb(&[16, 128, 16], 2, 1, 4).is_none());
        assert!(yuyv_to_rgb(&[16; 8], 2, 2, 4).is_some());
        assert!(yuyv_to_rgb(&[16; 7], 2, 2, 4).is_none());
    }

    #[test]
    fn missing_device_says_where_to_look() {
        let err = V4l2Camera::open(
            Path::new("/dev/v4l/by-id/no-such-camera"),
            640,
            480,
            15,
            PixelFormat::Mjpeg,
        )
        .unwrap_err();
        assert!(matches!(err, CameraError::NotFound { .. }), "{err}");
        assert!(err.to_string().contains("ls /dev/v4l/by-id/"), "{err}");
    }

    #[test]
    fn os_errors_map_to_operator_messages() {
        let dev = Path::new("/dev/video0");
        let err = |code| map_io(dev, "open", std::io::Error::from_raw_os_error(code)).to_string();
        assert!(err(13).contains("`video` group"), "{}", err(13));
        assert!(err(16).contains("fuser /dev/video0"), "{}", err(16));
        assert!(err(2).contains("no camera at /dev/video0"), "{}", err(2));
        let unplugged = map_io(dev, "capture", std::io::Error::from_raw_os_error(ENODEV));
        assert!(
            matches!(unplugged, CameraError::Disconnected { .. }),
            "{unplugged}"
        );
        let other = map_io(dev, "open", std::io::Error::from_raw_os_error(5)).to_string();
        assert!(other.contains("open failed"), "{other}");
    }
}
