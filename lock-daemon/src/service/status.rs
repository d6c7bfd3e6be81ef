//! The status snapshot the door loop publishes for every front-end (control socket today):
//! front-ends read it without ever waiting on the loop.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::recognizer::ClassifierInfo;

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
    /// When the door loop published this snapshot.
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
