//! The operating mode survives restarts: `mode.json` in the state directory, written
//! atomically on every change. A mode file that cannot be read stops the start (the door
//! stays locked) with the fix, rather than silently falling back to another mode: an
//! office that set lockdown must not find the door answering faces after a reboot.

use serde::{Deserialize, Serialize};

use crate::clock;
use crate::door::Mode;
use crate::rollback::{read_optional, StateDir};

const MODE_FILE: &str = "mode.json";
const FORMAT: u32 = 1;

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ModeFile {
    format: u32,
    mode: String,
    changed: String,
    by: String,
}

/// The persisted mode; `normal` when none was ever set.
pub fn load(state: &StateDir) -> anyhow::Result<Mode> {
    let path = state.path().join(MODE_FILE);
    let corrupt = |reason: String| {
        anyhow::anyhow!(
            "mode file {} is corrupt ({reason}); the door stays locked. Delete it to start \
             in mode normal (then set the mode again with `lock-daemon ctl mode ...`)",
            path.display()
        )
    };
    let Some(text) = read_optional(&path).map_err(|e| corrupt(e.to_string()))? else {
        return Ok(Mode::Normal);
    };
    let file: ModeFile = serde_json::from_str(&text).map_err(|e| corrupt(e.to_string()))?;
    if file.format != FORMAT {
        return Err(corrupt(format!("format {}", file.format)));
    }
    file.mode.parse().map_err(corrupt)
}

/// Records a mode change.
pub fn save(state: &StateDir, mode: Mode, by: &str) -> anyhow::Result<()> {
    let file = ModeFile {
        format: FORMAT,
        mode: mode.to_string(),
        changed: clock::wall_rfc3339(),
        by: by.to_owned(),
    };
    state
        .write(MODE_FILE, &file, 0o600)
        .map_err(|e| anyhow::anyhow!("cannot record the mode: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mode_survives_a_restart_and_defaults_to_normal() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::new(dir.path().join("state"));
        assert_eq!(load(&state).unwrap(), Mode::Normal);
        save(&state, Mode::Lockdown, "uid 0 (root)").unwrap();
        assert_eq!(load(&state).unwrap(), Mode::Lockdown);
    }

    #[test]
    fn a_corrupt_mode_file_is_refused_with_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::new(dir.path());
        for text in [
            "{not json",
            r#"{"format":1,"mode":"party","changed":"x","by":"y"}"#,
            r#"{"format":9,"mode":"normal","changed":"x","by":"y"}"#,
        ] {
            std::fs::write(dir.path().join(MODE_FILE), text).unwrap();
            let err = load(&state).unwrap_err().to_string();
            assert!(err.contains("is corrupt"), "{err}");
            assert!(err.contains("door stays locked"), "{err}");
        }
    }
}
