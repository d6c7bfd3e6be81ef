//! Guided capture at the door: `lock-daemon ctl capture NAME --count 20` saves the next
//! good frames of the one face in view, for enrolment from the camera that will later
//! recognise the person.
//!
//! * Off unless `[capture] enabled = true`. Files go to `capture.dir/NAME/` (both 0700,
//!   files 0600), at most `capture.max_files` in all: a full directory refuses new
//!   captures until the admin pulls them (`scripts/pull-captures.sh`).
//! * Each frame passes the quality gate ([`recognition::quality`]): exactly one face, at
//!   least 1.5 × `recognition.min_face_px`, sharp, lit, with contrast, and not a
//!   near-duplicate of a frame already kept. Each refusal is counted with its reason, and
//!   the last reason is shown to the person capturing.
//! * What is saved is the face with a margin of half its size on every side (the trainer
//!   detects it again, as it does on any photo), not the whole frame.
//! * Capture never unlocks: it only reads the frames the door loop has already decided
//!   on, and the door decides on them exactly as without a capture.
//! * The door loop starts it on a command (audited, with who asked), hands it frames
//!   without waiting ([`Capture::offer`] drops a frame while the writer is busy), publishes
//!   its [`Progress`] in the status snapshot and audits the end. The writer thread ends on
//!   the count, the time limit, a cancel, a write error, or when the service stops.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use image::RgbImage;
use recognition::quality::{Measures, QualityGate, Reject};
use recognition::Face;
use serde::{Deserialize, Serialize};

/// `[capture]` settings (present only when capture is enabled).
#[derive(Debug, Clone, PartialEq)]
pub struct CaptureSettings {
    /// Where captures are written, one folder per person.
    pub dir: PathBuf,
    /// The largest `--count` accepted.
    pub max_count: u32,
    /// The longest `--seconds` accepted.
    pub max_secs: u32,
    /// Files the capture directory may hold in all.
    pub max_files: usize,
}

/// What a front-end asked for.
#[derive(Debug, Clone, PartialEq)]
pub struct Order {
    pub person: String,
    pub count: u32,
    pub timeout: Duration,
    /// Who asked, for the audit log.
    pub by: String,
}

/// Frames waiting for the writer. A third frame arriving while two wait is dropped: the
/// door loop never waits for the disk.
const QUEUE: usize = 2;
/// Longest a person's name may be (it becomes a folder name on two machines).
const MAX_NAME: usize = 64;

/// Checks that `name` can be a folder under `images/` on the workstation and under the
/// capture directory here.
pub fn check_name(name: &str) -> Result<(), String> {
    let fix = "use letters, digits, spaces, '-', '_' or '.', e.g. ada or ada_lovelace, the \
               same name as the person's folder under images/";
    if name.is_empty() || name.len() > MAX_NAME {
        return Err(format!(
            "the name must be 1 to {MAX_NAME} bytes long; {fix}"
        ));
    }
    if name.starts_with('.') || name.trim() != name {
        return Err(format!(
            "{name:?} starts with '.' or a space, or ends with a space; {fix}"
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|&c| !(c.is_alphanumeric() || matches!(c, ' ' | '-' | '_' | '.')))
    {
        return Err(format!("{name:?} contains {c:?}; {fix}"));
    }
    Ok(())
}

/// Checks an order against the settings, with the fix when it does not fit.
pub fn check_order(settings: &CaptureSettings, order: &Order) -> Result<(), String> {
    check_name(&order.person)?;
    if order.count == 0 || order.count > settings.max_count {
        return Err(format!(
            "--count {} is out of range: capture 1 to {} frames (capture.max_count)",
            order.count, settings.max_count
        ));
    }
    let secs = order.timeout.as_secs_f64();
    if !(1.0..=f64::from(settings.max_secs)).contains(&secs) {
        return Err(format!(
            "--seconds {secs} is out of range: 1 to {} (capture.max_secs)",
            settings.max_secs
        ));
    }
    Ok(())
}

/// Where a capture stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum State {
    Running,
    /// All the frames asked for were kept.
    Done,
    TimedOut,
    Cancelled,
    /// A file could not be written (the message says why).
    Failed,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Running => "running",
            State::Done => "done",
            State::TimedOut => "timed out",
            State::Cancelled => "cancelled",
            State::Failed => "failed",
        }
    }
}

/// A capture's progress, as the status snapshot shows it. Counts and reasons only; no
/// images, no embeddings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    pub person: String,
    pub state: State,
    /// Frames kept so far, of `wanted`.
    pub kept: u32,
    pub wanted: u32,
    /// Frames judged.
    pub frames: u32,
    /// Frames refused, by reason ("blurred": 3).
    pub rejected: BTreeMap<String, u32>,
    /// The last refusal, with what to do about it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_reject: Option<String>,
    /// Frames skipped because the writer was still busy with earlier ones.
    pub skipped: u32,
    /// Seconds until the time limit (0 once it has ended).
    pub seconds_left: f64,
    /// Where the frames go.
    pub dir: PathBuf,
    /// Why it failed, or how it ended.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    pub by: String,
    /// How the pose varies across the kept frames (yaw, pitch ranges).
    pub pose_spread: (f32, f32),
}

impl Progress {
    /// One line for the audit log and the client, e.g. `done: kept 20 of 20 in 14 s
    /// (refused: 3 blurred, 2 no face)`.
    pub fn summary(&self, elapsed: Duration) -> String {
        let mut line = format!(
            "{}: kept {} of {} in {:.0} s",
            self.state.as_str(),
            self.kept,
            self.wanted,
            elapsed.as_secs_f64()
        );
        if !self.rejected.is_empty() {
            let reasons: Vec<String> = self
                .rejected
                .iter()
                .map(|(reason, n)| format!("{n} {reason}"))
                .collect();
            line.push_str(&format!(" (refused: {})", reasons.join(", ")));
        }
        if let Some(message) = &self.message {
            line.push_str(&format!("; {message}"));
        }
        line
    }
}

/// What to do with a frame.
#[derive(Debug, PartialEq)]
pub enum Verdict {
    /// Keep this face.
    Keep(Measures),
    /// Refused, and why.
    Refused(Reject),
    /// The capture has ended; the frame is not looked at.
    Over,
}

/// The decisions of a capture, without threads or files: time comes in as `now`.
#[derive(Debug)]
pub struct Session {
    gate: QualityGate,
    kept: Vec<Measures>,
    progress: Progress,
    started: Instant,
    deadline: Instant,
}

impl Session {
    pub fn new(order: &Order, gate: QualityGate, dir: PathBuf, now: Instant) -> Session {
        Session {
            gate,
            kept: Vec::new(),
            progress: Progress {
                person: order.person.clone(),
                state: State::Running,
                kept: 0,
                wanted: order.count,
                frames: 0,
                rejected: BTreeMap::new(),
                last_reject: None,
                skipped: 0,
                seconds_left: order.timeout.as_secs_f64(),
                dir,
                message: None,
                by: order.by.clone(),
                pose_spread: (0.0, 0.0),
            },
            started: now,
            deadline: now + order.timeout,
        }
    }

    /// Judges one frame with its detected faces (all of them, small ones included).
    pub fn judge(&mut self, now: Instant, image: &RgbImage, faces: &[Face]) -> Verdict {
        if self.tick(now) {
            return Verdict::Over;
        }
        self.progress.frames += 1;
        match self.gate.judge(image, faces, &self.kept) {
            Ok(measures) => Verdict::Keep(measures),
            Err(reject) => {
                *self
                    .progress
                    .rejected
                    .entry(reject.kind().to_owned())
                    .or_default() += 1;
                self.progress.last_reject = Some(reject.to_string());
                Verdict::Refused(reject)
            }
        }
    }

    /// A kept face was written: counts it, and ends the capture when it was the last.
    pub fn kept(&mut self, measures: Measures) {
        self.kept.push(measures);
        self.progress.kept += 1;
        self.progress.pose_spread = recognition::quality::pose_spread(&self.kept);
        if self.progress.kept >= self.progress.wanted {
            self.end(State::Done, None);
        }
    }

    /// Ends the capture (the first end wins).
    pub fn end(&mut self, state: State, message: Option<String>) {
        if self.progress.state == State::Running {
            self.progress.state = state;
            self.progress.message = message;
            self.progress.seconds_left = 0.0;
        }
    }

    /// Updates the time left; ends the capture at its deadline. Returns whether it has
    /// ended.
    pub fn tick(&mut self, now: Instant) -> bool {
        if self.progress.state == State::Running {
            if now >= self.deadline {
                self.end(State::TimedOut, None);
            } else {
                self.progress.seconds_left = (self.deadline - now).as_secs_f64();
            }
        }
        self.progress.state != State::Running
    }

    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    pub fn started(&self) -> Instant {
        self.started
    }

    pub fn progress(&self) -> &Progress {
        &self.progress
    }

    fn progress_mut(&mut self) -> &mut Progress {
        &mut self.progress
    }
}

/// One frame handed to the writer.
struct Frame {
    image: RgbImage,
    faces: Vec<Face>,
}

/// A running capture: the door loop's handle on the writer thread.
#[derive(Debug)]
pub struct Capture {
    frames: SyncSender<Frame>,
    shared: Arc<Mutex<Progress>>,
    cancel: Arc<AtomicBool>,
    started: Instant,
}

impl std::fmt::Debug for Frame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Frame").finish_non_exhaustive()
    }
}

impl Capture {
    /// Prepares the person's folder (0700) and starts the writer. Refuses, with the fix,
    /// when the order does not fit the settings or the directory is full.
    pub fn start(
        settings: &CaptureSettings,
        order: &Order,
        gate: QualityGate,
        now: Instant,
    ) -> Result<Capture, String> {
        check_order(settings, order)?;
        private_dir(&settings.dir)?;
        let held = count_files(&settings.dir)
            .map_err(|e| format!("cannot read {}: {e}", settings.dir.display()))?;
        if held >= settings.max_files {
            return Err(full(&settings.dir, held));
        }
        let dir = settings.dir.join(&order.person);
        private_dir(&dir)?;
        let session = Session::new(order, gate, dir.clone(), now);
        let shared = Arc::new(Mutex::new(session.progress().clone()));
        let cancel = Arc::new(AtomicBool::new(false));
        let (frames, rx) = mpsc::sync_channel(QUEUE);
        let writer = Writer {
            session,
            frames: rx,
            shared: shared.clone(),
            cancel: cancel.clone(),
            dir,
            root: settings.dir.clone(),
            room: settings.max_files - held,
        };
        std::thread::Builder::new()
            .name("capture".into())
            .spawn(move || writer.run())
            .map_err(|e| format!("cannot start the capture thread: {e}"))?;
        Ok(Capture {
            frames,
            shared,
            cancel,
            started: now,
        })
    }

    /// Hands a frame to the writer without waiting; a frame arriving while it is busy is
    /// skipped (and counted).
    pub fn offer(&self, image: &RgbImage, faces: &[Face]) {
        if self.finished() {
            return;
        }
        let frame = Frame {
            image: image.clone(),
            faces: faces.to_vec(),
        };
        match self.frames.try_send(frame) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => self.update(|p| p.skipped += 1),
            Err(TrySendError::Disconnected(_)) => {}
        }
    }

    /// The progress as the writer last published it.
    pub fn progress(&self) -> Progress {
        self.shared
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub fn finished(&self) -> bool {
        self.progress().state != State::Running
    }

    /// How long it has run.
    pub fn elapsed(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.started)
    }

    /// Asks the writer to stop; it ends within a tenth of a second.
    pub fn cancel(&self) {
        self.cancel.store(true, Ordering::Relaxed);
    }

    fn update(&self, change: impl FnOnce(&mut Progress)) {
        change(&mut self.shared.lock().unwrap_or_else(PoisonError::into_inner));
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        self.cancel();
    }
}

/// The writer thread: judges frames and writes the kept faces.
struct Writer {
    session: Session,
    frames: Receiver<Frame>,
    shared: Arc<Mutex<Progress>>,
    cancel: Arc<AtomicBool>,
    dir: PathBuf,
    root: PathBuf,
    /// Files the directory may still take.
    room: usize,
}

/// How often the writer looks at the cancel flag and the clock while no frame comes.
const POLL: Duration = Duration::from_millis(100);

impl Writer {
    fn run(mut self) {
        loop {
            let now = Instant::now();
            if self.cancel.load(Ordering::Relaxed) {
                self.session
                    .end(State::Cancelled, Some("cancelled".to_owned()));
            }
            if self.session.tick(now) {
                break;
            }
            let wait = self
                .session
                .deadline()
                .saturating_duration_since(now)
                .min(POLL);
            match self.frames.recv_timeout(wait) {
                Ok(frame) => self.frame(frame),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => self
                    .session
                    .end(State::Cancelled, Some("the service stopped".to_owned())),
            }
            self.publish();
        }
        self.publish();
    }

    fn frame(&mut self, frame: Frame) {
        let Verdict::Keep(measures) =
            self.session
                .judge(Instant::now(), &frame.image, &frame.faces)
        else {
            return;
        };
        if self.room == 0 {
            let held = count_files(&self.root).unwrap_or(0);
            self.session
                .end(State::Failed, Some(full(&self.root, held)));
            return;
        }
        let face = &frame.faces[0];
        let n = self.session.progress().kept + 1;
        let saved = save_face(&self.dir, &frame.image, face, n).map_err(|e| {
            format!(
                "{e}; check that capture.dir is writable by the service user and that the \
                 disk has room"
            )
        });
        match saved {
            Ok(_) => {
                self.room -= 1;
                self.session.kept(measures);
            }
            Err(e) => self.session.end(State::Failed, Some(e)),
        }
    }

    fn publish(&mut self) {
        let skipped = {
            let shared = self.shared.lock().unwrap_or_else(PoisonError::into_inner);
            shared.skipped
        };
        self.session.progress_mut().skipped = skipped;
        let progress = self.session.progress().clone();
        *self.shared.lock().unwrap_or_else(PoisonError::into_inner) = progress;
    }
}

fn full(dir: &Path, held: usize) -> String {
    format!(
        "the capture directory {} holds {held} files, its limit (capture.max_files): copy \
         them to the workstation and remove them (scripts/pull-captures.sh --remove), or \
         raise the limit",
        dir.display()
    )
}

/// Writes the face with a margin of half its size on every side, as
/// `<wall time>-<n>.jpg` in `dir`, mode 0600, under a temporary name first (a reader never
/// sees half a file). Returns the file written; the error names it. Used by the door's
/// capture and by `trainer capture` at a workstation.
pub fn save_face(dir: &Path, image: &RgbImage, face: &Face, n: u32) -> std::io::Result<PathBuf> {
    let crop = with_margin(image, &face.bbox);
    let stamp: String = crate::clock::wall_rfc3339()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '.')
        .collect();
    let name = format!("{stamp}-{n:03}.jpg");
    let path = dir.join(&name);
    let tmp = dir.join(format!(".{name}.tmp"));
    let write = || -> std::io::Result<()> {
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        let mut out = std::io::BufWriter::new(file);
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 95)
            .encode_image(&crop)
            .map_err(std::io::Error::other)?;
        out.flush()?;
        out.get_ref().sync_all()?;
        std::fs::rename(&tmp, &path)
    };
    match write() {
        Ok(()) => Ok(path),
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(std::io::Error::new(
                e.kind(),
                format!("cannot write {}: {e}", path.display()),
            ))
        }
    }
}

/// The face box grown by half its side on every side, clipped to the frame, at the
/// camera's resolution.
pub fn with_margin(image: &RgbImage, bbox: &recognition::BBox) -> RgbImage {
    let pad = bbox.side() / 2.0;
    let (w, h) = (image.width() as f32, image.height() as f32);
    let x1 = (bbox.x1 - pad).clamp(0.0, w - 1.0) as u32;
    let y1 = (bbox.y1 - pad).clamp(0.0, h - 1.0) as u32;
    let x2 = ((bbox.x2 + pad).min(w) as u32).max(x1 + 1);
    let y2 = ((bbox.y2 + pad).min(h) as u32).max(y1 + 1);
    image::imageops::crop_imm(image, x1, y1, x2 - x1, y2 - y1).to_image()
}

/// Creates `dir` with mode 0700, or tightens an existing one to 0700: captures are photos
/// of people.
pub fn private_dir(dir: &Path) -> Result<(), String> {
    let fail = |e: std::io::Error| {
        format!(
            "cannot prepare the capture directory {}: {e}; check capture.dir (it must be \
             writable by the service user, e.g. under /var/lib/facelock)",
            dir.display()
        )
    };
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(fail)?;
    let meta = std::fs::symlink_metadata(dir).map_err(fail)?;
    if !meta.is_dir() {
        return Err(fail(std::io::Error::other("not a directory")));
    }
    if meta.permissions().mode() & 0o077 != 0 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(fail)?;
        log::warn!("capture directory {} tightened to 0700", dir.display());
    }
    Ok(())
}

/// Files in the capture directory and its person folders.
fn count_files(dir: &Path) -> std::io::Result<usize> {
    let mut n = 0;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        if kind.is_dir() {
            n += std::fs::read_dir(entry.path())?.count();
        } else {
            n += 1;
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use recognition::BBox;

    fn order(count: u32, secs: u64) -> Order {
        Order {
            person: "ada".into(),
            count,
            timeout: Duration::from_secs(secs),
            by: "test".into(),
        }
    }

    fn settings(dir: &Path) -> CaptureSettings {
        CaptureSettings {
            dir: dir.to_owned(),
            max_count: 50,
            max_secs: 300,
            max_files: 100,
        }
    }

    /// A face-sized patch with texture (sharp, mid-grey, with contrast), its landmarks
    /// shifted by `turn` so consecutive frames are not near-duplicates.
    fn frame(turn: f32, seed: u32) -> (RgbImage, Face) {
        let mut image = RgbImage::new(320, 240);
        for (x, y, p) in image.enumerate_pixels_mut() {
            let v = ((x * 7 + y * 13 + seed * 31) % 97) as u8 + 80;
            let v = if (x / 6 + y / 6) % 2 == 0 { v } else { v / 2 };
            *p = image::Rgb([v, v, v]);
        }
        let bbox = BBox {
            x1: 80.0,
            y1: 40.0,
            x2: 240.0,
            y2: 200.0,
        };
        let face = Face {
            bbox,
            score: 0.99,
            landmarks: [
                (130.0, 100.0),
                (190.0, 100.0),
                (160.0 + turn * 60.0, 130.0),
                (135.0, 165.0),
                (185.0, 165.0),
            ],
        };
        (image, face)
    }

    #[test]
    fn names_that_cannot_be_folders_are_refused_with_the_rule() {
        for good in ["ada", "Ada Lovelace", "jean-luc", "o.brien", "zoë"] {
            assert_eq!(check_name(good), Ok(()), "{good}");
        }
        for bad in [
            "",
            "../etc",
            "a/b",
            ".hidden",
            " ada",
            "ada\n",
            &"x".repeat(65),
        ] {
            let e = check_name(bad).unwrap_err();
            assert!(e.contains("use letters, digits"), "{bad:?}: {e}");
        }
    }

    #[test]
    fn orders_beyond_the_limits_are_refused_with_the_setting_to_change() {
        let s = settings(Path::new("/nonexistent"));
        assert!(check_order(&s, &order(20, 60)).is_ok());
        let e = check_order(&s, &order(0, 60)).unwrap_err();
        assert!(e.contains("capture.max_count"), "{e}");
        let e = check_order(&s, &order(51, 60)).unwrap_err();
        assert!(e.contains("1 to 50"), "{e}");
        let e = check_order(&s, &order(5, 301)).unwrap_err();
        assert!(e.contains("capture.max_secs"), "{e}");
    }

    #[test]
    fn a_session_counts_refusals_keeps_good_frames_and_ends_at_the_count() {
        let t0 = Instant::now();
        let mut s = Session::new(
            &order(2, 60),
            QualityGate::for_door(80.0),
            PathBuf::from("x"),
            t0,
        );
        let (image, face) = frame(0.0, 0);
        assert_eq!(s.judge(t0, &image, &[]), Verdict::Refused(Reject::NoFace));
        assert_eq!(
            s.judge(t0, &image, &[face.clone(), face.clone()]),
            Verdict::Refused(Reject::SeveralFaces(2))
        );
        let Verdict::Keep(m) = s.judge(t0, &image, std::slice::from_ref(&face)) else {
            panic!("a good frame is kept")
        };
        s.kept(m);
        assert_eq!(
            s.judge(t0, &image, std::slice::from_ref(&face)),
            Verdict::Refused(Reject::NearDuplicate)
        );
        let (image2, face2) = frame(0.3, 5);
        let Verdict::Keep(m) = s.judge(t0, &image2, &[face2]) else {
            panic!("a turned head is kept")
        };
        s.kept(m);
        let p = s.progress();
        assert_eq!((p.state, p.kept, p.frames), (State::Done, 2, 5));
        assert_eq!(p.rejected["no face"], 1);
        assert_eq!(p.rejected["several faces"], 1);
        assert_eq!(p.rejected["near-duplicate"], 1);
        assert!(p.last_reject.as_deref().unwrap().contains("turn the head"));
        assert!(p.pose_spread.0 > 0.2, "{:?}", p.pose_spread);
        assert_eq!(s.judge(t0, &image, &[]), Verdict::Over);
    }

    #[test]
    fn a_session_times_out_at_its_deadline_without_a_frame() {
        let t0 = Instant::now();
        let mut s = Session::new(
            &order(5, 10),
            QualityGate::for_door(80.0),
            PathBuf::from("x"),
            t0,
        );
        assert!(!s.tick(t0 + Duration::from_secs(9)));
        assert!((s.progress().seconds_left - 1.0).abs() < 1e-6);
        assert!(s.tick(t0 + Duration::from_secs(10)));
        assert_eq!(s.progress().state, State::TimedOut);
        assert_eq!(
            s.progress().summary(Duration::from_secs(10)),
            "timed out: kept 0 of 5 in 10 s"
        );
    }

    fn wait_until_finished(capture: &Capture) -> Progress {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !capture.finished() {
            assert!(Instant::now() < deadline, "the capture did not end");
            std::thread::sleep(Duration::from_millis(10));
        }
        capture.progress()
    }

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn kept_faces_are_written_0600_in_0700_folders_and_the_capture_ends_at_the_count() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("captures");
        let capture = Capture::start(
            &settings(&root),
            &order(2, 30),
            QualityGate::for_door(80.0),
            Instant::now(),
        )
        .unwrap();
        for (i, turn) in [0.0, 0.3, 0.6].into_iter().enumerate() {
            let (image, face) = frame(turn, i as u32 * 5);
            capture.offer(&image, &[face]);
            std::thread::sleep(Duration::from_millis(50));
        }
        let p = wait_until_finished(&capture);
        assert_eq!((p.state, p.kept), (State::Done, 2), "{p:?}");
        assert_eq!(mode(&root), 0o700);
        assert_eq!(mode(&root.join("ada")), 0o700);
        let files: Vec<_> = std::fs::read_dir(root.join("ada"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        assert_eq!(files.len(), 2, "{files:?}");
        for file in &files {
            assert_eq!(mode(file), 0o600);
            let saved = image::open(file).unwrap();
            // The face (160 px) with half its size on every side, clipped by the frame.
            assert_eq!((saved.width(), saved.height()), (320, 240));
        }
    }

    #[test]
    fn a_capture_ends_at_its_time_limit_and_when_cancelled() {
        let dir = tempfile::tempdir().unwrap();
        let s = settings(dir.path());
        let mut short = order(3, 1);
        short.timeout = Duration::from_millis(1000);
        let started = Instant::now();
        let capture = Capture::start(&s, &short, QualityGate::for_door(80.0), started).unwrap();
        let p = wait_until_finished(&capture);
        assert_eq!(p.state, State::TimedOut);
        let took = started.elapsed();
        assert!(took < Duration::from_millis(1500), "{took:?}");
        let capture = Capture::start(
            &s,
            &order(3, 60),
            QualityGate::for_door(80.0),
            Instant::now(),
        )
        .unwrap();
        capture.cancel();
        assert_eq!(wait_until_finished(&capture).state, State::Cancelled);
    }

    #[test]
    fn a_full_capture_directory_refuses_a_new_capture_with_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = settings(dir.path());
        s.max_files = 2;
        std::fs::create_dir(dir.path().join("bob")).unwrap();
        std::fs::write(dir.path().join("bob/1.jpg"), b"x").unwrap();
        std::fs::write(dir.path().join("bob/2.jpg"), b"x").unwrap();
        let e = Capture::start(
            &s,
            &order(3, 60),
            QualityGate::for_door(80.0),
            Instant::now(),
        )
        .unwrap_err();
        assert!(
            e.contains("holds 2 files") && e.contains("pull-captures.sh"),
            "{e}"
        );
    }

    #[test]
    fn a_capture_stops_when_the_directory_fills_up() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = settings(dir.path());
        s.max_files = 1;
        let capture = Capture::start(
            &s,
            &order(3, 30),
            QualityGate::for_door(80.0),
            Instant::now(),
        )
        .unwrap();
        for (i, turn) in [0.0, 0.3].into_iter().enumerate() {
            let (image, face) = frame(turn, i as u32 * 5);
            capture.offer(&image, &[face]);
            std::thread::sleep(Duration::from_millis(50));
        }
        let p = wait_until_finished(&capture);
        assert_eq!((p.state, p.kept), (State::Failed, 1), "{p:?}");
        assert!(p.message.unwrap().contains("capture.max_files"));
    }

    #[test]
    fn a_loose_capture_directory_is_tightened_to_0700() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let capture = Capture::start(
            &settings(dir.path()),
            &order(1, 5),
            QualityGate::for_door(80.0),
            Instant::now(),
        )
        .unwrap();
        capture.cancel();
        assert_eq!(mode(dir.path()), 0o700);
    }
}
