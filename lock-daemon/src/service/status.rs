//! The status snapshot the door loop publishes for every front-end (control socket, HTTP
//! API, MQTT): front-ends read it without ever waiting on the loop. Built here from the
//! door loop's state.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde::Serialize;

use super::{Service, VISION_STALL_LIMIT};
use crate::recognizer::ClassifierInfo;
use crate::relay::LockState;

/// What the lock is doing, as front-ends show it. Names and states only; no embeddings,
/// no images.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Status {
    /// "locked" or "unlocked": the strike as last driven.
    pub lock: String,
    /// "open", "closed", "unknown" (after an input read error) or "not wired".
    pub door: String,
    /// "normal", "lockdown" or "unlocked".
    pub mode: String,
    /// Why the strike is released, when it is ("ada", "exit", "mode unlocked", ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub released_by: Option<String>,
    pub held_open_alarm: bool,
    pub fire_release: bool,
    /// The face policy: "locked", "confirming ada (2 frames)", "unlocked for ada",
    /// "cooldown".
    pub recognition: String,
    /// The enrolled people.
    pub enrolled: Vec<String>,
    /// The classifier in service.
    pub classifier: ClassifierInfo,
    /// Frames a second read from the camera, over the last few seconds.
    pub camera_fps: f64,
    /// Seconds since the camera last delivered a frame.
    pub last_frame_secs: f64,
    /// The last access decision, e.g. "unlock ada" or "denied-unknown", with its time.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_decision: Option<Decision>,
    /// Whether the camera and recognition make progress.
    pub camera_ok: bool,
    /// When the service started (RFC 3339 UTC) and how long ago.
    pub started: String,
    pub uptime_secs: f64,
    pub version: String,
    /// The running guided capture, or the last one (`ctl capture`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub capture: Option<crate::capture::Progress>,
    /// When the door loop published this snapshot (on the service's clock: real time in
    /// service).
    #[serde(skip)]
    pub published: Option<Instant>,
}

impl Status {
    /// One line: lock, door and mode, e.g. `locked, door closed, mode normal`.
    pub fn line(&self) -> String {
        format!("{}, door {}, mode {}", self.lock, self.door, self.mode)
    }

    /// Whether the door loop published this within `limit` (it publishes every 50 ms while
    /// it runs).
    pub fn fresh(&self, limit: Duration) -> bool {
        self.published.is_some_and(|t| t.elapsed() <= limit)
    }
}

/// One access decision, for the status.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Decision {
    pub time: String,
    pub event: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub person: Option<String>,
}

/// The shared snapshot: written by the door loop, read by front-ends.
#[derive(Debug, Clone, Default)]
pub struct StatusBoard(Arc<Mutex<Status>>);

impl StatusBoard {
    pub fn get(&self) -> Status {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::to_value(self.get()).expect("the status serialises")
    }

    pub(super) fn update(&self, change: impl FnOnce(&mut Status)) {
        change(&mut self.0.lock().unwrap_or_else(PoisonError::into_inner));
    }
}

impl Service {
    /// One line for systemd's STATUS and the ready log: lock, door and mode.
    pub(super) fn status_line(&self) -> String {
        self.status(self.now()).line()
    }

    /// The status as the door loop knows it at `now`.
    fn status(&self, now: Instant) -> Status {
        let door = self.door.status();
        Status {
            lock: match door.strike {
                _ if self.jammed => "jammed".into(),
                LockState::Locked => "locked".into(),
                LockState::Unlocked => "unlocked".into(),
            },
            door: match door.contact {
                Some(c) => c.as_str().into(),
                None if self.door_wired => "unknown".into(),
                None => "not wired".into(),
            },
            mode: door.mode.to_string(),
            released_by: door.released_by,
            held_open_alarm: door.held_open_alarm,
            fire_release: door.fire,
            recognition: self.policy.state().to_string(),
            enrolled: self.enrolled.clone(),
            classifier: self.classifier.clone(),
            camera_fps: self.fps.fps(),
            last_frame_secs: self.fps.since_last_frame(now),
            last_decision: self.last_decision.clone(),
            camera_ok: self.heartbeat.age() <= VISION_STALL_LIMIT,
            started: self.started_wall.clone(),
            uptime_secs: now.saturating_duration_since(self.started).as_secs_f64(),
            version: env!("CARGO_PKG_VERSION").into(),
            capture: self.capturing.progress(),
            published: Some(now),
        }
    }

    /// Publishes the status snapshot for the front-ends, as of `now`.
    pub(super) fn publish(&mut self, now: Instant) {
        self.fps.count(now, self.metrics.frames());
        let status = self.status(now);
        self.board.update(|s| *s = status);
    }
}

/// Camera frames a second over a sliding window of a few seconds.
#[derive(Debug, Default)]
pub(super) struct FpsMeter {
    /// (time, frames counted) at the start of the window.
    start: Option<(Instant, u64)>,
    fps: f64,
    /// When the frame count last moved.
    last_frame: Option<(Instant, u64)>,
}

impl FpsMeter {
    const WINDOW: Duration = Duration::from_secs(2);

    fn count(&mut self, now: Instant, frames: u64) {
        if self.last_frame.is_none_or(|(_, n)| frames != n) {
            self.last_frame = Some((now, frames));
        }
        let start = *self.start.get_or_insert((now, frames));
        let elapsed = now.saturating_duration_since(start.0);
        if elapsed >= Self::WINDOW {
            self.fps = frames.saturating_sub(start.1) as f64 / elapsed.as_secs_f64();
            self.start = Some((now, frames));
        }
    }

    fn fps(&self) -> f64 {
        self.fps
    }

    /// Seconds since the last frame arrived (since the start, before the first).
    fn since_last_frame(&self, now: Instant) -> f64 {
        self.last_frame
            .map_or(0.0, |(t, _)| now.saturating_duration_since(t).as_secs_f64())
    }
}
