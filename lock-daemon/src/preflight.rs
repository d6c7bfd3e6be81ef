//! `lock-daemon check-config`: every check that `run` makes before it touches hardware, so a
//! configuration that passes here does not fail at start (systemd runs it as
//! `ExecStartPre`):
//!
//! - the settings (parsing, ranges, `security.trusted_key` or `allow_unsigned`);
//! - the trusted key reads;
//! - the camera source is there: the replay directory holds images, the MJPEG pipe exists
//!   (or is "-"), the V4L2 device node exists (it is not opened);
//! - the audit log, the snapshot directory, the state directory and the simulated relay's
//!   log can be created or written by the user running the check;
//! - the models open and match their manifest (the networks are loaded, ~1 s);
//! - with `[mqtt]`, its password file and TLS files read (a warning: MQTT stays off, the
//!   door runs);
//! - the classifier goes through the daemon's own trust path: signature, embedder, and the
//!   rollback check against the state directory (read only: nothing is recorded, no
//!   allowance is consumed).
//!
//! Every problem is reported, each with its fix, not just the first.

use std::os::unix::fs::{FileTypeExt as _, MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use recognition::{FacePipeline, ModelDir};

use crate::camera::{self, CameraError, ReplayDir};
use crate::config::{CameraSource, PipeInput, RelayBackend, Settings};
use crate::recognizer;
use crate::rollback::StateDir;

/// Whether to load the networks (the unit tests run without models).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Models {
    /// Open the model directory, verify the manifest hashes and load the networks.
    Load,
    /// Skip the models; the classifier is checked without the embedder comparison.
    Skip,
}

/// What the check found.
#[derive(Debug)]
pub struct Report {
    /// The settings, when the file parsed and validated.
    pub settings: Option<Settings>,
    /// Each problem that would stop `run`, with its fix.
    pub problems: Vec<String>,
    /// Things that do not stop `run` but that the operator should know.
    pub warnings: Vec<String>,
}

impl Report {
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Runs every check on the configuration file at `config`.
pub fn check(config: &Path, models: Models) -> Report {
    let mut report = Report {
        settings: None,
        problems: Vec::new(),
        warnings: Vec::new(),
    };
    let settings = match Settings::load(config) {
        Ok(settings) => settings,
        Err(e) => {
            report.problems.push(e.to_string());
            return report;
        }
    };
    report.warnings.extend(settings.security.unsigned_warning());
    // MQTT never stops the door: its files are warnings (MQTT stays off until fixed).
    if let Some(mqtt) = &settings.mqtt {
        if let Err(problem) = crate::mqtt::check(mqtt) {
            report.warnings.push(format!(
                "{problem}; the lock runs, with MQTT off until this is fixed"
            ));
        }
    }
    let problems = &mut report.problems;
    if let Some(key) = &settings.security.trusted_key {
        if let Err(e) = recognition::signature::read_verifying_key(key) {
            problems.push(format!("security.trusted_key: {e}"));
        }
    }
    if let Err(e) = camera_source(&settings) {
        problems.push(e);
    }
    // The HTTP API's certificate and key load exactly as `run` loads them.
    if let Some(tls) = settings.http.as_ref().and_then(|h| h.tls.as_ref()) {
        if let Err(e) = crate::http::check_tls(tls) {
            problems.push(e.to_string());
        }
    }
    let mut writable = vec![
        ("audit.log", settings.audit.log.clone(), Kind::File),
        ("state.dir", settings.state.dir.clone(), Kind::Dir),
    ];
    if let Some(snapshots) = &settings.audit.snapshots {
        writable.push(("audit.snapshot_dir", snapshots.dir.clone(), Kind::Dir));
        if let Err(e) = tightenable(&snapshots.dir) {
            problems.push(e);
        }
    }
    if let RelayBackend::Sim { log } = &settings.relay.backend {
        writable.push(("relay.sim_log", log.clone(), Kind::File));
    }
    for (key, path, kind) in writable {
        if let Err(e) = creatable(&path, kind) {
            problems.push(format!("`{key}` = {}: {e}", path.display()));
        }
    }
    problems.extend(classifier(&settings, models).err());
    report.settings = Some(settings);
    report
}

/// The models and the classifier, through the daemon's trust path.
fn classifier(settings: &Settings, models: Models) -> Result<(), String> {
    let r = &settings.recognition;
    let state = StateDir::new(&settings.state.dir);
    let recorded = state.in_service().map_err(|e| e.to_string())?;
    let key = settings.security.trusted_key.as_deref();
    let pipeline = match models {
        Models::Load => Some(load_pipeline(settings)),
        Models::Skip => None,
    };
    match pipeline {
        Some(Ok(pipeline)) => {
            recognizer::check_classifier(&r.classifier, key, &pipeline, &state, recorded.as_ref())
                .map(drop)
                .map_err(|e| format!("{e:#}"))
        }
        Some(Err(models_problem)) => {
            // Still check what can be checked without the embedder, to report it now.
            let classifier = recognizer::check_classifier_without_models(
                &r.classifier,
                key,
                &r.pipeline_config(),
                &state,
                recorded.as_ref(),
            );
            Err(match classifier {
                Ok(_) => models_problem,
                Err(e) => format!("{models_problem}\n{e:#}"),
            })
        }
        None => recognizer::check_classifier_without_models(
            &r.classifier,
            key,
            &r.pipeline_config(),
            &state,
            recorded.as_ref(),
        )
        .map(drop)
        .map_err(|e| format!("{e:#}")),
    }
}

fn load_pipeline(settings: &Settings) -> Result<FacePipeline, String> {
    let r = &settings.recognition;
    let models = ModelDir::open(&r.model_dir).map_err(|e| e.to_string())?;
    let mut pipeline = FacePipeline::load_with(&models, r.pipeline_config(), r.precision)
        .map_err(|e| e.to_string())?;
    let (w, h) = camera::rotated_size(&settings.camera);
    pipeline
        .mtcnn
        .prepare_for_frame_size(w, h)
        .map_err(|e| e.to_string())?;
    Ok(pipeline)
}

/// The camera source is there (nothing is opened that a running daemon might hold).
fn camera_source(settings: &Settings) -> Result<(), String> {
    let c = &settings.camera;
    match &c.source {
        CameraSource::V4l2 { device } => match std::fs::metadata(device) {
            Err(_) => Err(CameraError::NotFound {
                device: device.clone(),
            }
            .to_string()),
            Ok(meta) if !meta.file_type().is_char_device() => Err(format!(
                "camera.device = {} is not a device node; set the camera's name from \
                 `ls /dev/v4l/by-id/`",
                device.display()
            )),
            Ok(_) => Ok(()),
        },
        CameraSource::MjpegPipe {
            input: PipeInput::Stdin,
        } => Ok(()),
        CameraSource::MjpegPipe {
            input: PipeInput::Path(path),
        } => match std::fs::metadata(path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Err(CameraError::PipeMissing { path: path.clone() }.to_string())
            }
            Err(e) => Err(format!("camera.mjpeg_pipe = {}: {e}", path.display())),
            Ok(meta) if meta.is_dir() => Err(format!(
                "camera.mjpeg_pipe = {} is a directory, not a FIFO; fix camera.mjpeg_pipe",
                path.display()
            )),
            Ok(_) => rustix::fs::access(path, rustix::fs::Access::READ_OK).map_err(|e| {
                format!(
                    "camera.mjpeg_pipe = {}: {e}; the service user (facelock) must be able to \
                     read it (facelock-camera.service creates it so)",
                    path.display()
                )
            }),
        },
        CameraSource::Replay { dir, fps, looping } => {
            ReplayDir::open(dir, *fps, *looping, Some((c.width, c.height)))
                .map(drop)
                .map_err(|e| format!("{e}; fix camera.replay_dir"))
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    File,
    Dir,
}

/// Whether `path` can be written (it exists) or created (its nearest existing ancestor is a
/// writable directory) by the user running the check. Nothing is created.
fn creatable(path: &Path, kind: Kind) -> Result<(), String> {
    use rustix::fs::{access, Access};
    let fix = "create it (or its directory) for the service user, or point the key elsewhere \
               (the unit's LogsDirectory= and StateDirectory= create /var/log/facelock and \
               /var/lib/facelock/...)";
    match std::fs::metadata(path) {
        Ok(meta) => {
            match kind {
                Kind::Dir if !meta.is_dir() => return Err(format!("is not a directory; {fix}")),
                Kind::File if meta.is_dir() => return Err(format!("is a directory; {fix}")),
                _ => {}
            }
            let mode = match kind {
                Kind::Dir => Access::WRITE_OK | Access::EXEC_OK,
                Kind::File => Access::WRITE_OK,
            };
            access(path, mode).map_err(|e| format!("is not writable ({e}); {fix}"))
        }
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(format!("cannot be checked ({e}); {fix}"))
        }
        Err(_) => {
            let mut ancestor: PathBuf = path.to_owned();
            loop {
                if !ancestor.pop() {
                    return Err(format!("cannot be created (no existing parent); {fix}"));
                }
                let ancestor = if ancestor.as_os_str().is_empty() {
                    Path::new(".")
                } else {
                    ancestor.as_path()
                };
                match std::fs::metadata(ancestor) {
                    Ok(meta) if meta.is_dir() => {
                        return access(ancestor, Access::WRITE_OK | Access::EXEC_OK).map_err(|e| {
                            format!(
                                "cannot be created: {} is not writable ({e}); {fix}",
                                ancestor.display()
                            )
                        })
                    }
                    Ok(_) => {
                        return Err(format!(
                            "cannot be created: {} is not a directory; {fix}",
                            ancestor.display()
                        ))
                    }
                    Err(_) => continue,
                }
            }
        }
    }
}

/// `run` tightens an existing snapshot directory to 0700; only its owner (or root) can.
fn tightenable(dir: &Path) -> Result<(), String> {
    let Ok(meta) = std::fs::metadata(dir) else {
        return Ok(());
    };
    let mode = meta.permissions().mode() & 0o7777;
    let euid = effective_uid();
    if mode & 0o077 != 0 && euid != Some(0) && euid != Some(meta.uid()) {
        return Err(format!(
            "`audit.snapshot_dir` = {} has mode {mode:04o} and belongs to uid {}, so it cannot \
             be tightened to 0700 at start; run `chmod 700 {}` as its owner (or `chown \
             facelock {}`)",
            dir.display(),
            meta.uid(),
            dir.display(),
            dir.display()
        ));
    }
    Ok(())
}

/// The effective uid of this process.
fn effective_uid() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let ids = status.lines().find_map(|l| l.strip_prefix("Uid:"))?;
    ids.split_whitespace().nth(1)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use recognition::artifact::{self, ClassifierMeta, HeadParams, Thresholds};
    use recognition::signature;

    /// A lock installation in a temporary folder whose configuration passes every check
    /// except the models (there are none in unit tests).
    struct Install {
        dir: tempfile::TempDir,
        key: signature::SigningKey,
    }

    fn classifier(created: &str, labels: &[&str]) -> Vec<u8> {
        let dim = 4;
        let meta = ClassifierMeta {
            labels: labels.iter().map(|l| l.to_string()).collect(),
            thresholds: Thresholds {
                min_probability: 0.5,
                min_similarity: 0.5,
            },
            embedder_sha256: "00".into(),
            embedding_size: dim,
            created: created.into(),
            photos_per_person: Default::default(),
            notes: Default::default(),
            crop_margin: 0.0,
            detector_min_face_px: 20.0,
            pipeline_version: artifact::PIPELINE_VERSION,
        };
        let head = HeadParams {
            weights: vec![0.1; dim * labels.len()],
            bias: vec![0.0; labels.len()],
            centroids: vec![0.5; dim * labels.len()],
        };
        artifact::encode(&meta, &head, &[])
    }

    const GOOD: &str = r#"
[camera]
replay_dir = "frames"
[recognition]
classifier = "classifier.onnx"
model_dir = "models"
[relay]
backend = "sim"
sim_log = "relay.log"
[audit]
log = "log/audit.jsonl"
snapshots = true
snapshot_dir = "snapshots"
[security]
trusted_key = "trusted.pub"
[state]
dir = "state"
"#;

    impl Install {
        fn new() -> Install {
            let dir = tempfile::tempdir().unwrap();
            let keys = signature::keygen();
            let key = signature::signing_key_from_pem(&keys.private_pem, Path::new("k")).unwrap();
            std::fs::write(dir.path().join("trusted.pub"), &keys.public_pem).unwrap();
            std::fs::create_dir(dir.path().join("frames")).unwrap();
            image::RgbImage::new(8, 8)
                .save(dir.path().join("frames/0001.png"))
                .unwrap();
            let install = Install { dir, key };
            install.classifier("2026-02-01T00:00:00Z");
            install.config(GOOD);
            install
        }

        fn path(&self, name: &str) -> PathBuf {
            self.dir.path().join(name)
        }

        fn classifier(&self, created: &str) {
            let signed = signature::sign(&classifier(created, &["ada", "bob"]), &self.key);
            std::fs::write(self.path("classifier.onnx"), signed).unwrap();
        }

        fn config(&self, text: &str) {
            std::fs::write(self.path("lock.toml"), text).unwrap();
        }

        fn problems(&self) -> Vec<String> {
            check(&self.path("lock.toml"), Models::Skip).problems
        }
    }

    #[test]
    fn a_complete_installation_passes() {
        let install = Install::new();
        assert_eq!(install.problems(), Vec::<String>::new());
    }

    #[test]
    fn configurations_that_run_rejects_are_rejected_with_their_fix() {
        type Setup = fn(&Install);
        let cases: Vec<(&str, Setup, &str)> = vec![
            (
                "no trusted key",
                |i| i.config(&GOOD.replace("trusted_key = \"trusted.pub\"", "")),
                "`security.trusted_key` is not set",
            ),
            (
                "trusted key missing",
                |i| std::fs::remove_file(i.path("trusted.pub")).unwrap(),
                "cannot read key file",
            ),
            (
                "trusted key is not a key",
                |i| std::fs::write(i.path("trusted.pub"), "hello").unwrap(),
                "trainer keygen",
            ),
            (
                "classifier missing",
                |i| std::fs::remove_file(i.path("classifier.onnx")).unwrap(),
                "cannot read classifier",
            ),
            (
                "classifier unsigned",
                |i| {
                    let bytes = classifier("2026-02-01T00:00:00Z", &["ada"]);
                    std::fs::write(i.path("classifier.onnx"), bytes).unwrap()
                },
                "unsigned",
            ),
            (
                "classifier tampered",
                |i| {
                    let mut bytes = std::fs::read(i.path("classifier.onnx")).unwrap();
                    let middle = bytes.len() / 2;
                    bytes[middle] ^= 1;
                    std::fs::write(i.path("classifier.onnx"), bytes).unwrap()
                },
                "signature does not match",
            ),
            (
                "classifier truncated",
                |i| {
                    let bytes = std::fs::read(i.path("classifier.onnx")).unwrap();
                    std::fs::write(i.path("classifier.onnx"), &bytes[..bytes.len() / 2]).unwrap()
                },
                "classifier.onnx refused",
            ),
            (
                "classifier made with another crop margin than the lock's",
                |i| {
                    i.config(&GOOD.replace(
                        "model_dir = \"models\"",
                        "model_dir = \"models\"\ncrop_margin = 0.2",
                    ))
                },
                "was made with crop margin 0, but this pipeline uses 0.2",
            ),
            (
                "classifier older than the one in service",
                |i| {
                    record_in_service(i, "2026-03-01T00:00:00Z");
                },
                "older than the classifier in service",
            ),
            (
                "state file corrupt",
                |i| {
                    std::fs::create_dir_all(i.path("state")).unwrap();
                    std::fs::write(i.path("state/classifier.json"), "{").unwrap()
                },
                "is corrupt",
            ),
            (
                "state dir cannot be created",
                |i| i.config(&GOOD.replace("dir = \"state\"", "dir = \"trusted.pub/state\"")),
                "`state.dir`",
            ),
            (
                "audit log cannot be created",
                |i| {
                    std::fs::write(i.path("log"), "").unwrap();
                },
                "`audit.log`",
            ),
            (
                "audit log is a directory",
                |i| std::fs::create_dir_all(i.path("log/audit.jsonl")).unwrap(),
                "is a directory",
            ),
            (
                "snapshot dir is a file",
                |i| std::fs::write(i.path("snapshots"), "").unwrap(),
                "`audit.snapshot_dir`",
            ),
            (
                "sim relay log cannot be created",
                |i| {
                    i.config(
                        &GOOD.replace("sim_log = \"relay.log\"", "sim_log = \"frames/0001.png/x\""),
                    )
                },
                "`relay.sim_log`",
            ),
            (
                "replay dir missing",
                |i| std::fs::remove_dir_all(i.path("frames")).unwrap(),
                "cannot replay",
            ),
            (
                "replay dir empty",
                |i| std::fs::remove_file(i.path("frames/0001.png")).unwrap(),
                "holds no .jpg",
            ),
            (
                "camera device missing",
                |i| {
                    i.config(
                        &GOOD.replace("replay_dir = \"frames\"", "device = \"/dev/video-missing\""),
                    )
                },
                "no camera at /dev/video-missing",
            ),
            (
                "camera device is not a device",
                |i| {
                    let device = format!("device = \"{}\"", i.path("trusted.pub").display());
                    i.config(&GOOD.replace("replay_dir = \"frames\"", &device))
                },
                "not a device node",
            ),
            (
                "MJPEG pipe missing",
                |i| i.config(&GOOD.replace("replay_dir = \"frames\"", "mjpeg_pipe = \"cam.fifo\"")),
                "no camera stream at",
            ),
            (
                "a typo",
                |i| i.config(&GOOD.replace("snapshots = true", "snapshot = true")),
                "unknown field `snapshot`",
            ),
        ];
        for (what, setup, expected) in cases {
            let install = Install::new();
            setup(&install);
            let problems = install.problems();
            assert!(
                problems.iter().any(|p| p.contains(expected)),
                "{what}: expected a problem containing {expected:?}, got {problems:#?}"
            );
        }
    }

    fn record_in_service(install: &Install, created: &str) {
        let newer = signature::sign(&classifier(created, &["ada"]), &install.key);
        let state = StateDir::new(install.path("state"));
        let checked = state.check(None, &newer, created).unwrap();
        state.record(&checked).unwrap();
    }

    #[test]
    fn the_check_records_nothing_and_consumes_no_allowance() {
        let install = Install::new();
        assert!(install.problems().is_empty());
        assert!(!install.path("state").exists());
        record_in_service(&install, "2026-03-01T00:00:00Z");
        let state = StateDir::new(install.path("state"));
        let before = state.in_service().unwrap();
        let bytes = std::fs::read(install.path("classifier.onnx")).unwrap();
        state
            .allow(&crate::rollback::Allowance {
                file_sha256: recognition::models::sha256_hex(&bytes),
                created: "2026-02-01T00:00:00Z".into(),
                by: "uid 0".into(),
                time: "2026-03-02T00:00:00Z".into(),
            })
            .unwrap();
        // The allowed older file passes the check, and stays allowed.
        assert_eq!(install.problems(), Vec::<String>::new());
        assert!(state.allowance().unwrap().is_some());
        assert_eq!(state.in_service().unwrap(), before);
    }

    #[test]
    fn every_problem_is_reported_not_just_the_first() {
        let install = Install::new();
        std::fs::remove_dir_all(install.path("frames")).unwrap();
        std::fs::remove_file(install.path("classifier.onnx")).unwrap();
        let problems = install.problems();
        assert_eq!(problems.len(), 2, "{problems:#?}");
    }

    #[test]
    fn allow_unsigned_passes_with_a_warning() {
        let install = Install::new();
        install.config(&GOOD.replace("trusted_key = \"trusted.pub\"", "allow_unsigned = true"));
        let report = check(&install.path("lock.toml"), Models::Skip);
        assert!(report.ok(), "{:#?}", report.problems);
        assert!(
            report.warnings[0].contains("not checked"),
            "{:?}",
            report.warnings
        );
    }
}
