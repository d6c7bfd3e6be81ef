//! The service driven through fakes: a scripted camera and recognizer, a relay that records
//! when it was set, and a [`FakeClock`] that the test moves. The door loop and the vision
//! thread are real threads; time is not, so deadlines and backoffs are exact and nothing
//! waits for them. A driver thread steps the scenario while the loop runs on the test's
//! thread; every wait in it gives up (failing the test) after [`LIMIT`] of real time.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, Result};
use image::RgbImage;
use recognition::{BBox, Face, Prediction, Recognized};
use serde_json::Value;

use super::*;
use crate::camera::{CameraError, Frame, FrameSource};
use crate::clock::FakeClock;
use crate::relay::{LockState, Relay, RelayError};

/// The longest real time any step of a test waits for the service.
const LIMIT: Duration = Duration::from_secs(5);

/// Every state the service tried to write, with when (on the service's clock) and whether
/// the relay took it.
#[derive(Clone, Default)]
struct Door(Arc<Mutex<Vec<(LockState, Instant, bool)>>>);

impl Door {
    /// The states written (taken by the relay), with when.
    fn log(&self) -> Vec<(LockState, Instant)> {
        let log = self.0.lock().unwrap();
        log.iter().filter(|w| w.2).map(|w| (w.0, w.1)).collect()
    }

    fn states(&self) -> Vec<LockState> {
        self.log().into_iter().map(|(s, _)| s).collect()
    }

    /// Nothing but `Locked` was ever written.
    fn stayed_locked(&self) -> bool {
        self.states().iter().all(|s| *s == LockState::Locked)
    }

    /// Every attempt, taken or not.
    fn attempts(&self) -> Vec<(LockState, bool)> {
        let log = self.0.lock().unwrap();
        log.iter().map(|w| (w.0, w.2)).collect()
    }

    fn last(&self) -> Option<LockState> {
        self.states().last().copied()
    }

    /// When the strike was last written `state`.
    fn last_time(&self, state: LockState) -> Option<Instant> {
        self.log()
            .into_iter()
            .rev()
            .find(|(s, _)| *s == state)
            .map(|(_, t)| t)
    }

    /// How long the door stayed unlocked each time.
    fn open_spans(&self) -> Vec<Duration> {
        let mut spans = Vec::new();
        let mut opened = None;
        for (state, at) in self.log() {
            match (state, opened) {
                (LockState::Unlocked, None) => opened = Some(at),
                (LockState::Locked, Some(from)) => {
                    spans.push(at - from);
                    opened = None;
                }
                _ => {}
            }
        }
        spans
    }
}

struct MemoryRelay {
    door: Door,
    clock: Arc<dyn Clock>,
    fail_unlock: bool,
}

impl Relay for MemoryRelay {
    fn set(&mut self, state: LockState) -> Result<(), RelayError> {
        let fails = self.fail_unlock && state == LockState::Unlocked;
        let at = self.clock.now();
        self.door.0.lock().unwrap().push((state, at, !fails));
        if fails {
            return Err(RelayError::Gpio {
                pin: 17,
                reason: "injected failure".into(),
            });
        }
        Ok(())
    }
}

/// Holds a frame in recognition until the test opens it.
#[derive(Clone, Default)]
struct Gate(Arc<(Mutex<bool>, Condvar)>);

impl Gate {
    fn open(&self) {
        *self.0 .0.lock().unwrap() = true;
        self.0 .1.notify_all();
    }

    fn pass(&self) {
        let (open, changed) = &*self.0;
        let mut open = open.lock().unwrap();
        while !*open {
            open = changed.wait(open).unwrap();
        }
    }
}

/// What the scripted camera does on each call.
#[derive(Clone)]
enum Shot {
    /// A frame whose red channel carries this number (the recognizer reads it back).
    Frame(u8),
    /// The same, on a brightly coloured scene (half red, half blue).
    ColourFrame(u8),
    /// Nothing within the timeout: a stalled camera.
    Stall,
    /// A broken device.
    Fail,
}

struct ScriptedCamera {
    shots: VecDeque<Shot>,
    sequence: u64,
    /// Real time each frame takes to arrive.
    interval: Duration,
    /// Real time a stalled read takes (at most the read timeout).
    stall: Duration,
}

impl FrameSource for ScriptedCamera {
    fn next_frame(&mut self, timeout: Duration) -> Result<Option<Frame>, CameraError> {
        let image = match self.shots.pop_front().unwrap_or(Shot::Stall) {
            Shot::Frame(tag) => RgbImage::from_pixel(64, 48, image::Rgb([tag, 0, 0])),
            Shot::ColourFrame(tag) => {
                let mut image = RgbImage::from_fn(64, 48, |x, _| match x < 32 {
                    true => image::Rgb([200, 40, 40]),
                    false => image::Rgb([40, 40, 200]),
                });
                image.put_pixel(0, 0, image::Rgb([tag, 0, 0]));
                image
            }
            Shot::Stall => {
                std::thread::sleep(self.stall.min(timeout));
                return Ok(None);
            }
            Shot::Fail => {
                return Err(CameraError::Disconnected {
                    device: "/dev/video-test".into(),
                })
            }
        };
        std::thread::sleep(self.interval);
        self.sequence += 1;
        Ok(Some(Frame {
            image,
            captured: Instant::now(),
            sequence: self.sequence,
        }))
    }
}

/// What the scripted recognizer does for a frame tagged with a number.
#[derive(Clone)]
enum Sees {
    Ada,
    Stranger,
    Nobody,
    /// Waits until the rig's gate opens, then sees nobody.
    Stuck,
    Error,
    Panic,
}

/// What a reload does.
type Reload = Result<Vec<String>, String>;

struct ScriptedRecognizer {
    by_tag: Vec<Sees>,
    gate: Gate,
    labels: Vec<String>,
    /// One per reload, in order; none left: refused.
    reloads: VecDeque<Reload>,
}

fn face(identity: Option<&str>) -> Recognized {
    Recognized {
        face: Face {
            bbox: BBox {
                x1: 0.0,
                y1: 0.0,
                x2: 150.0,
                y2: 150.0,
            },
            score: 0.99,
            landmarks: [(0.0, 0.0); 5],
        },
        prediction: Prediction {
            identity: identity.map(str::to_owned),
            nearest: "ada".into(),
            probability: 0.9,
            similarity: 0.8,
        },
    }
}

/// What the scripted recognizer sees in a frame.
fn scripted(by_tag: &[Sees], gate: &Gate, frame: &RgbImage) -> Result<Vec<Recognized>> {
    let tag = frame.get_pixel(0, 0)[0] as usize;
    match &by_tag[tag] {
        Sees::Ada => Ok(vec![face(Some("ada"))]),
        Sees::Stranger => Ok(vec![face(None)]),
        Sees::Nobody => Ok(vec![]),
        Sees::Stuck => {
            gate.pass();
            Ok(vec![])
        }
        Sees::Error => Err(anyhow!("injected recognition failure")),
        Sees::Panic => panic!("injected recognizer panic"),
    }
}

/// The scripted recognizer on a worker of the frame pipeline.
struct ScriptedWorker {
    by_tag: Vec<Sees>,
    gate: Gate,
}

impl crate::recognizer::FrameWorker for ScriptedWorker {
    fn recognize(&mut self, frame: &RgbImage) -> Result<crate::recognizer::FrameResult> {
        Ok(crate::recognizer::FrameResult {
            faces: scripted(&self.by_tag, &self.gate, frame)?,
            ..Default::default()
        })
    }
}

impl Recognizer for ScriptedRecognizer {
    fn worker(&self) -> Option<Box<dyn crate::recognizer::FrameWorker>> {
        Some(Box::new(ScriptedWorker {
            by_tag: self.by_tag.clone(),
            gate: self.gate.clone(),
        }))
    }

    fn recognize(&mut self, frame: &RgbImage) -> Result<Vec<Recognized>> {
        let tag = frame.get_pixel(0, 0)[0] as usize;
        match &self.by_tag[tag] {
            Sees::Ada => Ok(vec![face(Some("ada"))]),
            Sees::Stranger => Ok(vec![face(None)]),
            Sees::Nobody => Ok(vec![]),
            Sees::Stuck => {
                self.gate.pass();
                Ok(vec![])
            }
            Sees::Error => Err(anyhow!("injected recognition failure")),
            Sees::Panic => panic!("injected recognizer panic"),
        }
    }

    fn reload(&mut self) -> Result<String> {
        match self.reloads.pop_front() {
            Some(Ok(labels)) => {
                self.labels = labels;
                Ok(self.labels.join(", "))
            }
            Some(Err(why)) => Err(anyhow!(why)),
            None => Err(anyhow!("no reload scripted")),
        }
    }

    fn labels(&self) -> Vec<String> {
        self.labels.clone()
    }
}

const TAGS: [Sees; 6] = [
    Sees::Nobody,
    Sees::Ada,
    Sees::Stranger,
    Sees::Stuck,
    Sees::Error,
    Sees::Panic,
];
const ADA: Shot = Shot::Frame(1);
const STRANGER: Shot = Shot::Frame(2);
const STUCK: Shot = Shot::Frame(3);
const ERROR: Shot = Shot::Frame(4);
const PANIC: Shot = Shot::Frame(5);

fn settings(dir: &Path, unlock_secs: f64, camera: &str) -> Settings {
    settings_with_workers(dir, unlock_secs, camera, 1)
}

fn settings_with_workers(dir: &Path, unlock_secs: f64, camera: &str, workers: u32) -> Settings {
    let text = format!(
        "[camera]\nread_timeout_ms = 100\n{camera}\
         [recognition]\nclassifier = \"classifier.onnx\"\nworkers = {workers}\n\
         [policy]\nframes_required = 3\nwindow_secs = 2.0\nunlock_secs = {unlock_secs}\n\
         cooldown_secs = 0.2\n\
         [relay]\nbackend = \"sim\"\nsim_log = \"relay.log\"\n\
         [audit]\nlog = \"audit.jsonl\"\n[state]\ndir = \"state\"\n\
         [security]\nallow_unsigned = true\n"
    );
    Settings::from_toml(&text, &dir.join("lock.toml")).unwrap()
}

/// How to build a rig; [`rig`] gives the defaults.
struct Build {
    opens: Vec<Vec<Shot>>,
    unlock_secs: f64,
    fail_unlock: bool,
    camera: &'static str,
    reloads: Vec<Reload>,
    reload_at_start: bool,
    real_time: bool,
    /// `recognition.workers`; above 1, the camera delivers a frame every 100 ms of real
    /// time so that the workers keep up and no frame is dropped, even on a loaded machine.
    workers: u32,
}

/// A service on scripted parts: `opens` are the cameras handed out by successive opens
/// (once they run out, opening fails). A fake clock, 5 s unlocks, a working relay.
fn rig(opens: Vec<Vec<Shot>>) -> Build {
    Build {
        opens,
        unlock_secs: 5.0,
        fail_unlock: false,
        camera: "",
        reloads: Vec::new(),
        reload_at_start: false,
        real_time: false,
        workers: 1,
    }
}

impl Build {
    fn start(self) -> Rig {
        let dir = tempfile::tempdir().unwrap();
        let door = Door::default();
        let signals = Signals::default();
        signals
            .reload
            .store(self.reload_at_start, Ordering::Relaxed);
        let fake = FakeClock::default();
        let clock: Arc<dyn Clock> = match self.real_time {
            true => Arc::new(SystemClock),
            false => Arc::new(fake.clone()),
        };
        let gate = Gate::default();
        let opened = Arc::new(Mutex::new(Vec::new()));
        let mut opens: VecDeque<Vec<Shot>> = self.opens.into();
        let (interval, stall) = match (self.real_time, self.workers > 1) {
            (true, _) => (Duration::from_millis(20), Duration::MAX),
            (false, true) => (Duration::from_millis(100), Duration::from_millis(1)),
            (false, false) => (Duration::ZERO, Duration::from_millis(1)),
        };
        let open_camera: CameraOpener = {
            let (clock, opened) = (clock.clone(), opened.clone());
            Box::new(move || {
                opened.lock().unwrap().push(clock.now());
                match opens.pop_front() {
                    Some(shots) => Ok(Box::new(ScriptedCamera {
                        shots: shots.into(),
                        sequence: 0,
                        interval,
                        stall,
                    }) as Box<dyn FrameSource>),
                    None => Err(CameraError::NotFound {
                        device: "/dev/video-test".into(),
                    }),
                }
            })
        };
        let service = Service::with_parts(Parts {
            settings: settings_with_workers(
                dir.path(),
                self.unlock_secs,
                self.camera,
                self.workers,
            ),
            relay: Box::new(MemoryRelay {
                door: door.clone(),
                clock: clock.clone(),
                fail_unlock: self.fail_unlock,
            }),
            claim: None,
            recognizer: ScriptedRecognizer {
                by_tag: TAGS.to_vec(),
                gate: gate.clone(),
                labels: vec!["ada".into()],
                reloads: self.reloads.into(),
            },
            open_camera,
            notifier: Notifier::disabled(),
            signals: signals.clone(),
            clock,
        })
        .unwrap();
        Rig {
            ctl: Ctl {
                audit: dir.path().join("audit.jsonl"),
                board: service.board.clone(),
                door,
                signals,
                clock: fake,
                gate,
                opened,
                stopped: Arc::default(),
            },
            _dir: dir,
            service,
        }
    }
}

struct Rig {
    ctl: Ctl,
    _dir: tempfile::TempDir,
    service: Service,
}

/// What a test's driver sees of the running service, and the clock it moves.
#[derive(Clone)]
struct Ctl {
    audit: PathBuf,
    board: StatusBoard,
    door: Door,
    signals: Signals,
    clock: FakeClock,
    gate: Gate,
    /// When the camera was opened, each time.
    opened: Arc<Mutex<Vec<Instant>>>,
    /// Set once `run` has returned.
    stopped: Arc<AtomicBool>,
}

impl Rig {
    /// Runs the service on this thread while `drive` runs on another; when `drive` returns
    /// (or panics), the service is asked to stop. Returns what `run` returned.
    fn run(&mut self, drive: impl FnOnce(&Ctl) + Send + 'static) -> Result<()> {
        let ctl = self.ctl.clone();
        let driver = std::thread::spawn(move || {
            /// Stops the service however the driver ends.
            struct Stop(Ctl);
            impl Drop for Stop {
                fn drop(&mut self) {
                    self.0.gate.open();
                    self.0.signals.shutdown.store(true, Ordering::Relaxed);
                }
            }
            let stop = Stop(ctl);
            drive(&stop.0);
        });
        let result = self.service.run(RunOptions::default());
        self.ctl.stopped.store(true, Ordering::Relaxed);
        if let Err(panic) = driver.join() {
            std::panic::resume_unwind(panic);
        }
        result
    }
}

impl Ctl {
    /// Waits (real time, at most [`LIMIT`]) until `done` holds.
    fn wait_until(&self, what: &str, done: impl Fn(&Ctl) -> bool) {
        let start = Instant::now();
        while !done(self) {
            assert!(
                !self.stopped.load(Ordering::Relaxed),
                "the service stopped before {what}; relay {:?}; audit {:#?}",
                self.door.attempts(),
                self.audit()
            );
            assert!(
                start.elapsed() < LIMIT,
                "timed out waiting for {what}; relay {:?}; audit {:#?}",
                self.door.attempts(),
                self.audit()
            );
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Waits until the service stops by itself.
    fn wait_stopped(&self) {
        let start = Instant::now();
        while !self.stopped.load(Ordering::Relaxed) {
            assert!(
                start.elapsed() < LIMIT,
                "the service did not stop; audit {:#?}",
                self.audit()
            );
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Moves the clock to `t` and waits until the door loop has been round at that time.
    fn advance_to(&self, t: Instant) {
        self.clock
            .advance(t.saturating_duration_since(self.clock.now()));
        let now = self.clock.now();
        self.wait_until("the door loop to see the new time", |c| {
            c.board.get().published.is_some_and(|p| p >= now)
        });
    }

    fn audit(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.audit)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// The audit records of one kind.
    fn events(&self, kind: &str) -> Vec<Value> {
        self.audit()
            .into_iter()
            .filter(|e| e["event"] == kind)
            .collect()
    }

    /// The messages of the error records that start with `prefix`.
    fn errors(&self, prefix: &str) -> Vec<String> {
        self.events("error")
            .iter()
            .filter_map(|e| e["message"].as_str())
            .filter(|m| m.starts_with(prefix))
            .map(str::to_owned)
            .collect()
    }

    fn unlocked(&self) -> bool {
        self.door.last() == Some(LockState::Unlocked)
    }

    /// Waits until the door unlocks, then checks it stays unlocked until just before
    /// `unlock` has passed and re-locks exactly then.
    fn assert_relocks_on_time(&self, unlock: Duration) {
        self.wait_until("the unlock", Ctl::unlocked);
        let opened = self.door.last_time(LockState::Unlocked).unwrap();
        self.advance_to(opened + unlock - Duration::from_millis(1));
        assert!(self.unlocked(), "{:?}", self.door.attempts());
        self.advance_to(opened + unlock);
        self.wait_until("the relock", |c| !c.unlocked());
        assert_eq!(self.door.open_spans(), vec![unlock]);
    }
}

#[test]
fn the_door_relocks_on_time_while_a_frame_is_stuck_in_recognition() {
    // Three frames of ada unlock; the next frame never finishes recognition (until the end
    // of the test): the re-lock must not wait for it.
    let mut rig = rig(vec![vec![ADA, ADA, ADA, STUCK]]).start();
    rig.run(|ctl| ctl.assert_relocks_on_time(Duration::from_secs(5)))
        .unwrap();
    assert_eq!(rig.ctl.door.last(), Some(LockState::Locked));
}

#[test]
fn the_door_relocks_on_time_when_the_camera_stalls_while_unlocked() {
    // After the unlock the camera delivers nothing at all.
    let mut rig = rig(vec![vec![ADA, ADA, ADA]]).start();
    rig.run(|ctl| ctl.assert_relocks_on_time(Duration::from_secs(5)))
        .unwrap();
    let relock = &rig.ctl.events("relock")[0];
    assert_eq!(relock["person"], "ada", "{relock}");
}

#[test]
fn the_door_relocks_on_time_on_the_real_clock_while_a_frame_is_stuck_in_recognition() {
    // The one test on real time: the shortest unlock (0.5 s), and a frame stuck in
    // recognition until the test ends.
    let mut rig = Build {
        real_time: true,
        unlock_secs: 0.5,
        ..rig(vec![vec![ADA, ADA, ADA, STUCK]])
    }
    .start();
    rig.run(|ctl| {
        ctl.wait_until("the unlock", Ctl::unlocked);
        ctl.wait_until("the relock", |c| !c.unlocked());
    })
    .unwrap();
    let spans = rig.ctl.door.open_spans();
    // The unlock is timed from the decision, just before the relay is written; the loop
    // wakes at the deadline itself.
    assert!(
        spans.len() == 1
            && spans[0] + Duration::from_millis(5) >= Duration::from_millis(500)
            && spans[0] <= Duration::from_millis(560),
        "open for {spans:?}, expected 500 ms"
    );
}

#[test]
fn a_stranger_in_view_blocks_the_unlock() {
    // The error frame at the end marks that every frame before it has reached the loop.
    let mut rig = rig(vec![vec![ADA, ADA, STRANGER, ADA, ERROR]]).start();
    rig.run(|ctl| {
        ctl.wait_until("the last frame", |c| {
            !c.errors("recognition failed").is_empty()
        })
    })
    .unwrap();
    assert!(!rig.ctl.door.states().contains(&LockState::Unlocked));
    assert!(
        !rig.ctl.events("denied-unknown").is_empty(),
        "{:#?}",
        rig.ctl.audit()
    );
}

#[test]
fn a_recognition_error_is_audited_and_the_loop_carries_on_locked() {
    let mut rig = rig(vec![vec![ERROR, ADA, ERROR, ADA, STRANGER]]).start();
    rig.run(|ctl| {
        // The stranger's frame comes after both errors: the loop kept going.
        ctl.wait_until("the stranger refused", |c| {
            !c.events("denied-unknown").is_empty()
        });
        let errors = ctl.errors("recognition failed");
        assert_eq!(
            errors,
            vec!["recognition failed: injected recognition failure"; 2]
        );
        assert_eq!(ctl.board.get().lock, "locked");
    })
    .unwrap();
    assert!(rig.ctl.door.stayed_locked(), "{:?}", rig.ctl.door.states());
    let stop = &rig.ctl.events("stop")[0];
    assert_eq!(stop["message"], "stopped, door locked");
}

#[test]
fn with_several_workers_a_failed_frame_breaks_the_confirmation_and_only_three_unbroken_frames_unlock(
) {
    let mut rig = Build {
        workers: 2,
        ..rig(vec![vec![
            ADA, ADA, ERROR, ADA, ADA, STRANGER, ADA, ADA, ADA,
        ]])
    }
    .start();
    rig.run(|ctl| {
        ctl.wait_until("the unlock", |c| !c.events("unlock").is_empty());
        // In camera order: the error broke the first two, the stranger the next two.
        assert_eq!(
            ctl.errors("recognition failed"),
            ["recognition failed: injected recognition failure"]
        );
        assert_eq!(ctl.events("denied-unknown").len(), 1);
        assert_eq!(ctl.events("unlock").len(), 1);
        assert_eq!(ctl.events("unlock")[0]["frames"], 3);
    })
    .unwrap();
    assert_eq!(
        rig.ctl.door.states(),
        [LockState::Locked, LockState::Unlocked, LockState::Locked]
    );
}

#[test]
fn a_panic_in_a_worker_is_a_failed_frame_and_the_door_stays_locked() {
    let mut rig = Build {
        workers: 2,
        ..rig(vec![vec![ADA, ADA, PANIC, ADA, ADA, STRANGER]])
    }
    .start();
    rig.run(|ctl| {
        ctl.wait_until("the stranger refused", |c| {
            !c.events("denied-unknown").is_empty()
        });
        assert_eq!(
            ctl.errors("recognition failed"),
            ["recognition failed: the recognition worker panicked"]
        );
        assert!(ctl.events("unlock").is_empty());
    })
    .unwrap();
    assert!(rig.ctl.door.stayed_locked(), "{:?}", rig.ctl.door.states());
}

#[test]
fn a_panic_in_recognition_stops_the_service_with_the_door_locked() {
    // Ada unlocks for 5 s (the clock never gets there), then recognition panics.
    let mut rig = rig(vec![vec![ADA, ADA, ADA, PANIC]]).start();
    let err = rig.run(Ctl::wait_stopped).unwrap_err().to_string();
    assert!(err.contains("injected recognizer panic"), "{err}");
    assert_eq!(
        rig.ctl.door.states(),
        vec![LockState::Locked, LockState::Unlocked, LockState::Locked]
    );
    assert!(
        rig.ctl.events("stop")[0]["message"]
            .as_str()
            .unwrap()
            .starts_with("stopped on error, door locked"),
        "{:#?}",
        rig.ctl.audit()
    );
}

#[test]
fn a_failing_camera_is_reopened_with_growing_backoff_then_the_service_gives_up_locked() {
    // The first camera fails at once; every reopen fails too.
    let mut rig = rig(vec![vec![Shot::Fail]]).start();
    let err = rig.run(Ctl::wait_stopped).unwrap_err().to_string();
    assert!(err.contains("the camera keeps failing"), "{err}");
    let ctl = &rig.ctl;
    assert_eq!(
        ctl.errors("camera: ").len() as u32,
        MAX_CAMERA_FAILURES,
        "{:#?}",
        ctl.audit()
    );
    // The opening at start, then a reopen after each failure but the last, each after
    // the backoff for that many failures (the clock moves only by the backoff).
    let opened = ctl.opened.lock().unwrap().clone();
    let waits: Vec<Duration> = opened.windows(2).map(|w| w[1] - w[0]).collect();
    let expected: Vec<Duration> = (1..MAX_CAMERA_FAILURES).map(vision::backoff).collect();
    assert_eq!(waits, expected);
    assert_eq!(expected[0], 2 * CAMERA_BACKOFF);
    assert_eq!(expected.last(), Some(&(32 * CAMERA_BACKOFF)));
    assert_eq!(ctl.door.states(), vec![LockState::Locked; 2]);
    assert_eq!(ctl.board.get().lock, "locked");
}

#[test]
fn a_camera_that_recovers_after_a_failure_keeps_the_service_running() {
    let mut rig = rig(vec![vec![Shot::Fail], vec![ADA, ADA, ADA]]).start();
    rig.run(|ctl| ctl.assert_relocks_on_time(Duration::from_secs(5)))
        .unwrap();
    assert_eq!(rig.ctl.errors("camera: ").len(), 1);
    let opened = rig.ctl.opened.lock().unwrap().clone();
    assert_eq!(opened.len(), 2);
    assert_eq!(opened[1] - opened[0], vision::backoff(1));
}

#[test]
fn a_relay_that_fails_to_unlock_stops_the_service_after_locking() {
    let mut rig = Build {
        fail_unlock: true,
        ..rig(vec![vec![ADA, ADA, ADA]])
    }
    .start();
    let err = rig.run(Ctl::wait_stopped).unwrap_err().to_string();
    assert!(err.contains("relay failed"), "{err}");
    let ctl = &rig.ctl;
    // Locked at start; the unlock refused; locked at once, and again on the way out.
    assert_eq!(
        ctl.door.attempts(),
        vec![
            (LockState::Locked, true),
            (LockState::Unlocked, false),
            (LockState::Locked, true),
            (LockState::Locked, true),
        ]
    );
    assert_eq!(
        ctl.errors("relay: "),
        vec!["relay: GPIO 17: injected failure"]
    );
    let stop = ctl.events("stop")[0]["message"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(stop.starts_with("stopped on error, door locked"), "{stop}");
    assert_eq!(ctl.board.get().lock, "jammed");
}

#[test]
fn a_refused_reload_is_audited_and_the_old_classifier_stays_in_service() {
    let mut rig = Build {
        reloads: vec![Err("signature does not verify".into())],
        reload_at_start: true,
        ..rig(vec![vec![ADA, ADA, ADA]])
    }
    .start();
    rig.run(|ctl| {
        // The reload comes before the first frame; ada still gets in after it.
        ctl.wait_until("the unlock", Ctl::unlocked);
        let refused = ctl.events("reload-refused");
        assert_eq!(refused.len(), 1, "{:#?}", ctl.audit());
        assert_eq!(refused[0]["message"], "signature does not verify");
        let status = ctl.board.get();
        assert_eq!(status.enrolled, vec!["ada"]);
        assert_eq!(status.classifier.people, vec!["ada"]);
    })
    .unwrap();
    assert!(rig.ctl.events("reload").is_empty());
}

#[test]
fn an_accepted_reload_puts_the_new_classifier_in_service() {
    let mut rig = Build {
        reloads: vec![Ok(vec!["ada".into(), "bob".into()])],
        reload_at_start: true,
        ..rig(vec![vec![]])
    }
    .start();
    rig.run(|ctl| {
        ctl.wait_until("the new classifier in the status", |c| {
            c.board.get().enrolled == ["ada", "bob"]
        });
        assert_eq!(ctl.board.get().classifier.people, vec!["ada", "bob"]);
    })
    .unwrap();
    assert_eq!(rig.ctl.events("reload")[0]["message"], "enrolled: ada, bob");
}

#[test]
fn shutdown_while_unlocked_locks_without_waiting_for_a_frame() {
    // Unlocked for 5 s; the next frame is stuck in recognition. Shutdown comes meanwhile:
    // the door locks while the frame is still stuck.
    let mut rig = rig(vec![vec![ADA, ADA, ADA, STUCK]]).start();
    rig.run(|ctl| {
        ctl.wait_until("the unlock", Ctl::unlocked);
        let opened = ctl.door.last_time(LockState::Unlocked).unwrap();
        ctl.signals.shutdown.store(true, Ordering::Relaxed);
        let start = Instant::now();
        while ctl.unlocked() {
            assert!(start.elapsed() < LIMIT, "not locked on shutdown");
            std::thread::sleep(Duration::from_millis(1));
        }
        // Locked on the spot: no time passed on the service's clock.
        assert_eq!(ctl.door.last_time(LockState::Locked), Some(opened));
    })
    .unwrap();
    assert_eq!(rig.ctl.door.last(), Some(LockState::Locked));
}

#[test]
fn a_camera_that_cannot_open_at_start_is_an_error_before_ready() {
    let dir = tempfile::tempdir().unwrap();
    let door = Door::default();
    let err = Service::with_parts(Parts {
        settings: settings(dir.path(), 1.0, ""),
        relay: Box::new(MemoryRelay {
            door: door.clone(),
            clock: Arc::new(SystemClock),
            fail_unlock: false,
        }),
        claim: None,
        recognizer: ScriptedRecognizer {
            by_tag: vec![],
            gate: Gate::default(),
            labels: vec![],
            reloads: VecDeque::new(),
        },
        open_camera: Box::new(|| {
            Err(CameraError::NotFound {
                device: "/dev/video-missing".into(),
            })
        }),
        notifier: Notifier::disabled(),
        signals: Signals::default(),
        clock: Arc::new(SystemClock),
    })
    .unwrap_err()
    .to_string();
    assert!(err.contains("no camera at /dev/video-missing"), "{err}");
    assert_eq!(door.states(), vec![LockState::Locked]);
}

#[test]
fn colour_frames_are_refused_when_an_infrared_camera_is_expected() {
    let colour_ada = Shot::ColourFrame(1);
    let mut rig = Build {
        camera: "expect_ir = true\n",
        // The (infrared) error frame marks the end of the colour frames.
        ..rig(vec![vec![
            colour_ada.clone(),
            colour_ada.clone(),
            colour_ada.clone(),
            colour_ada,
            ERROR,
        ]])
    }
    .start();
    rig.run(|ctl| {
        ctl.wait_until("the last frame", |c| {
            !c.errors("recognition failed").is_empty()
        })
    })
    .unwrap();
    // Ada's frames never reached recognition: no unlock, one audit record.
    assert!(!rig.ctl.door.states().contains(&LockState::Unlocked));
    let refused = rig.ctl.events("camera-not-ir");
    assert_eq!(refused.len(), 1, "{refused:#?}");
    assert!(
        refused[0]["message"]
            .as_str()
            .unwrap()
            .contains("IR-pass filter"),
        "{refused:#?}"
    );
}
