//! The recognition step behind one seam: the [`Recognizer`] trait that the service
//! loop drives, and [`PipelineRecognizer`], the real one (MTCNN + FaceNet + the signed
//! classifier file).
//!
//! Every classifier, at start and on reload, goes through one trust path
//! ([`check_classifier`], then [`accept`]): its signature when a key is configured, the
//! embedder it was trained for, and the rollback rule (`rollback.rs`): never older than the
//! classifier in service, unless an administrator allowed exactly that file.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use image::RgbImage;
use recognition::{Classifier, FacePipeline, ModelDir, Recognized};

use crate::audit::{self, Event, Record};
use crate::camera;
use crate::config::{AuditSettings, Settings};
use crate::rollback::{Stamp, StateDir, Verdict};

/// The whole recognition step as one call, so the loop can be driven by a
/// scripted fake in tests.
pub trait Recognizer {
    /// Every face in the frame that is at least the minimum size, largest first.
    fn recognize(&mut self, frame: &RgbImage) -> Result<Vec<Recognized>>;
    /// Loads a new classifier; on error the current one stays in service.
    fn reload(&mut self) -> Result<String>;
    /// The enrolled people.
    fn labels(&self) -> Vec<String>;
}

/// Reads a classifier file once, checks its signature when a trusted key is
/// configured, and loads it from the same bytes (no check-then-reload race).
/// No rollback check: the daemon uses [`check_classifier`] and [`accept`].
pub fn load_classifier(
    path: &Path,
    trusted_key: Option<&Path>,
    pipeline: &FacePipeline,
) -> Result<Classifier> {
    let bytes = std::fs::read(path)
        .with_context(|| format!("cannot read classifier {}", path.display()))?;
    verified(path, &bytes, trusted_key, pipeline)
}

/// Signature (when a key is configured) and embedder checks on bytes already read.
fn verified(
    path: &Path,
    bytes: &[u8],
    trusted_key: Option<&Path>,
    pipeline: &FacePipeline,
) -> Result<Classifier> {
    verify_signature(path, bytes, trusted_key)?;
    Ok(Classifier::from_bytes(
        path,
        bytes,
        pipeline.embedder.sha256(),
        pipeline.embedder.dim(),
    )?)
}

fn verify_signature(path: &Path, bytes: &[u8], trusted_key: Option<&Path>) -> Result<()> {
    if let Some(key_path) = trusted_key {
        let key = recognition::signature::read_verifying_key(key_path)?;
        recognition::signature::verify(bytes, &key)
            .with_context(|| format!("classifier {} refused", path.display()))?;
    }
    Ok(())
}

/// A classifier file that passed every trust check, not yet in service.
#[derive(Debug)]
pub struct Trusted {
    pub path: PathBuf,
    pub classifier: Classifier,
    pub rollback: crate::rollback::Checked,
}

/// Reads a classifier file once and runs every trust check on those bytes: the signature
/// (when a key is configured), the embedder, and the rollback rule against `in_service`
/// (the classifier in service; at start, the one recorded in the state directory), which
/// consults a pending `allow-downgrade`. Writes nothing: [`accept`] puts it into service.
pub fn check_classifier(
    path: &Path,
    trusted_key: Option<&Path>,
    pipeline: &FacePipeline,
    state: &StateDir,
    in_service: Option<&Stamp>,
) -> Result<Trusted> {
    let (classifier, rollback) =
        trust_checks(path, trusted_key, Some(pipeline), state, in_service)?;
    Ok(Trusted {
        path: path.to_owned(),
        classifier: classifier.expect("a pipeline was given"),
        rollback,
    })
}

/// The trust checks that need no models: everything [`check_classifier`] checks except the
/// embedder (for `check-config` when the models themselves are the problem).
pub fn check_classifier_without_models(
    path: &Path,
    trusted_key: Option<&Path>,
    state: &StateDir,
    in_service: Option<&Stamp>,
) -> Result<crate::rollback::Checked> {
    Ok(trust_checks(path, trusted_key, None, state, in_service)?.1)
}

fn trust_checks(
    path: &Path,
    trusted_key: Option<&Path>,
    pipeline: Option<&FacePipeline>,
    state: &StateDir,
    in_service: Option<&Stamp>,
) -> Result<(Option<Classifier>, crate::rollback::Checked)> {
    let bytes = std::fs::read(path)
        .with_context(|| format!("cannot read classifier {}", path.display()))?;
    let (classifier, created) = match pipeline {
        Some(pipeline) => {
            let classifier = verified(path, &bytes, trusted_key, pipeline)?;
            let created = classifier.meta().created.clone();
            (Some(classifier), created)
        }
        None => {
            verify_signature(path, &bytes, trusted_key)?;
            let meta = recognition::artifact::meta_from_bytes(path, &bytes)?;
            (None, meta.created)
        }
    };
    let rollback = state
        .check(in_service, &bytes, &created)
        .with_context(|| format!("classifier {} refused", path.display()))?;
    Ok((classifier, rollback))
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
    pipeline: FacePipeline,
    classifier: Classifier,
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
        let mut pipeline = FacePipeline::load(&models, r.pipeline_config())?;
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
        let (classifier, in_service, _) =
            accept(trusted, &state, recorded.as_ref(), &settings.audit)?;
        crate::memory::release_freed_heap();
        Ok(PipelineRecognizer {
            pipeline,
            classifier,
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

impl Recognizer for PipelineRecognizer {
    fn recognize(&mut self, frame: &RgbImage) -> Result<Vec<Recognized>> {
        Ok(self
            .pipeline
            .recognize(frame, &self.classifier, self.min_face_px)?)
    }

    fn reload(&mut self) -> Result<String> {
        let trusted = check_classifier(
            &self.classifier_path,
            self.trusted_key.as_deref(),
            &self.pipeline,
            &self.state,
            Some(&self.in_service),
        )?;
        let (classifier, stamp, note) =
            accept(trusted, &self.state, Some(&self.in_service), &self.audit)?;
        self.classifier = classifier;
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
}
