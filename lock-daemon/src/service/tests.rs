//! The service driven through fakes: a scripted camera and recognizer and a relay that
//! records when it was set. Real threads and real time, but short: each test takes at most
//! a few seconds and fails (instead of hanging) when the door is not re-locked.

use std::collections::VecDeque;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, Result};
use image::RgbImage;
use recognition::{BBox, Face, Prediction, Recognized};

use super::*;
use crate::camera::{CameraError, Frame, FrameSource};
use crate::relay::{LockState, Relay, RelayError};

/// Every state written, with when.
#[derive(Clone, Default)]
struct Door(Arc<Mutex<Vec<(LockState, Instant)>>>);

impl Door {
    fn log(&self) -> Vec<(LockState, Instant)> {
        self.0.lock().unwrap().clone()
    }

    fn states(&self) -> Vec<LockState> {
        self.log().into_iter().map(|(s, _)| s).collect()
    }

    /// How long the door stayed unlocked each time.
    fn open_spans(&self) -> Vec<Duration> {
        let log = self.log();
        let mut spans = Vec::new();
        let mut opened = None;
        for (state, at) in log {
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
    fail_unlock: bool,
}

impl Relay for MemoryRelay {
    fn set(&mut self, state: LockState) -> Result<(), RelayError> {
        if self.fail_unlock && state == LockState::Unlocked {
            return Err(RelayError::Gpio {
                pin: 17,
                reason: "injected failure".into(),
            });
        }
        self.door.0.lock().unwrap().push((state, Instant::now()));
        Ok(())
    }
}

/// What the scripted camera does on each call.
#[derive(Clone)]
enum Shot {
    /// A frame whose red channel carries this number (the recognizer reads it back).
    Frame(u8),
    /// The same, on a brightly coloured scene (half red, half blue).
    ColourFrame(u8),
    /// Nothing within the timeout (sleeps the whole timeout: a stalled camera).
    Stall,
    /// A broken device.
    Fail,
}

struct ScriptedCamera {
    shots: VecDeque<Shot>,
    sequence: u64,
    interval: Duration,
}

impl FrameSource for ScriptedCamera {
    fn next_frame(&mut self, timeout: Duration) -> Result<Option<Frame>, CameraError> {
        match self.shots.pop_front().unwrap_or(Shot::Stall) {
            Shot::Frame(tag) => {
                std::thread::sleep(self.interval);
                self.sequence += 1;
                Ok(Some(Frame {
                    image: RgbImage::from_pixel(64, 48, image::Rgb([tag, 0, 0])),
                    captured: Instant::now(),
                    sequence: self.sequence,
                }))
            }
            Shot::ColourFrame(tag) => {
                std::thread::sleep(self.interval);
                self.sequence += 1;
                let mut image = RgbImage::from_fn(64, 48, |x, _| match x < 32 {
                    true => image::Rgb([200, 40, 40]),
                    false => image::Rgb([40, 40, 200]),
                });
                image.put_pixel(0, 0, image::Rgb([tag, 0, 0]));
                Ok(Some(Frame {
                    image,
                    captured: Instant::now(),
                    sequence: self.sequence,
                }))
            }
            Shot::Stall => {
                std::thread::sleep(timeout);
                Ok(None)
            }
            Shot::Fail => Err(CameraError::Disconnected {
                device: "/dev/video-test".into(),
            }),
        }
    }
}

/// What the scripted recognizer does for a frame tagged with a number.
#[derive(Clone)]
enum Sees {
    Ada,
    Stranger,
    Nobody,
    /// Takes this long, then sees nobody.
    Slow(Duration),
    Error,
    Panic,
}

struct ScriptedRecognizer {
    by_tag: Vec<Sees>,
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

impl Recognizer for ScriptedRecognizer {
    fn recognize(&mut self, frame: &RgbImage) -> Result<Vec<Recognized>> {
        let tag = frame.get_pixel(0, 0)[0] as usize;
        match &self.by_tag[tag] {
            Sees::Ada => Ok(vec![face(Some("ada"))]),
            Sees::Stranger => Ok(vec![face(None)]),
            Sees::Nobody => Ok(vec![]),
            Sees::Slow(d) => {
                std::thread::sleep(*d);
                Ok(vec![])
            }
            Sees::Error => Err(anyhow!("injected recognition failure")),
            Sees::Panic => panic!("injected recognizer panic"),
        }
    }

    fn reload(&mut self) -> Result<String> {
        Err(anyhow!("no reload in tests"))
    }

    fn labels(&self) -> Vec<String> {
        vec!["ada".into()]
    }
}

struct Rig {
    dir: tempfile::TempDir,
    door: Door,
    signals: Signals,
    service: Service,
}

const TAGS: [Sees; 7] = [
    Sees::Nobody,
    Sees::Ada,
    Sees::Stranger,
    Sees::Slow(Duration::from_secs(2)),
    Sees::Error,
    Sees::Panic,
    Sees::Slow(Duration::from_millis(700)),
];
const ADA: Shot = Shot::Frame(1);
const STRANGER: Shot = Shot::Frame(2);
const SLOW_2S: Shot = Shot::Frame(3);
const ERROR: Shot = Shot::Frame(4);
const PANIC: Shot = Shot::Frame(5);

fn settings(dir: &Path, unlock_secs: f64, read_timeout_ms: u64) -> Settings {
    settings_with(dir, unlock_secs, read_timeout_ms, "")
}

fn settings_with(dir: &Path, unlock_secs: f64, read_timeout_ms: u64, camera: &str) -> Settings {
    let text = format!(
        "[camera]\nread_timeout_ms = {read_timeout_ms}\n{camera}\
         [recognition]\nclassifier = \"classifier.onnx\"\n\
         [policy]\nframes_required = 3\nwindow_secs = 2.0\nunlock_secs = {unlock_secs}\n\
         cooldown_secs = 0.2\n\
         [relay]\nbackend = \"sim\"\nsim_log = \"relay.log\"\n\
         [audit]\nlog = \"audit.jsonl\"\n[state]\ndir = \"state\"\n\
         [security]\nallow_unsigned = true\n"
    );
    Settings::from_toml(&text, &dir.join("lock.toml")).unwrap()
}

/// A service on scripted parts. `opens` are the cameras handed out by successive opens.
fn rig(unlock_secs: f64, read_timeout_ms: u64, opens: Vec<Vec<Shot>>, fail_unlock: bool) -> Rig {
    let dir = tempfile::tempdir().unwrap();
    let door = Door::default();
    let signals = Signals::default();
    let mut opens: VecDeque<Vec<Shot>> = opens.into();
    let service = Service::with_parts(Parts {
        settings: settings(dir.path(), unlock_secs, read_timeout_ms),
        relay: Box::new(MemoryRelay {
            door: door.clone(),
            fail_unlock,
        }),
        claim: None,
        recognizer: ScriptedRecognizer {
            by_tag: TAGS.to_vec(),
        },
        open_camera: Box::new(move || match opens.pop_front() {
            Some(shots) => Ok(Box::new(ScriptedCamera {
                shots: shots.into(),
                sequence: 0,
                interval: Duration::from_millis(20),
            }) as Box<dyn FrameSource>),
            None => Err(CameraError::NotFound {
                device: "/dev/video-test".into(),
            }),
        }),
        notifier: Notifier::disabled(),
        signals: signals.clone(),
        camera_backoff: Duration::from_millis(5),
    })
    .unwrap();
    Rig {
        dir,
        door,
        signals,
        service,
    }
}

impl Rig {
    /// Runs the service on this thread until `stop_after`, then asks it to stop.
    fn run_for(&mut self, stop_after: Duration) -> Result<()> {
        let shutdown = self.signals.shutdown.clone();
        let (done, finished) = std::sync::mpsc::channel::<()>();
        let stopper = std::thread::spawn(move || {
            // Wakes early when the service stops by itself.
            let _ = finished.recv_timeout(stop_after);
            shutdown.store(true, Ordering::Relaxed);
        });
        let result = self.service.run(RunOptions::default());
        drop(done);
        stopper.join().unwrap();
        result
    }

    fn audit(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("audit.jsonl")).unwrap()
    }
}

/// Tolerance on the re-lock time: the door loop wakes at the deadline itself.
const RELOCK_TOLERANCE: Duration = Duration::from_millis(60);
/// The unlock is timed from the decision, and the relay is written just after it (a
/// fraction of a millisecond, more under emulation), so the door may be open that much
/// less than `unlock_secs`.
const DECISION_TO_RELAY: Duration = Duration::from_millis(5);

fn assert_open_for(door: &Door, expected: Duration) {
    let spans = door.open_spans();
    assert_eq!(spans.len(), 1, "{:?}", door.states());
    assert!(
        spans[0] + DECISION_TO_RELAY >= expected && spans[0] <= expected + RELOCK_TOLERANCE,
        "open for {:?}, expected {expected:?} (+{RELOCK_TOLERANCE:?})",
        spans[0]
    );
}

#[test]
fn the_door_relocks_on_time_while_a_frame_takes_seconds() {
    // Three frames of ada unlock; the next frame takes 2 s to recognise, well past the
    // 0.5 s unlock: the re-lock must not wait for it.
    let mut rig = rig(0.5, 1000, vec![vec![ADA, ADA, ADA, SLOW_2S]], false);
    rig.run_for(Duration::from_millis(1500)).unwrap();
    assert_open_for(&rig.door, Duration::from_millis(500));
    assert_eq!(rig.door.states().last(), Some(&LockState::Locked));
}

#[test]
fn the_door_relocks_on_time_when_the_camera_stalls_longer_than_its_read_timeout() {
    // After the unlock the camera delivers nothing; each read waits its full 1 s timeout,
    // longer than the 0.5 s unlock.
    let mut rig = rig(0.5, 1000, vec![vec![ADA, ADA, ADA]], false);
    rig.run_for(Duration::from_millis(1400)).unwrap();
    assert_open_for(&rig.door, Duration::from_millis(500));
}

#[test]
fn a_stranger_in_view_blocks_the_unlock() {
    let mut rig = rig(0.5, 100, vec![vec![ADA, ADA, STRANGER, ADA]], false);
    rig.run_for(Duration::from_millis(600)).unwrap();
    assert!(!rig.door.states().contains(&LockState::Unlocked));
    assert!(
        rig.audit().contains("\"denied-unknown\""),
        "{}",
        rig.audit()
    );
}

#[test]
fn a_recognition_error_is_audited_and_the_door_stays_locked() {
    let mut rig = rig(0.5, 100, vec![vec![ERROR, ADA, ERROR, ADA]], false);
    rig.run_for(Duration::from_millis(500)).unwrap();
    assert!(!rig.door.states().contains(&LockState::Unlocked));
    assert!(
        rig.audit()
            .contains("recognition failed: injected recognition failure"),
        "{}",
        rig.audit()
    );
}

#[test]
fn a_panic_in_recognition_stops_the_service_with_the_door_locked() {
    let mut rig = rig(5.0, 100, vec![vec![ADA, ADA, ADA, PANIC]], false);
    let started = Instant::now();
    let err = rig.run_for(Duration::from_secs(5)).unwrap_err().to_string();
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "stopped at once"
    );
    assert!(err.contains("injected recognizer panic"), "{err}");
    // Unlocked by ada, then locked on the way out, long before the 5 s unlock ended.
    assert_eq!(rig.door.states().last(), Some(&LockState::Locked));
    assert!(rig.audit().contains("stopped on error"), "{}", rig.audit());
}

#[test]
fn a_camera_that_keeps_failing_is_reopened_then_the_service_gives_up_locked() {
    // The first camera fails at once; every reopen fails too.
    let mut rig = rig(0.5, 100, vec![vec![Shot::Fail]], false);
    let err = rig.run_for(Duration::from_secs(5)).unwrap_err().to_string();
    assert!(err.contains("the camera keeps failing"), "{err}");
    let audit = rig.audit();
    let failures = audit.matches("camera: ").count();
    assert_eq!(failures as u32, MAX_CAMERA_FAILURES, "{audit}");
    assert_eq!(rig.door.states().last(), Some(&LockState::Locked));
}

#[test]
fn a_camera_that_recovers_after_a_failure_keeps_the_service_running() {
    let mut rig = rig(0.5, 100, vec![vec![Shot::Fail], vec![ADA, ADA, ADA]], false);
    rig.run_for(Duration::from_millis(1000)).unwrap();
    assert_open_for(&rig.door, Duration::from_millis(500));
    assert_eq!(rig.audit().matches("camera: ").count(), 1);
}

#[test]
fn a_relay_that_fails_to_unlock_stops_the_service_after_locking() {
    let mut rig = rig(0.5, 100, vec![vec![ADA, ADA, ADA]], true);
    let err = rig.run_for(Duration::from_secs(5)).unwrap_err().to_string();
    assert!(err.contains("relay failed"), "{err}");
    assert!(rig.door.states().iter().all(|s| *s == LockState::Locked));
    assert!(rig.audit().contains("injected failure"), "{}", rig.audit());
}

#[test]
fn shutdown_while_unlocked_locks_without_waiting_for_a_frame() {
    // Unlocked for 60 s; the next frame takes 2 s. Shutdown comes while it runs.
    let mut rig = rig(60.0, 1000, vec![vec![ADA, ADA, ADA, SLOW_2S]], false);
    let started = Instant::now();
    rig.run_for(Duration::from_millis(300)).unwrap();
    let (last, at) = *rig.door.log().last().unwrap();
    assert_eq!(last, LockState::Locked);
    assert!(
        at - started < Duration::from_millis(300) + RELOCK_TOLERANCE,
        "locked {:?} after start",
        at - started
    );
}

#[test]
fn a_camera_that_cannot_open_at_start_is_an_error_before_ready() {
    let dir = tempfile::tempdir().unwrap();
    let err = Service::with_parts(Parts {
        settings: settings(dir.path(), 1.0, 100),
        relay: Box::new(MemoryRelay {
            door: Door::default(),
            fail_unlock: false,
        }),
        claim: None,
        recognizer: ScriptedRecognizer { by_tag: vec![] },
        open_camera: Box::new(|| {
            Err(CameraError::NotFound {
                device: "/dev/video-missing".into(),
            })
        }),
        notifier: Notifier::disabled(),
        signals: Signals::default(),
        camera_backoff: Duration::from_millis(5),
    })
    .unwrap_err()
    .to_string();
    assert!(err.contains("no camera at /dev/video-missing"), "{err}");
}

#[test]
fn colour_frames_are_refused_when_an_infrared_camera_is_expected() {
    let dir = tempfile::tempdir().unwrap();
    let door = Door::default();
    let signals = Signals::default();
    let colour_ada = Shot::ColourFrame(1);
    let mut shots = Some(vec![
        colour_ada.clone(),
        colour_ada.clone(),
        colour_ada.clone(),
        colour_ada,
    ]);
    let service = Service::with_parts(Parts {
        settings: settings_with(dir.path(), 0.5, 100, "expect_ir = true\n"),
        relay: Box::new(MemoryRelay {
            door: door.clone(),
            fail_unlock: false,
        }),
        claim: None,
        recognizer: ScriptedRecognizer {
            by_tag: TAGS.to_vec(),
        },
        open_camera: Box::new(move || {
            Ok(Box::new(ScriptedCamera {
                shots: shots.take().unwrap_or_default().into(),
                sequence: 0,
                interval: Duration::from_millis(20),
            }) as Box<dyn FrameSource>)
        }),
        notifier: Notifier::disabled(),
        signals: signals.clone(),
        camera_backoff: Duration::from_millis(5),
    })
    .unwrap();
    let mut rig = Rig {
        dir,
        door,
        signals,
        service,
    };
    rig.run_for(Duration::from_millis(600)).unwrap();
    // Ada's frames never reached recognition: no unlock, one audit record.
    assert!(!rig.door.states().contains(&LockState::Unlocked));
    let audit = rig.audit();
    assert_eq!(audit.matches("\"camera-not-ir\"").count(), 1, "{audit}");
    assert!(audit.contains("IR-pass filter"), "{audit}");
}
