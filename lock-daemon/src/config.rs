//! Configuration: the TOML file parsed into raw structs, then validated into [`Settings`]
//! (durations, resolved paths, checked ranges). Nothing after this module sees raw TOML.
//!
//! Relative paths in the file are resolved against the directory that holds the file, so a
//! configuration and the files it names can be moved together.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::capture::CaptureSettings;
use crate::collector::CollectSettings;
use crate::control::ControlSettings;
use crate::http::{HttpSettings, TlsSettings};
use crate::indicator::{IndicatorBackend, IndicatorSettings, OutputPin};
use crate::inputs::{ContactKind, InputPin, InputsBackend, InputsSettings, Pull};
use crate::mqtt::{MqttSettings, MqttTls, Permission};
use crate::policy::PolicyConfig;
use crate::schedule::{Schedule, Window};

/// Where the daemon looks for its configuration unless told otherwise.
pub const DEFAULT_PATH: &str = "/etc/facelock/lock-daemon.toml";

/// The documented example that lists every key.
const REFERENCE: &str = "config/lock-daemon.toml in the facelock sources";

/// Why a configuration file was refused. Every message names the file, the key and the fix.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file cannot be read: wrong path or permissions.
    #[error(
        "cannot read configuration {path}: {source}; pass the right file with --config \
         (default {DEFAULT_PATH})"
    )]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// Not valid TOML, an unknown key, or a value of the wrong type.
    #[error(
        "configuration {path} is not valid: {message}\nhint: compare the spelling and types \
         with {REFERENCE}, which documents every key with its unit and default"
    )]
    Parse { path: PathBuf, message: String },
    /// A value is out of range or keys contradict each other.
    #[error("configuration {path}: `{key}` {problem}; fix: {fix}")]
    Invalid {
        path: PathBuf,
        key: String,
        problem: String,
        fix: String,
    },
}

// ---------------------------------------------------------------------------------------
// Raw TOML: every key optional here; defaults and ranges are applied in `validate`.
// ---------------------------------------------------------------------------------------

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    camera: RawCamera,
    #[serde(default)]
    recognition: RawRecognition,
    #[serde(default)]
    policy: RawPolicy,
    #[serde(default)]
    relay: RawRelay,
    #[serde(default)]
    audit: RawAudit,
    #[serde(default)]
    security: RawSecurity,
    #[serde(default)]
    state: RawState,
    #[serde(default)]
    door: RawDoor,
    #[serde(default)]
    control: RawControl,
    #[serde(default)]
    inputs: RawInputs,
    #[serde(default)]
    schedule: RawSchedule,
    #[serde(default)]
    outputs: RawOutputs,
    #[serde(default)]
    http: RawHttp,
    #[serde(default)]
    mqtt: RawMqtt,
    #[serde(default)]
    capture: RawCapture,
    #[serde(default)]
    collect: RawCollect,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMqtt {
    enabled: Option<bool>,
    host: Option<String>,
    port: Option<i64>,
    ca_file: Option<PathBuf>,
    client_cert: Option<PathBuf>,
    client_key: Option<PathBuf>,
    username: Option<String>,
    password_file: Option<PathBuf>,
    client_id: Option<String>,
    lock_name: Option<String>,
    base_topic: Option<String>,
    discovery: Option<bool>,
    discovery_prefix: Option<String>,
    commands: Option<Vec<String>>,
    unlock_secs: Option<f64>,
    unlock_code_hash: Option<String>,
    camera: Option<bool>,
    keepalive_secs: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHttp {
    enabled: Option<bool>,
    listen: Option<String>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    preview: Option<bool>,
    compat_without_token: Option<bool>,
    metrics_without_token: Option<bool>,
    max_connections: Option<i64>,
    #[serde(default)]
    token: Vec<RawToken>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawToken {
    name: Option<String>,
    hash: Option<String>,
    scopes: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOutputs {
    backend: Option<OutputsBackendKind>,
    led_pin: Option<u32>,
    led_active_low: Option<bool>,
    buzzer_pin: Option<u32>,
    buzzer_active_low: Option<bool>,
    sim_log: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
enum OutputsBackendKind {
    Gpio,
    Sim,
    None,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCamera {
    device: Option<PathBuf>,
    mjpeg_pipe: Option<PathBuf>,
    replay_dir: Option<PathBuf>,
    width: Option<u32>,
    height: Option<u32>,
    fps: Option<u32>,
    pixel_format: Option<PixelFormat>,
    rotation: Option<u32>,
    dark_frame_threshold: Option<u32>,
    read_timeout_ms: Option<u64>,
    replay_fps: Option<f64>,
    replay_loop: Option<bool>,
    expect_ir: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRecognition {
    model_dir: Option<PathBuf>,
    classifier: Option<PathBuf>,
    min_face_px: Option<f64>,
    crop_margin: Option<f64>,
    detector_min_face_px: Option<f64>,
    threads: Option<u32>,
    workers: Option<u32>,
    precision: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    frames_required: Option<u32>,
    window_secs: Option<f64>,
    unlock_secs: Option<f64>,
    cooldown_secs: Option<f64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRelay {
    backend: Option<RelayBackendKind>,
    bcm_pin: Option<u32>,
    active_low: Option<bool>,
    sim_log: Option<PathBuf>,
    lock_type: Option<LockType>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAudit {
    log: Option<PathBuf>,
    snapshots: Option<bool>,
    snapshot_dir: Option<PathBuf>,
    snapshots_keep: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSecurity {
    trusted_key: Option<PathBuf>,
    allow_unsigned: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawState {
    dir: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDoor {
    exit_secs: Option<f64>,
    held_open_secs: Option<f64>,
    relock_on_close: Option<bool>,
    max_manual_unlock_secs: Option<f64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawInputs {
    backend: Option<InputsBackendKind>,
    sim_script: Option<PathBuf>,
    door: Option<RawInputPin>,
    exit: Option<RawInputPin>,
    fire: Option<RawInputPin>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
enum InputsBackendKind {
    Gpio,
    Sim,
    None,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawInputPin {
    bcm_pin: Option<u32>,
    contact: Option<RawContact>,
    pull: Option<RawPull>,
    debounce_ms: Option<u64>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
enum RawContact {
    No,
    Nc,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
enum RawPull {
    Up,
    Down,
    Off,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSchedule {
    time_zone: Option<String>,
    #[serde(default)]
    unlock: Vec<String>,
    #[serde(default)]
    face: Vec<String>,
    #[serde(default)]
    people: std::collections::BTreeMap<String, Vec<String>>,
    assume_clock_synchronized: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCollect {
    enabled: Option<bool>,
    dir: Option<PathBuf>,
    max_files: Option<u32>,
    max_age_days: Option<u32>,
    margin: Option<f64>,
    near_miss_secs: Option<f64>,
    whole_frames: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCapture {
    enabled: Option<bool>,
    dir: Option<PathBuf>,
    max_count: Option<u32>,
    max_secs: Option<u32>,
    max_files: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawControl {
    socket: Option<PathBuf>,
    group: Option<String>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
enum RelayBackendKind {
    Gpio,
    Sim,
}

// ---------------------------------------------------------------------------------------
// Validated settings.
// ---------------------------------------------------------------------------------------

/// The whole validated configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// The file the settings came from (for messages).
    pub path: PathBuf,
    pub camera: CameraSettings,
    pub recognition: RecognitionSettings,
    pub policy: PolicySettings,
    pub relay: RelaySettings,
    pub audit: AuditSettings,
    pub security: SecuritySettings,
    pub state: StateSettings,
    pub door: DoorSettings,
    /// `None`: no control socket.
    pub control: Option<ControlSettings>,
    pub inputs: InputsSettings,
    /// `None`: no schedule (face unlock at any time, never held unlocked by the clock).
    pub schedule: Option<ScheduleSettings>,
    /// The status LED and buzzer.
    pub outputs: IndicatorSettings,
    /// `None`: no HTTP API (the default).
    pub http: Option<HttpSettings>,
    /// `None`: no MQTT (the default).
    pub mqtt: Option<MqttSettings>,
    /// `None`: no guided capture at the door (the default).
    pub capture: Option<CaptureSettings>,
    /// `None`: no data collector (the default).
    pub collect: Option<CollectSettings>,
}

/// `[schedule]`: weekly windows in the lock's time zone.
#[derive(Debug, Clone, PartialEq)]
pub struct ScheduleSettings {
    pub zone_name: String,
    pub zone: jiff::tz::TimeZone,
    pub schedule: Schedule,
    /// Trust the system clock without asking whether it is synchronised (a Pi with a
    /// real-time clock, or chrony under the hardened unit).
    pub assume_clock_synchronized: bool,
}

/// Where frames come from.
#[derive(Debug, Clone, PartialEq)]
pub enum CameraSource {
    /// A V4L2 capture device, e.g. `/dev/video0` or `/dev/v4l/by-id/...`.
    V4l2 { device: PathBuf },
    /// An MJPEG stream (JPEG images back to back) from a FIFO, a pipe or standard input,
    /// e.g. written by `rpicam-vid --codec mjpeg -o -` for a libcamera CSI camera.
    MjpegPipe { input: PipeInput },
    /// A directory of JPEG/PNG files replayed in name order (demo and tests).
    Replay {
        dir: PathBuf,
        /// Frames per second; `None` = as fast as the loop takes them.
        fps: Option<f64>,
        /// Start over after the last file instead of ending.
        looping: bool,
    },
}

/// Where an MJPEG stream is read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PipeInput {
    /// `camera.mjpeg_pipe = "-"`: the daemon's standard input.
    Stdin,
    /// A FIFO (or any readable file) at this path.
    Path(PathBuf),
}

impl CameraSource {
    /// Whether frames come from a live camera (whose frame rate bounds the policy window).
    pub fn is_live(&self) -> bool {
        !matches!(self, CameraSource::Replay { .. })
    }
}

/// Pixel format asked of a V4L2 camera.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PixelFormat {
    /// Motion JPEG: small buffers, decoded on the CPU; what most USB cameras offer at 30 fps.
    Mjpeg,
    /// Uncompressed YUV 4:2:2: no decoding, but more USB bandwidth.
    Yuyv,
}

/// Clockwise rotation applied to every frame (camera mounted sideways or upside down).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Rotation {
    #[default]
    None,
    Cw90,
    Cw180,
    Cw270,
}

/// Camera settings.
#[derive(Debug, Clone, PartialEq)]
pub struct CameraSettings {
    pub source: CameraSource,
    /// Frame size asked of the camera (after rotation the size may be swapped).
    pub width: u32,
    pub height: u32,
    pub fps: u32,
    pub pixel_format: PixelFormat,
    pub rotation: Rotation,
    /// Frames whose mean luma (0–255) is below this are skipped; 0 = never skip.
    pub dark_frame_threshold: u8,
    /// How long one `next_frame` call waits before the loop wakes up anyway.
    pub read_timeout: Duration,
    /// The camera is infrared: clearly colour frames are refused ([`crate::camera::ir`]).
    pub expect_ir: bool,
}

/// Recognition settings.
#[derive(Debug, Clone, PartialEq)]
pub struct RecognitionSettings {
    pub model_dir: PathBuf,
    pub classifier: PathBuf,
    /// Faces whose shorter side is smaller than this never count (pixels, after rotation).
    pub min_face_px: f32,
    /// Crop margin as a fraction of the face box side.
    pub crop_margin: f32,
    /// Smallest face the detector's pyramid looks for (pixels); larger = faster.
    pub detector_min_face_px: f32,
    /// Threads for the networks' matrix products (1 = single-threaded).
    pub threads: usize,
    /// Frames recognised at once, one per worker thread (1 = on the vision thread).
    pub workers: usize,
    /// The number format FaceNet computes in, resolved for this CPU.
    pub precision: recognition::Precision,
    /// What `recognition.precision` says: `f32`, `f16` or `auto`.
    pub precision_setting: &'static str,
}

/// Decision policy settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PolicySettings {
    pub frames_required: u32,
    pub window: Duration,
    pub unlock: Duration,
    pub cooldown: Duration,
}

/// Which relay drives the lock.
#[derive(Debug, Clone, PartialEq)]
pub enum RelayBackend {
    /// A relay on a Raspberry Pi GPIO pin.
    Gpio { bcm_pin: u8, active_low: bool },
    /// No hardware: transitions are appended to a log file.
    Sim { log: PathBuf },
}

/// What kind of lock the relay drives, and so what Locked means electrically.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LockType {
    /// An electric strike (or bolt) that is locked without power: the relay is energised
    /// to unlock. A power cut or a crash leaves it locked.
    #[default]
    FailSecure,
    /// A magnetic lock that holds only while powered: the relay is energised to lock. A
    /// power cut opens it (as fire codes require for maglocks on escape routes).
    FailSafe,
}

impl LockType {
    pub fn as_str(self) -> &'static str {
        match self {
            LockType::FailSecure => "fail-secure",
            LockType::FailSafe => "fail-safe",
        }
    }
}

/// Relay settings.
#[derive(Debug, Clone, PartialEq)]
pub struct RelaySettings {
    pub backend: RelayBackend,
    pub lock_type: LockType,
}

/// `[door]`: how long exits and manual unlocks last, and the door-contact rules.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DoorSettings {
    pub exit: Duration,
    pub held_open: Duration,
    pub relock_on_close: bool,
    pub max_manual_unlock: Duration,
}

/// Audit settings.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditSettings {
    pub log: PathBuf,
    /// `Some` when snapshots are enabled.
    pub snapshots: Option<SnapshotSettings>,
}

/// Snapshot settings (only present when snapshots are on).
#[derive(Debug, Clone, PartialEq)]
pub struct SnapshotSettings {
    pub dir: PathBuf,
    /// How many snapshots to keep; older ones are deleted.
    pub keep: usize,
}

/// Security settings.
#[derive(Debug, Clone, PartialEq)]
pub struct SecuritySettings {
    /// Public key classifiers must be signed with; `None` only together with
    /// `allow_unsigned`, and then any classifier is accepted.
    pub trusted_key: Option<PathBuf>,
    /// `security.allow_unsigned = true`: the operator chose to run without signatures.
    pub allow_unsigned: bool,
}

impl SecuritySettings {
    /// The warning the daemon logs and audits at start when classifiers are not signed.
    pub fn unsigned_warning(&self) -> Option<String> {
        self.trusted_key.is_none().then(|| {
            "security.allow_unsigned = true: classifier signatures are not checked, so anyone \
             who can write the classifier file can enrol a person; set security.trusted_key \
             (`trainer keygen`, `scripts/deploy.sh --key`) and remove allow_unsigned"
                .to_owned()
        })
    }
}

/// Where the daemon keeps what must survive a restart.
#[derive(Debug, Clone, PartialEq)]
pub struct StateSettings {
    /// The state directory: the classifier last accepted (rollback protection) and a
    /// pending `allow-downgrade`.
    pub dir: PathBuf,
}

/// Defaults, also quoted by `config/lock-daemon.toml`.
pub mod defaults {
    pub const DEVICE: &str = "/dev/video0";
    pub const WIDTH: u32 = 640;
    pub const HEIGHT: u32 = 480;
    pub const FPS: u32 = 15;
    pub const ROTATION: u32 = 0;
    pub const DARK_FRAME_THRESHOLD: u32 = 0;
    pub const READ_TIMEOUT_MS: u64 = 1000;
    pub const REPLAY_FPS: f64 = 0.0;
    pub const MIN_FACE_PX: f64 = 80.0;
    pub const CROP_MARGIN: f64 = 0.0;
    /// Larger than the trainer's 20 px: the lock acts on faces of `MIN_FACE_PX` and up, and
    /// the finer pyramid levels cost time and find spurious faces (see
    /// [`recognition::ClassifierMeta::check_pipeline`]).
    pub const DETECTOR_MIN_FACE_PX: f64 = 60.0;
    pub const THREADS: u32 = 1;

    /// Frames recognised at once when `recognition.workers` is not set: one per core,
    /// leaving a core for the camera and the door loop where there are more than two, at
    /// most four; one when the matrix products are multi-threaded (`threads` > 1), which
    /// already spreads each frame over the cores.
    pub fn workers(cores: usize, threads: u32) -> u32 {
        match (threads, cores) {
            (2.., _) | (_, 0..=1) => 1,
            (_, 2) => 2,
            (_, cores) => (cores - 1).min(4) as u32,
        }
    }
    pub const FRAMES_REQUIRED: u32 = 3;
    pub const WINDOW_SECS: f64 = 2.0;
    pub const UNLOCK_SECS: f64 = 5.0;
    pub const COOLDOWN_SECS: f64 = 3.0;
    pub const AUDIT_LOG: &str = "/var/log/facelock/audit.jsonl";
    pub const SNAPSHOT_DIR: &str = "/var/lib/facelock/snapshots";
    pub const SNAPSHOTS_KEEP: u32 = 200;
    pub const CAPTURE_DIR: &str = "/var/lib/facelock/captures";
    pub const CAPTURE_MAX_COUNT: u32 = 50;
    pub const CAPTURE_MAX_SECS: u32 = 300;
    pub const CAPTURE_MAX_FILES: u32 = 1000;
    pub const COLLECT_DIR: &str = "/var/lib/facelock/collected";
    pub const COLLECT_MAX_FILES: u32 = 2000;
    pub const COLLECT_MAX_AGE_DAYS: u32 = 30;
    pub const COLLECT_MARGIN: f64 = 0.05;
    pub const COLLECT_NEAR_MISS_SECS: f64 = 10.0;
    pub const STATE_DIR: &str = "/var/lib/facelock/state";
    pub const EXIT_SECS: f64 = 5.0;
    pub const HELD_OPEN_SECS: f64 = 30.0;
    pub const MAX_MANUAL_UNLOCK_SECS: f64 = 3600.0;
}

/// Longest configuration value quoted back in a message, in characters.
const ECHO_LIMIT: usize = 80;
/// Longest line of a parser message (which quotes the offending line), in characters.
const LINE_LIMIT: usize = 200;
/// No usable path is longer than this (Linux PATH_MAX), in bytes.
const PATH_MAX: usize = 4096;

/// `value` as quoted in a message: at most `limit` characters, then "… (N bytes)", so a
/// huge value never floods the journal.
fn clip_to(value: &str, limit: usize) -> String {
    match value.char_indices().nth(limit) {
        None => value.to_owned(),
        Some((cut, _)) => format!("{}… ({} bytes)", &value[..cut], value.len()),
    }
}

/// A configuration value quoted in a message (at most `ECHO_LIMIT` (80) characters).
pub fn clip(value: &str) -> String {
    clip_to(value, ECHO_LIMIT)
}

/// A message that quotes configuration text (the TOML parser quotes the offending line, and
/// values in backticks or double quotes): quoted values longer than [`ECHO_LIMIT`] and
/// lines longer than [`LINE_LIMIT`] are clipped.
fn clip_message(message: &str) -> String {
    message
        .lines()
        .map(|line| clip_to(&clip_quoted(line), LINE_LIMIT))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Clips every `...` or "..." span of a line (an unclosed quote runs to the end of the line).
fn clip_quoted(line: &str) -> String {
    let mut out = String::with_capacity(line.len().min(4 * LINE_LIMIT));
    let mut rest = line;
    while let Some(open) = rest.find(['`', '"']) {
        let quote = rest[open..].chars().next().unwrap_or('"');
        out.push_str(&rest[..=open]);
        let after = &rest[open + 1..];
        let (inner, tail) = match after.find(quote) {
            Some(close) => (&after[..close], &after[close..]),
            None => (after, ""),
        };
        out.push_str(&clip(inner));
        match tail.strip_prefix(quote) {
            Some(tail) => {
                out.push(quote);
                rest = tail;
            }
            None => rest = tail,
        }
    }
    out.push_str(rest);
    out
}

impl Settings {
    /// Reads, parses and validates a configuration file.
    pub fn load(path: &Path) -> Result<Settings, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Settings::from_toml(&text, path)
    }

    /// Parses and validates configuration text; `path` names it in errors and its
    /// directory anchors relative paths.
    pub fn from_toml(text: &str, path: &Path) -> Result<Settings, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            message: clip_message(e.to_string().trim_end()),
        })?;
        Validator { path }.settings(raw)
    }

    /// Reads only the `[relay]` section of configuration text: what `lock-daemon secure`
    /// needs to lock the door, so that an error anywhere else in the file (a typo in
    /// `[policy]`, a missing classifier) never stops it. When the file is not valid TOML as
    /// a whole, the `[relay]` section is cut out and parsed on its own.
    pub fn relay_only(text: &str, path: &Path) -> Result<RelaySettings, ConfigError> {
        let parse_error = |e: toml::de::Error| ConfigError::Parse {
            path: path.to_owned(),
            message: clip_message(e.to_string().trim_end()),
        };
        let table: toml::Table = match toml::from_str(text) {
            Ok(table) => table,
            Err(whole) => {
                toml::from_str(&relay_section_text(text)).map_err(|_| parse_error(whole))?
            }
        };
        let raw = match table.get("relay") {
            Some(value) => RawRelay::deserialize(value.clone()).map_err(parse_error)?,
            None => RawRelay::default(),
        };
        Validator { path }.relay(raw)
    }

    /// The decision policy's parameters.
    pub fn policy_config(&self) -> PolicyConfig {
        PolicyConfig {
            frames_required: self.policy.frames_required,
            window: self.policy.window,
            unlock: self.policy.unlock,
            cooldown: self.policy.cooldown,
            min_face_px: self.recognition.min_face_px,
        }
    }
}

impl RecognitionSettings {
    /// The recognition pipeline's settings.
    pub fn pipeline_config(&self) -> recognition::PipelineConfig {
        recognition::PipelineConfig {
            detector: recognition::DetectorConfig {
                min_face_px: self.detector_min_face_px,
                ..Default::default()
            },
            crop_margin: self.crop_margin,
        }
    }
}

/// The `[relay]` table's lines of a file that does not parse as a whole: from its header
/// to the next table header.
fn relay_section_text(text: &str) -> String {
    let mut inside = false;
    let mut out = String::new();
    for line in text.lines() {
        let trimmed = line.trim_start();
        if trimmed.starts_with('[') {
            inside = trimmed
                .trim_end()
                .strip_prefix("[relay]")
                .is_some_and(|rest| {
                    rest.trim_start().is_empty() || rest.trim_start().starts_with('#')
                });
        }
        if inside {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

struct Validator<'a> {
    path: &'a Path,
}

impl Validator<'_> {
    fn invalid(
        &self,
        key: &str,
        problem: impl Into<String>,
        fix: impl Into<String>,
    ) -> ConfigError {
        ConfigError::Invalid {
            path: self.path.to_owned(),
            key: key.to_owned(),
            problem: clip_message(&problem.into()),
            fix: fix.into(),
        }
    }

    /// Resolves a path relative to the configuration file's directory.
    fn resolve(&self, path: PathBuf) -> PathBuf {
        match self.path.parent() {
            Some(dir) if path.is_relative() => dir.join(path),
            _ => path,
        }
    }

    /// `recognition.precision` resolved for a CPU whose native precision is `native`:
    /// `f32` (the default), `auto` (f16 only where the CPU has FP16 arithmetic) or `f16`
    /// (refused on a CPU without it, where tract would emulate it at seconds a face).
    fn precision(
        &self,
        value: Option<&str>,
        native: recognition::Precision,
    ) -> Result<(recognition::Precision, &'static str), ConfigError> {
        use recognition::Precision;
        let key = "recognition.precision";
        match value.unwrap_or("f32") {
            "f32" => Ok((Precision::F32, "f32")),
            "auto" => Ok((native, "auto")),
            "f16" if native == Precision::F16 => Ok((Precision::F16, "f16")),
            "f16" => Err(self.invalid(
                key,
                "= \"f16\" needs a CPU with FP16 arithmetic (ARMv8.2-A FP16, as in a Pi 5), \
                 and this one has none: it would emulate f16 at seconds a face",
                "use \"auto\" (f16 only where the CPU has it) or \"f32\"",
            )),
            other => Err(self.invalid(
                key,
                format!("= {other:?} is not a precision"),
                "use \"f32\" (the default), \"auto\" or \"f16\"",
            )),
        }
    }

    /// An integer that must lie in `range`.
    fn int<T>(
        &self,
        key: &str,
        value: T,
        range: std::ops::RangeInclusive<T>,
        hint: &str,
    ) -> Result<T, ConfigError>
    where
        T: PartialOrd + std::fmt::Display + Copy,
    {
        if range.contains(&value) {
            Ok(value)
        } else {
            Err(self.invalid(
                key,
                format!(
                    "= {value} is out of range {}..={}",
                    range.start(),
                    range.end()
                ),
                hint.to_owned(),
            ))
        }
    }

    /// A finite float that must lie in `range`.
    fn float(
        &self,
        key: &str,
        value: f64,
        range: std::ops::RangeInclusive<f64>,
        hint: &str,
    ) -> Result<f64, ConfigError> {
        if value.is_finite() && range.contains(&value) {
            Ok(value)
        } else {
            Err(self.invalid(
                key,
                format!(
                    "= {value} is out of range {}..={}",
                    range.start(),
                    range.end()
                ),
                hint.to_owned(),
            ))
        }
    }

    fn secs(
        &self,
        key: &str,
        value: f64,
        range: std::ops::RangeInclusive<f64>,
        hint: &str,
    ) -> Result<Duration, ConfigError> {
        Ok(Duration::from_secs_f64(
            self.float(key, value, range, hint)?,
        ))
    }

    fn settings(&self, raw: RawConfig) -> Result<Settings, ConfigError> {
        self.path_lengths(&raw)?;
        let camera = self.camera(raw.camera)?;
        let recognition = self.recognition(raw.recognition, &camera)?;
        let policy = self.policy(raw.policy, &camera)?;
        let relay = self.relay(raw.relay)?;
        let inputs = self.inputs(raw.inputs, &relay)?;
        let policy_unlock = policy.unlock;
        let door = self.door(raw.door)?;
        let audit = self.audit(raw.audit)?;
        let mqtt = self.mqtt(raw.mqtt, policy_unlock, &door, &audit)?;
        Ok(Settings {
            path: self.path.to_owned(),
            camera,
            recognition,
            policy,
            audit,
            security: self.security(raw.security)?,
            state: StateSettings {
                dir: self.resolve(
                    raw.state
                        .dir
                        .unwrap_or_else(|| PathBuf::from(defaults::STATE_DIR)),
                ),
            },
            door,
            control: self.control(raw.control)?,
            inputs: inputs.clone(),
            outputs: self.outputs(raw.outputs, &relay, &inputs)?,
            schedule: self.schedule(raw.schedule)?,
            http: self.http(raw.http)?,
            capture: self.capture(raw.capture)?,
            collect: self.collect(raw.collect)?,
            mqtt,
            relay,
        })
    }

    /// Refuses path values no file system accepts (a stray paste, a runaway script), before
    /// anything quotes them.
    fn path_lengths(&self, raw: &RawConfig) -> Result<(), ConfigError> {
        let paths = [
            ("camera.device", &raw.camera.device),
            ("camera.mjpeg_pipe", &raw.camera.mjpeg_pipe),
            ("camera.replay_dir", &raw.camera.replay_dir),
            ("recognition.model_dir", &raw.recognition.model_dir),
            ("recognition.classifier", &raw.recognition.classifier),
            ("relay.sim_log", &raw.relay.sim_log),
            ("audit.log", &raw.audit.log),
            ("audit.snapshot_dir", &raw.audit.snapshot_dir),
            ("capture.dir", &raw.capture.dir),
            ("collect.dir", &raw.collect.dir),
            ("security.trusted_key", &raw.security.trusted_key),
            ("state.dir", &raw.state.dir),
            ("control.socket", &raw.control.socket),
            ("inputs.sim_script", &raw.inputs.sim_script),
            ("outputs.sim_log", &raw.outputs.sim_log),
        ];
        for (key, path) in paths {
            let Some(path) = path else { continue };
            let len = path.as_os_str().len();
            if len > PATH_MAX {
                return Err(self.invalid(
                    key,
                    format!(
                        "= \"{}\" is {len} bytes long, longer than any path can be ({PATH_MAX})",
                        clip(&path.to_string_lossy())
                    ),
                    "set it to the real path of the file or directory",
                ));
            }
        }
        Ok(())
    }

    fn security(&self, raw: RawSecurity) -> Result<SecuritySettings, ConfigError> {
        let allow_unsigned = raw.allow_unsigned.unwrap_or(false);
        match (&raw.trusted_key, allow_unsigned) {
            (None, false) => Err(self.invalid(
                "security.trusted_key",
                "is not set, so the lock would accept a classifier that anyone who can \
                 write the file has edited",
                "set it to the public key from `trainer keygen` (`scripts/deploy.sh --key` \
                 installs it as /etc/facelock/trusted.pub) and sign classifiers with \
                 `trainer train --sign`; only for a test bench, set \
                 security.allow_unsigned = true instead",
            )),
            (Some(_), true) => Err(self.invalid(
                "security.allow_unsigned",
                "= true contradicts security.trusted_key, which requires signed classifiers",
                "remove allow_unsigned (signatures are checked with the key), or remove \
                 trusted_key to accept unsigned classifiers",
            )),
            _ => Ok(SecuritySettings {
                trusted_key: raw.trusted_key.map(|p| self.resolve(p)),
                allow_unsigned,
            }),
        }
    }

    fn camera(&self, raw: RawCamera) -> Result<CameraSettings, ConfigError> {
        let chosen: Vec<&str> = [
            ("camera.device", raw.device.is_some()),
            ("camera.mjpeg_pipe", raw.mjpeg_pipe.is_some()),
            ("camera.replay_dir", raw.replay_dir.is_some()),
        ]
        .into_iter()
        .filter_map(|(key, set)| set.then_some(key))
        .collect();
        if let [first, second, ..] = chosen[..] {
            return Err(self.invalid(
                second,
                format!("is set together with {first}"),
                "keep only one: `device` for a V4L2 camera, `mjpeg_pipe` for an MJPEG stream \
                 from a FIFO or \"-\" (CSI cameras through rpicam-vid), `replay_dir` to replay \
                 a folder of images",
            ));
        }
        let source = match (raw.device, raw.mjpeg_pipe, raw.replay_dir) {
            (None, Some(pipe), None) => CameraSource::MjpegPipe {
                input: if pipe == Path::new("-") {
                    PipeInput::Stdin
                } else {
                    PipeInput::Path(self.resolve(pipe))
                },
            },
            (None, None, Some(dir)) => CameraSource::Replay {
                dir: self.resolve(dir),
                fps: {
                    let fps = self.float(
                        "camera.replay_fps",
                        raw.replay_fps.unwrap_or(defaults::REPLAY_FPS),
                        0.0..=1000.0,
                        "frames per second, or 0 to replay as fast as frames are processed",
                    )?;
                    (fps > 0.0).then_some(fps)
                },
                looping: raw.replay_loop.unwrap_or(false),
            },
            (device, _, _) => CameraSource::V4l2 {
                device: device.unwrap_or_else(|| PathBuf::from(defaults::DEVICE)),
            },
        };
        let width = self.int(
            "camera.width",
            raw.width.unwrap_or(defaults::WIDTH),
            64..=4096,
            "use a size the camera offers (`v4l2-ctl --list-formats-ext`), e.g. 640",
        )?;
        let height = self.int(
            "camera.height",
            raw.height.unwrap_or(defaults::HEIGHT),
            64..=4096,
            "use a size the camera offers (`v4l2-ctl --list-formats-ext`), e.g. 480",
        )?;
        let fps = self.int(
            "camera.fps",
            raw.fps.unwrap_or(defaults::FPS),
            1..=120,
            "e.g. 15 or 30",
        )?;
        let rotation = match raw.rotation.unwrap_or(defaults::ROTATION) {
            0 => Rotation::None,
            90 => Rotation::Cw90,
            180 => Rotation::Cw180,
            270 => Rotation::Cw270,
            other => {
                return Err(self.invalid(
                    "camera.rotation",
                    format!("= {other} is not a right angle"),
                    "use 0, 90, 180 or 270 (degrees clockwise)",
                ))
            }
        };
        let dark = self.int(
            "camera.dark_frame_threshold",
            raw.dark_frame_threshold
                .unwrap_or(defaults::DARK_FRAME_THRESHOLD),
            0..=255,
            "mean luma 0-255 below which a frame is skipped; 0 disables the check",
        )?;
        let timeout = self.int(
            "camera.read_timeout_ms",
            raw.read_timeout_ms.unwrap_or(defaults::READ_TIMEOUT_MS),
            50..=10_000,
            "milliseconds; keep it well below the systemd WatchdogSec, e.g. 1000",
        )?;
        Ok(CameraSettings {
            source,
            width,
            height,
            fps,
            pixel_format: raw.pixel_format.unwrap_or(PixelFormat::Mjpeg),
            rotation,
            dark_frame_threshold: dark as u8,
            read_timeout: Duration::from_millis(timeout),
            expect_ir: raw.expect_ir.unwrap_or(false),
        })
    }

    fn recognition(
        &self,
        raw: RawRecognition,
        camera: &CameraSettings,
    ) -> Result<RecognitionSettings, ConfigError> {
        let classifier = raw.classifier.ok_or_else(|| {
            self.invalid(
                "recognition.classifier",
                "is missing",
                "set it to the classifier file written by `trainer train`",
            )
        })?;
        let shorter = camera.width.min(camera.height);
        let min_face_px = self.float(
            "recognition.min_face_px",
            raw.min_face_px.unwrap_or(defaults::MIN_FACE_PX),
            20.0..=f64::from(shorter),
            "pixels on the face's shorter side; 80 at 640x480 (at most the frame's shorter side)",
        )?;
        let detector_min = self.float(
            "recognition.detector_min_face_px",
            raw.detector_min_face_px
                .unwrap_or(defaults::DETECTOR_MIN_FACE_PX.min(min_face_px)),
            12.0..=min_face_px,
            "pixels, at least 12 and at most recognition.min_face_px; e.g. half of min_face_px",
        )?;
        let crop_margin = self.float(
            "recognition.crop_margin",
            raw.crop_margin.unwrap_or(defaults::CROP_MARGIN),
            0.0..=1.0,
            "a fraction of the face box side; use the value the classifier was trained with (default 0)",
        )?;
        let threads = self.int(
            "recognition.threads",
            raw.threads.unwrap_or(defaults::THREADS),
            1..=16,
            "threads for the networks' matrix products; 1, or the Pi's core count (4)",
        )?;
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let workers = self.int(
            "recognition.workers",
            raw.workers
                .unwrap_or_else(|| defaults::workers(cores, threads)),
            1..=16,
            "frames recognised at once, one thread each; 1 up to the number of cores",
        )?;
        if workers > 1 && threads > 1 {
            return Err(self.invalid(
                "recognition.workers",
                format!(
                    "= {workers} together with recognition.threads = {threads} would run \
                     {workers} frames on {threads} threads each, more threads than cores"
                ),
                "use one of them: recognition.workers (several frames at once, faster here) \
                 with threads = 1, or threads with workers = 1",
            ));
        }
        let (precision, precision_setting) =
            self.precision(raw.precision.as_deref(), recognition::Precision::native())?;
        Ok(RecognitionSettings {
            threads: threads as usize,
            workers: workers as usize,
            precision,
            precision_setting,
            model_dir: raw
                .model_dir
                .map(|p| self.resolve(p))
                .unwrap_or_else(recognition::ModelDir::default_location),
            classifier: self.resolve(classifier),
            min_face_px: min_face_px as f32,
            crop_margin: crop_margin as f32,
            detector_min_face_px: detector_min as f32,
        })
    }

    fn policy(
        &self,
        raw: RawPolicy,
        camera: &CameraSettings,
    ) -> Result<PolicySettings, ConfigError> {
        let frames_required = self.int(
            "policy.frames_required",
            raw.frames_required.unwrap_or(defaults::FRAMES_REQUIRED),
            1..=100,
            "number of frames; 3 is the default, 1 decides on a single frame (not recommended)",
        )?;
        let window = self.secs(
            "policy.window_secs",
            raw.window_secs.unwrap_or(defaults::WINDOW_SECS),
            0.1..=60.0,
            "seconds within which the frames must agree, e.g. 2",
        )?;
        let unlock = self.secs(
            "policy.unlock_secs",
            raw.unlock_secs.unwrap_or(defaults::UNLOCK_SECS),
            0.5..=600.0,
            "seconds the door stays unlocked, e.g. 5",
        )?;
        let cooldown = self.secs(
            "policy.cooldown_secs",
            raw.cooldown_secs.unwrap_or(defaults::COOLDOWN_SECS),
            0.0..=600.0,
            "seconds after re-locking during which faces are ignored, e.g. 3",
        )?;
        // A live camera can only deliver fps * window frames in a window.
        if camera.source.is_live() {
            let possible = window.as_secs_f64() * f64::from(camera.fps);
            if possible < f64::from(frames_required) {
                return Err(self.invalid(
                    "policy.window_secs",
                    format!(
                        "= {} s holds only {possible:.1} frames at camera.fps = {}, fewer than \
                         policy.frames_required = {frames_required}, so the door could never open",
                        window.as_secs_f64(),
                        camera.fps
                    ),
                    "lengthen the window, raise camera.fps or lower policy.frames_required",
                ));
            }
        }
        Ok(PolicySettings {
            frames_required,
            window,
            unlock,
            cooldown,
        })
    }

    fn relay(&self, raw: RawRelay) -> Result<RelaySettings, ConfigError> {
        let backend = match raw.backend {
            None => {
                return Err(self.invalid(
                    "relay.backend",
                    "is missing",
                    "set \"gpio\" for a relay on a Raspberry Pi pin, or \"sim\" for a log file",
                ))
            }
            Some(RelayBackendKind::Gpio) => {
                let pin = raw.bcm_pin.ok_or_else(|| {
                    self.invalid(
                        "relay.bcm_pin",
                        "is missing (needed with backend = \"gpio\")",
                        "set the BCM GPIO number the relay is wired to (not the header pin number), e.g. 17",
                    )
                })?;
                let pin = self.int(
                    "relay.bcm_pin",
                    pin,
                    0..=27,
                    "a BCM GPIO number 0-27 (not the physical header pin number)",
                )?;
                RelayBackend::Gpio {
                    bcm_pin: pin as u8,
                    active_low: raw.active_low.unwrap_or(false),
                }
            }
            Some(RelayBackendKind::Sim) => RelayBackend::Sim {
                log: self.resolve(raw.sim_log.ok_or_else(|| {
                    self.invalid(
                        "relay.sim_log",
                        "is missing (needed with backend = \"sim\")",
                        "set a file the simulated relay appends its transitions to",
                    )
                })?),
            },
        };
        Ok(RelaySettings {
            backend,
            lock_type: raw.lock_type.unwrap_or_default(),
        })
    }

    fn door(&self, raw: RawDoor) -> Result<DoorSettings, ConfigError> {
        Ok(DoorSettings {
            exit: self.secs(
                "door.exit_secs",
                raw.exit_secs.unwrap_or(defaults::EXIT_SECS),
                0.5..=600.0,
                "seconds the exit button releases the door, e.g. 5",
            )?,
            held_open: self.secs(
                "door.held_open_secs",
                raw.held_open_secs.unwrap_or(defaults::HELD_OPEN_SECS),
                1.0..=3600.0,
                "seconds the door may stand open before the held-open alarm, e.g. 30",
            )?,
            relock_on_close: raw.relock_on_close.unwrap_or(true),
            max_manual_unlock: self.secs(
                "door.max_manual_unlock_secs",
                raw.max_manual_unlock_secs
                    .unwrap_or(defaults::MAX_MANUAL_UNLOCK_SECS),
                1.0..=86_400.0,
                "the longest unlock `lock-daemon ctl unlock` may ask for, in seconds",
            )?,
        })
    }

    fn inputs(&self, raw: RawInputs, relay: &RelaySettings) -> Result<InputsSettings, ConfigError> {
        let backend = match raw.backend.unwrap_or(InputsBackendKind::None) {
            InputsBackendKind::None => {
                if let Some(key) = [
                    ("inputs.sim_script", raw.sim_script.is_some()),
                    ("inputs.door", raw.door.is_some()),
                    ("inputs.exit", raw.exit.is_some()),
                    ("inputs.fire", raw.fire.is_some()),
                ]
                .into_iter()
                .find_map(|(k, set)| set.then_some(k))
                {
                    return Err(self.invalid(
                        key,
                        "is set but inputs.backend is \"none\" (the default)",
                        "set inputs.backend = \"gpio\" (or \"sim\"), or remove the key",
                    ));
                }
                InputsBackend::None
            }
            InputsBackendKind::Sim => InputsBackend::Sim {
                script: self.resolve(raw.sim_script.ok_or_else(|| {
                    self.invalid(
                        "inputs.sim_script",
                        "is missing (needed with backend = \"sim\")",
                        "set a file or FIFO of timed events, e.g. \"2.4 door open\" per line",
                    )
                })?),
            },
            InputsBackendKind::Gpio => {
                let door = self.input_pin("inputs.door", raw.door, Some(RawContact::Nc))?;
                let exit = self.input_pin("inputs.exit", raw.exit, Some(RawContact::No))?;
                let fire = self.input_pin("inputs.fire", raw.fire, None)?;
                if door.is_none() && exit.is_none() && fire.is_none() {
                    return Err(self.invalid(
                        "inputs",
                        "has backend = \"gpio\" but no [inputs.door], [inputs.exit] or [inputs.fire] table",
                        "add the inputs that are wired (each with its bcm_pin), or set backend = \"none\"",
                    ));
                }
                // One pin, one job: the relay's pin and each input's differ.
                let mut used: Vec<(&str, u8)> = Vec::new();
                if let RelayBackend::Gpio { bcm_pin, .. } = relay.backend {
                    used.push(("relay.bcm_pin", bcm_pin));
                }
                for (key, pin) in [
                    ("inputs.door.bcm_pin", &door),
                    ("inputs.exit.bcm_pin", &exit),
                    ("inputs.fire.bcm_pin", &fire),
                ] {
                    let Some(pin) = pin else { continue };
                    if let Some((other, _)) = used.iter().find(|(_, p)| *p == pin.bcm_pin) {
                        return Err(self.invalid(
                            key,
                            format!("= {} is also {other}", pin.bcm_pin),
                            "give every input and the relay its own GPIO pin",
                        ));
                    }
                    used.push((key, pin.bcm_pin));
                }
                InputsBackend::Gpio { door, exit, fire }
            }
        };
        Ok(InputsSettings { backend })
    }

    /// One GPIO input table; `default_contact` None = `contact` is required.
    fn input_pin(
        &self,
        table: &str,
        raw: Option<RawInputPin>,
        default_contact: Option<RawContact>,
    ) -> Result<Option<InputPin>, ConfigError> {
        let Some(raw) = raw else { return Ok(None) };
        let key = |k: &str| format!("{table}.{k}");
        let pin = raw.bcm_pin.ok_or_else(|| {
            self.invalid(
                &key("bcm_pin"),
                "is missing",
                "set the BCM GPIO number the contact is wired to (not the header pin number)",
            )
        })?;
        let pin = self.int(
            &key("bcm_pin"),
            pin,
            0..=27,
            "a BCM GPIO number 0-27 (not the physical header pin number)",
        )?;
        let contact = raw.contact.or(default_contact).ok_or_else(|| {
            self.invalid(
                &key("contact"),
                "is missing",
                "\"nc\" if the circuit opens on alarm (most fire panels), \"no\" if it closes; \
                 a wrong guess either locks people in or leaves the door open, so there is no default",
            )
        })?;
        let debounce = self.int(
            &key("debounce_ms"),
            raw.debounce_ms.unwrap_or(50),
            0..=1000,
            "milliseconds a new level must hold before it counts, e.g. 50",
        )?;
        Ok(Some(InputPin {
            bcm_pin: pin as u8,
            contact: match contact {
                RawContact::No => ContactKind::NormallyOpen,
                RawContact::Nc => ContactKind::NormallyClosed,
            },
            pull: match raw.pull.unwrap_or(RawPull::Up) {
                RawPull::Up => Pull::Up,
                RawPull::Down => Pull::Down,
                RawPull::Off => Pull::Off,
            },
            debounce: Duration::from_millis(debounce),
        }))
    }

    fn outputs(
        &self,
        raw: RawOutputs,
        relay: &RelaySettings,
        inputs: &InputsSettings,
    ) -> Result<IndicatorSettings, ConfigError> {
        let backend = match raw.backend.unwrap_or(OutputsBackendKind::None) {
            OutputsBackendKind::None => IndicatorBackend::None,
            OutputsBackendKind::Sim => IndicatorBackend::Sim {
                log: self.resolve(raw.sim_log.ok_or_else(|| {
                    self.invalid(
                        "outputs.sim_log",
                        "is missing (needed with backend = \"sim\")",
                        "set a file the simulated LED and buzzer append their changes to",
                    )
                })?),
            },
            OutputsBackendKind::Gpio => {
                let mut used: Vec<(String, u8)> = Vec::new();
                if let RelayBackend::Gpio { bcm_pin, .. } = relay.backend {
                    used.push(("relay.bcm_pin".into(), bcm_pin));
                }
                if let InputsBackend::Gpio { door, exit, fire } = &inputs.backend {
                    for (name, pin) in [("door", door), ("exit", exit), ("fire", fire)] {
                        if let Some(pin) = pin {
                            used.push((format!("inputs.{name}.bcm_pin"), pin.bcm_pin));
                        }
                    }
                }
                let mut pin = |key: &str, value: Option<u32>, active_low: Option<bool>| {
                    let Some(value) = value else {
                        return Ok(None);
                    };
                    let value = self.int(
                        key,
                        value,
                        0..=27,
                        "a BCM GPIO number 0-27 (not the physical header pin number)",
                    )? as u8;
                    if let Some((other, _)) = used.iter().find(|(_, p)| *p == value) {
                        return Err(self.invalid(
                            key,
                            format!("= {value} is also {other}"),
                            "give the LED, the buzzer, every input and the relay their own pins",
                        ));
                    }
                    used.push((key.to_owned(), value));
                    Ok(Some(OutputPin {
                        bcm_pin: value,
                        active_low: active_low.unwrap_or(false),
                    }))
                };
                let led = pin("outputs.led_pin", raw.led_pin, raw.led_active_low)?;
                let buzzer = pin("outputs.buzzer_pin", raw.buzzer_pin, raw.buzzer_active_low)?;
                if led.is_none() && buzzer.is_none() {
                    return Err(self.invalid(
                        "outputs",
                        "has backend = \"gpio\" but neither led_pin nor buzzer_pin",
                        "set the pins that are wired, or backend = \"none\"",
                    ));
                }
                IndicatorBackend::Gpio { led, buzzer }
            }
        };
        Ok(IndicatorSettings { backend })
    }

    fn schedule(&self, raw: RawSchedule) -> Result<Option<ScheduleSettings>, ConfigError> {
        let windows = |key: &str, texts: &[String]| -> Result<Vec<Window>, ConfigError> {
            texts
                .iter()
                .map(|t| {
                    Window::parse(t)
                        .map_err(|e| self.invalid(key, "has a window that does not parse", e))
                })
                .collect()
        };
        let unlock = windows("schedule.unlock", &raw.unlock)?;
        let face = windows("schedule.face", &raw.face)?;
        let mut people = std::collections::BTreeMap::new();
        for (person, texts) in &raw.people {
            let key = format!("schedule.people.{person}");
            if texts.is_empty() {
                return Err(self.invalid(
                    &key,
                    "= [] would never let this person in by face",
                    "remove the person from the classifier (retrain without them), or give \
                     their windows",
                ));
            }
            people.insert(person.clone(), windows(&key, texts)?);
        }
        let schedule = Schedule {
            unlock,
            face,
            people,
        };
        if schedule.is_empty() {
            if raw.time_zone.is_some() {
                return Err(self.invalid(
                    "schedule.time_zone",
                    "is set but no window is",
                    "add schedule.unlock, schedule.face or [schedule.people] windows, or \
                     remove [schedule]",
                ));
            }
            return Ok(None);
        }
        let zone_name = raw.time_zone.ok_or_else(|| {
            self.invalid(
                "schedule.time_zone",
                "is missing (windows are in local time)",
                "set the door's IANA time zone, e.g. \"Europe/Berlin\" \
                 (`timedatectl list-timezones`)",
            )
        })?;
        let zone = crate::schedule::zone(&zone_name)
            .map_err(|e| self.invalid("schedule.time_zone", "is not a known time zone", e))?;
        Ok(Some(ScheduleSettings {
            zone_name,
            zone,
            schedule,
            assume_clock_synchronized: raw.assume_clock_synchronized.unwrap_or(false),
        }))
    }

    fn collect(&self, raw: RawCollect) -> Result<Option<CollectSettings>, ConfigError> {
        let set = [
            ("dir", raw.dir.is_some()),
            ("max_files", raw.max_files.is_some()),
            ("max_age_days", raw.max_age_days.is_some()),
            ("margin", raw.margin.is_some()),
            ("near_miss_secs", raw.near_miss_secs.is_some()),
            ("whole_frames", raw.whole_frames.is_some()),
        ];
        if raw.enabled != Some(true) {
            if let Some((key, _)) = set.iter().find(|(_, set)| *set) {
                return Err(self.invalid(
                    "collect.enabled",
                    format!("is not true, but collect.{key} is set"),
                    "set collect.enabled = true to keep faces for retraining, or remove the \
                     [collect] keys",
                ));
            }
            return Ok(None);
        }
        let max_files = self.int(
            "collect.max_files",
            raw.max_files.unwrap_or(defaults::COLLECT_MAX_FILES),
            1..=100_000,
            "the most face files to keep, e.g. 2000",
        )?;
        let max_age_days = self.int(
            "collect.max_age_days",
            raw.max_age_days.unwrap_or(defaults::COLLECT_MAX_AGE_DAYS),
            1..=3650,
            "days a face is kept, e.g. 30",
        )?;
        let margin = self.float(
            "collect.margin",
            raw.margin.unwrap_or(defaults::COLLECT_MARGIN),
            0.0..=1.0,
            "how close to a threshold a genuine unlock must be to be kept, e.g. 0.05",
        )?;
        let near_miss = self.float(
            "collect.near_miss_secs",
            raw.near_miss_secs
                .unwrap_or(defaults::COLLECT_NEAR_MISS_SECS),
            1.0..=120.0,
            "seconds, e.g. 10",
        )?;
        Ok(Some(CollectSettings {
            dir: self.resolve(
                raw.dir
                    .unwrap_or_else(|| PathBuf::from(defaults::COLLECT_DIR)),
            ),
            max_files: max_files as usize,
            max_age: Duration::from_secs(u64::from(max_age_days) * 86_400),
            margin: margin as f32,
            near_miss: Duration::from_secs_f64(near_miss),
            whole_frames: raw.whole_frames.unwrap_or(false),
        }))
    }

    fn capture(&self, raw: RawCapture) -> Result<Option<CaptureSettings>, ConfigError> {
        let set = [
            ("dir", raw.dir.is_some()),
            ("max_count", raw.max_count.is_some()),
            ("max_secs", raw.max_secs.is_some()),
            ("max_files", raw.max_files.is_some()),
        ];
        if raw.enabled != Some(true) {
            if let Some((key, _)) = set.iter().find(|(_, set)| *set) {
                return Err(self.invalid(
                    "capture.enabled",
                    format!("is not true, but capture.{key} is set"),
                    "set capture.enabled = true to allow guided capture at the door, or \
                     remove the [capture] keys",
                ));
            }
        }
        let max_count = self.int(
            "capture.max_count",
            raw.max_count.unwrap_or(defaults::CAPTURE_MAX_COUNT),
            1..=1000,
            "the most frames one capture may ask for, e.g. 50",
        )?;
        let max_secs = self.int(
            "capture.max_secs",
            raw.max_secs.unwrap_or(defaults::CAPTURE_MAX_SECS),
            5..=3600,
            "the longest one capture may run, in seconds, e.g. 300",
        )?;
        let max_files = self.int(
            "capture.max_files",
            raw.max_files.unwrap_or(defaults::CAPTURE_MAX_FILES),
            1..=100_000,
            "the most files the capture directory may hold, e.g. 1000",
        )?;
        Ok(raw.enabled.unwrap_or(false).then(|| CaptureSettings {
            dir: self.resolve(
                raw.dir
                    .unwrap_or_else(|| PathBuf::from(defaults::CAPTURE_DIR)),
            ),
            max_count,
            max_secs,
            max_files: max_files as usize,
        }))
    }

    fn control(&self, raw: RawControl) -> Result<Option<ControlSettings>, ConfigError> {
        match (raw.socket, raw.group) {
            (None, None) => Ok(None),
            (None, Some(_)) => Err(self.invalid(
                "control.group",
                "is set without control.socket",
                "set control.socket (e.g. \"/run/facelock/control.sock\") to enable the \
                 control socket, or remove control.group",
            )),
            (Some(socket), group) => {
                if group.as_deref().is_some_and(str::is_empty) {
                    return Err(self.invalid(
                        "control.group",
                        "is empty",
                        "name a group (e.g. \"facelock-admin\") or remove the key",
                    ));
                }
                Ok(Some(ControlSettings {
                    socket: self.resolve(socket),
                    group,
                }))
            }
        }
    }

    fn http(&self, raw: RawHttp) -> Result<Option<HttpSettings>, ConfigError> {
        // The hash a token entry would have, to find duplicates before validating it.
        let hash_of = |text: &Option<String>| {
            text.as_deref()
                .and_then(|t| crate::http::auth::parse_hash(t).ok())
        };
        use crate::http::auth::{parse_hash, Scope, TokenEntry};
        use crate::http::settings::{DEFAULT_LISTEN, DEFAULT_MAX_CONNECTIONS};
        if !raw.enabled.unwrap_or(false) {
            return Ok(None);
        }
        let listen_text = raw.listen.as_deref().unwrap_or(DEFAULT_LISTEN);
        let listen: std::net::SocketAddr = listen_text.parse().map_err(|_| {
            self.invalid(
                "http.listen",
                format!("= {:?} is not an address and port", clip(listen_text)),
                "write it as \"127.0.0.1:8080\", \"[::1]:8080\" or \"0.0.0.0:8443\"",
            )
        })?;
        let tls = match (raw.tls_cert, raw.tls_key) {
            (None, None) => None,
            (Some(cert), Some(key)) => Some(TlsSettings {
                cert: self.resolve(cert),
                key: self.resolve(key),
            }),
            (Some(_), None) | (None, Some(_)) => {
                return Err(self.invalid(
                    "http.tls_cert",
                    "and http.tls_key must be set together",
                    "set both (PEM files: the certificate chain and its private key), or \
                     neither for plain HTTP on localhost",
                ))
            }
        };
        let loopback = listen.ip().is_loopback();
        if tls.is_none() && !loopback {
            return Err(self.invalid(
                "http.listen",
                format!("= \"{listen}\" is not a loopback address, and TLS is off"),
                "tokens would cross the network in clear text: set http.tls_cert and \
                 http.tls_key, or listen on 127.0.0.1 behind a reverse proxy that terminates \
                 TLS",
            ));
        }
        let compat_without_token = raw.compat_without_token.unwrap_or(false);
        if compat_without_token && !loopback {
            return Err(self.invalid(
                "http.compat_without_token",
                format!("= true while listening on {listen}, which is not loopback"),
                "recognition without a token is allowed only on 127.0.0.1 or ::1; remove the \
                 key, or give the client a read token",
            ));
        }
        let metrics_without_token = raw.metrics_without_token.unwrap_or(false);
        if metrics_without_token && !loopback {
            return Err(self.invalid(
                "http.metrics_without_token",
                format!("= true while listening on {listen}, which is not loopback"),
                "give the Prometheus server a read token (its `authorization: \
                 credentials_file`), or listen on 127.0.0.1",
            ));
        }
        let max_connections = self.int(
            "http.max_connections",
            raw.max_connections
                .unwrap_or(DEFAULT_MAX_CONNECTIONS as i64),
            1..=4096,
            "the connections served at once; the default 128 suits a lock",
        )? as usize;
        let mut tokens: Vec<TokenEntry> = Vec::new();
        for (i, raw) in raw.token.into_iter().enumerate() {
            let key = |field: &str| format!("http.token[{i}].{field}");
            let name = raw.name.filter(|n| !n.trim().is_empty()).ok_or_else(|| {
                self.invalid(
                    &key("name"),
                    "is missing or empty",
                    "name each token (it is what the audit log shows), e.g. name = \"admin\"",
                )
            })?;
            if name.len() > 64 || name.chars().any(char::is_control) {
                return Err(self.invalid(
                    &key("name"),
                    format!(
                        "= {:?} is longer than 64 bytes or has control characters",
                        clip(&name)
                    ),
                    "use a short plain name such as \"home-assistant\"",
                ));
            }
            if tokens.iter().any(|t| Some(t.hash) == hash_of(&raw.hash)) {
                return Err(self.invalid(
                    &key("hash"),
                    "is the hash of a token another entry has already",
                    "give every client its own token (`lock-daemon token new NAME --scope \
                     ...`), so the audit log tells them apart",
                ));
            }
            if tokens.iter().any(|t| t.name == name) {
                return Err(self.invalid(
                    &key("name"),
                    format!("= {name:?} is used by another token"),
                    "give every token its own name, so the audit log tells them apart",
                ));
            }
            let new_token = "create one with `lock-daemon token new NAME --scope read` and \
                             paste the lines it prints";
            let hash = raw
                .hash
                .ok_or_else(|| self.invalid(&key("hash"), "is missing", new_token))?;
            if hash.starts_with(crate::http::auth::TOKEN_PREFIX) {
                return Err(self.invalid(
                    &key("hash"),
                    "holds a token, not its hash",
                    "the configuration keeps only hashes: run `lock-daemon token new NAME \
                     --scope ...` and paste its `hash = \"sha256:...\"` line (and treat the \
                     token that was here as leaked)",
                ));
            }
            let hash = parse_hash(&hash)
                .map_err(|problem| self.invalid(&key("hash"), problem, new_token))?;
            let scope_list = raw.scopes.unwrap_or_default();
            if scope_list.is_empty() {
                return Err(self.invalid(
                    &key("scopes"),
                    "is missing or empty",
                    "list what the token may do: scopes = [\"read\"], [\"read\", \"unlock\"] \
                     or [\"admin\"]",
                ));
            }
            let scopes = scope_list
                .iter()
                .map(|s| s.parse::<Scope>())
                .collect::<Result<_, _>>()
                .map_err(|problem| {
                    self.invalid(&key("scopes"), problem, "use read, unlock or admin")
                })?;
            tokens.push(TokenEntry { name, hash, scopes });
        }
        if tokens.is_empty() && !compat_without_token && !metrics_without_token {
            return Err(self.invalid(
                "http.token",
                "is empty: with no token, nothing but /healthz could be used",
                "create one with `lock-daemon token new admin --scope admin` and paste the \
                 [[http.token]] lines it prints, or set http.enabled = false",
            ));
        }
        Ok(Some(HttpSettings {
            listen,
            tls,
            tokens,
            preview: raw.preview.unwrap_or(false),
            compat_without_token,
            metrics_without_token,
            max_connections,
        }))
    }

    fn mqtt(
        &self,
        raw: RawMqtt,
        policy_unlock: Duration,
        door: &DoorSettings,
        audit: &AuditSettings,
    ) -> Result<Option<MqttSettings>, ConfigError> {
        use crate::mqtt::settings::{
            check_topic, host_name, sanitize_name, DEFAULT_DISCOVERY_PREFIX,
            DEFAULT_KEEPALIVE_SECS, DEFAULT_PORT, DEFAULT_TLS_PORT,
        };
        if !raw.enabled.unwrap_or(false) {
            return Ok(None);
        }
        let host = raw
            .host
            .map(|h| h.trim().to_owned())
            .filter(|h| !h.is_empty())
            .ok_or_else(|| {
                self.invalid(
                    "mqtt.host",
                    "is missing",
                    "name the broker, e.g. host = \"192.168.1.10\" or \"homeassistant.local\"",
                )
            })?;
        if host.len() > 253 || host.contains(|c: char| c.is_whitespace() || c == '/') {
            return Err(self.invalid(
                "mqtt.host",
                format!("= {:?} is not a host name or address", clip(&host)),
                "write the broker's host name or IP address alone, without a scheme or port",
            ));
        }
        let tls = match (raw.ca_file, raw.client_cert, raw.client_key) {
            (None, None, None) => None,
            (Some(ca), cert, key) => Some(MqttTls {
                ca_file: self.resolve(ca),
                client: match (cert, key) {
                    (None, None) => None,
                    (Some(cert), Some(key)) => Some((self.resolve(cert), self.resolve(key))),
                    _ => {
                        return Err(self.invalid(
                            "mqtt.client_cert",
                            "and mqtt.client_key must be set together",
                            "set both (PEM files: the client certificate and its key), or \
                             neither",
                        ))
                    }
                },
            }),
            (None, _, _) => {
                return Err(self.invalid(
                    "mqtt.client_cert",
                    "is set without mqtt.ca_file",
                    "a client certificate needs TLS: set mqtt.ca_file to the CA that signed \
                     the broker's certificate",
                ))
            }
        };
        let default_port = if tls.is_some() {
            DEFAULT_TLS_PORT
        } else {
            DEFAULT_PORT
        };
        let port = self.int(
            "mqtt.port",
            raw.port.unwrap_or(i64::from(default_port)),
            1..=65535,
            "the broker's port: 1883 for MQTT, 8883 for MQTT over TLS",
        )? as u16;
        let username = raw.username.filter(|u| !u.is_empty());
        if username.as_ref().is_some_and(|u| u.len() > 256) {
            return Err(self.invalid(
                "mqtt.username",
                "is longer than 256 bytes",
                "use the user name the broker knows the lock by",
            ));
        }
        if raw.password_file.is_some() && username.is_none() {
            return Err(self.invalid(
                "mqtt.password_file",
                "is set without mqtt.username",
                "set mqtt.username too (the broker checks the pair)",
            ));
        }
        let name_source = raw.lock_name.unwrap_or_else(host_name);
        let lock_name = sanitize_name(&name_source);
        let client_id = raw
            .client_id
            .unwrap_or_else(|| format!("facelock-{lock_name}"));
        if client_id.is_empty() || client_id.len() > 64 || client_id.chars().any(char::is_control) {
            return Err(self.invalid(
                "mqtt.client_id",
                format!(
                    "= {:?} is empty, longer than 64 bytes or has control characters",
                    clip(&client_id)
                ),
                "use a short plain id, unique on the broker, e.g. \"facelock-front-door\"",
            ));
        }
        let base_topic = raw
            .base_topic
            .unwrap_or_else(|| format!("facelock/{lock_name}"));
        check_topic(&base_topic).map_err(|problem| {
            self.invalid(
                "mqtt.base_topic",
                format!("= {:?} {problem}", clip(&base_topic)),
                "use plain levels such as \"facelock/front-door\"",
            )
        })?;
        let discovery_prefix = raw
            .discovery_prefix
            .unwrap_or_else(|| DEFAULT_DISCOVERY_PREFIX.to_owned());
        check_topic(&discovery_prefix).map_err(|problem| {
            self.invalid(
                "mqtt.discovery_prefix",
                format!("= {:?} {problem}", clip(&discovery_prefix)),
                "Home Assistant's default is \"homeassistant\"",
            )
        })?;
        let mut commands = Vec::new();
        for text in raw.commands.unwrap_or_else(|| vec!["lock".into()]) {
            let permission = text.parse::<Permission>().map_err(|problem| {
                self.invalid(
                    "mqtt.commands",
                    problem,
                    "list what MQTT may command: any of \"lock\", \"unlock\", \"mode\" \
                     ([] for none)",
                )
            })?;
            if !commands.contains(&permission) {
                commands.push(permission);
            }
        }
        let unlock = match raw.unlock_secs {
            Some(secs) => self.secs(
                "mqtt.unlock_secs",
                secs,
                0.5..=3600.0,
                "how long an UNLOCK from MQTT releases the strike, e.g. 5 (at most \
                 door.max_manual_unlock_secs)",
            )?,
            None => policy_unlock,
        };
        let unlock_code_hash = match raw.unlock_code_hash {
            None => None,
            Some(text) => Some(crate::http::auth::parse_hash(&text).map_err(|problem| {
                self.invalid(
                    "mqtt.unlock_code_hash",
                    problem,
                    "make it with `lock-daemon code-hash` (it reads the code from standard \
                     input and prints the line to paste)",
                )
            })?),
        };
        if unlock > door.max_manual_unlock {
            return Err(self.invalid(
                if raw.unlock_secs.is_some() {
                    "mqtt.unlock_secs"
                } else {
                    "policy.unlock_secs"
                },
                format!(
                    "= {:.1} s is longer than door.max_manual_unlock_secs ({:.1} s), so every \
                     UNLOCK from MQTT would be refused",
                    unlock.as_secs_f64(),
                    door.max_manual_unlock.as_secs_f64()
                ),
                "set mqtt.unlock_secs to at most door.max_manual_unlock_secs",
            ));
        }
        if unlock_code_hash.is_some() && !commands.contains(&Permission::Unlock) {
            return Err(self.invalid(
                "mqtt.unlock_code_hash",
                "is set but \"unlock\" is not in mqtt.commands",
                "add \"unlock\" to mqtt.commands, or remove the code (Home Assistant would \
                 ask for it to lock)",
            ));
        }
        let camera = raw.camera.unwrap_or(false);
        if camera && audit.snapshots.is_none() {
            return Err(self.invalid(
                "mqtt.camera",
                "= true but audit.snapshots is off, so there would be no picture to send",
                "set audit.snapshots = true (a 0700 directory, with a retention count), or \
                 remove mqtt.camera",
            ));
        }
        let keepalive = self.int(
            "mqtt.keepalive_secs",
            raw.keepalive_secs.unwrap_or(DEFAULT_KEEPALIVE_SECS as i64),
            5..=3600,
            "seconds between keep-alive pings when idle, e.g. 30",
        )?;
        Ok(Some(MqttSettings {
            host,
            port,
            tls,
            username,
            password_file: raw.password_file.map(|p| self.resolve(p)),
            client_id,
            lock_name,
            base_topic,
            discovery: raw.discovery.unwrap_or(true),
            discovery_prefix,
            commands,
            unlock,
            unlock_code_hash,
            camera,
            keepalive: Duration::from_secs(keepalive as u64),
        }))
    }

    fn audit(&self, raw: RawAudit) -> Result<AuditSettings, ConfigError> {
        let keep = self.int(
            "audit.snapshots_keep",
            raw.snapshots_keep.unwrap_or(defaults::SNAPSHOTS_KEEP),
            1..=100_000,
            "number of snapshot files to keep, e.g. 200",
        )?;
        let snapshots = raw.snapshots.unwrap_or(false).then(|| SnapshotSettings {
            dir: self.resolve(
                raw.snapshot_dir
                    .clone()
                    .unwrap_or_else(|| PathBuf::from(defaults::SNAPSHOT_DIR)),
            ),
            keep: keep as usize,
        });
        Ok(AuditSettings {
            log: self.resolve(
                raw.log
                    .unwrap_or_else(|| PathBuf::from(defaults::AUDIT_LOG)),
            ),
            snapshots,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
        [recognition]
        classifier = "classifier.onnx"
        [relay]
        backend = "sim"
        sim_log = "relay.log"
        [security]
        allow_unsigned = true
    "#;

    fn parse(text: &str) -> Result<Settings, ConfigError> {
        Settings::from_toml(text, Path::new("/etc/facelock/test.toml"))
    }

    fn error(text: &str) -> String {
        parse(text).unwrap_err().to_string()
    }

    fn repo_file(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(name)
    }

    #[test]
    fn documented_example_parses() {
        let settings = Settings::load(&repo_file("config/lock-daemon.toml")).unwrap();
        assert_eq!(settings.policy.frames_required, 3);
        assert_eq!(settings.policy.window, Duration::from_secs(2));
        assert_eq!(settings.camera.width, 640);
        assert!(matches!(
            settings.relay.backend,
            RelayBackend::Gpio { bcm_pin: 17, .. }
        ));
    }

    #[test]
    fn facenet_runs_in_f32_unless_told_and_f16_only_on_a_cpu_with_fp16() {
        use recognition::Precision;
        let with = |value: &str| {
            MINIMAL.replace(
                "[recognition]\n",
                &format!("[recognition]\n        precision = \"{value}\"\n"),
            )
        };
        let set = parse(MINIMAL).unwrap();
        assert_eq!(set.recognition.precision, Precision::F32);
        assert_eq!(
            parse(&with("f32")).unwrap().recognition.precision,
            Precision::F32
        );
        let auto = parse(&with("auto")).unwrap().recognition;
        assert_eq!(
            (auto.precision, auto.precision_setting),
            (Precision::native(), "auto")
        );
        let message = error(&with("fp16"));
        assert!(message.contains("recognition.precision"), "{message}");
        assert!(message.contains("\"auto\""), "{message}");

        // Resolved against each kind of CPU, whatever this one is.
        let validator = Validator {
            path: Path::new("/etc/facelock/test.toml"),
        };
        let on = |value: &str, native| validator.precision(Some(value), native);
        assert_eq!(on("auto", Precision::F16).unwrap().0, Precision::F16);
        assert_eq!(on("auto", Precision::F32).unwrap().0, Precision::F32);
        assert_eq!(on("f16", Precision::F16).unwrap().0, Precision::F16);
        assert_eq!(on("f32", Precision::F16).unwrap().0, Precision::F32);
        let refused = on("f16", Precision::F32).unwrap_err().to_string();
        assert!(
            refused.contains("needs a CPU with FP16 arithmetic"),
            "{refused}"
        );
        assert!(refused.contains("use \"auto\""), "{refused}");
    }

    #[test]
    fn recognition_workers_default_to_the_cores_less_one_for_the_camera() {
        assert_eq!(defaults::workers(1, 1), 1);
        assert_eq!(defaults::workers(2, 1), 2);
        assert_eq!(defaults::workers(4, 1), 3, "a Pi 4 or 5");
        assert_eq!(defaults::workers(16, 1), 4);
        assert_eq!(defaults::workers(4, 4), 1, "multi-threaded products");
        let set = parse(&format!("{MINIMAL}\n")).unwrap();
        assert!(set.recognition.workers >= 1);
        let text = MINIMAL.replace("[recognition]\n", "[recognition]\n        workers = 3\n");
        assert_eq!(parse(&text).unwrap().recognition.workers, 3);
        let message =
            error(&MINIMAL.replace("[recognition]\n", "[recognition]\n        workers = 0\n"));
        assert!(message.contains("recognition.workers"), "{message}");
        assert!(message.contains("one thread each"), "{message}");
        let both = MINIMAL.replace(
            "[recognition]\n",
            "[recognition]\n        workers = 2\n        threads = 4\n",
        );
        let message = error(&both);
        assert!(message.contains("recognition.threads = 4"), "{message}");
        let threads_only =
            MINIMAL.replace("[recognition]\n", "[recognition]\n        threads = 4\n");
        assert_eq!(parse(&threads_only).unwrap().recognition.workers, 1);
    }

    #[test]
    fn demo_example_parses_as_replay_and_sim() {
        let settings = Settings::load(&repo_file("config/demo.toml")).unwrap();
        assert!(matches!(
            settings.camera.source,
            CameraSource::Replay { .. }
        ));
        assert!(matches!(settings.relay.backend, RelayBackend::Sim { .. }));
    }

    #[test]
    fn documented_example_states_the_defaults() {
        // The example sets every key to its default; parsing it and the minimal file must
        // agree on everything but the keys the minimal file cannot default.
        let example = Settings::load(&repo_file("config/lock-daemon.toml")).unwrap();
        let minimal = parse(MINIMAL).unwrap();
        assert_eq!(example.camera.fps, minimal.camera.fps);
        assert_eq!(example.camera.read_timeout, minimal.camera.read_timeout);
        assert_eq!(example.policy, minimal.policy);
        assert_eq!(
            example.recognition.min_face_px,
            minimal.recognition.min_face_px
        );
        assert_eq!(
            example.recognition.detector_min_face_px,
            minimal.recognition.detector_min_face_px
        );
        assert_eq!(example.camera.pixel_format, minimal.camera.pixel_format);
    }

    #[test]
    fn missing_sections_take_the_defaults() {
        let s = parse(MINIMAL).unwrap();
        assert_eq!(
            s.camera.source,
            CameraSource::V4l2 {
                device: PathBuf::from("/dev/video0")
            }
        );
        assert_eq!(s.camera.pixel_format, PixelFormat::Mjpeg);
        assert_eq!(s.camera.read_timeout, Duration::from_millis(1000));
        assert_eq!(s.recognition.min_face_px, 80.0);
        assert_eq!(s.policy.unlock, Duration::from_secs(5));
        assert_eq!(s.policy.cooldown, Duration::from_secs(3));
        assert_eq!(s.audit.snapshots, None);
        assert_eq!(s.security.trusted_key, None);
        assert!(s.security.allow_unsigned);
        assert_eq!(s.state.dir, Path::new("/var/lib/facelock/state"));
        assert_eq!(
            s.recognition.model_dir,
            recognition::ModelDir::default_location()
        );
    }

    #[test]
    fn relative_paths_are_resolved_against_the_config_directory() {
        let s = parse(MINIMAL).unwrap();
        assert_eq!(
            s.recognition.classifier,
            Path::new("/etc/facelock/classifier.onnx")
        );
        assert_eq!(
            s.relay.backend,
            RelayBackend::Sim {
                log: PathBuf::from("/etc/facelock/relay.log")
            }
        );
    }

    #[test]
    fn unknown_key_is_named_with_a_hint() {
        let err = error(&format!("{MINIMAL}\n[policy]\nunlock_seconds = 4\n"));
        assert!(err.contains("unknown field `unlock_seconds`"), "{err}");
        assert!(err.contains("/etc/facelock/test.toml"), "{err}");
        assert!(err.contains("config/lock-daemon.toml"), "{err}");
        let err = error(&format!("{MINIMAL}\n[cameras]\nfps = 4\n"));
        assert!(err.contains("unknown field `cameras`"), "{err}");
    }

    #[test]
    fn out_of_range_values_name_the_key_and_the_fix() {
        let cases = [
            (
                "[policy]\nframes_required = 0",
                "policy.frames_required",
                "out of range",
            ),
            (
                "[policy]\nwindow_secs = -1.0",
                "policy.window_secs",
                "out of range",
            ),
            (
                "[policy]\nunlock_secs = 0.0",
                "policy.unlock_secs",
                "out of range",
            ),
            (
                "[camera]\nrotation = 45",
                "camera.rotation",
                "0, 90, 180 or 270",
            ),
            (
                "[camera]\ndark_frame_threshold = 300",
                "camera.dark_frame_threshold",
                "0-255",
            ),
            ("[camera]\nfps = 0", "camera.fps", "out of range"),
            (
                "[camera]\nread_timeout_ms = 10",
                "camera.read_timeout_ms",
                "WatchdogSec",
            ),
            (
                "[recognition]\nmin_face_px = 600.0",
                "recognition.min_face_px",
                "out of range",
            ),
            (
                "[recognition]\ncrop_margin = 2.0",
                "recognition.crop_margin",
                "fraction",
            ),
            (
                "[recognition]\ndetector_min_face_px = 100.0",
                "recognition.detector_min_face_px",
                "at most",
            ),
            (
                "[audit]\nsnapshots_keep = 0",
                "audit.snapshots_keep",
                "out of range",
            ),
        ];
        for (snippet, key, fix) in cases {
            // Merge the snippet's section into the minimal file.
            let (section, line) = snippet.split_once('\n').unwrap();
            let text = if MINIMAL.contains(section) {
                MINIMAL.replacen(section, snippet, 1)
            } else {
                format!("{MINIMAL}\n{snippet}\n")
            };
            let err = error(&text);
            assert!(err.contains(&format!("`{key}`")), "{line}: {err}");
            assert!(err.contains(fix), "{line}: {err}");
            assert!(err.contains("fix:"), "{line}: {err}");
        }
    }

    #[test]
    fn wrong_enum_value_is_named() {
        let err = error(&MINIMAL.replace("\"sim\"", "\"relay-board\""));
        assert!(err.contains("unknown variant `relay-board`"), "{err}");
        assert!(err.contains("gpio"), "{err}");
        let err = error(&format!("{MINIMAL}\n[camera]\npixel_format = \"h264\"\n"));
        assert!(err.contains("mjpeg"), "{err}");
    }

    #[test]
    fn missing_required_keys_are_named() {
        let err = error("[relay]\nbackend = \"sim\"\nsim_log = \"x\"\n");
        assert!(err.contains("`recognition.classifier` is missing"), "{err}");
        let err = error(&MINIMAL.replace("sim_log = \"relay.log\"", ""));
        assert!(err.contains("`relay.sim_log` is missing"), "{err}");
        let err = error(&MINIMAL.replace("\"sim\"", "\"gpio\""));
        assert!(err.contains("`relay.bcm_pin` is missing"), "{err}");
        let err = error(
            &MINIMAL
                .replace("\"sim\"", "\"gpio\"")
                .replace("sim_log = \"relay.log\"", "bcm_pin = 40"),
        );
        assert!(err.contains("not the physical header pin"), "{err}");
    }

    #[test]
    fn device_and_replay_dir_are_exclusive() {
        let err = error(&format!(
            "{MINIMAL}\n[camera]\ndevice = \"/dev/video0\"\nreplay_dir = \"frames\"\n"
        ));
        assert!(err.contains("keep only one"), "{err}");
    }

    #[test]
    fn mjpeg_pipe_is_a_path_or_stdin_and_excludes_the_other_sources() {
        let s = parse(&format!(
            "{MINIMAL}\n[camera]\nmjpeg_pipe = \"/run/facelock/camera.mjpeg\"\n"
        ))
        .unwrap();
        assert_eq!(
            s.camera.source,
            CameraSource::MjpegPipe {
                input: PipeInput::Path(PathBuf::from("/run/facelock/camera.mjpeg"))
            }
        );
        let s = parse(&format!("{MINIMAL}\n[camera]\nmjpeg_pipe = \"-\"\n")).unwrap();
        assert_eq!(
            s.camera.source,
            CameraSource::MjpegPipe {
                input: PipeInput::Stdin
            }
        );
        let s = parse(&format!("{MINIMAL}\n[camera]\nmjpeg_pipe = \"cam.fifo\"\n")).unwrap();
        assert!(
            matches!(&s.camera.source, CameraSource::MjpegPipe { input: PipeInput::Path(p) }
                if p == Path::new("/etc/facelock/cam.fifo"))
        );
        for other in ["device = \"/dev/video0\"", "replay_dir = \"frames\""] {
            let err = error(&format!(
                "{MINIMAL}\n[camera]\nmjpeg_pipe = \"-\"\n{other}\n"
            ));
            assert!(err.contains("keep only one"), "{err}");
            assert!(err.contains("camera.mjpeg_pipe"), "{err}");
        }
        // A pipe is a live camera: its frame rate bounds the policy window.
        let err = error(&format!(
            "{MINIMAL}\n[camera]\nmjpeg_pipe = \"-\"\nfps = 1\n"
        ));
        assert!(err.contains("could never open"), "{err}");
    }

    #[test]
    fn replay_fps_zero_means_as_fast_as_possible() {
        let s = parse(&format!(
            "{MINIMAL}\n[camera]\nreplay_dir = \"frames\"\nreplay_loop = true\n"
        ))
        .unwrap();
        assert_eq!(
            s.camera.source,
            CameraSource::Replay {
                dir: PathBuf::from("/etc/facelock/frames"),
                fps: None,
                looping: true
            }
        );
        let s = parse(&format!(
            "{MINIMAL}\n[camera]\nreplay_dir = \"frames\"\nreplay_fps = 5.0\n"
        ))
        .unwrap();
        assert!(matches!(s.camera.source, CameraSource::Replay { fps: Some(f), .. } if f == 5.0));
    }

    #[test]
    fn window_too_short_for_the_frame_count_is_refused() {
        let err = error(&format!(
            "{MINIMAL}\n[camera]\nfps = 2\n[policy]\nwindow_secs = 1.0\n"
        ));
        assert!(err.contains("could never open"), "{err}");
    }

    #[test]
    fn capture_is_off_unless_enabled_and_takes_its_limits() {
        assert_eq!(parse(MINIMAL).unwrap().capture, None);
        let s = parse(&format!("{MINIMAL}\n[capture]\nenabled = true\n")).unwrap();
        assert_eq!(
            s.capture,
            Some(CaptureSettings {
                dir: PathBuf::from(defaults::CAPTURE_DIR),
                max_count: 50,
                max_secs: 300,
                max_files: 1000,
            })
        );
        let s = parse(&format!(
            "{MINIMAL}\n[capture]\nenabled = true\ndir = \"caps\"\nmax_count = 5\nmax_secs = 20\nmax_files = 9\n"
        ))
        .unwrap()
        .capture
        .unwrap();
        assert_eq!(
            (s.dir, s.max_count, s.max_secs, s.max_files),
            (PathBuf::from("/etc/facelock/caps"), 5, 20, 9)
        );
    }

    #[test]
    fn the_collector_is_off_unless_enabled_and_its_keys_need_it() {
        assert_eq!(parse(MINIMAL).unwrap().collect, None);
        let c = parse(&format!(
            "{MINIMAL}\n[collect]\nenabled = true\nmax_files = 7\nmax_age_days = 2\n"
        ))
        .unwrap()
        .collect
        .unwrap();
        assert_eq!(c.dir, PathBuf::from(defaults::COLLECT_DIR));
        assert_eq!(
            (c.max_files, c.max_age),
            (7, Duration::from_secs(2 * 86_400))
        );
        assert_eq!((c.margin, c.near_miss), (0.05, Duration::from_secs(10)));
        assert!(!c.whole_frames);
        let e = error(&format!("{MINIMAL}\n[collect]\nwhole_frames = true\n"));
        assert!(
            e.contains("collect.enabled") && e.contains("collect.whole_frames is set"),
            "{e}"
        );
        let e = error(&format!(
            "{MINIMAL}\n[collect]\nenabled = true\nmargin = 2\n"
        ));
        assert!(e.contains("collect.margin"), "{e}");
    }

    #[test]
    fn capture_keys_without_enabled_are_refused_with_the_fix() {
        let e = error(&format!("{MINIMAL}\n[capture]\ndir = \"/tmp/c\"\n"));
        assert!(
            e.contains("capture.enabled") && e.contains("capture.dir is set"),
            "{e}"
        );
        let e = error(&format!(
            "{MINIMAL}\n[capture]\nenabled = true\nmax_count = 0\n"
        ));
        assert!(e.contains("capture.max_count"), "{e}");
        let e = error(&format!(
            "{MINIMAL}\n[capture]\nenabled = true\nmax_file = 3\n"
        ));
        assert!(e.contains("max_file"), "{e}");
    }

    #[test]
    fn snapshots_settings_only_when_enabled() {
        let s = parse(&format!(
            "{MINIMAL}\n[audit]\nsnapshots = true\nsnapshots_keep = 5\nsnapshot_dir = \"snaps\"\n"
        ))
        .unwrap();
        assert_eq!(
            s.audit.snapshots,
            Some(SnapshotSettings {
                dir: PathBuf::from("/etc/facelock/snaps"),
                keep: 5
            })
        );
    }

    #[test]
    fn policy_config_carries_the_face_size_floor() {
        let s = parse(MINIMAL).unwrap();
        let p = s.policy_config();
        assert_eq!(p.min_face_px, 80.0);
        assert_eq!(p.frames_required, 3);
        assert_eq!(s.recognition.pipeline_config().detector.min_face_px, 60.0);
    }

    #[test]
    fn the_default_crop_margin_is_the_trainers() {
        // A classifier is refused unless made with the lock's crop margin, so a default lock
        // must take what a default `trainer train` makes.
        let s = parse(MINIMAL).unwrap();
        assert_eq!(
            s.recognition.pipeline_config().crop_margin,
            recognition::PipelineConfig::default().crop_margin
        );
    }

    #[test]
    fn a_missing_trusted_key_is_refused_unless_unsigned_is_allowed_explicitly() {
        let unsigned = MINIMAL.replace("allow_unsigned = true", "");
        let err = error(&unsigned);
        assert!(err.contains("`security.trusted_key` is not set"), "{err}");
        assert!(err.contains("trainer keygen"), "{err}");
        assert!(err.contains("allow_unsigned = true"), "{err}");
        let err = error(&MINIMAL.replace("allow_unsigned = true", "allow_unsigned = false"));
        assert!(err.contains("`security.trusted_key` is not set"), "{err}");
        // With the key, nothing else is needed; with allow_unsigned, a warning is due.
        let signed = parse(&format!("{unsigned}trusted_key = \"trusted.pub\"\n")).unwrap();
        assert_eq!(
            signed.security.trusted_key.as_deref(),
            Some(Path::new("/etc/facelock/trusted.pub"))
        );
        assert_eq!(signed.security.unsigned_warning(), None);
        let warning = parse(MINIMAL).unwrap().security.unsigned_warning().unwrap();
        assert!(warning.contains("not checked"), "{warning}");
    }

    #[test]
    fn allow_unsigned_together_with_a_trusted_key_is_refused() {
        let err = error(&format!("{MINIMAL}trusted_key = \"trusted.pub\"\n"));
        assert!(err.contains("`security.allow_unsigned`"), "{err}");
        assert!(err.contains("contradicts"), "{err}");
    }

    #[test]
    fn the_state_dir_is_resolved_against_the_config_directory() {
        let s = parse(&format!("{MINIMAL}\n[state]\ndir = \"state\"\n")).unwrap();
        assert_eq!(s.state.dir, Path::new("/etc/facelock/state"));
        let err = error(&format!("{MINIMAL}\n[state]\ndirectory = \"state\"\n"));
        assert!(err.contains("unknown field `directory`"), "{err}");
    }

    #[test]
    fn a_10_mb_value_is_not_echoed_in_full() {
        let huge = "x".repeat(10 << 20);
        let cases = [
            // An unknown enum value: the parser quotes the line and the value.
            format!("{MINIMAL}\n[camera]\npixel_format = \"{huge}\"\n"),
            // An unknown key.
            format!("{MINIMAL}\n[policy]\n{huge} = 1\n"),
            // A string where a number belongs.
            format!("{MINIMAL}\n[policy]\nwindow_secs = \"{huge}\"\n"),
            // Not TOML at all: an unterminated string.
            format!("{MINIMAL}\n[policy]\nwindow_secs = \"{huge}\n"),
            // A path no file system accepts.
            MINIMAL.replace("classifier.onnx", &huge),
            format!("{MINIMAL}\n[state]\ndir = \"{huge}\"\n"),
        ];
        for text in &cases {
            let err = error(text);
            assert!(err.len() < 2_000, "{} bytes: {}", err.len(), clip(&err));
            assert!(err.contains("xxxxxxxx… ("), "{err}");
            assert!(err.contains(" bytes)"), "{err}");
        }
        // The message still names the problem.
        let err = error(&cases[0]);
        assert!(err.contains("unknown variant"), "{err}");
        assert!(err.contains("mjpeg"), "{err}");
        let err = error(&cases[4]);
        assert!(err.contains("`recognition.classifier`"), "{err}");
        assert!(err.contains("10485760 bytes"), "{err}");
    }

    #[test]
    fn the_relay_section_read_alone_clips_values_too() {
        // `lock-daemon secure` reads the relay section on its own, with the same clipping.
        let huge = "x".repeat(10 << 20);
        let err = Settings::relay_only(
            &format!("[relay]\nbackend = \"{huge}\"\n"),
            Path::new("/etc/facelock/test.toml"),
        )
        .unwrap_err()
        .to_string();
        assert!(err.len() < 2_000, "{} bytes", err.len());
    }

    #[test]
    fn clipping_keeps_short_values_and_marks_long_ones() {
        assert_eq!(clip("short"), "short");
        let long = "é".repeat(100);
        let clipped = clip(&long);
        assert_eq!(clipped, format!("{}… (200 bytes)", "é".repeat(80)));
        assert_eq!(
            clip_quoted(&format!("a `{long}` b \"c\" d")),
            format!("a `{clipped}` b \"c\" d")
        );
    }

    #[test]
    fn door_inputs_schedule_and_control_errors_name_the_key_and_the_fix() {
        let gpio_relay = MINIMAL
            .replace("\"sim\"", "\"gpio\"")
            .replace("sim_log = \"relay.log\"", "bcm_pin = 17");
        let cases = [
            (
                format!("{MINIMAL}\n[inputs]\nbackend = \"gpio\"\n[inputs.door]\nbcm_pin = 40\n"),
                "`inputs.door.bcm_pin`",
                "not the physical header pin",
            ),
            (
                format!("{gpio_relay}\n[inputs]\nbackend = \"gpio\"\n[inputs.exit]\nbcm_pin = 17\n"),
                "`inputs.exit.bcm_pin`",
                "is also relay.bcm_pin",
            ),
            (
                format!(
                    "{MINIMAL}\n[inputs]\nbackend = \"gpio\"\n[inputs.door]\nbcm_pin = 22\n\
                     [inputs.exit]\nbcm_pin = 22\n"
                ),
                "`inputs.exit.bcm_pin`",
                "is also inputs.door.bcm_pin",
            ),
            (
                format!("{MINIMAL}\n[inputs]\nbackend = \"gpio\"\n[inputs.fire]\nbcm_pin = 24\n"),
                "`inputs.fire.contact`",
                "no default",
            ),
            (
                format!("{MINIMAL}\n[inputs]\nbackend = \"gpio\"\n"),
                "`inputs`",
                "add the inputs that are wired",
            ),
            (
                format!("{MINIMAL}\n[inputs]\nbackend = \"sim\"\n"),
                "`inputs.sim_script`",
                "is missing",
            ),
            (
                format!("{MINIMAL}\n[inputs.door]\nbcm_pin = 22\n"),
                "`inputs.door`",
                "inputs.backend",
            ),
            (
                format!(
                    "{MINIMAL}\n[schedule]\ntime_zone = \"UTC\"\nunlock = [\"mon-fry 08:00-18:00\"]\n"
                ),
                "`schedule.unlock`",
                "unknown day",
            ),
            (
                format!("{MINIMAL}\n[schedule]\ntime_zone = \"Mars/Olympus\"\nface = [\"daily 06:00-22:00\"]\n"),
                "`schedule.time_zone`",
                "timedatectl list-timezones",
            ),
            (
                format!("{MINIMAL}\n[schedule]\nface = [\"daily 06:00-22:00\"]\n"),
                "`schedule.time_zone`",
                "is missing",
            ),
            (
                format!("{MINIMAL}\n[schedule]\ntime_zone = \"UTC\"\n[schedule.people]\nbob = []\n"),
                "`schedule.people.bob`",
                "retrain without them",
            ),
            (
                format!("{MINIMAL}\n[control]\ngroup = \"facelock-admin\"\n"),
                "`control.group`",
                "control.socket",
            ),
            (
                format!("{MINIMAL}\n[door]\nheld_open_secs = 0.0\n"),
                "`door.held_open_secs`",
                "held-open alarm",
            ),
            (
                format!("{gpio_relay}\n[outputs]\nbackend = \"gpio\"\nled_pin = 17\n"),
                "`outputs.led_pin`",
                "is also relay.bcm_pin",
            ),
            (
                format!("{MINIMAL}\n[outputs]\nbackend = \"gpio\"\n"),
                "`outputs`",
                "neither led_pin nor buzzer_pin",
            ),
        ];
        for (text, key, fix) in cases {
            let err = error(&text);
            assert!(err.contains(key), "{key}: {err}");
            assert!(err.contains(fix), "{key}: {err}");
        }
        let err = error(&MINIMAL.replace(
            "backend = \"sim\"",
            "backend = \"sim\"\nlock_type = \"maglock\"",
        ));
        assert!(err.contains("fail-secure"), "{err}");
    }

    #[test]
    fn door_inputs_schedule_and_control_parse() {
        let s = parse(&format!(
            "{MINIMAL}\n[inputs]\nbackend = \"gpio\"\n[inputs.door]\nbcm_pin = 22\n\
             [inputs.exit]\nbcm_pin = 23\ndebounce_ms = 20\n\
             [schedule]\ntime_zone = \"UTC\"\nunlock = [\"mon-fri 08:30-12:00\"]\n\
             [schedule.people]\ncontractor = [\"mon-fri 08:00-18:00\"]\n\
             [control]\nsocket = \"control.sock\"\ngroup = \"facelock-admin\"\n"
        ))
        .unwrap();
        let InputsBackend::Gpio { door, exit, fire } = &s.inputs.backend else {
            panic!("{:?}", s.inputs)
        };
        let door = door.as_ref().unwrap();
        assert_eq!(
            door.contact,
            ContactKind::NormallyClosed,
            "reed switch default"
        );
        assert_eq!(door.debounce, Duration::from_millis(50));
        assert_eq!(exit.as_ref().unwrap().contact, ContactKind::NormallyOpen);
        assert_eq!(exit.as_ref().unwrap().debounce, Duration::from_millis(20));
        assert!(fire.is_none());
        let schedule = s.schedule.unwrap();
        assert_eq!(schedule.schedule.unlock.len(), 1);
        assert!(schedule.schedule.people.contains_key("contractor"));
        assert_eq!(
            s.control.unwrap().socket,
            Path::new("/etc/facelock/control.sock")
        );
        assert_eq!(s.relay.lock_type, LockType::FailSecure);
        assert!(s.door.relock_on_close);
    }

    #[test]
    fn the_http_api_is_off_by_default_and_on_loopback_8080_when_enabled() {
        assert!(parse(MINIMAL).unwrap().http.is_none());
        let token = crate::http::auth::hash_text(&crate::http::auth::hash_token("flk_x"));
        let text = format!(
            "{MINIMAL}\n[http]\nenabled = true\n[[http.token]]\nname = \"admin\"\n\
             hash = \"{token}\"\nscopes = [\"admin\"]\n"
        );
        let http = parse(&text).unwrap().http.unwrap();
        assert_eq!(http.listen.to_string(), "127.0.0.1:8080");
        assert!(http.tls.is_none() && !http.preview && !http.compat_without_token);
        assert_eq!(http.tokens[0].name, "admin");
        assert!(http.tokens[0].allows(crate::http::auth::Scope::Unlock));
    }

    #[test]
    fn unsafe_or_broken_http_settings_name_the_key_and_the_fix() {
        let hash = |t: &str| crate::http::auth::hash_text(&crate::http::auth::hash_token(t));
        let token = |name: &str, hash: &str, scopes: &str| {
            format!("[[http.token]]\nname = \"{name}\"\nhash = \"{hash}\"\nscopes = {scopes}\n")
        };
        let ok_token = token("admin", &hash("flk_a"), "[\"admin\"]");
        let http = |keys: &str, tokens: &str| {
            format!("{MINIMAL}\n[http]\nenabled = true\n{keys}\n{tokens}")
        };
        let cases = [
            (http("listen = \"0.0.0.0:8080\"", &ok_token), "`http.listen`", "clear text"),
            (http("listen = \"lock:80\"", &ok_token), "`http.listen`", "address and port"),
            (http("tls_cert = \"c.pem\"", &ok_token), "`http.tls_cert`", "together"),
            (
                http("listen = \"[::]:8443\"\ntls_cert = \"c.pem\"\ntls_key = \"k.pem\"\ncompat_without_token = true", &ok_token),
                "`http.compat_without_token`",
                "loopback",
            ),
            (
                http("listen = \"0.0.0.0:8443\"\ntls_cert = \"c.pem\"\ntls_key = \"k.pem\"\nmetrics_without_token = true", &ok_token),
                "`http.metrics_without_token`",
                "loopback",
            ),
            (http("", ""), "`http.token`", "token new"),
            (http("", &token("admin", "flk_leaked", "[\"admin\"]")), "`http.token[0].hash`", "treat the token"),
            (http("", &token("admin", "sha256:abcd", "[\"admin\"]")), "`http.token[0].hash`", "64"),
            (http("", &token("admin", &hash("flk_a"), "[]")), "`http.token[0].scopes`", "read"),
            (http("", &token("admin", &hash("flk_a"), "[\"root\"]")), "`http.token[0].scopes`", "unknown scope"),
            (
                http("", &format!("{ok_token}{}", token("admin", &hash("flk_b"), "[\"read\"]"))),
                "`http.token[1].name`",
                "another token",
            ),
            (
                http("", &format!("{ok_token}{}", token("other", &hash("flk_a"), "[\"read\"]"))),
                "`http.token[1].hash`",
                "own token",
            ),
            (http("max_connections = 0", &ok_token), "`http.max_connections`", "out of range"),
        ];
        for (text, key, fix) in cases {
            let message = error(&text);
            assert!(message.contains(key), "{key}: {message}");
            assert!(message.contains(fix), "{fix}: {message}");
        }
        // A typo is named like any other.
        assert!(error(&http("enable = true", &ok_token)).contains("enable"));
    }

    #[test]
    fn mqtt_is_off_by_default_and_takes_safe_defaults_when_enabled() {
        assert!(parse(MINIMAL).unwrap().mqtt.is_none());
        let text = format!(
            "{MINIMAL}\n[mqtt]\nenabled = true\nhost = \"broker\"\nlock_name = \"Front Door\"\n"
        );
        let mqtt = parse(&text).unwrap().mqtt.unwrap();
        assert_eq!((mqtt.host.as_str(), mqtt.port), ("broker", 1883));
        assert_eq!(mqtt.lock_name, "front_door");
        assert_eq!(mqtt.base_topic, "facelock/front_door");
        assert_eq!(mqtt.client_id, "facelock-front_door");
        assert_eq!(mqtt.commands, vec![Permission::Lock]);
        assert!(mqtt.discovery && !mqtt.camera && mqtt.tls.is_none());
        assert_eq!(mqtt.unlock, parse(MINIMAL).unwrap().policy.unlock);
        let tls =
            format!("{text}ca_file = \"ca.pem\"\npassword_file = \"pw\"\nusername = \"lock\"\n");
        let mqtt = parse(&tls).unwrap().mqtt.unwrap();
        assert_eq!(mqtt.port, 8883);
        assert_eq!(mqtt.tls.unwrap().ca_file, Path::new("/etc/facelock/ca.pem"));
        assert_eq!(mqtt.password_file.unwrap(), Path::new("/etc/facelock/pw"));
    }

    #[test]
    fn broken_mqtt_settings_name_the_key_and_the_fix() {
        let mqtt = |keys: &str| format!("{MINIMAL}\n[mqtt]\nenabled = true\n{keys}\n");
        let host = "host = \"broker\"\n";
        let cases = [
            (mqtt(""), "`mqtt.host`", "name the broker"),
            (
                mqtt("host = \"mqtt://broker:1883\""),
                "`mqtt.host`",
                "without a scheme",
            ),
            (mqtt(&format!("{host}port = 0")), "`mqtt.port`", "1883"),
            (
                mqtt(&format!("{host}password_file = \"pw\"")),
                "`mqtt.password_file`",
                "username",
            ),
            (
                mqtt(&format!(
                    "{host}client_cert = \"c.pem\"\nclient_key = \"k.pem\""
                )),
                "`mqtt.client_cert`",
                "ca_file",
            ),
            (
                mqtt(&format!(
                    "{host}ca_file = \"ca.pem\"\nclient_cert = \"c.pem\""
                )),
                "`mqtt.client_cert`",
                "together",
            ),
            (
                mqtt(&format!("{host}base_topic = \"facelock/#\"")),
                "`mqtt.base_topic`",
                "wildcard",
            ),
            (
                mqtt(&format!("{host}discovery_prefix = \"/ha\"")),
                "`mqtt.discovery_prefix`",
                "homeassistant",
            ),
            (
                mqtt(&format!("{host}commands = [\"open\"]")),
                "`mqtt.commands`",
                "\"unlock\"",
            ),
            (
                mqtt(&format!("{host}unlock_code_hash = \"1234\"")),
                "`mqtt.unlock_code_hash`",
                "code-hash",
            ),
            (
                mqtt(&format!("{host}unlock_secs = 0")),
                "`mqtt.unlock_secs`",
                "out of range",
            ),
            (
                mqtt(&format!("{host}keepalive_secs = 1")),
                "`mqtt.keepalive_secs`",
                "out of range",
            ),
            (
                format!("{MINIMAL}\n[door]\nmax_manual_unlock_secs = 60\n[mqtt]\nenabled = true\n{host}unlock_secs = 120\n"),
                "`mqtt.unlock_secs`",
                "max_manual_unlock_secs",
            ),
            (
                mqtt(&format!(
                    "{host}commands = [\"lock\"]\nunlock_code_hash = \"sha256:{}\"",
                    "0".repeat(64)
                )),
                "`mqtt.unlock_code_hash`",
                "add \"unlock\"",
            ),
            (
                mqtt(&format!("{host}camera = true")),
                "`mqtt.camera`",
                "audit.snapshots",
            ),
        ];
        for (text, key, fix) in cases {
            let message = error(&text);
            assert!(message.contains(key), "{key}: {message}");
            assert!(message.contains(fix), "{fix}: {message}");
        }
        assert!(error(&mqtt(&format!("{host}password = \"x\""))).contains("password"));
    }
}
