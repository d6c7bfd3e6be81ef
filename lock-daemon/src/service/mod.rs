//! The service: a door loop and a vision thread joined by one channel.
//!
//! * The **door loop** ([`Service::run`], on the caller's thread) owns the policy, the relay,
//!   the audit log and systemd notification. It waits for [`Input`]s no longer than the
//!   policy's next deadline ([`Policy::next_deadline`]), so re-locking happens on time
//!   whatever the camera or recognition are doing: it never waits for a frame.
//! * The **vision thread** ([`vision`]) owns the camera and the recognizer. It reads frames,
//!   recognises faces, reloads the classifier and reopens a failing camera, and sends what
//!   it saw to the door loop. A frame that takes seconds delays only the next frame.
//!
//! Everything that reaches the door from outside the frame loop goes through the same
//! channel.
//!
//! Start-up order (with `main.rs`): settings → relay claimed (one daemon per relay) and
//! written Locked → models and classifier → audit log → camera opened on the vision thread →
//! READY=1. Shutdown: a signal sets a flag; the door loop writes Locked first, then stops the
//! vision thread (waiting a bounded time), audits the stop and sends STOPPING=1.

mod pace;
mod stats;
mod vision;
mod watch;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};
use image::RgbImage;
use recognition::Recognized;

pub use crate::recognizer::{load_classifier, PipelineRecognizer, Recognizer};
pub use stats::rss;
pub use vision::{CameraOpener, Heartbeat, CAMERA_BACKOFF, MAX_CAMERA_FAILURES};
pub use watch::{FileWatch, Signals};

use crate::audit::{AuditLog, Event, Record};
use crate::camera;
use crate::config::Settings;
use crate::notify::Notifier;
use crate::policy::{Action, Observation, Policy};
use crate::relay::{Claim, LockState, Relay};

/// Options that only the demo and the tests use.
#[derive(Debug, Clone, Copy, Default)]
pub struct RunOptions {
    /// Stop (locked) once a replay has ended and the door is locked again.
    pub exit_when_replay_ends: bool,
}

/// What reaches the door loop. The one way in: the vision thread uses it today, and every
/// other front-end uses it too.
#[derive(Debug)]
pub enum Input {
    /// A recognised frame.
    Seen(Box<Seen>),
    /// Something to write to the audit log (errors, reloads, the pace warning).
    Audit(Record),
    /// A replay has delivered its last frame.
    ReplayEnded,
    /// The vision side gave up (the camera keeps failing): the service stops, locked.
    Fatal(String),
}

/// One recognised frame.
#[derive(Debug)]
pub struct Seen {
    pub image: RgbImage,
    pub faces: Vec<Recognized>,
    /// When the camera delivered it.
    pub captured: Instant,
}

/// The longest the door loop sleeps between looks at the shutdown flag.
const MAX_WAIT: Duration = Duration::from_millis(50);
/// How often systemd's watchdog is pinged (the unit's WatchdogSec is 30 s).
const WATCHDOG_EVERY: Duration = Duration::from_secs(1);
/// A vision thread silent for this long is stuck (a hung driver): the watchdog pings stop,
/// so systemd restarts the service. The door stays locked meanwhile.
pub const VISION_STALL_LIMIT: Duration = Duration::from_secs(20);
/// How long the camera may take to open at start.
const CAMERA_OPEN_LIMIT: Duration = Duration::from_secs(30);
/// How long shutdown waits for the vision thread to finish its frame.
const VISION_JOIN_LIMIT: Duration = Duration::from_secs(3);
/// Frames in flight from the vision thread to the door loop.
const CHANNEL_DEPTH: usize = 4;

/// The running service.
pub struct Service {
    settings: Settings,
    relay: Box<dyn Relay>,
    /// Held for the life of the service: one daemon per relay.
    _claim: Option<Claim>,
    policy: Policy,
    audit: AuditLog,
    notifier: Arc<Notifier>,
    signals: Signals,
    inputs: Receiver<Input>,
    vision: Option<JoinHandle<()>>,
    stop_vision: Arc<AtomicBool>,
    heartbeat: Heartbeat,
    last_watchdog: Option<Instant>,
    vision_stalled: bool,
    replay_ended: bool,
    last_frame: Option<RgbImage>,
    last_faces: Vec<Recognized>,
    /// The enrolled people at start, for the start record.
    enrolled: String,
}

impl std::fmt::Debug for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Service")
            .field("state", &self.policy.state().name())
            .finish_non_exhaustive()
    }
}

/// The parts a service is built from; tests inject fakes here.
pub struct Parts<R> {
    pub settings: Settings,
    /// Already open (and claimed, see [`crate::relay::claim`]).
    pub relay: Box<dyn Relay>,
    pub claim: Option<Claim>,
    pub recognizer: R,
    pub open_camera: CameraOpener,
    pub notifier: Notifier,
    pub signals: Signals,
    /// The first wait after a camera failure ([`CAMERA_BACKOFF`] in service).
    pub camera_backoff: Duration,
}

impl<R> std::fmt::Debug for Parts<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Parts").finish_non_exhaustive()
    }
}

impl Service {
    /// Starts the service on the configured camera.
    pub fn start<R: Recognizer + Send + 'static>(
        settings: Settings,
        relay: Box<dyn Relay>,
        claim: Claim,
        recognizer: R,
        notifier: Notifier,
        signals: Signals,
    ) -> Result<Service> {
        let camera_settings = settings.camera.clone();
        Self::with_parts(Parts {
            settings,
            relay,
            claim: Some(claim),
            recognizer,
            open_camera: Box::new(move || camera::open(&camera_settings)),
            notifier,
            signals,
            camera_backoff: CAMERA_BACKOFF,
        })
    }

    /// Writes Locked, opens the audit log, starts the vision thread and waits until it has
    /// opened the camera. A camera that cannot be opened is an error here, before READY.
    pub fn with_parts<R: Recognizer + Send + 'static>(parts: Parts<R>) -> Result<Service> {
        let Parts {
            settings,
            mut relay,
            claim,
            recognizer,
            open_camera,
            notifier,
            signals,
            camera_backoff,
        } = parts;
        relay.set(LockState::Locked)?;
        let audit = AuditLog::open(&settings.audit)?;
        let enrolled = recognizer.labels().join(", ");
        let notifier = Arc::new(notifier);
        let (tx, inputs) = mpsc::sync_channel(CHANNEL_DEPTH);
        let stop_vision = Arc::new(AtomicBool::new(false));
        let heartbeat = Heartbeat::default();
        let vision = vision::Vision {
            settings: settings.clone(),
            recognizer,
            open_camera,
            out: tx,
            stop: stop_vision.clone(),
            reload: signals.reload.clone(),
            heartbeat: heartbeat.clone(),
            notifier: notifier.clone(),
            camera_backoff,
        };
        let (started_tx, started) = mpsc::channel();
        let handle = std::thread::Builder::new()
            .name("vision".into())
            .spawn(move || vision.run(started_tx))
            .context("cannot start the vision thread")?;
        match started.recv_timeout(CAMERA_OPEN_LIMIT) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                let _ = handle.join();
                return Err(e.into());
            }
            Err(_) => {
                stop_vision.store(true, Ordering::Relaxed);
                return Err(anyhow!(
                    "the camera did not open within {} s; check camera.device and `dmesg`",
                    CAMERA_OPEN_LIMIT.as_secs()
                ));
            }
        }
        Ok(Service {
            policy: Policy::new(settings.policy_config()),
            settings,
            relay,
            _claim: claim,
            audit,
            notifier,
            signals,
            inputs,
            vision: Some(handle),
            stop_vision,
            heartbeat,
            last_watchdog: None,
            vision_stalled: false,
            replay_ended: false,
            last_frame: None,
            last_faces: Vec::new(),
            enrolled,
        })
    }

    /// Runs until shutdown. The door is locked whichever way this returns.
    pub fn run(&mut self, options: RunOptions) -> Result<()> {
        let result = self.run_loop(options);
        // Lock first: nothing below may delay it.
        let locked = self.relay.set(LockState::Locked);
        if let Err(e) = &result {
            self.audit_event(Record::new(Event::Error).message(format!("{e:#}")));
        }
        self.stop_vision();
        let status = match (&result, &locked) {
            (Ok(()), Ok(())) => "stopped, door locked".to_owned(),
            (Err(e), Ok(())) => format!("stopped on error, door locked: {e:#}"),
            (Err(e), Err(_)) => format!("stopped on error: {e:#}"),
            (_, Err(e)) => format!("stopped, but locking failed: {e}"),
        };
        self.audit_event(Record::new(Event::Stop).message(status.clone()));
        let _ = self.notifier.stopping(&status);
        log::info!("{status}");
        result?;
        locked.map_err(|e| anyhow!(e).context("cannot lock the door on shutdown"))
    }

    fn run_loop(&mut self, options: RunOptions) -> Result<()> {
        let start = Record::new(Event::Start).message(format!("enrolled: {}", self.enrolled));
        self.audit_event(start);
        let _ = self.notifier.ready("locked, watching");
        log::info!("ready: door locked, watching");
        while !self.signals.shutdown.load(Ordering::Relaxed) {
            let now = Instant::now();
            let actions = self.policy.tick(now);
            self.apply(actions)?;
            self.watchdog(now);
            if options.exit_when_replay_ends && self.replay_ended && !self.policy.is_unlocked() {
                log::info!("replay finished");
                break;
            }
            // Sleep no later than the policy's next deadline.
            let wait = self
                .policy
                .next_deadline()
                .map_or(MAX_WAIT, |d| d.saturating_duration_since(now).min(MAX_WAIT));
            match self.inputs.recv_timeout(wait) {
                Ok(input) => self.on_input(input)?,
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return Err(self.vision_died()),
            }
        }
        Ok(())
    }

    fn on_input(&mut self, input: Input) -> Result<()> {
        match input {
            Input::Seen(seen) => {
                let observation = Observation::from_recognized(&seen.faces);
                let Seen { image, faces, .. } = *seen;
                self.last_faces = faces;
                self.last_frame = Some(image);
                // Decision time, not capture time: an unlock then lasts `unlock_secs` from
                // the moment the relay opens, whatever the inference took.
                let actions = self.policy.step(Instant::now(), &observation);
                self.apply(actions)
            }
            Input::Audit(record) => {
                self.audit_event(record);
                Ok(())
            }
            Input::ReplayEnded => {
                self.replay_ended = true;
                Ok(())
            }
            Input::Fatal(reason) => Err(anyhow!(reason)),
        }
    }

    /// The vision thread ended without saying why: it panicked.
    fn vision_died(&mut self) -> anyhow::Error {
        let why = match self.vision.take().map(JoinHandle::join) {
            Some(Err(panic)) => panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_else(|| "a panic".to_owned()),
            _ => "it ended".to_owned(),
        };
        anyhow!("the camera and recognition thread stopped ({why})")
    }

    /// Pings systemd's watchdog while the vision thread makes progress.
    fn watchdog(&mut self, now: Instant) {
        let age = self.heartbeat.age();
        if age > VISION_STALL_LIMIT {
            if !self.vision_stalled {
                self.vision_stalled = true;
                let message = format!(
                    "no progress from the camera and recognition for {} s; the door stays \
                     locked, and systemd's watchdog will restart the service",
                    age.as_secs()
                );
                log::error!("{message}");
                self.audit_event(Record::new(Event::Error).message(message));
            }
            return;
        }
        self.vision_stalled = false;
        if self
            .last_watchdog
            .is_none_or(|t| now.saturating_duration_since(t) >= WATCHDOG_EVERY)
        {
            self.last_watchdog = Some(now);
            let _ = self.notifier.watchdog();
        }
    }

    /// Tells the vision thread to stop and waits a bounded time for it (it may be in the
    /// middle of a frame). Inputs still queued are drained so it never blocks on sending.
    fn stop_vision(&mut self) {
        self.stop_vision.store(true, Ordering::Relaxed);
        let Some(handle) = self.vision.take() else {
            return;
        };
        let deadline = Instant::now() + VISION_JOIN_LIMIT;
        while !handle.is_finished() && Instant::now() < deadline {
            while let Ok(input) = self.inputs.try_recv() {
                if let Input::Audit(record) = input {
                    self.audit_event(record);
                }
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        if handle.is_finished() {
            let _ = handle.join();
        } else {
            log::warn!("the vision thread is still busy; leaving it behind");
        }
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

    /// The settings in service.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }
}

#[cfg(test)]
mod tests;
