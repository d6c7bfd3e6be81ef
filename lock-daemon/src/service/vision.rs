//! The vision thread: camera → dark/idle checks → recognition → [`Input::Seen`] to the door
//! loop. It also reloads the classifier and reopens a failing camera with backoff (timed on
//! the service's [`Clock`], so tests need not wait for it). Nothing here touches the relay:
//! however long a frame takes, the door loop re-locks on time. Frame and stage timings are
//! measurements of real work, so they read the real time.
//!
//! With `recognition.workers` > 1 the frames are recognised by the frame pipeline
//! (`pool.rs`), several at once; with 1, here on the vision thread. Either way the results
//! go through the same [`Delivery`].

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Sender, SyncSender};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::audit::{Event, Record};
use crate::camera::{self, CameraError, Frame, FrameSource};
use crate::clock::{self, Clock};
use crate::config::Settings;
use crate::metrics::{Metrics, Stage};
use crate::notify::Notifier;
use crate::preview::PreviewFeed;
use crate::recognizer::FrameResult;

use super::delivery::{Delivery, Gone, Job};
use super::pool::Pool;
use super::watch::FileWatch;
use super::{Input, Recognizer, VISION_STALL_LIMIT};

/// Opens (and after a failure, reopens) the camera. Runs on the vision thread, so a camera
/// need not be `Send`.
pub type CameraOpener = Box<dyn FnMut() -> Result<Box<dyn FrameSource>, CameraError> + Send>;

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
    delivery: Arc<Mutex<Delivery>>,
    /// The frame pipeline's workers (`recognition.workers` > 1).
    pool: Option<Pool>,
    failures: u32,
    /// `camera.expect_ir`: colour frames are being refused (reported once per episode).
    colour_frames: u64,
    /// A recognition that hangs has been reported.
    stall_logged: bool,
}

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
        let delivery = Arc::new(Mutex::new(Delivery::new(
            &self.settings,
            self.metrics.clone(),
            self.preview.clone(),
            self.out.clone(),
        )));
        let pool = self.start_pool(&delivery);
        if let Some(pool) = &pool {
            delivery
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .workers = pool.workers();
        }
        let mut running = Running {
            v: self,
            watch,
            delivery,
            pool,
            failures: 0,
            colour_frames: 0,
            stall_logged: false,
        };
        let _ = running.run(camera);
        // The workers finish their frames first, so the figures include them.
        drop(running.pool.take());
        let summary = running.delivery().stats.summary();
        if let Some(summary) = summary {
            log::info!("{summary}");
        }
    }

    /// The frame pipeline, when more than one worker is configured and the recognizer
    /// can run on other threads.
    fn start_pool(&self, delivery: &Arc<Mutex<Delivery>>) -> Option<Pool> {
        let count = self.settings.recognition.workers;
        if count <= 1 {
            return None;
        }
        let workers = (0..count)
            .map(|_| self.recognizer.worker())
            .collect::<Option<Vec<_>>>()?;
        match Pool::start(workers, delivery.clone(), self.metrics.clone()) {
            Ok(pool) => {
                log::info!("recognising up to {count} frames at once");
                Some(pool)
            }
            Err(e) => {
                log::warn!(
                    "cannot start the recognition workers ({e}); recognising one frame at a time"
                );
                None
            }
        }
    }
}

impl<R: Recognizer> Running<R> {
    fn run(&mut self, mut camera: Box<dyn FrameSource>) -> Result<(), Gone> {
        let timeout = self.v.settings.camera.read_timeout;
        let mut replay_ended = false;
        while !self.stopping() {
            self.beat();
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
                        self.finish_frames()?;
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

    /// Waits until the workers have delivered every frame handed to them, so the end of a
    /// replay reaches the door loop after its last frames.
    fn finish_frames(&mut self) -> Result<(), Gone> {
        while self.pool.as_ref().is_some_and(|pool| !pool.idle()) {
            if self.stopping() {
                return Err(Gone);
            }
            self.beat();
            std::thread::sleep(Duration::from_millis(5));
        }
        Ok(())
    }

    /// Tells the door loop this side is alive, unless a frame has been in recognition for
    /// longer than [`VISION_STALL_LIMIT`]: then the beats stop, the watchdog pings stop,
    /// and systemd restarts the service (the door stays locked meanwhile).
    fn beat(&mut self) {
        match &self.pool {
            Some(pool) if pool.stalled(VISION_STALL_LIMIT) => {
                if !self.stall_logged {
                    self.stall_logged = true;
                    log::error!(
                        "a frame has been in recognition for over {} s: recognition hangs",
                        VISION_STALL_LIMIT.as_secs()
                    );
                }
            }
            _ => self.v.heartbeat.beat(),
        }
    }

    fn stopping(&self) -> bool {
        self.v.stop.load(Ordering::Relaxed)
    }

    fn send(&self, input: Input) -> Result<(), Gone> {
        self.v.out.send(input).map_err(|_| Gone)
    }

    fn delivery(&self) -> std::sync::MutexGuard<'_, Delivery> {
        self.delivery.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn audit(&self, record: Record) -> Result<(), Gone> {
        self.send(Input::Audit(record))
    }

    fn on_frame(&mut self, frame: Frame) -> Result<(), Gone> {
        let started = Instant::now();
        let image = frame.image;
        self.delivery().stats.arrived(started);
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
        if self.delivery().idle.skip(&image, started) {
            log::trace!("unchanged empty scene, frame skipped");
            return Ok(());
        }
        let job = Job {
            image,
            captured: frame.captured,
            started,
        };
        if let Some(pool) = &self.pool {
            return pool.submit(job);
        }
        let result = self
            .v
            .recognizer
            .recognize(&job.image)
            .map(|faces| FrameResult {
                faces,
                small: self.v.recognizer.small_faces(),
                stages: self.v.recognizer.stage_times(),
            });
        self.delivery().deliver(job, result)
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
        let clock = self.v.clock.clone();
        let deadline = clock.now() + backoff(self.failures);
        loop {
            let left = deadline.saturating_duration_since(clock.now());
            if left.is_zero() {
                break;
            }
            if self.stopping() {
                return Err(Gone);
            }
            self.beat();
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
        // Frames in flight were recognised with the classifier in service: they reach the
        // door loop before the new one takes over.
        self.finish_frames()?;
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
