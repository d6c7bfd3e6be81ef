//! An MJPEG byte stream — JPEG images back to back — read from a FIFO, a pipe or standard
//! input. This is how Raspberry Pi CSI cameras behind libcamera (Camera Module 3, every
//! camera on a Pi 5) reach the daemon: their raw `/dev/video*` nodes deliver Bayer data, so
//! `rpicam-vid -t 0 -n --codec mjpeg --flush -o -` does the capture and the ISP work and
//! writes JPEGs into a FIFO (`systemd/facelock-camera.service`).
//!
//! # Newest frame
//!
//! A reader thread reads the stream as fast as it comes, splits it into images
//! ([`JpegSplitter`]) and keeps only the newest complete one; the writer never blocks on a
//! full pipe while the service runs inference. [`next_frame`](FrameSource::next_frame) takes
//! that image and decodes it, so frames that arrive while the loop is busy are dropped
//! without being decoded. It waits on a condition variable bounded by the timeout, so a
//! silent writer yields `Ok(None)` like a stalled camera.
//!
//! # Oversize frames
//!
//! A JPEG's frame header declares its size, and decoding allocates that many pixels: a
//! 2 KB frame can declare 65000×65000. Each image's declared size is read from its header
//! ([`recognition::photo::jpeg_size`]) before decoding; a frame more than twice the
//! configured width or height is skipped with a warning and counted
//! ([`MjpegPipe::oversize_frames`]). It is not a stream error: the camera is not reopened
//! for it.
//!
//! # Opening and the end of the stream
//!
//! Opening a FIFO for reading blocks until a writer opens the other end, so the reader
//! thread opens it; until then the source behaves like a stalled camera (door locked,
//! watchdog pinged). When the writer closes its end (it exited), the stream has ended:
//! `next_frame` returns an error and the service reopens the source after its backoff,
//! which waits for the next writer. A thread stuck in `open` or `read` when the source is
//! dropped stays parked until a writer comes or the process exits; it holds no frame.

use std::io::Read;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use image::RgbImage;
use recognition::photo::DecodeLimits;

use super::{fit, CameraError, Frame, FrameSource};
use crate::config::PipeInput;

/// Larger "frames" are treated as corrupt and dropped (a 4096×4096 JPEG at high quality is
/// well below this).
pub const MAX_FRAME_BYTES: usize = 32 << 20;

/// Bytes asked of the reader per `read` call.
const CHUNK: usize = 64 << 10;

/// After this many bytes without a single JPEG image, the stream is probably not MJPEG.
const NOT_MJPEG_AFTER: u64 = 4 << 20;

/// An MJPEG stream read by a background thread.
pub struct MjpegPipe {
    name: String,
    shared: Arc<Shared>,
    /// Frame size every image is fitted to (the configured camera size).
    size: Option<(u32, u32)>,
    /// How large a frame may be before it is decoded.
    limits: DecodeLimits,
    /// Frames skipped because they declared more pixels than `limits` allow.
    oversize: u64,
    sequence: u64,
    warned_size: bool,
}

impl std::fmt::Debug for MjpegPipe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MjpegPipe")
            .field("name", &self.name)
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

/// What the reader thread hands to `next_frame`.
#[derive(Default)]
struct Slot {
    /// The newest complete JPEG image not yet taken, and when it was completed.
    latest: Option<(Vec<u8>, Instant)>,
    /// Why the stream ended (set once; the thread has exited).
    ended: Option<String>,
}

struct Shared {
    slot: Mutex<Slot>,
    ready: Condvar,
    stop: AtomicBool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Slot> {
        self.slot.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn publish(&self, jpeg: Vec<u8>) {
        self.lock().latest = Some((jpeg, Instant::now()));
        self.ready.notify_all();
    }

    fn end(&self, reason: String) {
        self.lock().ended = Some(reason);
        self.ready.notify_all();
    }
}

impl MjpegPipe {
    /// Opens the configured input. A path must exist and be readable (checked here, so a
    /// wrong path fails at start with a clear message); the blocking `open` of a FIFO
    /// happens on the reader thread.
    pub fn open(input: &PipeInput, size: Option<(u32, u32)>) -> Result<MjpegPipe, CameraError> {
        match input {
            PipeInput::Stdin => Ok(MjpegPipe::from_reader(
                "standard input",
                std::io::stdin(),
                size,
            )),
            PipeInput::Path(path) => {
                check_path(path)?;
                let owned = path.clone();
                Ok(MjpegPipe::spawn(
                    path.display().to_string(),
                    size,
                    move || std::fs::File::open(&owned),
                ))
            }
        }
    }

    /// Reads frames from any byte stream (tests feed in-memory readers through this).
    pub fn from_reader<R: Read + Send + 'static>(
        name: &str,
        reader: R,
        size: Option<(u32, u32)>,
    ) -> MjpegPipe {
        MjpegPipe::spawn(name.to_owned(), size, move || Ok(reader))
    }

    fn spawn<R, F>(name: String, size: Option<(u32, u32)>, open: F) -> MjpegPipe
    where
        R: Read,
        F: FnOnce() -> std::io::Result<R> + Send + 'static,
    {
        let shared = Arc::new(Shared {
            slot: Mutex::new(Slot::default()),
            ready: Condvar::new(),
            stop: AtomicBool::new(false),
        });
        let thread_shared = Arc::clone(&shared);
        let thread_name = name.clone();
        let spawned = std::thread::Builder::new()
            .name("camera-pipe".into())
            .spawn(move || {
                let reason = match open() {
                    Ok(reader) => pump(reader, &thread_name, &thread_shared),
                    Err(e) => open_failure(&e),
                };
                thread_shared.end(reason);
            });
        if let Err(e) = spawned {
            shared.end(format!("cannot start the reader thread: {e}"));
        }
        log::info!("camera: reading an MJPEG stream from {name}");
        MjpegPipe {
            name,
            shared,
            size,
            limits: size.map_or_else(DecodeLimits::default, |(w, h)| DecodeLimits::frames(w, h)),
            oversize: 0,
            sequence: 0,
            warned_size: false,
        }
    }

    /// Frames skipped so far because their header declared more than twice the configured
    /// size.
    pub fn oversize_frames(&self) -> u64 {
        self.oversize
    }

    /// Decodes a frame unless its header declares more pixels than the limits allow.
    fn decode(&mut self, jpeg: &[u8]) -> Result<RgbImage, String> {
        if let Some((w, h)) = recognition::photo::jpeg_size(jpeg) {
            if let Err(reason) = self.limits.check(w, h) {
                self.oversize += 1;
                // The first one, then one line per 100: a broken writer must not flood the log.
                if self.oversize % 100 == 1 {
                    log::warn!(
                        "camera stream {}: skipping an oversize frame: it {reason} \
                         ({} such frames so far; set the writer's size to camera.width x \
                         camera.height)",
                        self.name,
                        self.oversize
                    );
                }
                return Err(String::new());
            }
        }
        recognition::photo::decode_rgb_limited(jpeg, &self.limits)
    }

    fn error(&self, reason: &str) -> CameraError {
        CameraError::Pipe {
            name: self.name.clone(),
            reason: reason.to_owned(),
        }
    }

    /// Fits a decoded image to the configured size (warning once when it differs).
    fn fitted(&mut self, image: RgbImage) -> RgbImage {
        match self.size {
            Some((w, h)) if image.dimensions() != (w, h) => {
                if !self.warned_size {
                    self.warned_size = true;
                    log::warn!(
                        "camera stream {}: frames are {}x{}, not camera.width x camera.height \
                         = {w}x{h}; they are scaled to fit (tell the writer the size, e.g. \
                         `rpicam-vid --width {w} --height {h}`)",
                        self.name,
                        image.width(),
                        image.height()
                    );
                }
                fit(&image, w, h)
            }
            _ => image,
        }
    }
}

/// Fails early when the FIFO is missing or unreadable.
fn check_path(path: &Path) -> Result<(), CameraError> {
    let fail = |reason: String| CameraError::Pipe {
        name: path.display().to_string(),
        reason,
    };
    match std::fs::metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(CameraError::PipeMissing {
                path: path.to_owned(),
            })
        }
        Err(e) => return Err(fail(open_failure(&e))),
        Ok(meta) if meta.is_dir() => return Err(fail("is a directory, not a FIFO".into())),
        Ok(_) => {}
    }
    rustix::fs::access(path, rustix::fs::Access::READ_OK)
        .map_err(|e| fail(open_failure(&std::io::Error::from(e))))
}

fn open_failure(e: &std::io::Error) -> String {
    if e.kind() == std::io::ErrorKind::PermissionDenied {
        "permission denied: the service user (facelock) must be able to read it; create the \
         FIFO owned by that user (facelock-camera.service does)"
            .into()
    } else {
        format!("cannot open: {e}")
    }
}

/// The reader thread: reads until the end of the stream, publishing the newest image.
/// Returns why it stopped.
fn pump(mut reader: impl Read, name: &str, shared: &Shared) -> String {
    let mut splitter = JpegSplitter::new(MAX_FRAME_BYTES);
    let mut chunk = vec![0u8; CHUNK];
    let (mut frames, mut read_total, mut warned) = (0u64, 0u64, false);
    loop {
        if shared.stop.load(Ordering::Relaxed) {
            return "closed".into();
        }
        let n = match reader.read(&mut chunk) {
            Ok(0) => {
                return "the stream ended (the program writing it, e.g. rpicam-vid, exited); \
                        it will be reopened"
                    .into()
            }
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return format!("read failed: {e}"),
        };
        read_total += n as u64;
        let mut newest = None;
        splitter.push(&chunk[..n], |jpeg| {
            frames += 1;
            // Several images in one chunk: only the last one is worth decoding.
            newest = Some(jpeg);
        });
        if let Some(jpeg) = newest {
            shared.publish(jpeg);
        }
        if frames == 0 && read_total >= NOT_MJPEG_AFTER && !warned {
            warned = true;
            log::warn!(
                "camera stream {name}: {read_total} bytes read and no JPEG image found; is the \
                 writer sending MJPEG (`rpicam-vid --codec mjpeg`)?"
            );
        }
    }
}

impl Drop for MjpegPipe {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
    }
}

impl FrameSource for MjpegPipe {
    fn next_frame(&mut self, timeout: Duration) -> Result<Option<Frame>, CameraError> {
        let deadline = Instant::now() + timeout;
        loop {
            let (jpeg, captured) = {
                let mut slot = self.shared.lock();
                loop {
                    if let Some(latest) = slot.latest.take() {
                        break latest;
                    }
                    if let Some(reason) = &slot.ended {
                        return Err(self.error(reason));
                    }
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Ok(None);
                    }
                    slot = self
                        .shared
                        .ready
                        .wait_timeout(slot, left)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0;
                }
            };
            match self.decode(&jpeg) {
                Ok(image) => {
                    let image = self.fitted(image);
                    self.sequence += 1;
                    return Ok(Some(Frame {
                        image,
                        captured,
                        sequence: self.sequence - 1,
                    }));
                }
                Err(e) => {
                    if !e.is_empty() {
                        log::warn!("camera stream {}: skipping a corrupt frame: {e}", self.name);
                    }
                    if Instant::now() >= deadline {
                        return Ok(None);
                    }
                }
            }
        }
    }
}

// Hand-written: decoders take whole images; no crate splits a live stream with a size cap.
/// Splits a byte stream of concatenated JPEG images into the images.
///
/// An image starts at SOI (`FF D8`). Up to the first SOS (start of scan) the marker
/// segments are skipped by their length fields, so an APP1/Exif segment that embeds a
/// thumbnail — a complete JPEG with its own SOI and EOI — is passed over whole. In the
/// entropy-coded data a literal `FF` is stuffed as `FF 00` and restart markers are
/// `FF D0`–`FF D7`; any other marker ends the scan: EOI (`FF D9`) ends the image, anything
/// else (the tables and SOS of the next scan of a progressive JPEG) is parsed as a segment
/// again. Bytes before an SOI, and images that do not parse or exceed the size limit, are
/// discarded and the splitter looks for the next SOI.
#[derive(Debug)]
pub struct JpegSplitter {
    buf: Vec<u8>,
    /// Parse position within `buf` (the image being parsed starts at 0).
    pos: usize,
    state: Split,
    max_frame: usize,
    discarded: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Split {
    /// Looking for an SOI.
    Seek,
    /// At a marker between segments (before the scan, or between scans).
    Segments,
    /// Inside entropy-coded data.
    Entropy,
}

enum Step {
    NeedMore,
    Continue,
    Image(Vec<u8>),
}

impl JpegSplitter {
    pub fn new(max_frame: usize) -> JpegSplitter {
        JpegSplitter {
            buf: Vec::new(),
            pos: 0,
            state: Split::Seek,
            max_frame,
            discarded: 0,
        }
    }

    /// Bytes thrown away so far (outside images, or in images that did not parse).
    pub fn discarded(&self) -> u64 {
        self.discarded
    }

    /// Appends `data` and calls `emit` with every image it completes, in stream order.
    pub fn push(&mut self, data: &[u8], mut emit: impl FnMut(Vec<u8>)) {
        self.buf.extend_from_slice(data);
        loop {
            match self.step() {
                Step::NeedMore => break,
                Step::Continue => {}
                Step::Image(image) => emit(image),
            }
        }
        if self.state != Split::Seek && self.buf.len() > self.max_frame {
            // Too large to be a frame: drop what we have and look for the next SOI.
            let keep = usize::from(self.buf.last() == Some(&0xFF));
            self.drop_front(self.buf.len() - keep);
        }
    }

    /// Discards the first `n` bytes and goes back to looking for an SOI.
    fn drop_front(&mut self, n: usize) {
        self.buf.drain(..n);
        self.discarded += n as u64;
        self.pos = 0;
        self.state = Split::Seek;
    }

    /// The image being parsed is not valid: skip its SOI and resynchronise.
    fn corrupt(&mut self) -> Step {
        self.drop_front(1);
        Step::Continue
    }

    fn step(&mut self) -> Step {
        match self.state {
            Split::Seek => {
                if let Some(at) = self.buf.windows(2).position(|w| w == [0xFF, 0xD8]) {
                    self.drop_front(at);
                    self.pos = 2;
                    self.state = Split::Segments;
                    Step::Continue
                } else {
                    // Keep a trailing FF: it may be the first half of an SOI.
                    let keep = usize::from(self.buf.last() == Some(&0xFF));
                    self.drop_front(self.buf.len() - keep);
                    Step::NeedMore
                }
            }
            Split::Segments => {
                let pos = self.pos;
                if self.buf.len() < pos + 2 {
                    return Step::NeedMore;
                }
                if self.buf[pos] != 0xFF {
                    return self.corrupt();
                }
                match self.buf[pos + 1] {
                    // Fill byte before a marker.
                    0xFF => {
                        self.pos += 1;
                        Step::Continue
                    }
                    // A new image where a segment was expected: the last one was cut off.
                    0xD8 => {
                        self.drop_front(pos);
                        self.pos = 2;
                        self.state = Split::Segments;
                        Step::Continue
                    }
                    // EOI before any scan: no picture in it.
                    0xD9 => {
                        self.drop_front(pos + 2);
                        Step::Continue
                    }
                    // Markers without a length (TEM, RSTn).
                    0x01 | 0xD0..=0xD7 => {
                        self.pos += 2;
                        Step::Continue
                    }
                    marker => {
                        if self.buf.len() < pos + 4 {
                            return Step::NeedMore;
                        }
                        let length =
                            usize::from(u16::from_be_bytes([self.buf[pos + 2], self.buf[pos + 3]]));
                        if length < 2 {
                            return self.corrupt();
                        }
                        let end = pos + 2 + length;
                        if self.buf.len() < end {
                            return Step::NeedMore;
                        }
                        self.pos = end;
                        if marker == 0xDA {
                            self.state = Split::Entropy;
                        }
                        Step::Continue
                    }
                }
            }
            Split::Entropy => {
                let Some(offset) = self.buf[self.pos..].iter().position(|&b| b == 0xFF) else {
                    self.pos = self.buf.len();
                    return Step::NeedMore;
                };
                let at = self.pos + offset;
                let Some(&next) = self.buf.get(at + 1) else {
                    self.pos = at;
                    return Step::NeedMore;
                };
                match next {
                    // Stuffed FF, restart markers: still entropy data.
                    0x00 | 0xD0..=0xD7 => self.pos = at + 2,
                    // Fill byte: the marker follows.
                    0xFF => self.pos = at + 1,
                    0xD9 => {
                        let image: Vec<u8> = self.buf.drain(..at + 2).collect();
                        self.pos = 0;
                        self.state = Split::Seek;
                        return Step::Image(image);
                    }
                    // The tables and SOS of the next scan (progressive JPEG), DNL, or an
                    // SOI that cut this image short: parse it as a segment marker.
                    _ => {
                        self.pos = at;
                        self.state = Split::Segments;
                    }
                }
                Step::Continue
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::codecs::jpeg::JpegEncoder;
    use image::Rgb;
    use std::io::Write;
    use std::path::PathBuf;
    use std::sync::mpsc;

    /// A real baseline JPEG of `w`×`h` whose red channel is `red`, with some texture so the
    /// entropy data holds stuffed bytes.
    fn jpeg(w: u32, h: u32, red: u8) -> Vec<u8> {
        let image = RgbImage::from_fn(w, h, |x, y| {
            Rgb([red, (x * 255 / w) as u8, ((x ^ y) * 37 % 256) as u8])
        });
        let mut out = Vec::new();
        JpegEncoder::new_with_quality(&mut out, 90)
            .encode_image(&image)
            .unwrap();
        out
    }

    /// `outer` with an APP1/Exif segment inserted after its SOI that embeds `thumbnail`
    /// (a complete JPEG, so the segment holds a nested SOI and EOI).
    fn with_thumbnail(outer: &[u8], thumbnail: &[u8]) -> Vec<u8> {
        let mut payload = b"Exif\0\0".to_vec();
        payload.extend_from_slice(thumbnail);
        let length = u16::try_from(payload.len() + 2).unwrap();
        let mut out = outer[..2].to_vec();
        out.extend_from_slice(&[0xFF, 0xE1]);
        out.extend_from_slice(&length.to_be_bytes());
        out.extend_from_slice(&payload);
        out.extend_from_slice(&outer[2..]);
        out
    }

    fn split(stream: &[u8], chunk: usize) -> (Vec<Vec<u8>>, u64) {
        let mut splitter = JpegSplitter::new(MAX_FRAME_BYTES);
        let mut images = Vec::new();
        for piece in stream.chunks(chunk) {
            splitter.push(piece, |image| images.push(image));
        }
        (images, splitter.discarded())
    }

    /// Mean red of a frame (JPEG noise averages out).
    fn red(frame: &Frame) -> u8 {
        mean_red(&frame.image)
    }

    fn mean_red(image: &RgbImage) -> u8 {
        let sum: u64 = image.pixels().map(|p| u64::from(p.0[0])).sum();
        (sum / u64::from(image.width() * image.height())) as u8
    }

    #[test]
    fn splits_concatenated_jpegs_whatever_the_chunk_size() {
        let frames = [jpeg(64, 48, 10), jpeg(64, 48, 120), jpeg(32, 24, 250)];
        assert!(
            frames[0].windows(2).any(|w| w == [0xFF, 0x00]),
            "the test image should contain stuffed bytes"
        );
        let mut stream = b"garbage before the first frame".to_vec();
        for frame in &frames {
            stream.extend_from_slice(frame);
            stream.extend_from_slice(&[0x00, 0xFF, 0x12]); // noise between frames
        }
        for chunk in [1, 2, 3, 7, 1000, 64 << 10] {
            let (images, discarded) = split(&stream, chunk);
            assert_eq!(images, frames, "chunk size {chunk}");
            assert_eq!(discarded, 30 + 3 * 3, "chunk size {chunk}");
        }
        let decoded = recognition::photo::decode_rgb(&split(&stream, 5).0[1]).unwrap();
        assert!(
            mean_red(&decoded).abs_diff(120) < 8,
            "{}",
            mean_red(&decoded)
        );
    }

    #[test]
    fn an_embedded_thumbnail_does_not_end_the_image() {
        let thumbnail = jpeg(16, 12, 200);
        let outer = with_thumbnail(&jpeg(64, 48, 40), &thumbnail);
        let mut stream = outer.clone();
        stream.extend_from_slice(&jpeg(64, 48, 90));
        for chunk in [1, 13, 4096] {
            let (images, _) = split(&stream, chunk);
            assert_eq!(images.len(), 2, "chunk size {chunk}");
            assert_eq!(images[0], outer, "chunk size {chunk}");
        }
        let decoded = recognition::photo::decode_rgb(&outer).unwrap();
        assert_eq!(decoded.dimensions(), (64, 48));
    }

    #[test]
    fn a_truncated_image_is_dropped_and_the_next_one_found() {
        let good = jpeg(64, 48, 77);
        let cut = jpeg(64, 48, 5);
        for cut_at in [1, 2, 5, 300, cut.len() - 2] {
            let mut stream = cut[..cut_at].to_vec();
            stream.extend_from_slice(&good);
            let (images, _) = split(&stream, 100);
            assert_eq!(images.len(), 1, "cut at {cut_at}");
            assert_eq!(images[0], good, "cut at {cut_at}");
        }
    }

    #[test]
    fn garbage_and_oversized_images_are_discarded() {
        let noise: Vec<u8> = (0..10_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let (images, discarded) = split(&noise, 333);
        assert!(images.is_empty());
        assert!(discarded >= 9_999, "{discarded}");

        let big = jpeg(64, 48, 1);
        let mut splitter = JpegSplitter::new(big.len() / 2);
        let mut images = Vec::new();
        let small = jpeg(8, 8, 1);
        assert!(small.len() < big.len() / 2);
        for piece in big.chunks(64).chain(small.chunks(64)) {
            splitter.push(piece, |image| images.push(image));
        }
        assert_eq!(images, [small]);
    }

    /// A reader fed through a channel: blocks like a pipe, ends when the sender is dropped.
    struct ChannelReader {
        rx: mpsc::Receiver<Vec<u8>>,
        pending: Vec<u8>,
    }

    impl Read for ChannelReader {
        fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
            if self.pending.is_empty() {
                match self.rx.recv() {
                    Ok(bytes) => self.pending = bytes,
                    Err(_) => return Ok(0),
                }
            }
            let n = out.len().min(self.pending.len());
            out[..n].copy_from_slice(&self.pending[..n]);
            self.pending.drain(..n);
            Ok(n)
        }
    }

    fn wait_for_frame(source: &mut MjpegPipe) -> Frame {
        let t = Instant::now();
        loop {
            if let Some(frame) = source.next_frame(Duration::from_millis(100)).unwrap() {
                return frame;
            }
            assert!(t.elapsed() < Duration::from_secs(10), "no frame arrived");
        }
    }

    #[test]
    fn hands_out_the_newest_frame_and_times_out_when_the_writer_is_silent() {
        let (tx, rx) = mpsc::channel();
        let reader = ChannelReader {
            rx,
            pending: Vec::new(),
        };
        let mut source = MjpegPipe::from_reader("test", reader, Some((64, 48)));

        let t = Instant::now();
        assert!(source
            .next_frame(Duration::from_millis(80))
            .unwrap()
            .is_none());
        assert!(t.elapsed() >= Duration::from_millis(80));

        // Three frames arrive at once (the loop was busy): only the newest is handed out.
        let mut burst = jpeg(64, 48, 10);
        burst.extend_from_slice(&jpeg(64, 48, 120));
        burst.extend_from_slice(&jpeg(64, 48, 240));
        tx.send(burst).unwrap();
        let frame = wait_for_frame(&mut source);
        assert!(red(&frame).abs_diff(240) < 8, "{}", red(&frame));
        assert_eq!(frame.sequence, 0);
        assert!(source
            .next_frame(Duration::from_millis(50))
            .unwrap()
            .is_none());

        // A frame of another size is fitted to the configured size.
        tx.send(jpeg(32, 24, 60)).unwrap();
        let frame = wait_for_frame(&mut source);
        assert_eq!(frame.image.dimensions(), (64, 48));
        assert_eq!(frame.sequence, 1);

        // An image the splitter accepts but the decoder refuses (a scan without a frame
        // header) is skipped; the next good one is handed out.
        tx.send(vec![0xFF, 0xD8, 0xFF, 0xDA, 0x00, 0x02, 0x12, 0xFF, 0xD9])
            .unwrap();
        std::thread::sleep(Duration::from_millis(50));
        tx.send(jpeg(64, 48, 180)).unwrap();
        let frame = wait_for_frame(&mut source);
        assert!(red(&frame).abs_diff(180) < 8, "{}", red(&frame));
        assert_eq!(frame.sequence, 2);

        // The writer goes away: the error says the stream ended.
        drop(tx);
        let t = Instant::now();
        let err = loop {
            match source.next_frame(Duration::from_millis(100)) {
                Err(e) => break e.to_string(),
                Ok(_) => assert!(t.elapsed() < Duration::from_secs(10)),
            }
        };
        assert!(err.contains("ended"), "{err}");
        assert!(err.contains("test"), "{err}");
    }

    /// A real JPEG whose frame header is rewritten to declare `w`×`h`.
    fn jpeg_declaring(w: u16, h: u16) -> Vec<u8> {
        let mut bytes = jpeg(16, 16, 0);
        let at = bytes.windows(2).position(|m| m == [0xFF, 0xC0]).unwrap();
        bytes[at + 5..at + 7].copy_from_slice(&h.to_be_bytes());
        bytes[at + 7..at + 9].copy_from_slice(&w.to_be_bytes());
        bytes
    }

    #[test]
    fn oversize_frames_are_skipped_before_decoding_and_counted() {
        let mut stream = jpeg_declaring(65000, 65000);
        assert!(stream.len() < 4096);
        stream.extend_from_slice(&jpeg(129, 48, 0)); // one pixel wider than twice 64
        stream.extend_from_slice(&jpeg(128, 96, 70)); // twice the size: still a frame
        let (tx, rx) = mpsc::channel();
        let reader = ChannelReader {
            rx,
            pending: Vec::new(),
        };
        let mut source = MjpegPipe::from_reader("bombs", reader, Some((64, 48)));
        // One image at a time, so that none is replaced by a newer one unread.
        let mut delivered = 0;
        for image in split(&stream, 1 << 20).0 {
            tx.send(image).unwrap();
            let t = Instant::now();
            let frame = loop {
                match source.next_frame(Duration::from_millis(50)).unwrap() {
                    Some(frame) => break Some(frame),
                    None if t.elapsed() > Duration::from_millis(300) => break None,
                    None => {}
                }
            };
            if let Some(frame) = frame {
                delivered += 1;
                assert_eq!(frame.image.dimensions(), (64, 48));
                assert!(red(&frame).abs_diff(70) < 8, "{}", red(&frame));
                assert_eq!(frame.sequence, 0);
            }
        }
        assert_eq!((delivered, source.oversize_frames()), (1, 2));
        drop(tx);
        let t = Instant::now();
        loop {
            match source.next_frame(Duration::from_millis(100)) {
                Err(e) => break assert!(e.to_string().contains("ended"), "{e}"),
                Ok(frame) => {
                    assert!(frame.is_none());
                    assert!(t.elapsed() < Duration::from_secs(10));
                }
            }
        }
    }

    #[test]
    fn a_finished_stream_still_delivers_its_last_frame() {
        let mut stream = jpeg(64, 48, 10);
        stream.extend_from_slice(&jpeg(64, 48, 200));
        let mut source = MjpegPipe::from_reader("memory", std::io::Cursor::new(stream), None);
        let frame = source.next_frame(Duration::from_secs(5)).unwrap().unwrap();
        assert!(red(&frame).abs_diff(200) < 8);
        assert!(source.next_frame(Duration::from_secs(5)).is_err());
    }

    #[test]
    fn reads_a_fifo_waits_for_its_writer_and_reports_its_end() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("camera.mjpeg");
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &fifo,
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        let input = PipeInput::Path(fifo.clone());
        let mut source = MjpegPipe::open(&input, Some((64, 48))).unwrap();
        // No writer yet: like a stalled camera.
        assert!(source
            .next_frame(Duration::from_millis(100))
            .unwrap()
            .is_none());

        let writer = {
            let fifo = fifo.clone();
            std::thread::spawn(move || {
                let mut out = std::fs::OpenOptions::new().write(true).open(&fifo).unwrap();
                for red in [30, 130, 230] {
                    out.write_all(&jpeg(64, 48, red)).unwrap();
                    out.flush().unwrap();
                    std::thread::sleep(Duration::from_millis(150));
                }
            })
        };
        let mut reds = Vec::new();
        let err = loop {
            match source.next_frame(Duration::from_millis(100)) {
                Ok(Some(frame)) => reds.push(red(&frame)),
                Ok(None) => {}
                Err(e) => break e,
            }
        };
        writer.join().unwrap();
        assert!(
            !reds.is_empty() && reds.last().unwrap().abs_diff(230) < 8,
            "{reds:?}"
        );
        assert!(matches!(err, CameraError::Pipe { .. }), "{err}");
        assert!(err.to_string().contains("ended"), "{err}");

        // Reopening waits for the next writer again.
        let mut source = MjpegPipe::open(&input, Some((64, 48))).unwrap();
        assert!(source
            .next_frame(Duration::from_millis(50))
            .unwrap()
            .is_none());
        // Release the reader thread parked in open().
        drop(source);
        drop(std::fs::OpenOptions::new().write(true).open(&fifo).unwrap());
    }

    #[test]
    fn a_missing_fifo_is_named() {
        let err = MjpegPipe::open(
            &PipeInput::Path(PathBuf::from("/run/facelock/no-such.mjpeg")),
            None,
        )
        .unwrap_err();
        assert!(matches!(err, CameraError::PipeMissing { .. }), "{err}");
        let text = err.to_string();
        assert!(text.contains("/run/facelock/no-such.mjpeg"), "{text}");
        assert!(text.contains("camera.mjpeg_pipe"), "{text}");
    }
}
