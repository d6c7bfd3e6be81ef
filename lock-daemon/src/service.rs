//! The service loop: frame → recognise → policy → relay, with re-lock on time,
//! watchdog pings, classifier reloads and a locked door on every way out.
//!
//! Start-up order: settings → models and classifier → camera → relay (writes
//! Locked) → READY=1. Shutdown: a signal sets a flag, the loop ends, the relay
//! is written Locked, STOPPING=1.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{anyhow, Context, Result};
use image::RgbImage;
use recognition::{Classifier, FacePipeline, ModelDir, Recognized};

use crate::audit::{AuditLog, Event, Record};
use crate::camera::{self, CameraError, FrameSource};
use crate::config::Settings;
use crate::notify::Notifier;
use crate::policy::{Action, Observation, Policy};
use crate::relay::{self, LockState, Relay};
use crate::scene::IdleSkip;

/// The whole recognition step as one call, so the loop can be driven by a
/// scripted fake in tests.
pub trait Recognizer {
    /// Every face in the frame that is at least the minimum size, largest first.
    fn recognize(&mut self, frame: &RgbImage) -> Result<Vec<Recognized>>;
    /// Loads a new classifier; on error the current one stays in service.
    fn reload(&mut self) -> Result<String>;
    /// The enrolled people.
    fn labels(&self) -> Vec<String>;
}

/// Reads a classifier file once, checks its signature when a trusted key is
/// configured, and loads it from the same bytes (no check-then-reload race).
pub fn load_classifier(
    path: &Path,
    trusted_key: Option<&Path>,
    pipeline: &FacePipeline,
) -> Result<Classifier> {
    let bytes = std::fs::read(path)
        .with_context(|| format!("cannot read classifier {}", path.display()))?;
    if let Some(key_path) = trusted_key {
        let key = recognition::signature::read_verifying_key(key_path)?;
        recognition::signature::verify(&bytes, &key)
            .with_context(|| format!("classifier {} refused", path.display()))?;
    }
    Ok(Classifier::from_bytes(
        path,
        &bytes,
        pipeline.embedder.sha256(),
        pipeline.embedder.dim(),
    )?)
}

/// The real recognizer: MTCNN + FaceNet + the classifier file.
#[derive(Debug)]
pub struct PipelineRecognizer {
    pipeline: FacePipeline,
    classifier: Classifier,
    classifier_path: PathBuf,
    trusted_key: Option<PathBuf>,
    min_face_px: f32,
}

impl PipelineRecognizer {
    /// Loads the models and the classifier, and prepares the detector for the
    /// camera's frame size.
    pub fn load(settings: &Settings) -> Result<PipelineRecognizer> {
        let r = &settings.recognition;
        let models = ModelDir::open(&r.model_dir)?;
        let mut pipeline = FacePipeline::load(&models, r.pipeline_config())?;
        let (w, h) = camera::rotated_size(&settings.camera);
        pipeline.mtcnn.prepare_for_frame_size(w, h)?;
        let trusted_key = settings.security.trusted_key.clone();
        let classifier = load_classifier(&r.classifier, trusted_key.as_deref(), &pipeline)?;
        crate::memory::release_freed_heap();
        Ok(PipelineRecognizer {
            pipeline,
            classifier,
            classifier_path: r.classifier.clone(),
            trusted_key,
            min_face_px: r.min_face_px,
        })
    }

    pub fn classifier(&self) -> &Classifier {
        &self.classifier
    }
}

impl Recognizer for PipelineRecognizer {
    fn recognize(&mut self, frame: &RgbImage) -> Result<Vec<Recognized>> {
        Ok(self
            .pipeline
            .recognize(frame, &self.classifier, self.min_face_px)?)
    }

    fn reload(&mut self) -> Result<String> {
        let new = load_classifier(
            &self.classifier_path,
            self.trusted_key.as_deref(),
            &self.pipeline,
        )?;
        self.classifier = new;
        Ok(self.classifier.labels().join(", "))
    }

    fn labels(&self) -> Vec<String> {
        self.classifier.labels().to_vec()
    }
}

/// Notices when a file is replaced (copied over and renamed into place, or
/// rewritten): its inode, size or modification time changes.
#[derive(Debug)]
pub struct FileWatch {
    path: PathBuf,
    stamp: Option<(u64, u64, SystemTime)>,
    last_check: Option<Instant>,
    every: Duration,
}

impl FileWatch {
    pub fn new(path: &Path, every: Duration) -> FileWatch {
        FileWatch {
            path: path.to_owned(),
            stamp: Self::read(path),
            last_check: None,
            every,
        }
    }

    fn read(path: &Path) -> Option<(u64, u64, SystemTime)> {
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::metadata(path).ok()?;
        Some((m.ino(), m.len(), m.modified().ok()?))
    }

    /// True once per change, checked at most every `every`.
    pub fn changed(&mut self, now: Instant) -> bool {
        if self.last_check.is_some_and(|t| now - t < self.every) {
            return false;
        }
        self.last_check = Some(now);
        let stamp = Self::read(&self.path);
        // A file that is briefly missing (mid-replace) is not a change yet.
        if stamp.is_none() || stamp == self.stamp {
            return false;
        }
        self.stamp = stamp;
        true
    }
}

/// Flags set from signal handlers.
#[derive(Debug, Clone, Default)]
pub struct Signals {
    pub shutdown: Arc<AtomicBool>,
    pub reload: Arc<AtomicBool>,
}

impl Signals {
    /// SIGTERM and SIGINT request shutdown; SIGHUP requests a classifier reload.
    pub fn install() -> Result<Signals> {
        use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
        let signals = Signals::default();
        for sig in [SIGTERM, SIGINT] {
            signal_hook::flag::register(sig, signals.shutdown.clone())
                .context("cannot install signal handler")?;
        }
        signal_hook::flag::register(SIGHUP, signals.reload.clone())
            .context("cannot install signal handler")?;
        Ok(signals)
    }
}

/// Options that only the demo and the tests use.
#[derive(Debug, Clone, Copy, Default)]
pub struct RunOptions {
    /// Stop (locked) once a replay has ended and the door is locked again.
    pub exit_when_replay_ends: bool,
}

/// Frames whose mean luma differs by less than this from the last frame without
/// a face skip recognition ([`IdleSkip`]), for at most `IDLE_MAX_SKIP`.
const IDLE_DIFF_THRESHOLD: f32 = 2.0;
const IDLE_MAX_SKIP: Duration = Duration::from_secs(1);

/// Consecutive camera failures after which the service gives up (and systemd restarts it).
const MAX_CAMERA_FAILURES: u32 = 8;

/// The running service.
pub struct Service<R: Recognizer> {
    settings: Settings,
    camera: Box<dyn FrameSource>,
    relay: Box<dyn Relay>,
    recognizer: R,
    policy: Policy,
    audit: AuditLog,
    notifier: Notifier,
    signals: Signals,
    watch: FileWatch,
    camera_failures: u32,
    last_frame: Option<RgbImage>,
    last_faces: Vec<Recognized>,
    stats: FrameStats,
    idle: IdleSkip,
    pace: PaceCheck,
}

/// Frames with a face timed before the pace check speaks (it speaks once).
const PACE_SAMPLE: usize = 5;

/// Whether recognition keeps up with the policy. `frames_required` frames with
/// a face must fall within the window; frames `interval` apart (the slower of
/// the camera and recognition) span (N − 1)·interval. When that is over 80 % of
/// the window the door opens rarely or never (a Pi Zero 2 W, or a Pi 4 on one
/// thread with a long N), and the operator should hear why, with the fix.
fn pace_warning(
    median_face_frame: Duration,
    camera_interval: Option<Duration>,
    frames_required: u32,
    window: Duration,
) -> Option<String> {
    let interval = camera_interval.map_or(median_face_frame, |c| c.max(median_face_frame));
    let span = interval * frames_required.saturating_sub(1);
    if span.as_secs_f64() <= 0.8 * window.as_secs_f64() {
        return None;
    }
    let camera = camera_interval.map_or("as fast as possible".to_owned(), |c| {
        format!("{:.0} ms", c.as_secs_f64() * 1e3)
    });
    Some(format!(
        "frames with a face come every {:.0} ms (recognition {:.0} ms, camera {camera}), so \
         {frames_required} of them span about {:.2} s against policy.window_secs = {:.2} s: \
         the door will open rarely or never. Set recognition.threads to the number of \
         cores, lengthen policy.window_secs or lower policy.frames_required",
        interval.as_secs_f64() * 1e3,
        median_face_frame.as_secs_f64() * 1e3,
        span.as_secs_f64(),
        window.as_secs_f64()
    ))
}

/// Times the first frames with a face and runs [`pace_warning`] once.
#[derive(Debug, Default)]
struct PaceCheck {
    face_frames: Vec<Duration>,
    done: bool,
}

impl PaceCheck {
    /// Records one recognised frame with a face; returns the warning, if any,
    /// when the sample is complete.
    fn face_frame(
        &mut self,
        took: Duration,
        camera_interval: Option<Duration>,
        frames_required: u32,
        window: Duration,
    ) -> Option<String> {
        if self.done {
            return None;
        }
        self.face_frames.push(took);
        if self.face_frames.len() < PACE_SAMPLE {
            return None;
        }
        self.done = true;
        self.face_frames.sort();
        let median = self.face_frames[PACE_SAMPLE / 2];
        pace_warning(median, camera_interval, frames_required, window)
    }
}

/// Frame-processing figures, logged when the service stops.
#[derive(Debug, Default)]
struct FrameStats {
    first: Option<Instant>,
    /// Frames taken from the camera (recognised or skipped).
    frames: usize,
    /// Time spent on each recognised frame.
    millis: Vec<f32>,
}

impl FrameStats {
    fn arrived(&mut self, at: Instant) {
        self.first.get_or_insert(at);
        self.frames += 1;
    }

    fn recognised(&mut self, started: Instant) {
        self.millis.push(started.elapsed().as_secs_f32() * 1e3);
    }

    fn summary(&mut self) -> Option<String> {
        let first = self.first?;
        let secs = first.elapsed().as_secs_f64();
        self.millis.sort_by(f32::total_cmp);
        let n = self.millis.len();
        let per_frame = match n {
            0 => "none recognised".to_owned(),
            _ => format!(
                "{n} recognised: median {:.0} ms, max {:.0} ms",
                self.millis[n / 2],
                self.millis[n - 1]
            ),
        };
        Some(format!(
            "{} frames in {secs:.1} s ({:.1} frames/s); {per_frame}; RSS {}",
            self.frames,
            self.frames as f64 / secs,
            rss()
        ))
    }
}

/// Resident memory now and at peak, from /proc.
fn rss() -> String {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
            .map_or("?".to_owned(), |kb| format!("{:.0} MiB", kb / 1024.0))
    };
    format!("{} (peak {})", field("VmRSS:"), field("VmHWM:"))
}

impl<R: Recognizer> std::fmt::Debug for Service<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Service")
            .field("state", &self.policy.state().name())
            .finish_non_exhaustive()
    }
}

impl<R: Recognizer> Service<R> {
    /// Opens the camera, the relay (which writes Locked) and the audit log.
    pub fn start(
        settings: Settings,
        recognizer: R,
        notifier: Notifier,
        signals: Signals,
    ) -> Result<Service<R>> {
        let camera = camera::open(&settings.camera)?;
        let relay = relay::open(&settings.relay)?;
        Self::with_parts(settings, camera, relay, recognizer, notifier, signals)
    }

    /// Builds the service from already opened parts (tests inject fakes here).
    pub fn with_parts(
        settings: Settings,
        camera: Box<dyn FrameSource>,
        mut relay: Box<dyn Relay>,
        recognizer: R,
        notifier: Notifier,
        signals: Signals,
    ) -> Result<Service<R>> {
        relay.set(LockState::Locked)?;
        let audit = AuditLog::open(&settings.audit)?;
        let watch = FileWatch::new(&settings.recognition.classifier, Duration::from_secs(1));
        Ok(Service {
            policy: Policy::new(settings.policy_config()),
            settings,
            camera,
            relay,
            recognizer,
            audit,
            notifier,
            signals,
            watch,
            camera_failures: 0,
            last_frame: None,
            last_faces: Vec::new(),
            stats: FrameStats::default(),
            pace: PaceCheck::default(),
            idle: IdleSkip::new(IDLE_DIFF_THRESHOLD, IDLE_MAX_SKIP),
        })
    }

    /// Runs until shutdown. The door is locked whichever way this returns.
    pub fn run(&mut self, options: RunOptions) -> Result<()> {
        let result = self.run_loop(options);
        if let Some(summary) = self.stats.summary() {
            log::info!("{summary}");
        }
        let locked = self.relay.set(LockState::Locked);
        let status = match (&result, &locked) {
            (Ok(()), Ok(())) => "stopped, door locked".to_owned(),
            (Err(e), _) => format!("stopped on error: {e:#}"),
            (_, Err(e)) => format!("stopped, but locking failed: {e}"),
        };
        self.audit_event(Record::new(Event::Stop).message(status.clone()));
        let _ = self.notifier.stopping(&status);
        log::info!("{status}");
        result?;
        locked.map_err(|e| anyhow!(e).context("cannot lock the door on shutdown"))
    }

    fn run_loop(&mut self, options: RunOptions) -> Result<()> {
        self.audit_event(
            Record::new(Event::Start).message(format!("enrolled: {}", self.enrolled_summary())),
        );
        let _ = self.notifier.ready("locked, watching");
        log::info!("ready: door locked, watching");
        let timeout = self.settings.camera.read_timeout;
        while !self.signals.shutdown.load(Ordering::Relaxed) {
            self.maybe_reload(Instant::now());
            match self.camera.next_frame(timeout) {
                Ok(Some(frame)) => {
                    self.camera_failures = 0;
                    self.on_frame(frame.image)?;
                }
                Ok(None) => {
                    if options.exit_when_replay_ends
                        && self.camera.finished()
                        && !self.policy.is_unlocked()
                    {
                        log::info!("replay finished");
                        break;
                    }
                }
                Err(e) => self.on_camera_error(e)?,
            }
            let actions = self.policy.tick(Instant::now());
            self.apply(actions)?;
            let _ = self.notifier.watchdog();
        }
        Ok(())
    }

    fn enrolled_summary(&self) -> String {
        self.recognizer.labels().join(", ")
    }

    fn on_frame(&mut self, image: RgbImage) -> Result<()> {
        let started = Instant::now();
        self.stats.arrived(started);
        let threshold = self.settings.camera.dark_frame_threshold;
        if threshold > 0 && camera::is_dark(&image, threshold) {
            log::trace!("dark frame skipped");
            return Ok(());
        }
        if self.idle.skip(&image, started) {
            log::trace!("unchanged empty scene, frame skipped");
            return Ok(());
        }
        let faces = match self.recognizer.recognize(&image) {
            Ok(faces) => faces,
            Err(e) => {
                log::error!("recognition failed: {e:#}");
                self.audit_event(
                    Record::new(Event::Error).message(format!("recognition failed: {e:#}")),
                );
                return Ok(());
            }
        };
        self.idle.recognised(&image, faces.len(), started);
        self.stats.recognised(started);
        if !faces.is_empty() {
            let policy = &self.settings.policy;
            if let Some(warning) = self.pace.face_frame(
                started.elapsed(),
                camera::frame_interval(&self.settings.camera),
                policy.frames_required,
                policy.window,
            ) {
                log::warn!("{warning}");
                self.audit_event(Record::new(Event::Error).message(warning));
            }
        }
        log::debug!(
            "frame: {} face(s) in {:.0} ms",
            faces.len(),
            started.elapsed().as_secs_f64() * 1e3
        );
        let observation = Observation::from_recognized(&faces);
        self.last_faces = faces;
        self.last_frame = Some(image);
        // Decision time, not capture time: an unlock then lasts `unlock_secs` from the
        // moment the relay opens, whatever the inference took.
        let actions = self.policy.step(Instant::now(), &observation);
        self.apply(actions)
    }

    fn on_camera_error(&mut self, e: CameraError) -> Result<()> {
        if let CameraError::ReplayFrame { reason } = &e {
            log::warn!("replay frame skipped: {reason}");
            return Ok(());
        }
        self.camera_failures += 1;
        log::error!(
            "camera failure {}/{MAX_CAMERA_FAILURES}: {e}",
            self.camera_failures
        );
        self.audit_event(Record::new(Event::Error).message(format!("camera: {e}")));
        if self.camera_failures >= MAX_CAMERA_FAILURES {
            return Err(anyhow!(e).context("the camera keeps failing; giving up"));
        }
        // Back off (the door stays as the policy says; re-lock on time still runs),
        // then reopen the camera.
        let backoff = Duration::from_millis(250 << self.camera_failures.min(5));
        let deadline = Instant::now() + backoff;
        while Instant::now() < deadline && !self.signals.shutdown.load(Ordering::Relaxed) {
            let actions = self.policy.tick(Instant::now());
            self.apply(actions)?;
            let _ = self.notifier.watchdog();
            std::thread::sleep(Duration::from_millis(50).min(backoff));
        }
        match camera::open(&self.settings.camera) {
            Ok(camera) => {
                self.camera = camera;
                log::info!("camera reopened");
            }
            Err(e) => log::error!("camera reopen failed: {e}"),
        }
        Ok(())
    }

    fn maybe_reload(&mut self, now: Instant) {
        let signalled = self.signals.reload.swap(false, Ordering::Relaxed);
        if !(signalled || self.watch.changed(now)) {
            return;
        }
        let _ = self.notifier.reloading();
        match self.recognizer.reload() {
            Ok(labels) => {
                log::info!("classifier reloaded: {labels}");
                self.audit_event(Record::new(Event::Reload).message(format!("enrolled: {labels}")));
            }
            Err(e) => {
                log::error!("new classifier refused, the previous one stays in service: {e:#}");
                self.audit_event(Record::new(Event::ReloadRefused).message(format!("{e:#}")));
            }
        }
        let _ = self.notifier.ready(self.policy.state().name());
    }

    fn apply(&mut self, actions: Vec<Action>) -> Result<()> {
        for action in actions {
            let (state, event) = match &action {
                Action::Unlock { .. } => (Some(LockState::Unlocked), Event::Unlock),
                Action::Relock { .. } => (Some(LockState::Locked), Event::Relock),
                Action::DeniedUnknown { .. } => (None, Event::DeniedUnknown),
            };
            if let Some(state) = state {
                if let Err(e) = self.relay.set(state) {
                    let _ = self.relay.set(LockState::Locked);
                    self.audit_event(Record::new(Event::Error).message(format!("relay: {e}")));
                    return Err(anyhow!(e).context("relay failed"));
                }
            }
            let record = Record::from_action(&action);
            log::info!("{action}");
            let _ = self.notifier.status(&action.to_string());
            match (&self.last_frame, event) {
                (Some(frame), Event::Unlock | Event::DeniedUnknown) => {
                    if let Err(e) = self
                        .audit
                        .record_with_snapshot(record, frame, &self.last_faces)
                    {
                        log::error!("audit log: {e}");
                    }
                }
                _ => self.audit_event(record),
            }
        }
        Ok(())
    }

    fn audit_event(&mut self, record: Record) {
        if let Err(e) = self.audit.record(&record) {
            log::error!("audit log: {e}");
        }
    }

    /// The policy, for tests.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn a_fast_pipeline_raises_no_pace_warning() {
        // x86: 80 ms per face frame, camera at 5 frames/s, 3 frames in 2 s.
        assert_eq!(pace_warning(80 * MS, Some(200 * MS), 3, 2000 * MS), None);
    }

    #[test]
    fn a_pipeline_too_slow_for_the_window_is_reported_with_the_fix() {
        // Pi Zero 2 W estimate: ~1.3 s per face frame; 3 frames span 2.6 s > 2 s.
        let warning = pace_warning(1300 * MS, Some(200 * MS), 3, 2000 * MS).unwrap();
        assert!(warning.contains("recognition 1300 ms"), "{warning}");
        assert!(warning.contains("recognition.threads"), "{warning}");
        assert!(warning.contains("policy.window_secs"), "{warning}");
    }

    #[test]
    fn the_camera_interval_counts_when_it_is_the_slower_one() {
        // Fast recognition, but a 1 frame/s camera: 3 frames span 2 s.
        assert!(pace_warning(50 * MS, Some(1000 * MS), 3, 2000 * MS).is_some());
        assert!(pace_warning(50 * MS, None, 3, 2000 * MS).is_none());
    }

    #[test]
    fn the_pace_check_speaks_once_after_its_sample() {
        let mut check = PaceCheck::default();
        let slow = |c: &mut PaceCheck| c.face_frame(1500 * MS, None, 3, 2000 * MS);
        for _ in 0..PACE_SAMPLE - 1 {
            assert_eq!(slow(&mut check), None);
        }
        assert!(slow(&mut check).is_some());
        assert_eq!(slow(&mut check), None);
    }
}
