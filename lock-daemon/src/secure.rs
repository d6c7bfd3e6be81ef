//! `lock-daemon secure`: write Locked to the relay and exit. systemd runs it as
//! `ExecStopPost`, after the daemon stopped for any reason (SIGKILL, a panic, an abort), and
//! the package's `prerm` runs it on removal. It is the last line of defence, so it needs
//! only what locking needs:
//!
//! 1. the `[relay]` section of the configuration, read on its own
//!    ([`Settings::relay_only`]): a typo in `[policy]` or a missing classifier never stops
//!    it;
//! 2. relays named on the command line (`--bcm-pin`, `--sim-log`), locked as well, for when
//!    even the relay section cannot be read;
//! 3. only after locking, the rest of the configuration is checked and its errors reported.
//!
//! It succeeds when the configured relay was locked. When the configured relay could not be
//! read or locked it still locks every relay it was given, then fails.

use std::path::{Path, PathBuf};

use crate::config::{LockType, RelayBackend, RelaySettings, Settings};
use crate::relay::{self, LockState};

/// What `secure` was asked to lock.
#[derive(Debug, Clone, Default)]
pub struct SecureRequest {
    /// The configuration file whose `[relay]` section names the relay.
    pub config: PathBuf,
    /// A GPIO relay to lock as well (BCM number), whatever the file says.
    pub bcm_pin: Option<u8>,
    /// With `bcm_pin`: the relay board switches on a low input.
    pub active_low: bool,
    /// With `bcm_pin`: what Locked means electrically (a maglock is energised to lock).
    pub lock_type: LockType,
    /// A simulated relay log to lock as well.
    pub sim_log: Option<PathBuf>,
}

/// What `secure` did.
#[derive(Debug, Default)]
pub struct SecureOutcome {
    /// Each relay that is now Locked, described.
    pub locked: Vec<String>,
    /// What could not be locked or read, each with the fix.
    pub failures: Vec<String>,
    /// Problems found after locking that did not stop it (the rest of the configuration).
    pub warnings: Vec<String>,
    /// Whether the relay named by the configuration was locked.
    pub configured_relay_locked: bool,
}

impl SecureOutcome {
    /// Success means the configured relay is locked.
    pub fn success(&self) -> bool {
        self.configured_relay_locked && self.failures.is_empty()
    }
}

/// Locks every relay it can find, then reports.
pub fn secure(request: &SecureRequest) -> SecureOutcome {
    let mut outcome = SecureOutcome::default();
    let text = std::fs::read_to_string(&request.config).map_err(|e| {
        format!(
            "cannot read configuration {}: {e}; the relay it names was not locked",
            request.config.display()
        )
    });
    let configured = text
        .as_ref()
        .map_err(Clone::clone)
        .and_then(|text| Settings::relay_only(text, &request.config).map_err(|e| e.to_string()));
    match &configured {
        Ok(settings) => match lock(settings) {
            Ok(()) => {
                outcome.configured_relay_locked = true;
                outcome.locked.push(describe(settings));
            }
            Err(e) => outcome
                .failures
                .push(format!("cannot lock {}: {e}", describe(settings))),
        },
        Err(e) => outcome.failures.push(format!(
            "{e}\nhint: pass the relay on the command line (`--bcm-pin N [--active-low]` or \
             `--sim-log FILE`) to lock it without the configuration"
        )),
    }
    for settings in extra_relays(request) {
        if configured.as_ref().is_ok_and(|c| *c == settings) {
            continue; // Already locked above.
        }
        match lock(&settings) {
            Ok(()) => outcome.locked.push(describe(&settings)),
            Err(e) => outcome
                .failures
                .push(format!("cannot lock {}: {e}", describe(&settings))),
        }
    }
    // After locking: the rest of the file, so the operator hears about it now rather than
    // at the next start.
    if let Ok(text) = &text {
        if let Err(e) = Settings::from_toml(text, &request.config) {
            outcome.warnings.push(format!(
                "the door is locked, but the configuration has an error that will stop the \
                 next start: {e}"
            ));
        }
    }
    outcome
}

fn extra_relays(request: &SecureRequest) -> Vec<RelaySettings> {
    let mut relays = Vec::new();
    if let Some(pin) = request.bcm_pin {
        relays.push(RelaySettings {
            backend: RelayBackend::Gpio {
                bcm_pin: pin,
                active_low: request.active_low,
            },
            lock_type: request.lock_type,
        });
    }
    if let Some(log) = &request.sim_log {
        relays.push(RelaySettings {
            backend: RelayBackend::Sim { log: log.clone() },
            lock_type: LockType::default(),
        });
    }
    relays
}

fn lock(settings: &RelaySettings) -> Result<(), relay::RelayError> {
    // Opening writes Locked; write it once more so a relay whose open succeeded but whose
    // first write was lost is still driven.
    relay::open(settings)?.set(LockState::Locked)
}

fn describe(settings: &RelaySettings) -> String {
    match &settings.backend {
        RelayBackend::Gpio {
            bcm_pin,
            active_low,
        } => format!(
            "the {} relay on BCM GPIO {bcm_pin}{}",
            settings.lock_type.as_str(),
            if *active_low { " (active low)" } else { "" }
        ),
        RelayBackend::Sim { log } => format!("the simulated relay {}", display(log)),
    }
}

fn display(path: &Path) -> String {
    path.display().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::relay::sim::parse_log;
    use crate::relay::Relay as _;

    fn last_state(log: &Path) -> Option<LockState> {
        parse_log(&std::fs::read_to_string(log).ok()?)
            .ok()?
            .last()
            .map(|t| t.state)
    }

    /// A folder with a sim relay log that ends UNLOCKED, as after a crash.
    fn crashed_unlocked() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("relay.log");
        let mut relay = crate::relay::SimRelay::open(&log).unwrap();
        relay.set(LockState::Unlocked).unwrap();
        std::mem::forget(relay); // No drop: the process "died" unlocked.
        assert_eq!(last_state(&log), Some(LockState::Unlocked));
        (dir, log)
    }

    fn request(config: &Path) -> SecureRequest {
        SecureRequest {
            config: config.to_owned(),
            ..Default::default()
        }
    }

    const RELAY: &str = "[relay]\nbackend = \"sim\"\nsim_log = \"relay.log\"\n";

    #[test]
    fn a_typo_elsewhere_in_the_config_still_locks_and_is_reported_after() {
        let (dir, log) = crashed_unlocked();
        let config = dir.path().join("lock.toml");
        // A misspelt policy key and no classifier: the whole file is invalid.
        std::fs::write(&config, format!("[policy]\nunlock_second = 4\n{RELAY}")).unwrap();
        let outcome = secure(&request(&config));
        assert_eq!(last_state(&log), Some(LockState::Locked));
        assert!(outcome.success(), "{outcome:?}");
        assert_eq!(outcome.warnings.len(), 1, "{outcome:?}");
        assert!(outcome.warnings[0].contains("unlock_second"), "{outcome:?}");
    }

    #[test]
    fn a_toml_syntax_error_elsewhere_still_locks_from_the_relay_section() {
        let (dir, log) = crashed_unlocked();
        let config = dir.path().join("lock.toml");
        std::fs::write(
            &config,
            format!("[policy]\nunlock_secs = = 4\n{RELAY}[audit]\nlog = \"a.jsonl\"\n"),
        )
        .unwrap();
        let outcome = secure(&request(&config));
        assert_eq!(last_state(&log), Some(LockState::Locked));
        assert!(outcome.success(), "{outcome:?}");
        assert!(outcome.warnings[0].contains("not valid"), "{outcome:?}");
    }

    #[test]
    fn an_unreadable_relay_section_locks_the_command_line_relay_and_fails() {
        let (dir, log) = crashed_unlocked();
        let config = dir.path().join("lock.toml");
        std::fs::write(&config, "[relay]\nbackend = \"relay-board\"\n").unwrap();
        let outcome = secure(&SecureRequest {
            sim_log: Some(log.clone()),
            ..request(&config)
        });
        assert_eq!(last_state(&log), Some(LockState::Locked));
        assert!(!outcome.success(), "{outcome:?}");
        assert!(outcome.failures[0].contains("relay-board"), "{outcome:?}");
        assert!(outcome.failures[0].contains("--bcm-pin"), "{outcome:?}");
    }

    #[test]
    fn a_missing_config_locks_the_command_line_relay_and_fails() {
        let (dir, log) = crashed_unlocked();
        let outcome = secure(&SecureRequest {
            sim_log: Some(log.clone()),
            ..request(&dir.path().join("missing.toml"))
        });
        assert_eq!(last_state(&log), Some(LockState::Locked));
        assert!(!outcome.success());
        assert!(
            outcome.failures[0].contains("cannot read configuration"),
            "{outcome:?}"
        );
    }

    #[test]
    fn a_relay_that_cannot_be_locked_fails_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("lock.toml");
        // The sim log's path is a directory: it cannot be written.
        std::fs::create_dir(dir.path().join("relay.log")).unwrap();
        std::fs::write(&config, RELAY).unwrap();
        let outcome = secure(&request(&config));
        assert!(!outcome.success());
        assert!(
            outcome.failures[0].contains("cannot lock the simulated relay"),
            "{outcome:?}"
        );
    }
}
