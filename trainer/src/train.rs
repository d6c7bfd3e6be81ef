//! `trainer train`: enrol the photos, fit the head, calibrate the gate, export.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use recognition::{artifact, ClassifierMeta, FacePipeline};

use crate::dataset::Dataset;
use crate::enroll::{extract, EmbeddingCache, Extraction};
use crate::fit::{fit, FitOptions};
use crate::gate::{calibrate, choose, Choice};

/// Fewer usable photos than this per person gives a warning.
pub const MIN_PHOTOS_WARNING: usize = 5;

/// Options of `trainer train`.
#[derive(Debug, Clone)]
pub struct TrainOptions {
    pub images: PathBuf,
    pub output: PathBuf,
    pub unknown: Option<PathBuf>,
    pub target_far: f64,
    pub tar_slack: f64,
    pub folds: usize,
    pub cache_dir: Option<PathBuf>,
    pub progress: bool,
}

/// What training produced, for the summary and for tests.
#[derive(Debug)]
pub struct TrainReport {
    pub meta: ClassifierMeta,
    pub choice: Choice,
    pub extraction: Extraction,
    pub unknown_used: usize,
    pub bytes: Vec<u8>,
}

/// Embeds photos through the shared cache (when enabled).
pub fn embed_dataset(
    pipeline: &FacePipeline,
    dataset: &Dataset,
    cache_dir: Option<&Path>,
    progress: bool,
) -> Result<Extraction> {
    let mut cache = cache_dir.map(|d| EmbeddingCache::open(d, pipeline));
    let mut extraction = extract(pipeline, &dataset.samples, cache.as_mut(), progress);
    if let Some(c) = cache.as_mut() {
        if let Err(e) = c.save() {
            log::warn!("embedding cache not saved: {e:#}");
        }
    }
    let mut skipped = dataset.skipped.clone();
    skipped.append(&mut extraction.skipped);
    extraction.skipped = skipped;
    Ok(extraction)
}

/// Trains a classifier; writes nothing.
pub fn train(pipeline: &FacePipeline, options: &TrainOptions) -> Result<TrainReport> {
    let dataset = Dataset::people(&options.images)?;
    let extraction = embed_dataset(
        pipeline,
        &dataset,
        options.cache_dir.as_deref(),
        options.progress,
    )?;
    let labels: Vec<String> = {
        let mut l: Vec<String> = extraction
            .embedded
            .iter()
            .map(|e| e.sample.person.clone())
            .collect();
        l.sort();
        l.dedup();
        l
    };
    if labels.is_empty() {
        bail!(
            "no usable face in any photo under {} ({} files skipped); see the list above",
            options.images.display(),
            extraction.skipped.len()
        );
    }
    let ys: Vec<usize> = extraction
        .embedded
        .iter()
        .map(|e| {
            labels
                .binary_search(&e.sample.person)
                .expect("label listed")
        })
        .collect();
    let xs: Vec<&[f32]> = extraction
        .embedded
        .iter()
        .map(|e| e.embedding.as_slice())
        .collect();

    let unknown_extraction = match &options.unknown {
        Some(dir) => Some(embed_dataset(
            pipeline,
            &Dataset::anyone(dir)?,
            options.cache_dir.as_deref(),
            options.progress,
        )?),
        None => None,
    };
    let unknown: Vec<&[f32]> = unknown_extraction
        .iter()
        .flat_map(|u| u.embedded.iter().map(|e| e.embedding.as_slice()))
        .collect();

    let fit_options = FitOptions::default();
    let calibration = calibrate(&xs, &ys, labels.len(), &unknown, options.folds, fit_options);
    if calibration.impostor.is_empty() {
        log::warn!(
            "only one person enrolled and no --unknown photos: the gate cannot be calibrated \
             against strangers; add --unknown <dir> with photos of people who must not get in"
        );
    }
    let choice = choose(&calibration, options.target_far, options.tar_slack);
    let head = fit(&xs, &ys, labels.len(), fit_options);

    let mut photos_per_person = BTreeMap::new();
    for e in &extraction.embedded {
        *photos_per_person
            .entry(e.sample.person.clone())
            .or_insert(0) += 1;
    }
    let mut notes = BTreeMap::new();
    notes.insert("folds".into(), options.folds.to_string());
    notes.insert(
        "cv_true_accept_rate".into(),
        format!("{:.4}", choice.true_accept_rate),
    );
    notes.insert(
        "cv_false_accept_rate".into(),
        format!("{:.4}", choice.false_accept_rate),
    );
    notes.insert(
        "cv_closed_set_accuracy".into(),
        format!("{:.4}", choice.closed_set_accuracy),
    );
    notes.insert(
        "genuine_scores".into(),
        calibration.genuine.len().to_string(),
    );
    notes.insert(
        "impostor_scores".into(),
        calibration.impostor.len().to_string(),
    );
    notes.insert("target_far".into(), options.target_far.to_string());
    notes.insert("tar_slack".into(), options.tar_slack.to_string());
    let meta = ClassifierMeta {
        labels,
        thresholds: choice.thresholds,
        embedder_sha256: pipeline.embedder.sha256().to_owned(),
        embedding_size: pipeline.embedder.dim(),
        created: now_rfc3339(),
        photos_per_person,
        notes,
    };
    let bytes = artifact::encode(&meta, &head.into_params(), &[]);
    Ok(TrainReport {
        meta,
        choice,
        extraction,
        unknown_used: unknown.len(),
        bytes,
    })
}

/// Writes the classifier file atomically.
pub fn write_classifier(path: &Path, bytes: &[u8]) -> Result<()> {
    artifact::write(path, bytes).with_context(|| format!("writing {}", path.display()))
}

/// Current UTC time as RFC 3339.
pub fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}
