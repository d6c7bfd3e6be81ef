//! A relay without hardware: every state written is appended to a log file as
//! `<RFC 3339 UTC time> <CLOCK_MONOTONIC ms> LOCKED|UNLOCKED`, one line per write, so the
//! demo can show and the tests can check what the door did and when.

use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::path::{Path, PathBuf};

use super::{LockState, Relay, RelayError};
use crate::clock;

/// The simulated relay.
#[derive(Debug)]
pub struct SimRelay {
    path: PathBuf,
    file: File,
    last: LockState,
}

impl SimRelay {
    /// Opens (appends to) the log, creating it and its directory if needed, and writes
    /// LOCKED.
    pub fn open(path: &Path) -> Result<SimRelay, RelayError> {
        let file = open_log(path).map_err(|source| RelayError::SimLog {
            path: path.to_owned(),
            source,
        })?;
        let mut relay = SimRelay {
            path: path.to_owned(),
            file,
            last: LockState::Locked,
        };
        relay.set(LockState::Locked)?;
        Ok(relay)
    }
}

/// Opens a simulated device's log for appending, creating it and its directory if needed
/// (the sim relay here, the sim LED and buzzer in `indicator::sim`).
pub fn open_log(path: &Path) -> std::io::Result<File> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    OpenOptions::new().create(true).append(true).open(path)
}

impl Relay for SimRelay {
    fn set(&mut self, state: LockState) -> Result<(), RelayError> {
        // One write of a whole line: appends from several processes never interleave.
        let line = format!(
            "{} {} {state}\n",
            clock::wall_rfc3339(),
            clock::monotonic_ms()
        );
        self.file
            .write_all(line.as_bytes())
            .and_then(|()| self.file.flush())
            .map_err(|source| RelayError::SimLog {
                path: self.path.clone(),
                source,
            })?;
        self.last = state;
        Ok(())
    }
}

impl Drop for SimRelay {
    fn drop(&mut self) {
        if self.last != LockState::Locked {
            if let Err(e) = self.set(LockState::Locked) {
                log::error!("{e}");
            }
        }
    }
}

/// One line of a simulated relay log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    /// RFC 3339 wall time.
    pub time: String,
    /// `CLOCK_MONOTONIC` milliseconds.
    pub monotonic_ms: u64,
    pub state: LockState,
}

/// Parses a simulated relay log (for tests and the demo's summary).
pub fn parse_log(text: &str) -> Result<Vec<Transition>, String> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .enumerate()
        .map(|(i, line)| {
            let bad = || format!("relay log line {}: cannot parse {line:?}", i + 1);
            let mut fields = line.split_whitespace();
            let (Some(time), Some(ms), Some(state), None) =
                (fields.next(), fields.next(), fields.next(), fields.next())
            else {
                return Err(bad());
            };
            Ok(Transition {
                time: time.to_owned(),
                monotonic_ms: ms.parse().map_err(|_| bad())?,
                state: match state {
                    "LOCKED" => LockState::Locked,
                    "UNLOCKED" => LockState::Unlocked,
                    _ => return Err(bad()),
                },
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn states(path: &Path) -> Vec<LockState> {
        parse_log(&std::fs::read_to_string(path).unwrap())
            .unwrap()
            .into_iter()
            .map(|t| t.state)
            .collect()
    }

    #[test]
    fn opening_writes_locked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested/relay.log");
        let relay = SimRelay::open(&path).unwrap();
        assert_eq!(states(&path), [LockState::Locked]);
        drop(relay);
        assert_eq!(
            states(&path),
            [LockState::Locked],
            "dropping a locked relay adds nothing"
        );
    }

    #[test]
    fn transitions_are_appended_with_times() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("relay.log");
        let mut relay = SimRelay::open(&path).unwrap();
        relay.set(LockState::Unlocked).unwrap();
        // Visible to a reader before anything else happens (flushed per write).
        assert_eq!(states(&path), [LockState::Locked, LockState::Unlocked]);
        relay.set(LockState::Locked).unwrap();
        let log = parse_log(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(log.len(), 3);
        assert!(log
            .windows(2)
            .all(|w| w[0].monotonic_ms <= w[1].monotonic_ms));
        assert!(log[0].time.ends_with('Z'));
        // A second process (or `secure`) appends to the same file.
        super::super::open(&crate::config::RelaySettings {
            backend: crate::config::RelayBackend::Sim { log: path.clone() },
            lock_type: Default::default(),
        })
        .unwrap()
        .set(LockState::Locked)
        .unwrap();
        assert_eq!(states(&path).len(), 5);
    }

    #[test]
    fn dropping_an_unlocked_relay_locks_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("relay.log");
        let mut relay = SimRelay::open(&path).unwrap();
        relay.set(LockState::Unlocked).unwrap();
        drop(relay);
        assert_eq!(
            states(&path),
            [LockState::Locked, LockState::Unlocked, LockState::Locked]
        );
    }

    #[test]
    fn unwritable_log_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let err = SimRelay::open(dir.path()).unwrap_err().to_string();
        assert!(err.contains("simulated relay log"), "{err}");
        assert!(parse_log("2025-01-01T00:00:00Z 12 OPEN").is_err());
    }
}
