//! `trainer evaluate`: run an exported classifier over labelled photos and
//! measure it: closed-set accuracy, true- and false-accept rates, confusion.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::Result;
use recognition::{Classifier, FacePipeline, Thresholds};
use serde::Serialize;

use crate::dataset::{serialize_path, Dataset, Skipped};
use crate::enroll::PhotoOptions;
use crate::train::embed_dataset;

/// The verdict on one photo.
#[derive(Debug, Clone, Serialize)]
pub struct PhotoResult {
    #[serde(serialize_with = "serialize_path")]
    pub path: PathBuf,
    /// Who the photo shows (its folder name).
    pub person: String,
    /// Whether that person is enrolled in the classifier.
    pub enrolled: bool,
    /// The classifier's answer: a name or `unknown`.
    pub predicted: String,
    /// The most likely enrolled person, before the gate.
    pub nearest: String,
    pub probability: f32,
    pub similarity: f32,
    pub faces: usize,
}

impl PhotoResult {
    pub fn genuine_accepted(&self) -> bool {
        self.enrolled && self.predicted == self.person
    }

    /// Accepted as somebody they are not (an impostor let in, or an enrolled
    /// person taken for a colleague).
    pub fn false_accept(&self) -> bool {
        self.predicted != "unknown" && self.predicted != self.person
    }
}

/// All the numbers of one evaluation.
#[derive(Debug, Clone, Serialize)]
pub struct Evaluation {
    pub classifier_labels: Vec<String>,
    pub thresholds: Thresholds,
    pub photos: Vec<PhotoResult>,
    pub skipped: Vec<Skipped>,
    pub enrolled_photos: usize,
    pub impostor_photos: usize,
    /// Enrolled photos whose nearest person is right (no gate).
    pub closed_set_accuracy: f64,
    /// Enrolled photos accepted as the right person.
    pub true_accept_rate: f64,
    /// Impostor photos (people not enrolled) accepted as anybody.
    pub false_accept_rate: f64,
    /// Enrolled photos accepted as somebody else.
    pub misidentified: usize,
    /// `confusion[true person][answer]` = count.
    pub confusion: BTreeMap<String, BTreeMap<String, usize>>,
}

fn ratio(a: usize, b: usize) -> f64 {
    if b == 0 {
        f64::NAN
    } else {
        a as f64 / b as f64
    }
}

/// Scores every photo of `images` (labelled by folder) and, optionally, of
/// `unknown` (people who must not get in), with the default photo limits.
pub fn evaluate(
    pipeline: &FacePipeline,
    classifier: &Classifier,
    images: &std::path::Path,
    unknown: Option<&std::path::Path>,
    cache_dir: Option<&std::path::Path>,
    progress: bool,
) -> Result<Evaluation> {
    evaluate_with(
        pipeline,
        classifier,
        images,
        unknown,
        cache_dir,
        &PhotoOptions::default(),
        progress,
    )
}

/// [`evaluate`] with the given photo limits.
pub fn evaluate_with(
    pipeline: &FacePipeline,
    classifier: &Classifier,
    images: &std::path::Path,
    unknown: Option<&std::path::Path>,
    cache_dir: Option<&std::path::Path>,
    photo_options: &PhotoOptions,
    progress: bool,
) -> Result<Evaluation> {
    let labels = classifier.labels().to_vec();
    let mut datasets = vec![(Dataset::people(images)?, false)];
    if let Some(dir) = unknown {
        datasets.push((Dataset::anyone(dir)?, true));
    }
    let mut photos = Vec::new();
    let mut skipped = Vec::new();
    for (dataset, all_strangers) in datasets {
        let mut extraction = embed_dataset(pipeline, &dataset, cache_dir, photo_options, progress)?;
        // The door's rule: the largest face is the candidate.
        crate::enroll::largest_faces(&mut extraction);
        skipped.append(&mut extraction.skipped);
        for e in extraction.embedded {
            let p = classifier.classify(&e.embedding)?;
            let enrolled = !all_strangers && labels.contains(&e.sample.person);
            photos.push(PhotoResult {
                path: e.sample.path,
                person: if all_strangers {
                    format!("(unknown) {}", e.sample.person)
                } else {
                    e.sample.person
                },
                enrolled,
                predicted: p.label().to_owned(),
                nearest: p.nearest,
                probability: p.probability,
                similarity: p.similarity,
                faces: e.faces,
            });
        }
    }
    Ok(summarise(
        labels,
        classifier.meta().thresholds,
        photos,
        skipped,
    ))
}

/// Computes the rates and the confusion matrix from per-photo results.
pub fn summarise(
    classifier_labels: Vec<String>,
    thresholds: Thresholds,
    photos: Vec<PhotoResult>,
    skipped: Vec<Skipped>,
) -> Evaluation {
    let enrolled: Vec<&PhotoResult> = photos.iter().filter(|p| p.enrolled).collect();
    let impostors: Vec<&PhotoResult> = photos.iter().filter(|p| !p.enrolled).collect();
    let mut confusion: BTreeMap<String, BTreeMap<String, usize>> = BTreeMap::new();
    for p in &photos {
        let row = if p.enrolled {
            p.person.clone()
        } else {
            "(not enrolled)".to_owned()
        };
        *confusion
            .entry(row)
            .or_default()
            .entry(p.predicted.clone())
            .or_insert(0) += 1;
    }
    Evaluation {
        closed_set_accuracy: ratio(
            enrolled.iter().filter(|p| p.nearest == p.person).count(),
            enrolled.len(),
        ),
        true_accept_rate: ratio(
            enrolled.iter().filter(|p| p.genuine_accepted()).count(),
            enrolled.len(),
        ),
        false_accept_rate: ratio(
            impostors.iter().filter(|p| p.false_accept()).count(),
            impostors.len(),
        ),
        misidentified: enrolled.iter().filter(|p| p.false_accept()).count(),
        enrolled_photos: enrolled.len(),
        impostor_photos: impostors.len(),
        classifier_labels,
        thresholds,
        photos,
        skipped,
        confusion,
    }
}
