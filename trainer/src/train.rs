//! `trainer train`: enrol the photos, fit the head, calibrate the gate, export.
//!
//! Copies of a photo count once: photos of one person with the same content, or whose
//! embeddings are near-identical (cosine above [`DUPLICATE_SIMILARITY`]), are one photo
//! for the head, the gate's calibration and the per-person counts, so a folder of copies
//! neither pulls the gate to "similarity 1.00" nor lets cross-validation test a photo on
//! its own copy. A photo that sits in two people's folders is used for neither.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use recognition::{artifact, ClassifierMeta, FacePipeline};

use crate::dataset::{shown, Dataset, Skipped};
use crate::duplicates::{find_copies, Duplicate};
use crate::enroll::{extract, EmbeddingCache, Extraction, PhotoOptions};
use crate::fit::{fit, FitOptions, Head};
use crate::gate::{calibrate, choose, Choice};

/// Fewer usable photos than this per person gives a warning.
pub const MIN_PHOTOS_WARNING: usize = 5;

/// Two photos of a person whose embeddings are more similar than this are taken for
/// copies of one photo. Measured on the sample set: the most similar genuinely different
/// photos of one person reach 0.964; a copy re-encoded at JPEG quality 70 reaches 0.982,
/// byte-identical copies 1.
pub const DUPLICATE_SIMILARITY: f32 = 0.975;

/// A person folder that gave no usable photo, with what was wrong with each file.
#[derive(Debug, Clone)]
pub struct UnusablePerson {
    pub person: String,
    pub folder: PathBuf,
    pub files: Vec<Skipped>,
}

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
    /// Photos left out because they are copies of another photo of the same person.
    pub copies: Vec<Duplicate>,
    /// Person folders without a single usable photo (not enrolled).
    pub unusable_people: Vec<UnusablePerson>,
    pub unknown_used: usize,
    /// The head as the calibration scored it (the same fit, in Rust); `bytes` holds its
    /// ONNX export, which the lock runs.
    pub head: Head,
    pub bytes: Vec<u8>,
}

/// Embeds photos through the shared cache (when enabled).
pub fn embed_dataset(
    pipeline: &FacePipeline,
    dataset: &Dataset,
    cache_dir: Option<&Path>,
    photos: &PhotoOptions,
    progress: bool,
) -> Result<Extraction> {
    let mut cache = cache_dir.map(|d| EmbeddingCache::open(d, pipeline, photos));
    let mut extraction = extract(pipeline, &dataset.samples, cache.as_mut(), photos, progress);
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

/// Trains a classifier with the default photo limits; writes nothing.
pub fn train(pipeline: &FacePipeline, options: &TrainOptions) -> Result<TrainReport> {
    train_with(pipeline, options, &PhotoOptions::default())
}

/// Trains a classifier; writes nothing.
pub fn train_with(
    pipeline: &FacePipeline,
    options: &TrainOptions,
    photos: &PhotoOptions,
) -> Result<TrainReport> {
    if options.folds < 2 {
        bail!(
            "cross-validation needs at least 2 folds, not {}",
            options.folds
        );
    }
    let dataset = Dataset::people(&options.images)?;
    let mut extraction = embed_dataset(
        pipeline,
        &dataset,
        options.cache_dir.as_deref(),
        photos,
        options.progress,
    )?;
    // A person's single-face photos decide which face of their group photos is theirs.
    crate::enroll::pick_by_person(&mut extraction);
    let copies = find_copies(&extraction, DUPLICATE_SIMILARITY);
    for c in &copies {
        log::warn!("{}: {}", shown(&c.path), c.reason());
    }
    let unusable_people = unusable_people(&dataset, &extraction, &copies);
    for u in &unusable_people {
        let why: Vec<String> = u
            .files
            .iter()
            .map(|s| format!("{}: {}", shown(&s.path), s.reason))
            .collect();
        log::warn!(
            "{} is not enrolled: folder {} has no usable photo{}{}",
            u.person,
            shown(&u.folder),
            if why.is_empty() {
                " (it is empty)"
            } else {
                ": "
            },
            why.join("; ")
        );
    }
    let used: Vec<&crate::enroll::Embedded> = {
        let left_out: std::collections::HashSet<&Path> =
            copies.iter().map(|c| c.path.as_path()).collect();
        extraction
            .embedded
            .iter()
            .filter(|e| !left_out.contains(e.sample.path.as_path()))
            .collect()
    };
    let labels: Vec<String> = {
        let mut l: Vec<String> = used.iter().map(|e| e.sample.person.clone()).collect();
        l.sort();
        l.dedup();
        l
    };
    if labels.is_empty() {
        bail!(
            "no usable face in any photo under {} ({} files skipped); see the list above",
            shown(&options.images),
            extraction.skipped.len()
        );
    }
    let ys: Vec<usize> = used
        .iter()
        .map(|e| {
            labels
                .binary_search(&e.sample.person)
                .expect("label listed")
        })
        .collect();
    let xs: Vec<&[f32]> = used.iter().map(|e| e.embedding.as_slice()).collect();

    let unknown_extraction = match &options.unknown {
        Some(dir) => Some(embed_dataset(
            pipeline,
            &Dataset::anyone(dir)?,
            options.cache_dir.as_deref(),
            photos,
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
    for e in &used {
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
    notes.insert("copies_left_out".into(), copies.len().to_string());
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
        // What the lock must match to see faces as they were seen here.
        crop_margin: pipeline.config.crop_margin,
        detector_min_face_px: pipeline.config.detector.min_face_px,
        pipeline_version: artifact::PIPELINE_VERSION,
    };
    let bytes = artifact::encode(&meta, &head.clone().into_params(), &[]);
    Ok(TrainReport {
        meta,
        choice,
        extraction,
        copies,
        unusable_people,
        unknown_used: unknown.len(),
        head,
        bytes,
    })
}

/// The person folders of `dataset` none of whose photos gave an embedding (copies of
/// another person's photo count as unusable).
fn unusable_people(
    dataset: &Dataset,
    extraction: &Extraction,
    copies: &[Duplicate],
) -> Vec<UnusablePerson> {
    let mut usable: HashMap<&str, usize> = HashMap::new();
    for e in &extraction.embedded {
        *usable.entry(e.sample.person.as_str()).or_default() += 1;
    }
    for c in copies.iter().filter(|c| c.other_person.is_some()) {
        if let Some(n) = usable.get_mut(c.person.as_str()) {
            *n -= 1;
        }
    }
    dataset
        .folders
        .iter()
        .filter(|(person, _)| usable.get(person.as_str()).copied().unwrap_or(0) == 0)
        .map(|(person, folder)| {
            let mut files: Vec<Skipped> = extraction
                .skipped
                .iter()
                .filter(|s| s.path.parent() == Some(folder.as_path()))
                .cloned()
                .collect();
            files.extend(
                copies
                    .iter()
                    .filter(|c| &c.person == person)
                    .map(|c| Skipped {
                        path: c.path.clone(),
                        reason: c.reason(),
                    }),
            );
            UnusablePerson {
                person: person.clone(),
                folder: folder.clone(),
                files,
            }
        })
        .collect()
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
