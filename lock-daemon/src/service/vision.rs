//! The vision thread: camera → dark/idle checks → recognition → [`Input::Seen`] to the door
//! loop. It also reloads the classifier and reopens a failing camera with backoff (timed on
//! the service's [`Clock`], so tests need not wait for it). Nothing here touches the relay:
//! however long a frame takes, the door loop re-locks on time. Frame and stage timings are
//! measurements of real work, so they read the real time.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Sender, SyncSender};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::audit::{Event, Record};
use crate::camera::{self, CameraError, Frame, FrameSource};
use crate::clock::{self, Clock};
use crate::config::Settings;
use crate::metrics::{Metrics, Stage};
use crate::notify::Notifier;
use crate::preview::PreviewFeed;
use crate::scene::IdleSkip;

use super::pace::PaceCheck;
use super::stats::FrameStats;
use super::watch::FileWatch;
use super::{Input, Recognizer, Seen};

/// Opens (and after a failure, reopens) the camera. Runs on the vision thread, so a camera
/// need not be `Send`.
pub type CameraOpener = Box<dyn FnMut() -> Result<Box<dyn FrameSource>, CameraError> + Send>;

/// Frames whose mean luma differs by less than this from the last frame without
/// a face skip recognition ([`IdleSkip`]), for at most `IDLE_MAX_SKIP`.
const IDLE_DIFF_THRESHOLD: f32 = 2.0;
const IDLE_MAX_SKIP: Duration = Duration::from_secs(1);

/// Consecutive camera failures after which the service gives up (and systemd restarts it).
pub const MAX_CAMERA_FAILURES: u32 = 8;

/// The first camera backoff; it doubles per consecutive failure, up to 32 times this.
pub const CAMERA_BACKOFF: Duration = Duration::from_millis(250);

/// The wait after the `failures`-th consecutive camera failure: 0.5 s, 1 s, 2 s, 4 s, then 8 s.
pub fn backoff(failures: u32) -> Duration {
    CAMERA_BACKOFF * (1 << failures.min(5))
}

/// How often a backoff looks at the stop flag (and beats the heartbeat).
const BACKOFF_STEP: Duration = Duration::from_millis(50);

/// When the vision thread last made progress (`CLOCK_MONOTONIC` ms): a frame, a camera
/// timeout, a backoff step. The door loop stops pinging systemd's watchdog when it goes
/// stale, so a hung camera driver or network gets the service restarted.
#[derive(Debug, Clone, Default)]
pub struct Heartbeat(Arc<AtomicU64>);

impl Heartbeat {
    pub fn beat(&self) {
        self.0.store(clock::monotonic_ms(), Ordering::Relaxed);
    }

    /// How long since the last beat.
    pub fn age(&self) -> Duration {
        Duration::from_millis(clock::monotonic_ms().saturating_sub(self.0.load(Ordering::Relaxed)))
    }
}

/// Everything the vision thread owns.
pub(super) struct Vision<R> {
    pub settings: Settings,
    pub recognizer: R,
    pub open_camera: CameraOpener,
    pub out: SyncSender<Input>,
    pub stop: Arc<AtomicBool>,
    pub reload: Arc<AtomicBool>,
    pub heartbeat: Heartbeat,
    pub notifier: Arc<Notifier>,
    pub clock: Arc<dyn Clock>,
    pub metrics: Arc<Metrics>,
    pub preview: PreviewFeed,
}

/// The vision thread's working state.
struct Running<R> {
    v: Vision<R>,
    watch: FileWatch,
    idle: IdleSkip,
    pace: PaceCheck,
    stats: FrameStats,
    failures: u32,
    /// `camera.expect_ir`: colour frames are being refused (reported once per episode).
    colour_frames: u64,
}

/// The door loop has gone: stop.
struct Gone;

impl<R: Recognizer> Vision<R> {
    /// Opens the camera, reports the outcome on `started`, then runs until told to stop,
    /// the door loop goes away, or the camera keeps failing ([`Input::Fatal`]).
    pub fn run(mut self, started: Sender<Result<(), CameraError>>) {
        self.heartbeat.beat();
        let camera = match (self.open_camera)() {
            Ok(camera) => {
                let _ = started.send(Ok(()));
                camera
            }
            Err(e) => {
                let _ = started.send(Err(e));
                return;
            }
        };
        let watch = FileWatch::new(
            &self.settings.recognition.classifier,
            Duration::from_secs(1),
        );
        let mut running = Running {
            v: self,
            watch,
            idle: IdleSkip::new(IDLE_DIFF_THRESHOLD, IDLE_MAX_SKIP),
            pace: PaceCheck::default(),
            stats: FrameStats::default(),
            failures: 0,
            colour_frames: 0,
        };
        let _ = running.run(camera);
        if let Some(summary) = running.stats.summary() {
            log::info!("{summary}");
        }
    }
}

impl<R: Recognizer> Running<R> {
    fn run(&mut self, mut camera: Box<dyn FrameSource>) -> Result<(), Gone> {
        let timeout = self.v.settings.camera.read_timeout;
        let mut replay_ended = false;
        while !self.stopping() {
            self.v.heartbeat.beat();
            self.maybe_reload(self.v.clock.now())?;
            let reading = Instant::now();
            match camera.next_frame(timeout) {
                Ok(Some(frame)) => {
                    self.v.metrics.frame();
                    self.v.metrics.stage(Stage::Capture, reading.elapsed());
                    self.failures = 0;
                    self.on_frame(frame)?;
                }
                Ok(None) => {
                    if camera.finished() && !replay_ended {
                        replay_ended = true;
                        self.send(Input::ReplayEnded)?;
                    }
                }
                Err(CameraError::ReplayFrame { reason }) => {
                    log::warn!("replay frame skipped: {reason}");
                }
                Err(e) => {
                    // Closed before the backoff: a V4L2 device must be free to reopen.
                    drop(std::mem::replace(&mut camera, Box::new(Closed)));
                    camera = self.reopen_after(e)?;
                }
            }
        }
        Ok(())
    }

    fn stopping(&self) -> bool {
        self.v.stop.load(Ordering::Relaxed)
    }

    fn send(&self, input: Input) -> Result<(), Gone> {
        self.v.out.send(input).map_err(|_| Gone)
    }

    fn audit(&self, record: Record) -> Result<(), Gone> {
        self.send(Input::Audit(record))
    }

    fn on_frame(&mut self, frame: Frame) -> Result<(), Gone> {
        let started = Instant::now();
        let image = frame.image;
        self.stats.arrived(started);
        let threshold = self.v.settings.camera.dark_frame_threshold;
        if threshold > 0 && camera::is_dark(&image, threshold) {
            log::trace!("dark frame skipped");
            return Ok(());
        }
        if self.v.settings.camera.expect_ir {
            let score = camera::ir::colourfulness(&image);
            if score > camera::ir::IR_MAX_COLOURFULNESS {
                self.colour_frames += 1;
                if self.colour_frames == 1 {
                    let message = format!(
                        "camera.expect_ir is set but the frames are in colour (colourfulness \
                         {score:.2} > {:.2}): a colour camera, or an IR camera without its \
                         IR-pass filter. Frames are refused until they are infrared again",
                        camera::ir::IR_MAX_COLOURFULNESS
                    );
                    log::error!("{message}");
                    self.audit(Record::new(Event::CameraNotIr).message(message))?;
                }
                return Ok(());
            }
            if self.colour_frames > 0 {
                log::info!(
                    "frames are infrared again after {} colour frames were refused",
                    self.colour_frames
                );
                self.colour_frames = 0;
            }
        }
        if self.idle.skip(&image, started) {
            log::trace!("unchanged empty scene, frame skipped");
            return Ok(());
        }
        let faces = match self.v.recognizer.recognize(&image) {
            Ok(faces) => faces,
            Err(e) => {
                log::error!("recognition failed: {e:#}");
                return self.audit(
                    Record::new(Event::Error).message(format!("recognition failed: {e:#}")),
                );
            }
        };
        self.idle.recognised(&image, faces.len(), started);
        self.stats.recognised(started);
        self.v.metrics.frame_recognized(faces.len());
        self.v.metrics.stage(Stage::Recognize, started.elapsed());
        if let Some((detect, embed)) = self.v.recognizer.stage_times() {
            self.v.metrics.stage(Stage::Detect, detect);
            if !faces.is_empty() {
                self.v.metrics.stage(Stage::Embed, embed);
            }
        }
        let recognizer = &self.v.recognizer;
        self.v
            .preview
            .offer(Instant::now(), &image, &faces, || recognizer.small_faces());
        if !faces.is_empty() {
            let policy = &self.v.settings.policy;
            if let Some(warning) = self.pace.face_frame(
                started.elapsed(),
                camera::frame_interval(&self.v.settings.camera),
                policy.frames_required,
                policy.window,
            ) {
                log::warn!("{warning}");
                self.audit(Record::new(Event::Error).message(warning))?;
            }
        }
        log::debug!(
            "frame: {} face(s) in {:.0} ms",
            faces.len(),
            started.elapsed().as_secs_f64() * 1e3
        );
        let small = self.v.recognizer.small_faces();
        self.send(Input::Seen(Box::new(Seen {
            image,
            faces,
            small,
            captured: frame.captured,
        })))
    }

    /// Counts the failure, backs off (stopping promptly when asked), and reopens the
    /// camera. After [`MAX_CAMERA_FAILURES`] in a row it gives up.
    fn reopen_after(&mut self, e: CameraError) -> Result<Box<dyn FrameSource>, Gone> {
        self.failures += 1;
        self.v.metrics.camera_error();
        log::error!(
            "camera failure {}/{MAX_CAMERA_FAILURES}: {e}",
            self.failures
        );
        self.audit(Record::new(Event::Error).message(format!("camera: {e}")))?;
        if self.failures >= MAX_CAMERA_FAILURES {
            self.send(Input::Fatal(format!(
                "the camera keeps failing; giving up: {e}"
            )))?;
            return Err(Gone);
        }
        let clock = &self.v.clock;
        let deadline = clock.now() + backoff(self.failures);
        loop {
            let left = deadline.saturating_duration_since(clock.now());
            if left.is_zero() {
                break;
            }
            if self.stopping() {
                return Err(Gone);
            }
            self.v.heartbeat.beat();
            clock.sleep(BACKOFF_STEP.min(left));
        }
        match (self.v.open_camera)() {
            Ok(camera) => {
                log::info!("camera reopened");
                Ok(camera)
            }
            // Counted like a read failure: back off again, or give up.
            Err(e) => self.reopen_after(e),
        }
    }

    fn maybe_reload(&mut self, now: Instant) -> Result<(), Gone> {
        let signalled = self.v.reload.swap(false, Ordering::Relaxed);
        if !(signalled || self.watch.changed(now)) {
            return Ok(());
        }
        self.watch.absorb();
        let _ = self.v.notifier.reloading();
        let record = match self.v.recognizer.reload() {
            Ok(labels) => {
                log::info!("classifier reloaded: {labels}");
                self.v.metrics.reload(true);
                self.send(Input::Reloaded(self.v.recognizer.info()))?;
                Record::new(Event::Reload).message(format!("enrolled: {labels}"))
            }
            Err(e) => {
                self.v.metrics.reload(false);
                log::error!("new classifier refused, the previous one stays in service: {e:#}");
                Record::new(Event::ReloadRefused).message(format!("{e:#}"))
            }
        };
        let _ = self.v.notifier.ready("classifier checked");
        self.audit(record)
    }
}

/// Stands in for a camera that was closed after a failure, until it is reopened.
struct Closed;

impl FrameSource for Closed {
    fn next_frame(&mut self, _timeout: Duration) -> Result<Option<Frame>, CameraError> {
        Err(CameraError::Pipe {
            name: "camera".into(),
            reason: "not open".into(),
        })
    }
}
