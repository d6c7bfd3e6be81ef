//! `trainer capture NAME`: enrolment photos from a webcam at the workstation, judged by the
//! door's guided capture ([`lock_daemon::capture`]): the same quality gate
//! ([`QualityGate::for_door`]) through the same [`Session`], and the same files (the face
//! with half its size of margin, 0600, written under a temporary name first) into
//! `images/NAME/`. Frames come from the lock's camera adapters: V4L2 (the `v4l2` feature,
//! on by default) or a folder replayed for tests and demos.
//!
//! A webcam's lens, light and angle are not the door's, so photos captured at the door
//! (`lock-daemon ctl capture`) are preferred; this is for when the door is not at hand.

use std::io::Write;
use std::os::unix::fs::DirBuilderExt as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use image::RgbImage;
use lock_daemon::camera::{CameraError, FrameSource};
use lock_daemon::capture::{save_face, Order, Progress, Session, State, Verdict};
use lock_daemon::config::{CameraSettings, CameraSource, PixelFormat, Rotation};
use recognition::quality::QualityGate;
use recognition::Face;

use crate::dataset::shown;

/// Where frames come from.
#[derive(Debug, Clone, PartialEq)]
pub enum Camera {
    /// A V4L2 device, e.g. `/dev/video0`.
    Device(PathBuf),
    /// The images of a folder, in name order, once (tests and demos).
    Replay(PathBuf),
}

/// The frame size asked of the camera, and the size replayed images are fitted to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameSize {
    pub width: u32,
    pub height: u32,
}

/// How often the loop looks at the clock while no frame comes.
const POLL: Duration = Duration::from_millis(250);
/// Refusals are shown at most this often (every frame may be refused).
const REFUSAL_EVERY: Duration = Duration::from_secs(1);

/// Opens the camera, or the replay, at `size`.
pub fn open(camera: &Camera, size: FrameSize) -> anyhow::Result<Box<dyn FrameSource>> {
    let source = match camera {
        Camera::Device(device) => {
            if !cfg!(feature = "v4l2") {
                anyhow::bail!(
                    "cannot open {}: this trainer was built without V4L2 support \
                     (`--no-default-features`); build it with the default features (needs \
                     libclang-dev), or replay photos with --replay DIR",
                    device.display()
                );
            }
            CameraSource::V4l2 {
                device: device.clone(),
            }
        }
        Camera::Replay(dir) => CameraSource::Replay {
            dir: dir.clone(),
            fps: None,
            looping: false,
        },
    };
    let settings = CameraSettings {
        source,
        width: size.width,
        height: size.height,
        fps: 30,
        pixel_format: PixelFormat::Mjpeg,
        rotation: Rotation::None,
        dark_frame_threshold: 0,
        read_timeout: POLL,
        expect_ir: false,
    };
    Ok(lock_daemon::camera::open(&settings)?)
}

/// Creates the person's folder, mode 0700, when it is new (an existing one is left as it
/// is: it may hold the person's other photos).
pub fn person_dir(images: &Path, person: &str) -> anyhow::Result<PathBuf> {
    let dir = images.join(person);
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", shown(&dir)))?;
    if !dir.is_dir() {
        anyhow::bail!("{} is not a folder", shown(&dir));
    }
    Ok(dir)
}

/// How a capture ended.
#[derive(Debug, Clone)]
pub struct Captured {
    pub progress: Progress,
    pub elapsed: Duration,
    /// The files written, in order.
    pub files: Vec<PathBuf>,
}

/// Runs a capture into `dir`: each frame from `source` goes through `detect` and the
/// session's gate; kept faces are written. Prints progress (`kept 3/20`) and refusals
/// (a new reason at most once a second) on `out` unless `quiet`. Ends on the count, the
/// time limit, or a camera or write error.
pub fn run(
    source: &mut dyn FrameSource,
    detect: &mut dyn FnMut(&RgbImage) -> anyhow::Result<Vec<Face>>,
    order: &Order,
    gate: QualityGate,
    dir: &Path,
    out: &mut dyn Write,
) -> anyhow::Result<Captured> {
    let started = Instant::now();
    let mut session = Session::new(order, gate, dir.to_owned(), started);
    let mut files = Vec::new();
    let mut shown_refusal: Option<(&'static str, Instant)> = None;
    loop {
        let now = Instant::now();
        if session.tick(now) {
            break;
        }
        let wait = session.deadline().saturating_duration_since(now).min(POLL);
        let frame = match source.next_frame(wait) {
            Ok(Some(frame)) => frame,
            Ok(None) => continue,
            Err(e @ CameraError::ReplayFrame { .. }) => {
                log::warn!("{e}");
                continue;
            }
            Err(e) => {
                session.end(State::Failed, Some(e.to_string()));
                break;
            }
        };
        let faces = detect(&frame.image)?;
        match session.judge(Instant::now(), &frame.image, &faces) {
            Verdict::Keep(measures) => {
                let n = session.progress().kept + 1;
                match save_face(dir, &frame.image, &faces[0], n) {
                    Ok(path) => {
                        files.push(path);
                        session.kept(measures);
                        let p = session.progress();
                        writeln!(out, "kept {}/{}", p.kept, p.wanted)?;
                        shown_refusal = None;
                    }
                    Err(e) => session.end(State::Failed, Some(e.to_string())),
                }
            }
            Verdict::Refused(reject) => {
                let now = Instant::now();
                let show = match shown_refusal {
                    None => true,
                    Some((kind, at)) => {
                        kind != reject.kind() && now.duration_since(at) >= REFUSAL_EVERY
                    }
                };
                if show {
                    writeln!(out, "refused: {reject}")?;
                    shown_refusal = Some((reject.kind(), now));
                }
            }
            Verdict::Over => break,
        }
    }
    Ok(Captured {
        progress: session.progress().clone(),
        elapsed: started.elapsed(),
        files,
    })
}

impl Captured {
    /// Why the capture did not end with every photo asked for, or `None` when it did.
    pub fn failure(&self) -> Option<String> {
        let p = &self.progress;
        let dir = shown(&p.dir);
        match p.state {
            State::Done | State::Running => None,
            State::TimedOut => Some(format!(
                "timed out after {:.0} s with {} of {} photos kept (in {dir}): run it again \
                 for the rest, with more light or closer to the camera if most frames were \
                 refused",
                self.elapsed.as_secs_f64(),
                p.kept,
                p.wanted
            )),
            State::Cancelled | State::Failed => Some(format!(
                "{}; {} of {} photos kept (in {dir})",
                p.message.as_deref().unwrap_or(p.state.as_str()),
                p.kept,
                p.wanted
            )),
        }
    }
}

impl std::fmt::Display for Captured {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let p = &self.progress;
        writeln!(f, "{}", p.summary(self.elapsed))?;
        writeln!(f, "{} new photo(s) in {}", self.files.len(), shown(&p.dir))?;
        if p.state == State::Done {
            let images = p.dir.parent().unwrap_or(Path::new("."));
            writeln!(
                f,
                "next: `trainer people {}` to check them, then `trainer train`",
                shown(images)
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lock_daemon::camera::Frame;
    use recognition::BBox;
    use std::os::unix::fs::PermissionsExt as _;

    /// Frames from a list, then nothing (like a replay that has ended).
    struct Frames(std::vec::IntoIter<RgbImage>, u64);

    impl FrameSource for Frames {
        fn next_frame(&mut self, timeout: Duration) -> Result<Option<Frame>, CameraError> {
            match self.0.next() {
                Some(image) => {
                    self.1 += 1;
                    Ok(Some(Frame {
                        image,
                        captured: Instant::now(),
                        sequence: self.1,
                    }))
                }
                None => {
                    std::thread::sleep(timeout);
                    Ok(None)
                }
            }
        }
    }

    /// A textured frame; its one "face" is turned by `turn` (the seed changes the look).
    fn frame(seed: u32) -> RgbImage {
        RgbImage::from_fn(320, 240, |x, y| {
            let v = ((x * 7 + y * 13 + seed * 31) % 97) as u8 + 80;
            let v = if (x / 6 + y / 6) % 2 == 0 { v } else { v / 2 };
            image::Rgb([v, v, v])
        })
    }

    fn face(turn: f32) -> Face {
        Face {
            bbox: BBox {
                x1: 80.0,
                y1: 40.0,
                x2: 240.0,
                y2: 200.0,
            },
            score: 0.99,
            landmarks: [
                (130.0, 100.0),
                (190.0, 100.0),
                (160.0 + turn * 60.0, 130.0),
                (135.0, 165.0),
                (185.0, 165.0),
            ],
        }
    }

    fn order(count: u32, timeout: Duration) -> Order {
        Order {
            person: "ada".into(),
            count,
            timeout,
            by: "test".into(),
        }
    }

    /// Frames whose first pixel is 0 have no face; the others have one, turned by seed.
    fn fake_detect(image: &RgbImage) -> anyhow::Result<Vec<Face>> {
        let seed = image.get_pixel(0, 0).0[0];
        Ok(if seed == 0 {
            Vec::new()
        } else {
            vec![face(f32::from(seed % 7) * 0.3)]
        })
    }

    fn blank() -> RgbImage {
        RgbImage::new(320, 240)
    }

    fn marked(seed: u32) -> RgbImage {
        let mut image = frame(seed);
        image.put_pixel(0, 0, image::Rgb([seed as u8 + 1, 0, 0]));
        image
    }

    #[test]
    fn kept_faces_are_written_0600_and_the_capture_ends_at_the_count() {
        let dir = tempfile::tempdir().unwrap();
        let person = person_dir(&dir.path().join("images"), "ada").unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&person), 0o700);
        let mut source = Frames(
            vec![blank(), blank(), marked(0), marked(1), marked(2)].into_iter(),
            0,
        );
        let mut out = Vec::new();
        let captured = run(
            &mut source,
            &mut fake_detect,
            &order(2, Duration::from_secs(30)),
            QualityGate::for_door(80.0),
            &person,
            &mut out,
        )
        .unwrap();
        let text = String::from_utf8(out).unwrap();
        // Two refusals of the same reason in a row are shown once.
        assert_eq!(
            text,
            "refused: no face in view: look at the camera\nkept 1/2\nkept 2/2\n"
        );
        assert_eq!(captured.progress.state, State::Done);
        assert_eq!(captured.failure(), None);
        assert_eq!(captured.files.len(), 2);
        for file in &captured.files {
            assert_eq!(file.parent(), Some(person.as_path()));
            assert_eq!(mode(file), 0o600);
        }
        let shown = captured.to_string();
        assert!(shown.starts_with("done: kept 2 of 2"), "{shown}");
        assert!(shown.contains("(refused: 2 no face)"), "{shown}");
    }

    #[test]
    fn a_capture_that_runs_out_of_time_says_how_many_were_kept() {
        let dir = tempfile::tempdir().unwrap();
        let mut source = Frames(vec![marked(0)].into_iter(), 0);
        let started = Instant::now();
        let captured = run(
            &mut source,
            &mut fake_detect,
            &order(3, Duration::from_millis(600)),
            QualityGate::for_door(80.0),
            dir.path(),
            &mut std::io::sink(),
        )
        .unwrap();
        assert!(started.elapsed() < Duration::from_secs(2));
        assert_eq!(captured.progress.state, State::TimedOut);
        let failure = captured.failure().unwrap();
        assert!(failure.contains("1 of 3 photos kept"), "{failure}");
    }

    #[test]
    fn an_existing_folder_is_used_as_it_is() {
        let dir = tempfile::tempdir().unwrap();
        let images = dir.path().join("images");
        std::fs::create_dir_all(images.join("ada")).unwrap();
        std::fs::write(images.join("ada/old.jpg"), b"x").unwrap();
        assert_eq!(person_dir(&images, "ada").unwrap(), images.join("ada"));
        assert!(images.join("ada/old.jpg").exists());
        std::fs::write(images.join("bob"), b"x").unwrap();
        assert!(person_dir(&images, "bob").is_err());
    }
}
