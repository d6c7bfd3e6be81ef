//! Commands from MQTT: parsing the payloads, the permission and PIN checks, and the rate
//! limits. Pure: time is passed in. What passes goes to the door loop as a
//! [`control::Request`](crate::control::Request), like every other front-end's commands.

use std::time::{Duration, Instant};

use serde::Deserialize;
use subtle::ConstantTimeEq as _;

use super::settings::{MqttSettings, Permission};
use crate::control::Request;
use crate::http::limit::{Limiter, Rate};

/// Commands taken at once, then one per [`COMMAND_EVERY`]; more are dropped (a flood on the
/// command topic cannot flood the door loop or the audit log). LOCK has a bucket of its
/// own, so a flood of other commands never keeps the door from being locked.
pub const COMMAND_BURST: u32 = 5;
pub const COMMAND_EVERY: Duration = Duration::from_secs(2);
/// Wrong codes allowed in a row; after that each wrong code doubles the wait before the
/// next try, from [`CODE_WAIT`] up to [`CODE_MAX_WAIT`] (a 4-digit code would take years
/// to guess). A right code resets the count.
pub const CODE_TRIES: u32 = 3;
pub const CODE_WAIT: Duration = Duration::from_secs(30);
pub const CODE_MAX_WAIT: Duration = Duration::from_secs(3600);
/// The reason an MQTT unlock carries in the audit log.
pub const UNLOCK_REASON: &str = "Home Assistant (MQTT)";

/// What a lock command asks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LockCommand {
    Lock,
    Unlock { code: Option<String> },
}

#[derive(Deserialize)]
struct JsonCommand {
    action: String,
    #[serde(default)]
    code: Option<String>,
}

/// Parses `LOCK`, `UNLOCK`, or `{"action": "UNLOCK", "code": "1234"}` (what Home Assistant
/// sends with `command_template` when a PIN is configured).
pub fn parse_lock(payload: &[u8]) -> Result<LockCommand, String> {
    let text = std::str::from_utf8(payload)
        .map_err(|_| "the payload is not UTF-8".to_owned())?
        .trim();
    let (action, code) = if text.starts_with('{') {
        // serde's message would quote the values (a code): only say where it failed.
        let command: JsonCommand = serde_json::from_str(text).map_err(|e| {
            format!(
                "not a command object {{\"action\": ..., \"code\": ...}} (at column {})",
                e.column()
            )
        })?;
        (command.action, command.code.filter(|c| !c.is_empty()))
    } else {
        (text.to_owned(), None)
    };
    match action.to_ascii_uppercase().as_str() {
        "LOCK" => Ok(LockCommand::Lock),
        "UNLOCK" => Ok(LockCommand::Unlock { code }),
        _ => Err(format!(
            "{:?} is not LOCK or UNLOCK",
            crate::config::clip(&action)
        )),
    }
}

/// The checks every command passes before it reaches the door loop.
#[derive(Debug)]
pub struct Gate {
    commands: Limiter<()>,
    locks: Limiter<()>,
    /// Wrong codes in a row, and when the next try is allowed.
    wrong_codes: u32,
    code_blocked_until: Option<Instant>,
}

/// Why a command did not reach the door loop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Too many commands: dropped without an audit record (counted, and logged at most once
    /// a minute).
    Flood,
    /// Refused, with the reason for the audit log.
    Refused(String),
}

impl Default for Gate {
    fn default() -> Self {
        let bucket = || {
            Limiter::new(
                Rate {
                    capacity: COMMAND_BURST,
                    refill_every: COMMAND_EVERY,
                },
                1,
            )
        };
        Gate {
            commands: bucket(),
            locks: bucket(),
            wrong_codes: 0,
            code_blocked_until: None,
        }
    }
}

impl Gate {
    /// Takes one command from the flood allowance (LOCK's own when `lock`): `Err(Flood)`
    /// when it is used up.
    pub fn admit(&mut self, lock: bool, now: Instant) -> Result<(), Refusal> {
        let bucket = if lock {
            &mut self.locks
        } else {
            &mut self.commands
        };
        bucket.take(&(), now).map_err(|_| Refusal::Flood)
    }

    /// Wrong codes in a row (for the audit message).
    pub fn wrong_codes(&self) -> u32 {
        self.wrong_codes
    }

    /// The request for a lock command, or why not.
    pub fn lock(
        &mut self,
        settings: &MqttSettings,
        command: LockCommand,
        now: Instant,
    ) -> Result<Request, Refusal> {
        match command {
            LockCommand::Lock => {
                allowed(settings, Permission::Lock)?;
                Ok(Request::Lock)
            }
            LockCommand::Unlock { code } => {
                allowed(settings, Permission::Unlock)?;
                if let Some(hash) = &settings.unlock_code_hash {
                    if let Some(until) = self.code_blocked_until.filter(|t| *t > now) {
                        return Err(Refusal::Refused(format!(
                            "unlock: {} wrong codes in a row; the next try is allowed in {} s",
                            self.wrong_codes,
                            until.saturating_duration_since(now).as_secs().max(1)
                        )));
                    }
                    let given = code.as_deref().unwrap_or("");
                    let good: bool = crate::http::auth::hash_token(given).ct_eq(hash).into();
                    if !good {
                        self.wrong_codes = self.wrong_codes.saturating_add(1);
                        if self.wrong_codes >= CODE_TRIES {
                            let doublings = (self.wrong_codes - CODE_TRIES).min(16);
                            let wait = (CODE_WAIT * 2u32.pow(doublings)).min(CODE_MAX_WAIT);
                            self.code_blocked_until = Some(now + wait);
                        }
                        return Err(Refusal::Refused(format!(
                            "unlock: {} ({} wrong in a row)",
                            match code {
                                None => "no code given (mqtt.unlock_code_hash is set)",
                                Some(_) => "wrong code",
                            },
                            self.wrong_codes
                        )));
                    }
                    self.wrong_codes = 0;
                    self.code_blocked_until = None;
                }
                Ok(Request::Unlock {
                    seconds: settings.unlock.as_secs_f64(),
                    reason: UNLOCK_REASON.into(),
                })
            }
        }
    }

    /// The request for a mode command, or why not.
    pub fn mode(&mut self, settings: &MqttSettings, payload: &[u8]) -> Result<Request, Refusal> {
        allowed(settings, Permission::Mode)?;
        let mode = std::str::from_utf8(payload)
            .map(|s| s.trim().to_ascii_lowercase())
            .unwrap_or_default();
        // Holding the door unlocked is an unlock: it needs that permission too, and a
        // select cannot carry the PIN, so with a PIN it is refused over MQTT.
        if mode == "unlocked" {
            allowed(settings, Permission::Unlock).map_err(|_| {
                Refusal::Refused(
                    "mode unlocked: not allowed over MQTT without \"unlock\" in mqtt.commands"
                        .into(),
                )
            })?;
            if settings.unlock_code_hash.is_some() {
                return Err(Refusal::Refused(
                    "mode unlocked: refused over MQTT while mqtt.unlock_code_hash is set (the \
                     mode cannot carry the code); use `lock-daemon ctl mode unlocked`"
                        .into(),
                ));
            }
        }
        Ok(Request::Mode { mode })
    }
}

fn allowed(settings: &MqttSettings, permission: Permission) -> Result<(), Refusal> {
    if settings.allows(permission) {
        Ok(())
    } else {
        Err(Refusal::Refused(format!(
            "{}: not allowed over MQTT; add \"{}\" to mqtt.commands to allow it",
            permission.as_str(),
            permission.as_str()
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mqtt::discovery::tests::settings;

    #[test]
    fn lock_commands_parse_as_words_or_home_assistant_json() {
        assert_eq!(parse_lock(b"LOCK"), Ok(LockCommand::Lock));
        assert_eq!(
            parse_lock(b" unlock\n"),
            Ok(LockCommand::Unlock { code: None })
        );
        assert_eq!(
            parse_lock(br#"{"action": "UNLOCK", "code": "1234"}"#),
            Ok(LockCommand::Unlock {
                code: Some("1234".into())
            })
        );
        assert_eq!(
            parse_lock(br#"{"action": "UNLOCK", "code": ""}"#),
            Ok(LockCommand::Unlock { code: None })
        );
        for bad in [&b"OPEN"[..], b"", b"{\"code\": 1}", b"\xff\xfe"] {
            assert!(parse_lock(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn unlock_and_mode_need_their_permission_and_lock_is_allowed_by_default() {
        let s = settings();
        let now = Instant::now();
        let mut gate = Gate::default();
        assert_eq!(gate.lock(&s, LockCommand::Lock, now), Ok(Request::Lock));
        let refusal = gate
            .lock(&s, LockCommand::Unlock { code: None }, now)
            .unwrap_err();
        assert!(matches!(&refusal, Refusal::Refused(r) if r.contains("mqtt.commands")));
        assert!(gate.mode(&s, b"lockdown").is_err());
        let mut s = s;
        s.commands = vec![Permission::Mode];
        assert!(gate.mode(&s, b"lockdown").is_ok());
        let held = gate.mode(&s, b"unlocked").unwrap_err();
        assert!(matches!(&held, Refusal::Refused(r) if r.contains("\"unlock\"")));
        s.commands = vec![Permission::Unlock, Permission::Mode];
        assert_eq!(
            gate.lock(&s, LockCommand::Unlock { code: None }, now),
            Ok(Request::Unlock {
                seconds: 5.0,
                reason: UNLOCK_REASON.into()
            })
        );
        assert_eq!(
            gate.mode(&s, b"Lockdown\n"),
            Ok(Request::Mode {
                mode: "lockdown".into()
            })
        );
    }

    #[test]
    fn a_pin_is_checked_and_wrong_codes_are_slowed_down() {
        let mut s = settings();
        s.commands = vec![Permission::Unlock];
        s.unlock_code_hash = Some(crate::http::auth::hash_token("2468"));
        let t0 = Instant::now();
        let mut gate = Gate::default();
        let unlock = |code: &str| LockCommand::Unlock {
            code: Some(code.into()),
        };
        assert!(gate.lock(&s, unlock("2468"), t0).is_ok());
        let missing = gate.lock(&s, LockCommand::Unlock { code: None }, t0);
        assert!(matches!(missing, Err(Refusal::Refused(r)) if r.contains("no code")));
        assert!(gate.lock(&s, unlock("0000"), t0).is_err());
        let wrong = gate.lock(&s, unlock("0000"), t0);
        assert!(matches!(wrong, Err(Refusal::Refused(r)) if r.contains("wrong code")));
        // Three wrong codes: even the right one waits, and each wrong code after the
        // wait doubles it.
        assert_eq!(gate.wrong_codes(), 3);
        let held = gate.lock(&s, unlock("2468"), t0 + CODE_WAIT / 2);
        assert!(matches!(held, Err(Refusal::Refused(r)) if r.contains("next try")));
        let t1 = t0 + CODE_WAIT;
        assert!(gate.lock(&s, unlock("1111"), t1).is_err());
        let held = gate.lock(&s, unlock("2468"), t1 + CODE_WAIT * 3 / 2);
        assert!(matches!(held, Err(Refusal::Refused(r)) if r.contains("next try")));
        assert!(gate.lock(&s, unlock("2468"), t1 + CODE_WAIT * 2).is_ok());
        assert_eq!(gate.wrong_codes(), 0, "a right code resets the count");
        // The mode cannot carry the code: holding the door unlocked is refused.
        s.commands.push(Permission::Mode);
        assert!(gate.mode(&s, b"unlocked").is_err());
        assert!(gate.mode(&s, b"normal").is_ok());
    }

    #[test]
    fn a_flood_of_commands_is_dropped_after_the_burst() {
        let now = Instant::now();
        let mut gate = Gate::default();
        for _ in 0..COMMAND_BURST {
            assert!(gate.admit(false, now).is_ok());
        }
        assert_eq!(gate.admit(false, now), Err(Refusal::Flood));
        // LOCK keeps its own allowance: a flood of other commands cannot stop it.
        assert!(gate.admit(true, now).is_ok());
        assert!(gate.admit(false, now + COMMAND_EVERY).is_ok());
    }
}
