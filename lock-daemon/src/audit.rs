//! The access log: one JSON object per line, appended and flushed per event, plus optional
//! JPEG snapshots (the frame with face boxes) of unlocks and unknown visitors, with a
//! retention count.
//!
//! Records carry names, scores and frame counts — never embeddings, which are biometric
//! data: [`Record`] has no field that could hold one. Snapshots are photos of people; they
//! are off by default, written with mode 0600 into a 0700 directory.

use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};

use image::RgbImage;
use serde::Serialize;

use crate::clock;
use crate::config::{AuditSettings, SnapshotSettings};
use crate::policy::Action;

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Event {
    /// The service started (settings, models, camera and relay up).
    Start,
    /// The service stopped (door locked).
    Stop,
    /// The door was unlocked for `person`.
    Unlock,
    /// A qualifying unknown face was refused.
    DeniedUnknown,
    /// The door was locked again.
    Relock,
    /// A new classifier was loaded.
    Reload,
    /// A new classifier was refused; the old one stays in service.
    ReloadRefused,
    /// Something failed (camera, relay, recognition).
    Error,
    /// The service runs in a weaker configuration than it should (unsigned classifiers).
    Warning,
    /// An administrator allowed one older classifier file (`lock-daemon allow-downgrade`).
    DowngradeAllowed,
    /// An older classifier was put into service under such an allowance.
    Downgrade,
    /// The door opened under a face grant (`person`).
    Entry,
    /// The exit button (request to exit) released the door.
    Exit,
    /// The door opened for another legitimate reason (named in `message`).
    DoorOpened,
    /// The door closed.
    DoorClosed,
    /// The door opened while nothing released it.
    ForcedOpen,
    /// The door stood open longer than `door.held_open_secs`.
    HeldOpen,
    /// The held-open alarm ended: the door closed.
    HeldOpenEnd,
    /// The operating mode changed (`by` says who changed it).
    ModeChanged,
    /// A front-end unlocked the door for a while (`by`, `message` = the reason).
    ManualUnlock,
    /// A request was refused by the mode or the schedule (`message` says why).
    Refused,
    /// The fire-release input was asserted or cleared.
    FireRelease,
    /// A door input could not be read; the door state is unknown.
    InputError,
    /// `camera.expect_ir` is set but frames are in colour (a swapped camera or a removed
    /// IR filter); they are refused until they are infrared again.
    CameraNotIr,
    /// An HTTP request without a valid token, or with a token lacking the scope (at most
    /// one record per client address a minute; the metrics count them all).
    AuthFailure,
    /// A classifier was uploaded over the HTTP API, checked and written into place (`by`);
    /// the `reload` record that follows says when it went into service.
    ClassifierPushed,
    /// Someone started or stopped watching the live preview (`by`).
    Preview,
    /// A guided capture started, was refused, or ended (`person`, `by`; `message` says
    /// how many frames were kept and why others were refused).
    Capture,
    /// The data collector kept a face (`person` = the suggested person; `message` = the
    /// kind, the scores and the file inside `collect.dir`).
    Collected,
}

impl Event {
    pub fn as_str(self) -> &'static str {
        match self {
            Event::Start => "start",
            Event::Stop => "stop",
            Event::Unlock => "unlock",
            Event::DeniedUnknown => "denied-unknown",
            Event::Relock => "relock",
            Event::Reload => "reload",
            Event::ReloadRefused => "reload-refused",
            Event::Error => "error",
            Event::Warning => "warning",
            Event::DowngradeAllowed => "downgrade-allowed",
            Event::Downgrade => "downgrade",
            Event::Entry => "entry",
            Event::Exit => "exit",
            Event::DoorOpened => "door-opened",
            Event::DoorClosed => "door-closed",
            Event::ForcedOpen => "forced-open",
            Event::HeldOpen => "held-open",
            Event::HeldOpenEnd => "held-open-end",
            Event::ModeChanged => "mode-changed",
            Event::ManualUnlock => "manual-unlock",
            Event::Refused => "refused",
            Event::FireRelease => "fire-release",
            Event::InputError => "input-error",
            Event::CameraNotIr => "camera-not-ir",
            Event::AuthFailure => "auth-failure",
            Event::ClassifierPushed => "classifier-pushed",
            Event::Preview => "preview",
            Event::Capture => "capture",
            Event::Collected => "collected",
        }
    }
}

/// One line of the access log. Absent values are left out of the JSON.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Record {
    /// Wall time, RFC 3339 UTC.
    pub time: String,
    pub event: Event,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub person: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub probability: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub similarity: Option<f32>,
    /// Frames the decision used.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub frames: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Who asked, for commands from a front-end (`uid 1000 (alice) via control socket`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
    /// File name of the snapshot taken for this event, inside the snapshot directory.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<String>,
    /// A face unlock: milliseconds from the camera delivering the first frame that
    /// confirmed the person to the relay command.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<u64>,
}

impl Record {
    /// A record of `event`, stamped now.
    pub fn new(event: Event) -> Record {
        Record {
            time: clock::wall_rfc3339(),
            event,
            person: None,
            probability: None,
            similarity: None,
            frames: None,
            message: None,
            by: None,
            snapshot: None,
            latency_ms: None,
        }
    }

    pub fn person(mut self, person: impl Into<String>) -> Record {
        self.person = Some(person.into());
        self
    }

    pub fn scores(mut self, probability: f32, similarity: f32) -> Record {
        self.probability = Some(probability);
        self.similarity = Some(similarity);
        self
    }

    pub fn frames(mut self, frames: u32) -> Record {
        self.frames = Some(frames);
        self
    }

    pub fn message(mut self, message: impl Into<String>) -> Record {
        self.message = Some(message.into());
        self
    }

    pub fn by(mut self, by: impl Into<String>) -> Record {
        self.by = Some(by.into());
        self
    }

    /// The record of a policy decision.
    pub fn from_action(action: &Action) -> Record {
        match action {
            Action::Unlock {
                person,
                frames,
                probability,
                similarity,
                ..
            } => Record::new(Event::Unlock)
                .person(person)
                .frames(*frames)
                .scores(*probability, *similarity),
            Action::Relock { person } => Record::new(Event::Relock).person(person),
            Action::DeniedUnknown {
                probability,
                similarity,
            } => Record::new(Event::DeniedUnknown).scores(*probability, *similarity),
        }
    }
}

/// Audit failures.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// The log file or snapshot directory cannot be created or opened.
    #[error(
        "cannot open audit {path}: {source}; check that the directory exists and is writable \
         by the service user (ReadWritePaths in the unit)"
    )]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
    /// Appending to the log failed (disk full?).
    #[error("cannot write audit log {path}: {source} (disk full?)")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A snapshot could not be written.
    #[error("cannot write snapshot {path}: {reason}")]
    Snapshot { path: PathBuf, reason: String },
    /// An existing snapshot directory is open to other users and cannot be tightened.
    #[error(
        "snapshot directory {path} has mode {mode:04o}, so other users could look at the \
         photos of people in it, and it cannot be tightened to 0700: {source}; run \
         `chmod 700 {path}` as its owner (or `chown facelock {path}`)"
    )]
    SnapshotDirMode {
        path: PathBuf,
        mode: u32,
        source: std::io::Error,
    },
}

/// The open access log.
#[derive(Debug)]
pub struct AuditLog {
    path: PathBuf,
    file: File,
    snapshots: Option<SnapshotSettings>,
    /// Distinguishes snapshots taken within the same millisecond.
    counter: u32,
}

impl AuditLog {
    /// Opens (appends to) the log, creating it (mode 0640) and its directory if needed, and
    /// the snapshot directory (mode 0700) when snapshots are on.
    pub fn open(settings: &AuditSettings) -> Result<AuditLog, AuditError> {
        let path = &settings.log;
        let fail = |path: &Path| {
            let path = path.to_owned();
            move |source| AuditError::Open { path, source }
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(fail(dir))?;
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o640)
            .open(path)
            .map_err(fail(path))?;
        if let Some(snapshots) = &settings.snapshots {
            open_snapshot_dir(&snapshots.dir)?;
        }
        Ok(AuditLog {
            path: path.clone(),
            file,
            snapshots: settings.snapshots.clone(),
            counter: 0,
        })
    }

    /// Appends one record and flushes it.
    pub fn record(&mut self, record: &Record) -> Result<(), AuditError> {
        let mut line = serde_json::to_string(record).expect("records serialise");
        line.push('\n');
        self.file
            .write_all(line.as_bytes())
            .and_then(|()| self.file.flush())
            .map_err(|source| AuditError::Write {
                path: self.path.clone(),
                source,
            })
    }

    /// Appends a record; for unlocks and unknown visitors, and when snapshots are on, first
    /// saves the frame with the faces boxed and names the snapshot in the record. A failed
    /// snapshot is logged and noted in the record; it never loses the record itself.
    /// `record` is left as written (with the snapshot's name).
    pub fn record_with_snapshot(
        &mut self,
        record: &mut Record,
        frame: &RgbImage,
        faces: &[recognition::Recognized],
    ) -> Result<(), AuditError> {
        if matches!(record.event, Event::Unlock | Event::DeniedUnknown) {
            match self.snapshot(record, frame, faces) {
                Ok(name) => record.snapshot = name,
                Err(e) => {
                    log::warn!("{e}");
                    record
                        .message
                        .get_or_insert_with(|| format!("snapshot failed: {e}"));
                }
            }
        }
        self.record(record)
    }

    /// Writes the snapshot for `record`; returns its file name, or `None` when snapshots
    /// are off.
    fn snapshot(
        &mut self,
        record: &Record,
        frame: &RgbImage,
        faces: &[recognition::Recognized],
    ) -> Result<Option<String>, AuditError> {
        let Some(settings) = &self.snapshots else {
            return Ok(None);
        };
        self.counter = self.counter.wrapping_add(1);
        let name = snapshot_name(
            &record.time,
            self.counter,
            record.event,
            record.person.as_deref(),
        );
        let path = settings.dir.join(&name);
        let fail = |reason: String| AuditError::Snapshot {
            path: path.clone(),
            reason,
        };
        let mut image = frame.clone();
        let options = recognition::annotate::AnnotateOptions {
            min_face_px: None,
            landmarks: true,
        };
        recognition::annotate::draw_recognized(&mut image, faces, &options);
        // Atomically, so a reader never sees half a JPEG; 0600: snapshots are photos of people.
        recognition::atomic::replace_file(&path, 0o600, |file| {
            let mut out = std::io::BufWriter::new(file);
            image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 85)
                .encode_image(&image)
                .map_err(std::io::Error::other)?;
            out.flush()
        })
        .map_err(|e| fail(e.to_string()))?;
        prune_snapshots(&settings.dir, settings.keep)
            .map_err(|e| fail(format!("retention: {e}")))?;
        Ok(Some(name))
    }
}

/// Appends one record to the log at `settings.log` and closes it, for commands other than
/// the running service (`lock-daemon allow-downgrade`) and for records written while the
/// service is still loading. When run as root and the log is new, the file is given to the
/// owner of its directory, so the service user can still append to it.
pub fn append(settings: &AuditSettings, record: &Record) -> Result<(), AuditError> {
    let existed = settings.log.exists();
    let mut log = AuditLog::open(&AuditSettings {
        log: settings.log.clone(),
        snapshots: None,
    })?;
    if !existed {
        give_to_directory_owner(&log.file, &settings.log);
    }
    log.record(record)
}

/// Best effort: a file created by root in a directory owned by the service user is handed
/// to that user (a no-op for everyone else, who cannot chown).
pub(crate) fn give_to_directory_owner(file: &File, path: &Path) {
    use std::os::unix::fs::MetadataExt as _;
    let Some(dir) = path.parent() else { return };
    let (Ok(dir), Ok(own)) = (std::fs::metadata(dir), file.metadata()) else {
        return;
    };
    if own.uid() == 0 && dir.uid() != 0 {
        if let Err(e) = std::os::unix::fs::fchown(file, Some(dir.uid()), Some(dir.gid())) {
            log::warn!("cannot give {} to uid {}: {e}", path.display(), dir.uid());
        }
    }
}

/// Creates the snapshot directory with mode 0700, or tightens an existing one to 0700:
/// snapshots are photos of people.
fn open_snapshot_dir(dir: &Path) -> Result<(), AuditError> {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|source| AuditError::Open {
            path: dir.to_owned(),
            source,
        })?;
    let mode = std::fs::metadata(dir)
        .map_err(|source| AuditError::Open {
            path: dir.to_owned(),
            source,
        })?
        .permissions()
        .mode()
        & 0o7777;
    if mode & 0o077 != 0 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(
            |source| AuditError::SnapshotDirMode {
                path: dir.to_owned(),
                mode,
                source,
            },
        )?;
        log::warn!(
            "snapshot directory {} had mode {mode:04o}; tightened to 0700",
            dir.display()
        );
    }
    Ok(())
}

/// `<time>-<counter>-<event>[-<person>].jpg`, time first so names sort chronologically,
/// e.g. `20250501T083000.123Z-0001-unlock-ada.jpg`.
fn snapshot_name(time: &str, counter: u32, event: Event, person: Option<&str>) -> String {
    let compact: String = time.chars().filter(|c| !matches!(c, '-' | ':')).collect();
    let mut name = format!("{compact}-{:04}-{}", counter % 10_000, event.as_str());
    if let Some(person) = person {
        name.push('-');
        name.extend(person.chars().map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        }));
    }
    name + ".jpg"
}

/// Whether a file name is one of our snapshots (only those are ever deleted).
fn is_snapshot_name(name: &str) -> bool {
    let b = name.as_bytes();
    name.ends_with(".jpg")
        && b.len() > 16
        && b[..8].iter().all(u8::is_ascii_digit)
        && b[8] == b'T'
        && b[9..15].iter().all(u8::is_ascii_digit)
}

/// Deletes the oldest snapshots beyond `keep`.
fn prune_snapshots(dir: &Path, keep: usize) -> std::io::Result<()> {
    let mut names: Vec<String> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| is_snapshot_name(n))
        .collect();
    if names.len() <= keep {
        return Ok(());
    }
    names.sort();
    for name in &names[..names.len() - keep] {
        std::fs::remove_file(dir.join(name))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    fn settings(dir: &Path, snapshots: Option<usize>) -> AuditSettings {
        AuditSettings {
            log: dir.join("log/audit.jsonl"),
            snapshots: snapshots.map(|keep| SnapshotSettings {
                dir: dir.join("snapshots"),
                keep,
            }),
        }
    }

    fn lines(path: &Path) -> Vec<serde_json::Value> {
        std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    fn face(identity: Option<&str>) -> recognition::Recognized {
        recognition::Recognized {
            face: recognition::Face {
                bbox: recognition::BBox {
                    x1: 10.0,
                    y1: 10.0,
                    x2: 50.0,
                    y2: 60.0,
                },
                score: 0.99,
                landmarks: [(30.0, 30.0); 5],
            },
            prediction: recognition::Prediction {
                identity: identity.map(str::to_owned),
                nearest: "ada".into(),
                probability: 0.9,
                similarity: 0.8,
            },
        }
    }

    /// The colour of the top edge of the box `face` draws, in a 64x64 snapshot.
    fn box_edge(snapshot: &Path) -> [u8; 3] {
        let snap = image::open(snapshot).unwrap().to_rgb8();
        assert_eq!(snap.dimensions(), (64, 64));
        snap.get_pixel(30, 10).0
    }

    fn assert_red([r, g, b]: [u8; 3]) {
        assert!(
            r > 150 && g < 120 && b < 120,
            "not the red of an unknown face: {:?}",
            [r, g, b]
        );
    }

    fn assert_green([r, g, b]: [u8; 3]) {
        assert!(
            g > 150 && r < 120 && b < 150,
            "not the green of a known face: {:?}",
            [r, g, b]
        );
    }

    #[test]
    fn events_are_appended_as_json_lines() {
        let dir = tempfile::tempdir().unwrap();
        let s = settings(dir.path(), None);
        let mut log = AuditLog::open(&s).unwrap();
        log.record(&Record::new(Event::Start).message("ready"))
            .unwrap();
        log.record(&Record::from_action(&Action::Unlock {
            person: "ada".into(),
            frames: 3,
            probability: 0.97,
            similarity: 0.81,
            first_seen: std::time::Instant::now(),
        }))
        .unwrap();
        log.record(&Record::new(Event::ReloadRefused).message("unsigned"))
            .unwrap();
        // Flushed per record: visible without closing.
        let got = lines(&s.log);
        assert_eq!(got.len(), 3);
        assert_eq!(got[0]["event"], "start");
        assert_eq!(got[1]["event"], "unlock");
        assert_eq!(got[1]["person"], "ada");
        assert_eq!(got[1]["frames"], 3);
        assert!((got[1]["probability"].as_f64().unwrap() - 0.97).abs() < 1e-6);
        assert_eq!(got[2]["event"], "reload-refused");
        assert!(got[0]["time"].as_str().unwrap().ends_with('Z'));
        drop(log);
        // Reopening appends.
        AuditLog::open(&s)
            .unwrap()
            .record(&Record::new(Event::Stop))
            .unwrap();
        assert_eq!(lines(&s.log).len(), 4);
        let mode = std::fs::metadata(&s.log).unwrap().permissions().mode();
        assert_eq!(mode & 0o007, 0, "not world-readable: {mode:o}");
    }

    /// Panics when a line of the log could hold an embedding: every line is a flat object
    /// of the known keys with plain values (no arrays, no nested objects), and no text
    /// in it carries a run of numbers (a vector printed into a message).
    fn assert_no_embedding(text: &str) {
        const KEYS: [&str; 9] = [
            "time",
            "event",
            "person",
            "probability",
            "similarity",
            "frames",
            "message",
            "by",
            "snapshot",
        ];
        for line in text.lines() {
            let record: serde_json::Map<String, serde_json::Value> =
                serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
            for (key, value) in &record {
                assert!(KEYS.contains(&key.as_str()), "unexpected key {key}: {line}");
                assert!(
                    !value.is_array() && !value.is_object(),
                    "{key} holds a structure: {line}"
                );
                let numbers = value.as_str().map_or(0, |text| {
                    text.split(|c: char| !(c.is_ascii_digit() || matches!(c, '.' | '-' | 'e')))
                        .filter(|t| t.contains('.') && t.parse::<f64>().is_ok())
                        .count()
                });
                assert!(numbers < 8, "{key} holds {numbers} numbers: {line}");
            }
        }
    }

    #[test]
    fn the_log_of_unlocks_and_strangers_holds_no_embedding() {
        let dir = tempfile::tempdir().unwrap();
        let s = settings(dir.path(), Some(10));
        let mut log = AuditLog::open(&s).unwrap();
        let frame = RgbImage::new(64, 64);
        let actions = [
            Action::Unlock {
                person: "ada".into(),
                frames: 3,
                probability: 0.97,
                similarity: 0.81,
                first_seen: std::time::Instant::now(),
            },
            Action::DeniedUnknown {
                probability: 0.3,
                similarity: 0.2,
            },
            Action::Relock {
                person: "ada".into(),
            },
        ];
        for (action, faces) in actions.iter().zip([
            vec![face(Some("ada"))],
            vec![face(None), face(None)],
            vec![],
        ]) {
            log.record_with_snapshot(&mut Record::from_action(action), &frame, &faces)
                .unwrap();
        }
        let text = std::fs::read_to_string(&s.log).unwrap();
        assert_no_embedding(&text);
        let records = lines(&s.log);
        assert_eq!(records.len(), 3);
        assert_eq!(records[0]["event"], "unlock");
        assert_eq!(records[0]["person"], "ada");
        assert!(records[0]["snapshot"].is_string());
        assert_eq!(records[1]["event"], "denied-unknown");
        assert!((records[1]["similarity"].as_f64().unwrap() - 0.2).abs() < 1e-6);
        assert_eq!(records[2]["event"], "relock");
    }

    #[test]
    fn snapshots_are_taken_for_unlocks_and_strangers_and_pruned() {
        let dir = tempfile::tempdir().unwrap();
        let s = settings(dir.path(), Some(2));
        let mut log = AuditLog::open(&s).unwrap();
        let frame = RgbImage::new(64, 64);
        let snap_dir = s.snapshots.as_ref().unwrap().dir.clone();
        let unknown = [face(None)];
        let mut stranger = None;
        for _ in 0..3 {
            let mut record = Record::new(Event::DeniedUnknown).scores(0.3, 0.2);
            log.record_with_snapshot(&mut record, &frame, &unknown)
                .unwrap();
            stranger = record.snapshot;
        }
        // The stranger's snapshot shows the red box of the unknown face (checked now:
        // retention removes it below).
        let stranger = stranger.expect("strangers get a snapshot");
        assert!(stranger.ends_with("-denied-unknown.jpg"), "{stranger}");
        assert_red(box_edge(&snap_dir.join(&stranger)));
        log.record_with_snapshot(
            &mut Record::new(Event::Unlock).person("ada/../x"),
            &frame,
            &[face(Some("ada"))],
        )
        .unwrap();
        // Relocks never get snapshots.
        log.record_with_snapshot(&mut Record::new(Event::Relock).person("ada"), &frame, &[])
            .unwrap();
        std::fs::write(snap_dir.join("keep-me.jpg"), b"not ours").unwrap();
        log.record_with_snapshot(&mut Record::new(Event::Unlock).person("bob"), &frame, &[])
            .unwrap();
        let mut files: Vec<String> = std::fs::read_dir(&snap_dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        files.sort();
        assert_eq!(files.len(), 3, "{files:?}");
        assert!(files[0].ends_with("-unlock-ada____x.jpg"), "{files:?}");
        assert!(files[1].ends_with("-unlock-bob.jpg"), "{files:?}");
        assert_eq!(files[2], "keep-me.jpg");
        let records = lines(&s.log);
        assert_eq!(records.len(), 6);
        assert!(records[4].get("snapshot").is_none());
        assert_eq!(records[5]["snapshot"], files[1].as_str());
        // The unlock's snapshot shows the green box of the known face.
        assert_green(box_edge(&snap_dir.join(&files[0])));
        let mode = std::fs::metadata(snap_dir.join(&files[1]))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "{mode:o}");
    }

    #[test]
    fn snapshot_box_colours_mark_known_and_unknown_faces() {
        let dir = tempfile::tempdir().unwrap();
        let s = settings(dir.path(), Some(10));
        let mut log = AuditLog::open(&s).unwrap();
        let frame = RgbImage::new(64, 64);
        log.record_with_snapshot(
            &mut Record::new(Event::DeniedUnknown),
            &frame,
            &[face(None)],
        )
        .unwrap();
        log.record_with_snapshot(
            &mut Record::new(Event::Unlock).person("ada"),
            &frame,
            &[face(Some("ada"))],
        )
        .unwrap();
        let records = lines(&s.log);
        let dir = s.snapshots.unwrap().dir;
        let snapshot = |i: usize| dir.join(records[i]["snapshot"].as_str().unwrap());
        assert_red(box_edge(&snapshot(0)));
        assert_green(box_edge(&snapshot(1)));
    }

    #[test]
    fn snapshots_off_means_no_files() {
        let dir = tempfile::tempdir().unwrap();
        let s = settings(dir.path(), None);
        let mut log = AuditLog::open(&s).unwrap();
        log.record_with_snapshot(
            &mut Record::new(Event::Unlock).person("ada"),
            &RgbImage::new(8, 8),
            &[],
        )
        .unwrap();
        assert!(!dir.path().join("snapshots").exists());
        assert!(lines(&s.log)[0].get("snapshot").is_none());
    }

    #[test]
    fn unopenable_log_says_what_to_check() {
        let dir = tempfile::tempdir().unwrap();
        let s = AuditSettings {
            log: dir.path().to_owned(), // a directory
            snapshots: None,
        };
        let err = AuditLog::open(&s).unwrap_err().to_string();
        assert!(err.contains("ReadWritePaths"), "{err}");
    }

    #[test]
    fn snapshot_names_sort_by_time() {
        let a = snapshot_name("2025-05-01T08:30:00.123Z", 1, Event::Unlock, Some("ada"));
        let b = snapshot_name("2025-05-01T08:30:01.001Z", 2, Event::DeniedUnknown, None);
        assert_eq!(a, "20250501T083000.123Z-0001-unlock-ada.jpg");
        assert!(a < b);
        assert!(is_snapshot_name(&a) && is_snapshot_name(&b));
        assert!(!is_snapshot_name("holiday.jpg"));
    }

    #[test]
    fn an_existing_open_snapshot_directory_is_tightened_to_0700() {
        let dir = tempfile::tempdir().unwrap();
        let s = settings(dir.path(), Some(5));
        let snap_dir = s.snapshots.as_ref().unwrap().dir.clone();
        std::fs::create_dir_all(&snap_dir).unwrap();
        std::fs::set_permissions(&snap_dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        AuditLog::open(&s).unwrap();
        let mode = std::fs::metadata(&snap_dir).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700, "{mode:o}");
        // A new one is created 0700 as before.
        let fresh = settings(&dir.path().join("fresh"), Some(5));
        AuditLog::open(&fresh).unwrap();
        let mode = std::fs::metadata(&fresh.snapshots.unwrap().dir)
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o700, "{mode:o}");
    }

    #[test]
    fn a_snapshot_directory_that_cannot_be_tightened_is_refused_with_the_fix() {
        // Root may chmod anything, so the refusal is shown through its message.
        let err = AuditError::SnapshotDirMode {
            path: PathBuf::from("/var/lib/facelock/snapshots"),
            mode: 0o755,
            source: std::io::Error::from_raw_os_error(1),
        }
        .to_string();
        assert!(err.contains("mode 0755"), "{err}");
        assert!(
            err.contains("chmod 700 /var/lib/facelock/snapshots"),
            "{err}"
        );
    }

    #[test]
    fn append_writes_one_record_to_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let s = settings(dir.path(), None);
        append(&s, &Record::new(Event::DowngradeAllowed).message("uid 0")).unwrap();
        append(&s, &Record::new(Event::Warning).message("unsigned")).unwrap();
        let got = lines(&s.log);
        assert_eq!(got[0]["event"], "downgrade-allowed");
        assert_eq!(got[1]["event"], "warning");
    }
}
