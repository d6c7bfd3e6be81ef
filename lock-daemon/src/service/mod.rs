//! The service: a door loop and a vision thread joined by one channel.
//!
//! * The **door loop** ([`Service::run`], on the caller's thread) owns the policy, the relay,
//!   the audit log and systemd notification. It waits for [`Input`]s no longer than the
//!   policy's next deadline ([`Policy::next_deadline`]), so re-locking happens on time
//!   whatever the camera or recognition are doing: it never waits for a frame.
//! * The **vision thread** (`vision.rs`) owns the camera and the recognizer. It reads frames,
//!   recognises faces, reloads the classifier and reopens a failing camera, and sends what
//!   it saw to the door loop. A frame that takes seconds delays only the next frame. With
//!   `recognition.workers` > 1 it hands frames to recognition workers (`pool.rs`) whose
//!   results reach the door loop in camera order (`delivery.rs`).
//!
//! Everything that reaches the door from outside the frame loop goes through the same
//! channel. The front-ends (control socket, HTTP API, MQTT) send commands on it and read
//! what the door loop publishes: the status snapshot ([`StatusBoard`]) and the records it
//! writes ([`EventFeed`]). The loop never waits on either.
//!
//! Time reaches both through a [`Clock`] in [`Parts`] (the [`SystemClock`] in service), so
//! tests drive the loop's deadlines and the camera backoff with a
//! [`FakeClock`](crate::clock::FakeClock) instead of waiting for them.
//!
//! Start-up order (`main.rs`, then [`Service::with_parts`]): signal handlers → settings →
//! relay claimed (one daemon per relay) and opened, which writes Locked → models and
//! classifier → Locked written again (a relay handed in by a test may not be) → audit log →
//! the persisted mode → control socket, HTTP API, MQTT, indicator outputs, door inputs →
//! camera opened on the vision thread (an error here, before READY) → in [`Service::run`]:
//! the start record, the mode or schedule applied → READY=1. Shutdown: a signal sets a flag;
//! the door loop writes Locked first, then stops the vision thread (waiting a bounded time),
//! audits the stop, lets MQTT publish the final state and `offline` (at most
//! [`crate::mqtt::SHUTDOWN_LIMIT`]) and sends STOPPING=1.
//!
//! Files: this one builds and runs the loop; `actions.rs` carries out decisions (relay,
//! indicator, audit), `commands.rs` answers the front-ends, `capturing.rs` runs guided
//! capture ([`crate::capture`]) in the loop, `status.rs` builds the snapshot, `vision.rs`
//! is the vision thread.

mod actions;
mod capturing;
mod commands;
mod delivery;
mod feed;
mod modes;
mod pace;
mod pool;
mod stats;
mod status;
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

pub use crate::clock::{Clock, SystemClock};
pub use crate::recognizer::{ClassifierInfo, PhotoRecognizer, PipelineRecognizer, Recognizer};
pub use feed::{Batch, EventFeed, FEED_DEPTH};
pub use stats::rss;
pub use status::{Decision, Status, StatusBoard};
pub use vision::{CameraOpener, Heartbeat, CAMERA_BACKOFF, MAX_CAMERA_FAILURES};
pub use watch::{FileWatch, Signals};

use crate::audit::{AuditLog, Event, Record};
use crate::camera;
use crate::config::Settings;
use crate::control::{ControlServer, Reply, Request};
use crate::door::{Contact, Door, DoorConfig};
use crate::http::HttpServer;
use crate::indicator::Indicator;
use crate::inputs::{DoorContact, InputEvent, Inputs, InputsBackend};
use crate::metrics::{Metrics, Stage};
use crate::mqtt::MqttClient;
use crate::notify::Notifier;
use crate::policy::{Observation, Policy};
use crate::preview::PreviewFeed;
use crate::relay::{Claim, LockState, Relay};
use crate::rollback::StateDir;
use crate::schedule::{self, Civil};

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
    /// A command from a front-end (control socket, ...), answered on its reply channel.
    Command(Command),
    /// A door input: the contact, the exit button, fire release, or a read error.
    Door(InputEvent),
    /// A new classifier is in service.
    Reloaded(ClassifierInfo),
    /// A frame could not be recognised (the message says why): audited, and the face
    /// confirmation so far is discarded ([`Policy::failed`]).
    RecognitionFailed(String),
}

/// A front-end's request, with who asked and where the answer goes. The door loop answers
/// at once and never waits on the front-end.
#[derive(Debug)]
pub struct Command {
    pub request: Request,
    /// Who asked, for the audit log (`uid 1000 (alice) via control socket`).
    pub by: String,
    pub reply: mpsc::Sender<Reply>,
}

/// One recognised frame.
#[derive(Debug)]
pub struct Seen {
    pub image: RgbImage,
    pub faces: Vec<Recognized>,
    /// Faces found but below `recognition.min_face_px` (not recognised; guided capture
    /// counts them, so a small second face still refuses a frame).
    pub small: Vec<recognition::Face>,
    /// When the camera delivered it.
    pub captured: Instant,
}

/// The door controller's parameters from the settings.
fn door_config(settings: &Settings) -> DoorConfig {
    DoorConfig {
        unlock: settings.policy.unlock,
        exit: settings.door.exit,
        held_open: settings.door.held_open,
        relock_on_close: settings.door.relock_on_close,
        max_manual: settings.door.max_manual_unlock,
    }
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
const CHANNEL_DEPTH: usize = 8;
/// How often the system clock's synchronisation is checked for the schedule.
const CLOCK_CHECK_EVERY: Duration = Duration::from_secs(10);

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
    /// Where the loop reads the time.
    clock: Arc<dyn Clock>,
    /// The enrolled people at start, for the start record.
    enrolled: Vec<String>,
    /// The classifier in service.
    classifier: ClassifierInfo,
    metrics: Arc<Metrics>,
    fps: status::FpsMeter,
    /// Kept for the life of the service; stops serving when dropped.
    _http: Option<HttpServer>,
    /// Stopped (publishing the final state and `offline`) after the door is locked.
    mqtt: Option<MqttClient>,
    /// The records written, for front-ends that push events (MQTT).
    feed: EventFeed,
    /// The relay failed: the lock reads "jammed" until the service stops.
    jammed: bool,
    door: Door,
    state: StateDir,
    board: StatusBoard,
    started: Instant,
    started_wall: String,
    last_decision: Option<Decision>,
    /// Guided capture: the one running, or the last one's result.
    capturing: capturing::Capturing,
    /// The data collector (`[collect]`), when it is on.
    collector: Option<crate::collector::Collector>,
    /// Kept for the life of the service; stops serving when dropped.
    _control: Option<ControlServer>,
    /// Whether a door contact is wired (an unknown state then reads "unknown").
    door_wired: bool,
    /// Kept for the life of the service; the inputs stop when dropped.
    _inputs: Option<Inputs>,
    /// The status LED and buzzer (cosmetic: never affects the lock).
    indicator: Option<Indicator>,
    /// Why the indicator could not start, audited at start.
    indicator_error: Option<String>,
    /// Whether the system clock counts as synchronised, and when that was last asked.
    clock_synced: bool,
    clock_checked: Option<Instant>,
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
    /// The door loop's deadlines and the camera backoff ([`SystemClock`] in service).
    pub clock: Arc<dyn Clock>,
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
            clock: Arc::new(SystemClock),
        })
    }

    /// Writes Locked, opens the audit log, starts the front-ends and the door inputs, starts
    /// the vision thread and waits until it has opened the camera. A camera that cannot be
    /// opened is an error here, before READY.
    pub fn with_parts<R: Recognizer + Send + 'static>(parts: Parts<R>) -> Result<Service> {
        let Parts {
            settings,
            mut relay,
            claim,
            recognizer,
            open_camera,
            notifier,
            signals,
            clock,
        } = parts;
        relay.set(LockState::Locked)?;
        let audit = AuditLog::open(&settings.audit)?;
        let enrolled = recognizer.labels();
        let classifier = recognizer.info();
        let photos = recognizer.photos();
        let metrics = Arc::new(Metrics::new());
        let preview = PreviewFeed::default();
        let state = StateDir::new(&settings.state.dir);
        let mode = modes::load(&state)?;
        let door = Door::new(door_config(&settings), mode);
        let notifier = Arc::new(notifier);
        let (tx, inputs) = mpsc::sync_channel(CHANNEL_DEPTH);
        let board = StatusBoard::default();
        let control = match &settings.control {
            Some(control) => Some(crate::control::serve(control, tx.clone(), board.clone())?),
            None => None,
        };
        let http = match &settings.http {
            Some(http) => Some(crate::http::serve(
                http,
                crate::http::Shared {
                    inputs: tx.clone(),
                    board: board.clone(),
                    metrics: metrics.clone(),
                    photos,
                    preview: preview.clone(),
                    reload: signals.reload.clone(),
                    settings: settings.clone(),
                },
            )?),
            None => None,
        };
        // The inputs report their first state (door, fire) before `start` returns, into
        // the channel, which nothing else has written to yet.
        let door_wired = match &settings.inputs.backend {
            InputsBackend::Gpio { door, .. } => door.is_some(),
            InputsBackend::Sim { .. } => true,
            InputsBackend::None => false,
        };
        let feed = EventFeed::default();
        let mqtt = match &settings.mqtt {
            Some(mqtt) => Some(
                crate::mqtt::start(crate::mqtt::Shared {
                    inputs: tx.clone(),
                    board: board.clone(),
                    feed: feed.clone(),
                    metrics: metrics.clone(),
                    settings: mqtt.clone(),
                    snapshots: settings.audit.snapshots.as_ref().map(|s| s.dir.clone()),
                    door_wired,
                    config_path: settings.path.clone(),
                })
                .context("cannot start the MQTT thread")?,
            ),
            None => None,
        };
        // Cosmetic: a LED or buzzer that cannot be driven is reported (log and audit at
        // start), and the lock works without it.
        let (indicator, indicator_error) = match crate::indicator::start(&settings.outputs) {
            Ok(indicator) => (Some(indicator), None),
            Err(e) => {
                let message = format!("indicator outputs: {e}; the lock works without them");
                log::error!("{message}");
                (None, Some(message))
            }
        };
        let door_inputs = match settings.inputs.backend {
            InputsBackend::None => None,
            _ => {
                let tx = tx.clone();
                Some(crate::inputs::start(
                    &settings.inputs,
                    Box::new(move |event| tx.send(Input::Door(event)).is_ok()),
                )?)
            }
        };
        // The data collector's writer reports what it kept (and its failures) to the
        // audit log through the one channel.
        let collector = match &settings.collect {
            None => None,
            Some(collect) => {
                let (kept, failed) = (tx.clone(), tx.clone());
                let out = crate::collector::start(
                    collect,
                    move |entry| {
                        let record = Record::new(Event::Collected)
                            .person(&entry.suggested)
                            .message(format!(
                                "{} (p {:.2}, sim {:.2}): {}",
                                entry.kind.as_str(),
                                entry.probability,
                                entry.similarity,
                                entry.file
                            ));
                        let _ = kept.send(Input::Audit(record));
                    },
                    move |message| {
                        log::error!("{message}");
                        let _ =
                            failed.send(Input::Audit(Record::new(Event::Error).message(message)));
                    },
                )
                .map_err(anyhow::Error::msg)?;
                Some(crate::collector::Collector::new(collect.clone(), out))
            }
        };
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
            clock: clock.clone(),
            metrics: metrics.clone(),
            preview,
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
            classifier,
            metrics,
            fps: status::FpsMeter::default(),
            _http: http,
            mqtt,
            feed,
            jammed: false,
            door,
            state,
            board,
            started: clock.now(),
            clock,
            started_wall: crate::clock::wall_rfc3339(),
            last_decision: None,
            _control: control,
            door_wired,
            _inputs: door_inputs,
            indicator,
            indicator_error,
            clock_synced: false,
            clock_checked: None,
            capturing: Default::default(),
            collector,
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
        self.stop_capture();
        let status = match (&result, &locked) {
            (Ok(()), Ok(())) => "stopped, door locked".to_owned(),
            (Err(e), Ok(())) => format!("stopped on error, door locked: {e:#}"),
            (Err(e), Err(_)) => format!("stopped on error: {e:#}"),
            (_, Err(e)) => format!("stopped, but locking failed: {e}"),
        };
        self.audit_event(Record::new(Event::Stop).message(status.clone()));
        // The final state (locked, or jammed) for the front-ends, then MQTT's `offline`:
        // after the relay, so nothing here delays locking.
        self.jammed |= locked.is_err();
        self.publish(self.now());
        if let Some(mut mqtt) = self.mqtt.take() {
            mqtt.stop(crate::mqtt::SHUTDOWN_LIMIT);
        }
        let _ = self.notifier.stopping(&status);
        log::info!("{status}");
        result?;
        locked.map_err(|e| anyhow!(e).context("cannot lock the door on shutdown"))
    }

    fn run_loop(&mut self, options: RunOptions) -> Result<()> {
        let start = Record::new(Event::Start).message(format!(
            "enrolled: {}; mode {}",
            self.enrolled.join(", "),
            self.door.mode()
        ));
        self.audit_event(start);
        if let Some(message) = self.indicator_error.take() {
            self.audit_event(Record::new(Event::Error).message(message));
        }
        // A mode or schedule that holds the door open takes effect now.
        let now = self.now();
        let holds = self.schedule_holds(now);
        let events = self.door.tick(now, holds);
        self.apply_door(events)?;
        self.publish(now);
        let _ = self.notifier.ready(&self.status_line());
        log::info!("ready: {}", self.status_line());
        while !self.signals.shutdown.load(Ordering::Relaxed) {
            let now = self.now();
            let actions = self.policy.tick(now);
            self.apply(now, actions)?;
            let holds = self.schedule_holds(now);
            let events = self.door.tick(now, holds);
            self.apply_door(events)?;
            self.watchdog(now);
            self.capture_tick();
            self.publish(now);
            if options.exit_when_replay_ends
                && self.replay_ended
                && !self.policy.is_unlocked()
                && self.door.strike() == LockState::Locked
            {
                log::info!("replay finished");
                break;
            }
            // Sleep no later than the policy's or the door's next deadline.
            let wait = [self.policy.next_deadline(), self.door.next_deadline()]
                .into_iter()
                .flatten()
                .map(|d| d.saturating_duration_since(now))
                .fold(MAX_WAIT, Duration::min);
            match self.inputs.recv_timeout(self.clock.wait_limit(wait)) {
                Ok(input) => self.on_input(input)?,
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return Err(self.vision_died()),
            }
        }
        Ok(())
    }

    /// The time on the service's clock.
    fn now(&self) -> Instant {
        self.clock.now()
    }

    fn on_input(&mut self, input: Input) -> Result<()> {
        match input {
            Input::Seen(seen) => self.on_seen(*seen),
            Input::Audit(record) => {
                self.audit_event(record);
                Ok(())
            }
            Input::ReplayEnded => {
                self.replay_ended = true;
                Ok(())
            }
            Input::Fatal(reason) => Err(anyhow!(reason)),
            Input::Reloaded(info) => {
                self.enrolled = info.people.clone();
                self.classifier = info;
                Ok(())
            }
            Input::Command(command) => self.on_command(command),
            Input::Door(event) => self.on_door_input(event),
            Input::RecognitionFailed(message) => {
                self.audit_event(Record::new(Event::Error).message(message));
                let now = self.now();
                let actions = self.policy.failed(now);
                self.apply(now, actions)
            }
        }
    }

    /// A recognised frame goes to the face policy.
    fn on_seen(&mut self, seen: Seen) -> Result<()> {
        // How long the frame waited for the loop: a real-time measurement.
        self.metrics.stage(Stage::Decide, seen.captured.elapsed());
        let observation = Observation::from_recognized(&seen.faces).captured_at(seen.captured);
        let Seen {
            image,
            faces,
            small,
            ..
        } = seen;
        if self.capturing.is_running() {
            let all: Vec<recognition::Face> =
                faces.iter().map(|r| r.face.clone()).chain(small).collect();
            self.capturing.offer(&image, &all);
        }
        // Decision time, not capture time: an unlock then lasts `unlock_secs` from the
        // moment the relay opens, whatever the inference took.
        let now = self.now();
        if let Some(collector) = &mut self.collector {
            collector.frame(now, &image, &faces);
        }
        self.last_faces = faces;
        self.last_frame = Some(image);
        let actions = self.policy.step(now, &observation);
        self.apply(now, actions)
    }

    /// A door input goes to the door controller.
    fn on_door_input(&mut self, event: InputEvent) -> Result<()> {
        let now = self.now();
        let events = match event {
            InputEvent::Door(DoorContact::Open) => self.door.contact(now, Contact::Open),
            InputEvent::Door(DoorContact::Closed) => self.door.contact(now, Contact::Closed),
            InputEvent::ExitRequest => self.door.exit(now),
            InputEvent::Fire(asserted) => self.door.fire(now, asserted),
            InputEvent::Error(message) => self.door.input_error(now, &message),
        };
        self.apply_door(events)
    }

    /// Local civil time for the schedule, or `None` while the clock is not synchronised
    /// (or no schedule is configured).
    fn civil_now(&mut self, now: Instant) -> Option<Civil> {
        let settings = self.settings.schedule.as_ref()?;
        if !settings.assume_clock_synchronized
            && self
                .clock_checked
                .is_none_or(|t| now.saturating_duration_since(t) >= CLOCK_CHECK_EVERY)
        {
            let synced = schedule::clock_synchronized();
            if self.clock_checked.is_none() || synced != self.clock_synced {
                match synced {
                    true => log::info!("system clock synchronised: the schedule is in force"),
                    false => log::warn!(
                        "system clock not synchronised: schedule windows that would unlock \
                         the door stay off, and face unlock works at any time, until it is"
                    ),
                }
            }
            self.clock_synced = synced;
            self.clock_checked = Some(now);
        }
        (settings.assume_clock_synchronized || self.clock_synced)
            .then(|| schedule::civil(jiff::Timestamp::now(), &settings.zone))
    }

    /// Whether a schedule window holds the door unlocked now.
    fn schedule_holds(&mut self, now: Instant) -> bool {
        let civil = self.civil_now(now);
        self.settings
            .schedule
            .as_ref()
            .is_some_and(|s| s.schedule.holds_unlocked(civil))
    }

    /// Whether the schedule lets `person` in by face at `now`.
    fn face_allowed(&mut self, now: Instant, person: &str) -> bool {
        let civil = self.civil_now(now);
        self.settings
            .schedule
            .as_ref()
            .is_none_or(|s| s.schedule.face_allowed(person, civil))
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
    /// Waits on a real thread, so in real time whatever the service's clock.
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

    /// The policy, for tests.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// The settings in service.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The counters `/metrics` serves.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Where the HTTP API listens, when it is on (its port may have been chosen by the
    /// system: `http.listen = "127.0.0.1:0"`).
    pub fn http_address(&self) -> Option<std::net::SocketAddr> {
        self._http.as_ref().map(HttpServer::local_addr)
    }
}

#[cfg(test)]
mod tests;
