//! Rollback protection: a validly signed but older classifier (one that still enrols a person
//! who has since been removed) is refused.
//!
//! Every classifier carries its creation time (`created`, RFC 3339 with nanoseconds, UTC)
//! inside the signed bytes, so it cannot be changed without breaking the signature. The lock
//! accepts a classifier only when it is newer than the one in service, or the same one (the
//! same creation time and the same signed content: a copy, or the same file re-signed). The
//! classifier last accepted is remembered across restarts in a small state file,
//! `<state.dir>/classifier.json`, written atomically (temporary file, fsync, rename, fsync of
//! the directory).
//!
//! A deliberate downgrade goes through `lock-daemon allow-downgrade`: it records the sha256 of
//! the file now installed in `<state.dir>/downgrade-allowed.json` and appends an audit record
//! naming who ran it. The next start or reload accepts exactly that file once, audits it,
//! records it as the classifier in service and deletes the allowance.
//!
//! [`decide`] is the pure rule; [`StateDir`] holds the files.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::clock;

/// The file in the state directory that names the classifier in service.
pub const STATE_FILE: &str = "classifier.json";
/// The file in the state directory that holds a pending `allow-downgrade`.
pub const ALLOWANCE_FILE: &str = "downgrade-allowed.json";
/// Version of both files' layout.
const FORMAT: u32 = 1;

/// What identifies a classifier for rollback purposes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stamp {
    /// The classifier's `created` metadata, as written in the file (RFC 3339).
    pub created: String,
    /// sha256 of the classifier without its signature: re-signing the same classifier with
    /// another key keeps it.
    pub content_sha256: String,
}

impl Stamp {
    /// The stamp of classifier `bytes` whose metadata says `created`.
    pub fn of(bytes: &[u8], created: &str) -> Stamp {
        Stamp {
            created: created.to_owned(),
            content_sha256: recognition::models::sha256_hex(recognition::signature::unsigned_part(
                bytes,
            )),
        }
    }

    /// The creation time in nanoseconds since the Unix epoch.
    fn instant(&self) -> Result<i128, RollbackError> {
        parse_rfc3339(&self.created).map_err(|reason| RollbackError::Created {
            created: self.created.clone(),
            reason,
        })
    }
}

/// A pending deliberate downgrade, written by `lock-daemon allow-downgrade`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Allowance {
    /// sha256 of exactly the file that may be installed (signature included).
    pub file_sha256: String,
    /// Its creation time, for messages.
    pub created: String,
    /// Who allowed it, e.g. `uid 0 (sudo from uid 1000)`.
    pub by: String,
    /// When, RFC 3339 UTC.
    pub time: String,
}

/// Why a classifier was refused, or the state could not be used. Each says what to do.
#[derive(Debug, thiserror::Error)]
pub enum RollbackError {
    /// Older than the classifier in service.
    #[error(
        "older than the classifier in service (created {created} < {in_service}); to \
         downgrade deliberately run `lock-daemon allow-downgrade`"
    )]
    Older { created: String, in_service: String },
    /// Same creation time as the classifier in service, other content.
    #[error(
        "made at the same time as the classifier in service ({created}) but with different \
         content; retrain it with `trainer train`, or to install it deliberately run \
         `lock-daemon allow-downgrade`"
    )]
    SameTimeOtherContent { created: String },
    /// The `created` metadata is not an RFC 3339 time.
    #[error(
        "its creation time `{created}` is not an RFC 3339 time ({reason}), so it cannot be \
         ordered against the classifier in service; retrain it with `trainer train`"
    )]
    Created { created: String, reason: String },
    /// The state file exists but cannot be understood.
    #[error(
        "state file {path} is corrupt ({reason}), so the lock cannot tell whether the \
         classifier is older than the one accepted last; the door stays locked. Look in the \
         audit log for the last `start` or `reload` to see which classifier that was; if \
         nobody tampered with the state, delete {path} and start again: the installed \
         classifier then becomes the one in service"
    )]
    Corrupt { path: PathBuf, reason: String },
    /// The allowance file exists but cannot be understood.
    #[error("{path} is corrupt ({reason}); delete it and run `lock-daemon allow-downgrade` again")]
    AllowanceCorrupt { path: PathBuf, reason: String },
    /// A state file cannot be read or written.
    #[error(
        "cannot {operation} {path}: {source}; the state directory (state.dir) must be \
         writable by the service user (StateDirectory=facelock/state in the unit)"
    )]
    Io {
        operation: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Why a classifier may go into service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Nothing was in service before (first start, or the state file was deleted).
    First,
    /// The classifier in service: the same file, or the same classifier re-signed.
    Same,
    /// Newer than the classifier in service.
    Newer,
    /// Older (or the same time with other content), and an administrator allowed exactly
    /// this file.
    AllowedDowngrade(Allowance),
}

/// The rule. `candidate` is the classifier offered (its whole file hashes to
/// `file_sha256`), `in_service` the one it would replace, `allowance` a pending
/// `allow-downgrade`.
pub fn decide(
    in_service: Option<&Stamp>,
    candidate: &Stamp,
    file_sha256: &str,
    allowance: Option<&Allowance>,
) -> Result<Verdict, RollbackError> {
    let created = candidate.instant()?;
    let Some(current) = in_service else {
        return Ok(Verdict::First);
    };
    // A stored time that no longer parses counts as the oldest possible: the state was
    // written by this code from a parsed time, so this only happens to an edited file,
    // which `StateDir::in_service` refuses first.
    let current_created = current.instant().unwrap_or(i128::MIN);
    let refusal = if created > current_created {
        return Ok(Verdict::Newer);
    } else if created == current_created {
        if candidate.content_sha256 == current.content_sha256 {
            return Ok(Verdict::Same);
        }
        RollbackError::SameTimeOtherContent {
            created: candidate.created.clone(),
        }
    } else {
        RollbackError::Older {
            created: candidate.created.clone(),
            in_service: current.created.clone(),
        }
    };
    match allowance {
        Some(a) if a.file_sha256 == file_sha256 => Ok(Verdict::AllowedDowngrade(a.clone())),
        _ => Err(refusal),
    }
}

/// A classifier file that passed the rollback rule, not yet recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checked {
    pub stamp: Stamp,
    pub file_sha256: String,
    pub verdict: Verdict,
}

/// The state file's contents.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StateFile {
    format: u32,
    /// The classifier in service.
    classifier: Stamp,
    /// sha256 of its whole file (for people reading the state).
    file_sha256: String,
    /// When it was accepted, RFC 3339 UTC.
    accepted: String,
}

/// The allowance file's contents.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct AllowanceFile {
    format: u32,
    #[serde(flatten)]
    allowance: Allowance,
}

/// The state directory (`state.dir`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateDir {
    dir: PathBuf,
}

impl StateDir {
    pub fn new(dir: impl Into<PathBuf>) -> StateDir {
        StateDir { dir: dir.into() }
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }

    fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// The classifier accepted last, or `None` when nothing was ever accepted.
    pub fn in_service(&self) -> Result<Option<Stamp>, RollbackError> {
        let path = self.file(STATE_FILE);
        let Some(text) = read_optional(&path)? else {
            return Ok(None);
        };
        let corrupt = |reason: String| RollbackError::Corrupt {
            path: path.clone(),
            reason,
        };
        let state: StateFile = serde_json::from_str(&text).map_err(|e| corrupt(e.to_string()))?;
        if state.format != FORMAT {
            return Err(corrupt(format!(
                "format {}, this build writes {FORMAT}",
                state.format
            )));
        }
        parse_rfc3339(&state.classifier.created).map_err(|e| corrupt(format!("created: {e}")))?;
        Ok(Some(state.classifier))
    }

    /// The pending `allow-downgrade`, if any.
    pub fn allowance(&self) -> Result<Option<Allowance>, RollbackError> {
        let path = self.file(ALLOWANCE_FILE);
        let Some(text) = read_optional(&path)? else {
            return Ok(None);
        };
        let corrupt = |reason: String| RollbackError::AllowanceCorrupt {
            path: path.clone(),
            reason,
        };
        let file: AllowanceFile =
            serde_json::from_str(&text).map_err(|e| corrupt(e.to_string()))?;
        if file.format != FORMAT {
            return Err(corrupt(format!("format {}", file.format)));
        }
        Ok(Some(file.allowance))
    }

    /// Applies the rule to classifier `bytes` (whose metadata says `created`) against
    /// `in_service`; reads the allowance only when the rule refuses. Writes nothing.
    pub fn check(
        &self,
        in_service: Option<&Stamp>,
        bytes: &[u8],
        created: &str,
    ) -> Result<Checked, RollbackError> {
        let stamp = Stamp::of(bytes, created);
        let file_sha256 = recognition::models::sha256_hex(bytes);
        let verdict = match decide(in_service, &stamp, &file_sha256, None) {
            Ok(verdict) => verdict,
            Err(RollbackError::Created { created, reason }) => {
                return Err(RollbackError::Created { created, reason })
            }
            Err(refusal) => match self.allowance()? {
                None => return Err(refusal),
                Some(allowance) => decide(in_service, &stamp, &file_sha256, Some(&allowance))?,
            },
        };
        Ok(Checked {
            stamp,
            file_sha256,
            verdict,
        })
    }

    /// Records `checked` as the classifier in service, and consumes an allowance for it.
    pub fn record(&self, checked: &Checked) -> Result<(), RollbackError> {
        if checked.verdict != Verdict::Same {
            let state = StateFile {
                format: FORMAT,
                classifier: checked.stamp.clone(),
                file_sha256: checked.file_sha256.clone(),
                accepted: clock::wall_rfc3339(),
            };
            self.write(STATE_FILE, &state, 0o600)?;
        }
        if let Ok(Some(allowance)) = self.allowance() {
            if allowance.file_sha256 == checked.file_sha256 {
                let path = self.file(ALLOWANCE_FILE);
                std::fs::remove_file(&path).map_err(|source| RollbackError::Io {
                    operation: "delete",
                    path,
                    source,
                })?;
                sync_dir(&self.dir);
            }
        }
        Ok(())
    }

    /// Records an allowance (replacing a pending one).
    pub fn allow(&self, allowance: &Allowance) -> Result<(), RollbackError> {
        let file = AllowanceFile {
            format: FORMAT,
            allowance: allowance.clone(),
        };
        self.write(ALLOWANCE_FILE, &file, 0o600)
    }

    /// Writes `value` as JSON to `name` atomically ([`recognition::atomic::replace_file`]:
    /// temporary file, fsync, rename, fsync of the directory), with permission bits `mode`.
    /// The directory is created (mode 0700) if needed.
    pub(crate) fn write<T: Serialize>(
        &self,
        name: &str,
        value: &T,
        mode: u32,
    ) -> Result<(), RollbackError> {
        use std::os::unix::fs::DirBuilderExt as _;
        let path = self.file(name);
        let io = |operation: &'static str, path: &Path| {
            let path = path.to_owned();
            move |source| RollbackError::Io {
                operation,
                path,
                source,
            }
        };
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)
            .map_err(io("create", &self.dir))?;
        let mut text = serde_json::to_string_pretty(value).expect("state serialises");
        text.push('\n');
        recognition::atomic::replace_file(&path, mode, |file| {
            file.write_all(text.as_bytes())?;
            // Written by root (`lock-daemon allow-downgrade`), it must stay the service's.
            crate::audit::give_to_directory_owner(file, &path);
            Ok(())
        })
        .map_err(io("write", &path))
    }
}

/// `lock-daemon allow-downgrade`: allows the classifier file now installed at
/// `recognition.classifier` into service once, although it is older than the one in service.
/// The file must pass the trust checks it will meet (signature, pipeline settings; the
/// embedder is checked when it is put into service). The allowance is audited (naming who
/// ran the command) before it is recorded. Returns what to tell the administrator.
pub fn allow_downgrade(settings: &crate::config::Settings) -> anyhow::Result<String> {
    use anyhow::Context as _;
    let path = &settings.recognition.classifier;
    let bytes = std::fs::read(path)
        .with_context(|| format!("cannot read classifier {}", path.display()))?;
    let key = settings
        .security
        .trusted_key
        .as_deref()
        .map(recognition::signature::read_verifying_key)
        .transpose()?;
    // Recognition's trust path, all of it that needs no models (the embedder is checked
    // when the file is put into service).
    let meta = recognition::classify::check_without_models(
        path,
        &bytes,
        key.as_ref(),
        &settings.recognition.pipeline_config(),
    )
    .with_context(|| {
        format!(
            "classifier {} would be refused anyway, so allowing it is pointless",
            path.display()
        )
    })?;
    let state = StateDir::new(&settings.state.dir);
    let in_service = state.in_service()?;
    let stamp = Stamp::of(&bytes, &meta.created);
    let file_sha256 = recognition::models::sha256_hex(&bytes);
    let current = match decide(in_service.as_ref(), &stamp, &file_sha256, None) {
        Err(e @ RollbackError::Created { .. }) => return Err(e.into()),
        Err(_) => in_service.map(|s| s.created).unwrap_or_default(),
        Ok(_) => {
            return Ok(format!(
                "nothing to allow: {} (created {}) is not older than the classifier in                  service, so it is accepted as it is",
                path.display(),
                meta.created
            ))
        }
    };
    let allowance = Allowance {
        file_sha256,
        created: meta.created.clone(),
        by: invoker(),
        time: clock::wall_rfc3339(),
    };
    let what = format!(
        "{} (created {}, sha256 {}, enrolled: {})",
        path.display(),
        meta.created,
        allowance.file_sha256,
        meta.labels.join(", ")
    );
    crate::audit::append(
        &settings.audit,
        &crate::audit::Record::new(crate::audit::Event::DowngradeAllowed).message(format!(
            "{} allowed {what} into service once, although the classifier in service is \
             newer (created {current})",
            allowance.by
        )),
    )
    .context(
        "the allowance must be audited, so nothing was allowed; run it as root (`sudo \
         lock-daemon allow-downgrade`)",
    )?;
    state
        .allow(&allowance)
        .context("run it as root (`sudo lock-daemon allow-downgrade`)")?;
    Ok(format!(
        "allowed once: {what}\nThe running daemon puts it into service at its next reload \
         (`systemctl reload lock-daemon`), otherwise at the next start."
    ))
}

/// A file's text, or `None` when it does not exist.
pub(crate) fn read_optional(path: &Path) -> Result<Option<String>, RollbackError> {
    match std::fs::read(path) {
        Ok(bytes) => String::from_utf8(bytes)
            .map(Some)
            .map_err(|_| RollbackError::Corrupt {
                path: path.to_owned(),
                reason: "not UTF-8 text".into(),
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(RollbackError::Io {
            operation: "read",
            path: path.to_owned(),
            source,
        }),
    }
}

/// Makes a rename durable (best effort: some file systems cannot sync directories).
fn sync_dir(dir: &Path) {
    if let Err(e) = std::fs::File::open(dir).and_then(|d| d.sync_all()) {
        log::debug!("cannot sync {}: {e}", dir.display());
    }
}

/// Who runs this process, for the audit log: `uid N`, plus the sudo user if any (which
/// only root's environment can claim).
pub fn invoker() -> String {
    let uid = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|ids| ids.split_whitespace().next().map(str::to_owned))
        })
        .unwrap_or_else(|| "unknown".into());
    match (std::env::var("SUDO_USER"), std::env::var("SUDO_UID")) {
        (Ok(user), Ok(sudo_uid)) if uid == "0" => {
            format!("uid 0 (sudo from {user}, uid {sudo_uid})")
        }
        _ => format!("uid {uid}"),
    }
}

/// Parses an RFC 3339 time (`2026-05-01T08:30:00.123456789Z`, or with a `+HH:MM` offset)
/// into nanoseconds since the Unix epoch.
pub fn parse_rfc3339(text: &str) -> Result<i128, String> {
    let bad = |what: &str| format!("{what} in `{}`", crate::config::clip(text));
    let b = text.as_bytes();
    let digits = |range: std::ops::Range<usize>| -> Result<u32, String> {
        let part = b.get(range).ok_or_else(|| bad("too short"))?;
        if part.is_empty() || !part.iter().all(u8::is_ascii_digit) {
            return Err(bad("a digit expected"));
        }
        Ok(part.iter().fold(0, |n, d| n * 10 + u32::from(d - b'0')))
    };
    let sep = |i: usize, allowed: &[u8]| -> Result<(), String> {
        match b.get(i) {
            Some(c) if allowed.contains(c) => Ok(()),
            _ => Err(bad("a separator is missing")),
        }
    };
    let year = digits(0..4)?;
    sep(4, b"-")?;
    let month = digits(5..7)?;
    sep(7, b"-")?;
    let day = digits(8..10)?;
    sep(10, b"Tt ")?;
    let hour = digits(11..13)?;
    sep(13, b":")?;
    let minute = digits(14..16)?;
    sep(16, b":")?;
    let second = digits(17..19)?;
    let mut i = 19;
    let mut nanos = 0u32;
    if b.get(i) == Some(&b'.') {
        let start = i + 1;
        let end = start + b[start..].iter().take_while(|c| c.is_ascii_digit()).count();
        if end == start || end - start > 9 {
            return Err(bad("1 to 9 fraction digits expected"));
        }
        nanos = digits(start..end)? * 10u32.pow(9 - (end - start) as u32);
        i = end;
    }
    let offset_secs: i32 = match b.get(i) {
        Some(b'Z' | b'z') if i + 1 == b.len() => 0,
        Some(sign @ (b'+' | b'-')) if i + 6 == b.len() => {
            sep(i + 3, b":")?;
            let (h, m) = (digits(i + 1..i + 3)?, digits(i + 4..i + 6)?);
            if h > 23 || m > 59 {
                return Err(bad("offset out of range"));
            }
            let secs = (h * 3600 + m * 60) as i32;
            if *sign == b'-' {
                -secs
            } else {
                secs
            }
        }
        _ => return Err(bad("`Z` or a `+HH:MM` offset expected at the end")),
    };
    let month = u8::try_from(month)
        .ok()
        .and_then(|m| time::Month::try_from(m).ok())
        .ok_or_else(|| bad("month out of range"))?;
    let date = time::Date::from_calendar_date(year as i32, month, day as u8)
        .map_err(|_| bad("day out of range"))?;
    let time = time::Time::from_hms_nano(hour as u8, minute as u8, second as u8, nanos)
        .map_err(|_| bad("time of day out of range"))?;
    let utc = time::PrimitiveDateTime::new(date, time).assume_utc();
    Ok(utc.unix_timestamp_nanos() - i128::from(offset_secs) * 1_000_000_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stamp(created: &str, content: &str) -> Stamp {
        Stamp {
            created: created.into(),
            content_sha256: content.into(),
        }
    }

    fn allowance(file_sha256: &str) -> Allowance {
        Allowance {
            file_sha256: file_sha256.into(),
            created: "2026-01-01T00:00:00Z".into(),
            by: "uid 0".into(),
            time: "2026-06-01T00:00:00.000Z".into(),
        }
    }

    const OLD: &str = "2026-01-01T00:00:00.5Z";
    const NEW: &str = "2026-01-01T00:00:00.500000001Z";

    #[test]
    fn a_newer_classifier_replaces_the_one_in_service() {
        let current = stamp(OLD, "a");
        let verdict = decide(Some(&current), &stamp(NEW, "b"), "fb", None).unwrap();
        assert_eq!(verdict, Verdict::Newer);
        // Offsets count: 02:00+03:00 is 23:00 the day before in UTC.
        let verdict = decide(
            Some(&stamp("2026-01-01T23:00:00Z", "a")),
            &stamp("2026-01-02T02:00:00.000000001+03:00", "b"),
            "fb",
            None,
        )
        .unwrap();
        assert_eq!(verdict, Verdict::Newer);
    }

    #[test]
    fn an_older_classifier_is_refused_with_both_times_and_the_way_out() {
        let current = stamp(NEW, "b");
        let err = decide(Some(&current), &stamp(OLD, "a"), "fa", None).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains(&format!(
                "older than the classifier in service (created {OLD} < {NEW})"
            )),
            "{msg}"
        );
        assert!(
            msg.contains("to downgrade deliberately run `lock-daemon allow-downgrade`"),
            "{msg}"
        );
    }

    #[test]
    fn the_same_classifier_is_accepted_again_even_re_signed() {
        let current = stamp(OLD, "a");
        assert_eq!(
            decide(Some(&current), &stamp(OLD, "a"), "other signature", None).unwrap(),
            Verdict::Same
        );
        // The same time written differently is the same time.
        assert_eq!(
            decide(
                Some(&current),
                &stamp("2026-01-01T01:00:00.500+01:00", "a"),
                "f",
                None
            )
            .unwrap(),
            Verdict::Same
        );
    }

    #[test]
    fn the_same_time_with_other_content_is_refused() {
        let err = decide(Some(&stamp(OLD, "a")), &stamp(OLD, "b"), "fb", None).unwrap_err();
        assert!(
            matches!(err, RollbackError::SameTimeOtherContent { .. }),
            "{err}"
        );
        assert!(err.to_string().contains("allow-downgrade"), "{err}");
    }

    #[test]
    fn an_allowance_admits_exactly_the_allowed_file() {
        let current = stamp(NEW, "b");
        let older = stamp(OLD, "a");
        let allowed = allowance("fa");
        assert_eq!(
            decide(Some(&current), &older, "fa", Some(&allowed)).unwrap(),
            Verdict::AllowedDowngrade(allowed.clone())
        );
        assert!(decide(Some(&current), &older, "another file", Some(&allowed)).is_err());
    }

    #[test]
    fn anything_goes_into_service_first_but_an_unparsable_time_never() {
        assert_eq!(
            decide(None, &stamp(OLD, "a"), "fa", None).unwrap(),
            Verdict::First
        );
        let err = decide(None, &stamp("yesterday", "a"), "fa", None).unwrap_err();
        assert!(err.to_string().contains("retrain"), "{err}");
    }

    #[test]
    fn rfc3339_times_parse_to_nanoseconds() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Ok(0));
        assert_eq!(parse_rfc3339("1970-01-01T00:00:01.5Z"), Ok(1_500_000_000));
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00.000000001Z"), Ok(1));
        assert_eq!(parse_rfc3339("1970-01-01T01:00:00+01:00"), Ok(0));
        assert_eq!(parse_rfc3339("1969-12-31T23:00:00-01:00"), Ok(0));
        for bad in [
            "",
            "2026-01-01",
            "2026-01-01T00:00:00",
            "2026-13-01T00:00:00Z",
            "2026-02-30T00:00:00Z",
            "2026-01-01T00:00:00.Z",
            "2026-01-01T00:00:00.1234567890Z",
            "2026-01-01T00:00:00Zjunk",
            "2026-01-01T25:00:00Z",
        ] {
            assert!(parse_rfc3339(bad).is_err(), "{bad}");
        }
    }

    fn checked(created: &str, bytes: &[u8], verdict: Verdict) -> Checked {
        Checked {
            stamp: Stamp::of(bytes, created),
            file_sha256: recognition::models::sha256_hex(bytes),
            verdict,
        }
    }

    #[test]
    fn the_classifier_in_service_survives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::new(dir.path().join("state"));
        assert_eq!(state.in_service().unwrap(), None);
        let first = state.check(None, b"new", NEW).unwrap();
        assert_eq!(first.verdict, Verdict::First);
        state.record(&first).unwrap();
        // A new process reads it back, and an older file is refused against it.
        let state = StateDir::new(dir.path().join("state"));
        let current = state.in_service().unwrap().unwrap();
        assert_eq!(current, Stamp::of(b"new", NEW));
        let err = state.check(Some(&current), b"old", OLD).unwrap_err();
        assert!(matches!(err, RollbackError::Older { .. }), "{err}");
        // Nothing else is left behind, and the files are private.
        let names: Vec<String> = std::fs::read_dir(state.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names, [STATE_FILE]);
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(state.path().join(STATE_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "{mode:o}");
    }

    #[test]
    fn an_allowance_is_used_once() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::new(dir.path());
        state.record(&checked(NEW, b"new", Verdict::First)).unwrap();
        let current = state.in_service().unwrap().unwrap();
        state
            .allow(&allowance(&recognition::models::sha256_hex(b"old")))
            .unwrap();
        // Another older file is still refused; the allowance stays pending.
        assert!(state.check(Some(&current), b"older", OLD).is_err());
        assert!(state.allowance().unwrap().is_some());
        let accepted = state.check(Some(&current), b"old", OLD).unwrap();
        assert!(matches!(accepted.verdict, Verdict::AllowedDowngrade(_)));
        state.record(&accepted).unwrap();
        assert_eq!(state.allowance().unwrap(), None);
        // The downgraded classifier is now the one in service: the newer one is newer again,
        // and the older one is the same.
        let current = state.in_service().unwrap().unwrap();
        assert_eq!(current.created, OLD);
        assert_eq!(
            state.check(Some(&current), b"old", OLD).unwrap().verdict,
            Verdict::Same
        );
        assert_eq!(
            state.check(Some(&current), b"new", NEW).unwrap().verdict,
            Verdict::Newer
        );
    }

    #[test]
    fn a_corrupt_state_file_refuses_with_how_to_fix_it() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::new(dir.path());
        for text in [
            "{\"format\": 1, \"classifier\": ".to_owned(),
            "\u{0}\u{0}\u{0}".to_owned(),
            serde_json::json!({
                "format": 1,
                "classifier": {"created": "long ago", "content_sha256": "a"},
                "file_sha256": "a",
                "accepted": "x"
            })
            .to_string(),
        ] {
            std::fs::write(dir.path().join(STATE_FILE), text).unwrap();
            let err = state.in_service().unwrap_err().to_string();
            assert!(err.contains("is corrupt"), "{err}");
            assert!(err.contains("door stays locked"), "{err}");
            assert!(err.contains("delete"), "{err}");
        }
    }

    #[test]
    fn an_unwritable_state_directory_names_the_unit_setting() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("file"), b"").unwrap();
        // A state "directory" below a regular file can never be created.
        let state = StateDir::new(dir.path().join("file/state"));
        let err = state
            .record(&checked(NEW, b"new", Verdict::First))
            .unwrap_err()
            .to_string();
        assert!(err.contains("StateDirectory=facelock/state"), "{err}");
    }
}
