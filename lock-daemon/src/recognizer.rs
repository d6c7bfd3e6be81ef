//! The recognition step behind one seam: the [`Recognizer`] trait that the service
//! loop drives, and [`PipelineRecognizer`], the real one (MTCNN + FaceNet + the signed
//! classifier file).
//!
//! Every classifier, at start, on reload and on upload, goes through one trust path
//! ([`check_classifier`], then [`accept`]): recognition's
//! ([`Classifier::from_trusted_bytes`], the one the trainer uses too: the signature when a
//! key is configured, the pipeline version, crop margin and detector minimum face it was
//! made with, the embedder it was trained for), then the rollback rule (`rollback.rs`):
//! never older than the classifier in service, unless an administrator allowed exactly that
//! file.
//!
//! A classifier made with another `recognition.crop_margin` or
//! `recognition.detector_min_face_px` than the lock's, or by another pipeline version, is
//! refused (at start the daemon does not run; on reload the old classifier stays), with an
//! error naming both values and the fix: set the lock's value to the classifier's, or
//! retrain with the lock's. The lock does not adopt the recorded values: its settings are
//! what the operator chose (the detector's minimum face sets its speed), and a silent
//! change would hide that the two sides disagree.

use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};

use anyhow::{Context, Result};
use image::RgbImage;
use recognition::classify::{Expected, Prediction};
use recognition::detect::BBox;
use recognition::photo::{DecodeLimits, DETECT_MAX_SIDE, MAX_PHOTO_SIDE};
use recognition::{Classifier, FacePipeline, ModelDir, PipelineConfig, Recognized};
use serde::Serialize;

use crate::audit::{self, Event, Record};
use crate::camera;
use crate::config::{AuditSettings, Settings};
use crate::rollback::{Stamp, StateDir, Verdict};

/// What recognising one frame found.
#[derive(Debug, Clone, Default)]
pub struct FrameResult {
    /// Every face at least `min_face_px`, largest first.
    pub faces: Vec<Recognized>,
    /// The faces found but below `min_face_px`.
    pub small: Vec<recognition::Face>,
    /// How long detection and embedding (with classification) took, when measured.
    pub stages: Option<(std::time::Duration, std::time::Duration)>,
}

/// Recognises frames on a worker thread of the frame pipeline (`service/pool.rs`), with
/// the recognizer's models and whatever classifier is in service when the frame starts.
/// Several workers recognise different frames at once, each single-threaded.
pub trait FrameWorker: Send {
    fn recognize(&mut self, frame: &RgbImage) -> Result<FrameResult>;
}

/// The whole recognition step as one call, so the loop can be driven by a
/// scripted fake in tests.
pub trait Recognizer {
    /// Every face in the frame that is at least the minimum size, largest first.
    fn recognize(&mut self, frame: &RgbImage) -> Result<Vec<Recognized>>;
    /// Loads a new classifier; on error the current one stays in service.
    fn reload(&mut self) -> Result<String>;
    /// The enrolled people.
    fn labels(&self) -> Vec<String>;
    /// What the status shows about the classifier in service.
    fn info(&self) -> ClassifierInfo {
        ClassifierInfo {
            people: self.labels(),
            ..ClassifierInfo::default()
        }
    }
    /// How long detection and embedding (with classification) took on the last frame, for
    /// the metrics, when this recognizer measures them.
    fn stage_times(&self) -> Option<(std::time::Duration, std::time::Duration)> {
        None
    }
    /// The faces of the last frame that were too small to recognise (for the live
    /// preview, which shows installers each face's size against `min_face_px`).
    fn small_faces(&self) -> Vec<recognition::Face> {
        Vec::new()
    }
    /// A handle that recognises uploaded photos with the same models and classifier
    /// (the HTTP API's `recognize`), when this recognizer has one.
    fn photos(&self) -> Option<PhotoRecognizer> {
        None
    }
    /// A worker that recognises frames on another thread, for running several frames at
    /// once (`recognition.workers`); `None` when this recognizer can only run on the
    /// vision thread.
    fn worker(&self) -> Option<Box<dyn FrameWorker>> {
        None
    }
}

/// The classifier in service, as the status shows it.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ClassifierInfo {
    pub people: Vec<String>,
    /// When the trainer made it (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    /// sha256 of the file as loaded (signature included).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// The id of the trusted key its signature was checked against (`None`: unsigned
    /// classifiers are allowed and no key is configured).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signer_key_id: Option<String>,
    /// The gate's thresholds (for the data collector's margin).
    #[serde(skip)]
    pub thresholds: Option<recognition::Thresholds>,
}

impl ClassifierInfo {
    fn of(classifier: &Classifier, sha256: &str, trusted_key: Option<&Path>) -> ClassifierInfo {
        ClassifierInfo {
            people: classifier.labels().to_vec(),
            created: Some(classifier.meta().created.clone()),
            sha256: Some(sha256.to_owned()),
            signer_key_id: trusted_key
                .and_then(|k| recognition::signature::read_verifying_key(k).ok())
                .map(|k| recognition::signature::key_id(&k)),
            thresholds: Some(classifier.meta().thresholds),
        }
    }
}

/// Recognises uploaded photos with the daemon's loaded models and the classifier in
/// service, from any thread, without touching the vision thread's camera or the door:
/// detection, embedding and the gate exactly as `trainer recognize` runs them.
#[derive(Debug, Clone)]
pub struct PhotoRecognizer {
    pipeline: Arc<FacePipeline>,
    /// The pipeline's detector with the trainer's default configuration (photos are not
    /// camera frames: faces of any size, anywhere).
    detector: Arc<recognition::Mtcnn>,
    classifier: Arc<RwLock<Arc<Classifier>>>,
}

/// One face in an uploaded photo.
#[derive(Debug, Clone, Serialize)]
pub struct PhotoFace {
    /// In the uploaded photo's pixels.
    #[serde(rename = "box")]
    pub bbox: BBox,
    pub prediction: Prediction,
    /// Every enrolled person's softmax probability, in the classifier's order.
    #[serde(skip)]
    pub probabilities: Vec<(String, f32)>,
}

/// What was found in an uploaded photo.
#[derive(Debug, Clone, Serialize)]
pub struct PhotoResult {
    pub width: u32,
    pub height: u32,
    pub faces: Vec<PhotoFace>,
}

impl PhotoRecognizer {
    pub fn pipeline(&self) -> &FacePipeline {
        &self.pipeline
    }

    /// The classifier in service now.
    pub fn classifier(&self) -> Arc<Classifier> {
        self.classifier
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Decodes a JPEG or PNG (refused before decoding when larger than the trainer's photo
    /// limit), scales it down for detection like `trainer recognize`, and classifies every
    /// face, largest first. `Err` carries what is wrong with the image.
    pub fn recognize_bytes(&self, bytes: &[u8]) -> Result<PhotoResult, PhotoError> {
        let image =
            recognition::photo::decode_rgb_limited(bytes, &DecodeLimits::photos(MAX_PHOTO_SIDE))
                .map_err(PhotoError::Image)?;
        let (width, height) = image.dimensions();
        let photo = recognition::photo::Photo {
            image: recognition::photo::shrink_to(image, DETECT_MAX_SIDE),
            original: (width, height),
        };
        let classifier = self.classifier();
        let failed = |e: recognition::Error| PhotoError::Recognition(e.to_string());
        // What `FacePipeline::recognize` does, with the photo detector: largest first.
        let mut detected = self.detector.detect(&photo.image).map_err(failed)?;
        detected.sort_by(|a, b| b.bbox.area().total_cmp(&a.bbox.area()));
        let faces = detected
            .into_iter()
            .map(|face| {
                let embedding = self
                    .pipeline
                    .embed_face(&photo.image, &face)
                    .map_err(failed)?;
                let scores = classifier.scores(&embedding).map_err(failed)?;
                let prediction = classifier.decide(&scores);
                let probabilities = classifier
                    .labels()
                    .iter()
                    .cloned()
                    .zip(scores.probabilities.iter().copied())
                    .collect();
                Ok(PhotoFace {
                    bbox: photo.to_original(&face.bbox),
                    prediction,
                    probabilities,
                })
            })
            .collect::<Result<_, PhotoError>>()?;
        Ok(PhotoResult {
            width,
            height,
            faces,
        })
    }
}

/// Why an uploaded photo could not be recognised.
#[derive(Debug, Clone, PartialEq)]
pub enum PhotoError {
    /// Not a JPEG/PNG, corrupt, truncated or too large (a client error).
    Image(String),
    /// The networks failed on it.
    Recognition(String),
}

/// A classifier file that passed every trust check, not yet in service.
#[derive(Debug)]
pub struct Trusted {
    pub path: PathBuf,
    pub classifier: Classifier,
    pub rollback: crate::rollback::Checked,
    /// sha256 of the file's bytes as checked.
    pub sha256: String,
}

/// Reads a classifier file once and runs every trust check on those bytes: recognition's
/// trust path ([`Classifier::from_trusted_bytes`]: the signature when a key is configured,
/// the pipeline version and settings, the embedder), then the rollback rule against
/// `in_service` (the classifier in service; at start, the one recorded in the state
/// directory), which consults a pending `allow-downgrade`. Writes nothing: [`accept`] puts
/// it into service.
pub fn check_classifier(
    path: &Path,
    trusted_key: Option<&Path>,
    pipeline: &FacePipeline,
    state: &StateDir,
    in_service: Option<&Stamp>,
) -> Result<Trusted> {
    let bytes = read_classifier(path)?;
    let (classifier, rollback, sha256) = trust_checks(
        path,
        &bytes,
        trusted_key,
        Against::Pipeline(pipeline),
        state,
        in_service,
    )?;
    Ok(Trusted {
        path: path.to_owned(),
        classifier: classifier.expect("checked against a pipeline"),
        rollback,
        sha256,
    })
}

/// The trust checks that need no models: everything [`check_classifier`] checks except the
/// embedder (for `check-config` when the models themselves are the problem). `config` is
/// the pipeline the lock would run (`recognition.pipeline_config()`).
pub fn check_classifier_without_models(
    path: &Path,
    trusted_key: Option<&Path>,
    config: &PipelineConfig,
    state: &StateDir,
    in_service: Option<&Stamp>,
) -> Result<crate::rollback::Checked> {
    let bytes = read_classifier(path)?;
    Ok(trust_checks(
        path,
        &bytes,
        trusted_key,
        Against::Settings(config),
        state,
        in_service,
    )?
    .1)
}

fn read_classifier(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("cannot read classifier {}", path.display()))
}

/// What a classifier is checked against: the loaded pipeline (embedder and settings), or,
/// without the models, its settings only.
#[derive(Debug, Clone, Copy)]
enum Against<'a> {
    Pipeline(&'a FacePipeline),
    Settings(&'a PipelineConfig),
}

/// Recognition's trust path on bytes already read, then the rollback rule; `path` names
/// them in messages. Returns the classifier (when checked against a pipeline), the
/// rollback verdict and the sha256 of the bytes.
fn trust_checks(
    path: &Path,
    bytes: &[u8],
    trusted_key: Option<&Path>,
    against: Against,
    state: &StateDir,
    in_service: Option<&Stamp>,
) -> Result<(Option<Classifier>, crate::rollback::Checked, String)> {
    let key = trusted_key
        .map(recognition::signature::read_verifying_key)
        .transpose()?;
    let (classifier, created) = match against {
        Against::Pipeline(pipeline) => {
            let classifier =
                Classifier::from_trusted_bytes(path, bytes, key.as_ref(), &Expected::of(pipeline))?;
            let created = classifier.meta().created.clone();
            (Some(classifier), created)
        }
        Against::Settings(config) => {
            let meta =
                recognition::classify::check_without_models(path, bytes, key.as_ref(), config)?;
            (None, meta.created)
        }
    };
    let rollback = state
        .check(in_service, bytes, &created)
        .with_context(|| format!("classifier {} refused", path.display()))?;
    let sha256 = {
        use sha2::Digest as _;
        hex::encode(sha2::Sha256::digest(bytes))
    };
    Ok((classifier, rollback, sha256))
}

/// Why an uploaded classifier was not put into place.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum InstallError {
    /// It failed a trust check (signature, embedder, rollback) or is not a classifier.
    #[error("{0}")]
    Refused(String),
    /// It passed, but could not be written (the lock's problem, not the file's).
    #[error("{0}")]
    Write(String),
}

/// A classifier file uploaded over the HTTP API and written into place.
#[derive(Debug, Clone, PartialEq)]
pub struct Installed {
    pub people: Vec<String>,
    pub created: String,
    /// sha256 of the file.
    pub sha256: String,
}

/// Puts uploaded classifier bytes where `recognition.classifier` points, after the checks
/// a file copied into place gets at reload: the signature (when a key is configured), the
/// embedder, and the rollback rule against the classifier in service. Written under a
/// temporary name in the same directory, flushed, then renamed over the old file, so the
/// vision thread never reads half a file. A refused upload leaves nothing behind and the
/// old file in place. The caller then asks for a reload, which checks the file again and
/// puts it into service.
pub fn install_classifier(
    settings: &Settings,
    pipeline: &FacePipeline,
    bytes: &[u8],
) -> Result<Installed, InstallError> {
    use std::io::Write as _;
    let target = &settings.recognition.classifier;
    let shown = Path::new("(uploaded)");
    let state = StateDir::new(&settings.state.dir);
    let in_service = state
        .in_service()
        .map_err(|e| InstallError::Write(format!("{e:#}")))?;
    let (classifier, _, sha256) = trust_checks(
        shown,
        bytes,
        settings.security.trusted_key.as_deref(),
        Against::Pipeline(pipeline),
        &state,
        in_service.as_ref(),
    )
    .map_err(|e| InstallError::Refused(format!("{e:#}")))?;
    let classifier = classifier.expect("a pipeline was given");
    let dir = target
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    // An ordinary file (0666 less the umask), as a classifier copied into place would be.
    if let Err(e) = recognition::atomic::replace_file(target, 0o666, |f| f.write_all(bytes)) {
        return Err(InstallError::Write(format!(
            "cannot write {}: {e}; the service user needs write access to {} (see \
             lock-daemon-http.conf in docs/deployment.md)",
            target.display(),
            dir.display()
        )));
    }
    Ok(Installed {
        people: classifier.labels().to_vec(),
        created: classifier.meta().created.clone(),
        sha256,
    })
}

/// Records a checked classifier as the one in service (state file; an allowance it used is
/// consumed). A deliberate downgrade is logged and audited first; if it cannot be audited it
/// is refused. Returns the classifier and, for a downgrade, a note for the reload message.
pub fn accept(
    trusted: Trusted,
    state: &StateDir,
    in_service: Option<&Stamp>,
    audit_settings: &AuditSettings,
) -> Result<(Classifier, Stamp, Option<String>)> {
    let Trusted {
        path,
        classifier,
        rollback,
        sha256: _,
    } = trusted;
    let mut note = None;
    if let Verdict::AllowedDowngrade(allowance) = &rollback.verdict {
        let text = format!(
            "older classifier {} put into service as allowed by {} at {}: created {} (the one \
             in service was created {}), enrolled: {}",
            path.display(),
            allowance.by,
            allowance.time,
            rollback.stamp.created,
            in_service.map_or("?", |s| s.created.as_str()),
            classifier.labels().join(", ")
        );
        log::warn!("{text}");
        audit::append(
            audit_settings,
            &Record::new(Event::Downgrade).message(&text),
        )
        .context("a deliberate downgrade must be audited; it was not put into service")?;
        note = Some(format!(
            "downgrade allowed by {}, created {}",
            allowance.by, rollback.stamp.created
        ));
    }
    state
        .record(&rollback)
        .with_context(|| format!("classifier {} not put into service", path.display()))?;
    Ok((classifier, rollback.stamp, note))
}

/// The real recognizer: MTCNN + FaceNet + the classifier file.
#[derive(Debug)]
pub struct PipelineRecognizer {
    pipeline: Arc<FacePipeline>,
    classifier: Arc<Classifier>,
    /// The detector with the trainer's defaults, for [`PhotoRecognizer`]s.
    photo_detector: Arc<recognition::Mtcnn>,
    /// The classifier in service, shared with [`PhotoRecognizer`]s.
    shared: Arc<RwLock<Arc<Classifier>>>,
    info: ClassifierInfo,
    /// Detection and embedding times of the last frame.
    last_stages: Option<(std::time::Duration, std::time::Duration)>,
    /// The last frame's faces below `min_face_px`.
    small: Vec<recognition::Face>,
    classifier_path: PathBuf,
    trusted_key: Option<PathBuf>,
    min_face_px: f32,
    state: StateDir,
    in_service: Stamp,
    audit: AuditSettings,
    warnings: Vec<String>,
}

impl PipelineRecognizer {
    /// Loads the models and the classifier, and prepares the detector for the
    /// camera's frame size. Without a trusted key (`security.allow_unsigned`), logs a
    /// warning and appends it to the audit log.
    pub fn load(settings: &Settings) -> Result<PipelineRecognizer> {
        let warnings: Vec<String> = settings.security.unsigned_warning().into_iter().collect();
        for warning in &warnings {
            log::warn!("{warning}");
            if let Err(e) = audit::append(
                &settings.audit,
                &Record::new(Event::Warning).message(warning),
            ) {
                log::warn!("{e}");
            }
        }
        let r = &settings.recognition;
        let models = ModelDir::open(&r.model_dir)?;
        let mut pipeline = FacePipeline::load_with(&models, r.pipeline_config(), r.precision)?;
        if r.precision_setting != "f32" {
            log::info!(
                "FaceNet computes in {} (recognition.precision = {})",
                r.precision,
                r.precision_setting
            );
        }
        let (w, h) = camera::rotated_size(&settings.camera);
        pipeline.mtcnn.prepare_for_frame_size(w, h)?;
        let trusted_key = settings.security.trusted_key.clone();
        let state = StateDir::new(&settings.state.dir);
        let recorded = state.in_service()?;
        let trusted = check_classifier(
            &r.classifier,
            trusted_key.as_deref(),
            &pipeline,
            &state,
            recorded.as_ref(),
        )?;
        let sha256 = trusted.sha256.clone();
        let (classifier, in_service, _) =
            accept(trusted, &state, recorded.as_ref(), &settings.audit)?;
        crate::memory::release_freed_heap();
        let info = ClassifierInfo::of(&classifier, &sha256, trusted_key.as_deref());
        let classifier = Arc::new(classifier);
        let photo_detector = Arc::new(pipeline.mtcnn.with_config(recognition::DetectorConfig {
            min_face_px: recognition::DetectorConfig::default().min_face_px,
            ..pipeline.mtcnn.config().clone()
        }));
        Ok(PipelineRecognizer {
            photo_detector,
            pipeline: Arc::new(pipeline),
            shared: Arc::new(RwLock::new(classifier.clone())),
            classifier,
            info,
            last_stages: None,
            small: Vec::new(),
            classifier_path: r.classifier.clone(),
            trusted_key,
            min_face_px: r.min_face_px,
            state,
            in_service,
            audit: settings.audit.clone(),
            warnings,
        })
    }

    pub fn classifier(&self) -> &Classifier {
        &self.classifier
    }

    /// Warnings about the configuration, already logged and audited at load (for STATUS or
    /// the start record).
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }
}

/// Detection, then embedding and classification of every face of at least `min_face_px`:
/// what [`FacePipeline::recognize`] does, in two timed steps. The one frame path of both
/// the vision thread and the pipeline's workers.
fn recognize_frame(
    pipeline: &FacePipeline,
    classifier: &Classifier,
    min_face_px: f32,
    frame: &RgbImage,
) -> Result<FrameResult> {
    let started = std::time::Instant::now();
    let faces = pipeline.detect(frame)?;
    let detected = started.elapsed();
    let (big, small): (Vec<_>, Vec<_>) = faces
        .into_iter()
        .partition(|f| f.bbox.side() >= min_face_px);
    let faces = big
        .into_iter()
        .map(|face| {
            let embedding = pipeline.embed_face(frame, &face)?;
            Ok(Recognized {
                prediction: classifier.classify(&embedding)?,
                face,
            })
        })
        .collect::<recognition::Result<Vec<_>>>()?;
    Ok(FrameResult {
        faces,
        small,
        stages: Some((detected, started.elapsed() - detected)),
    })
}

/// [`PipelineRecognizer`]'s worker: the same models, and the classifier in service read
/// at the start of each frame (so a reload reaches every worker).
struct PipelineWorker {
    pipeline: Arc<FacePipeline>,
    classifier: Arc<RwLock<Arc<Classifier>>>,
    min_face_px: f32,
}

impl FrameWorker for PipelineWorker {
    fn recognize(&mut self, frame: &RgbImage) -> Result<FrameResult> {
        let classifier = self
            .classifier
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        recognize_frame(&self.pipeline, &classifier, self.min_face_px, frame)
    }
}

impl Recognizer for PipelineRecognizer {
    fn recognize(&mut self, frame: &RgbImage) -> Result<Vec<Recognized>> {
        let result = recognize_frame(&self.pipeline, &self.classifier, self.min_face_px, frame)?;
        self.small = result.small;
        self.last_stages = result.stages;
        Ok(result.faces)
    }

    fn stage_times(&self) -> Option<(std::time::Duration, std::time::Duration)> {
        self.last_stages
    }

    fn small_faces(&self) -> Vec<recognition::Face> {
        self.small.clone()
    }

    fn reload(&mut self) -> Result<String> {
        let trusted = check_classifier(
            &self.classifier_path,
            self.trusted_key.as_deref(),
            &self.pipeline,
            &self.state,
            Some(&self.in_service),
        )?;
        let sha256 = trusted.sha256.clone();
        let (classifier, stamp, note) =
            accept(trusted, &self.state, Some(&self.in_service), &self.audit)?;
        self.info = ClassifierInfo::of(&classifier, &sha256, self.trusted_key.as_deref());
        self.classifier = Arc::new(classifier);
        *self.shared.write().unwrap_or_else(PoisonError::into_inner) = self.classifier.clone();
        self.in_service = stamp;
        let labels = self.classifier.labels().join(", ");
        Ok(match note {
            Some(note) => format!("{labels} ({note})"),
            None => labels,
        })
    }

    fn labels(&self) -> Vec<String> {
        self.classifier.labels().to_vec()
    }

    fn info(&self) -> ClassifierInfo {
        self.info.clone()
    }

    fn worker(&self) -> Option<Box<dyn FrameWorker>> {
        Some(Box::new(PipelineWorker {
            pipeline: self.pipeline.clone(),
            classifier: self.shared.clone(),
            min_face_px: self.min_face_px,
        }))
    }

    fn photos(&self) -> Option<PhotoRecognizer> {
        Some(PhotoRecognizer {
            detector: self.photo_detector.clone(),
            pipeline: self.pipeline.clone(),
            classifier: self.shared.clone(),
        })
    }
}
