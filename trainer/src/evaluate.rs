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
    /// For an error (a false reject or a false accept) evaluated with the enrolment photos:
    /// the enrolment photos nearest to this one, nearest first. They say why: another
    /// person's photo (mislabelled, or a look-alike), or none of the person's own photos
    /// like this one (light, glasses, angle).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub causes: Vec<Cause>,
}

/// An enrolment photo near an evaluated one.
#[derive(Debug, Clone, Serialize)]
pub struct Cause {
    #[serde(serialize_with = "serialize_path")]
    pub path: PathBuf,
    /// Whose folder it is in.
    pub person: String,
    /// Cosine between the two faces.
    pub similarity: f32,
}

/// How many enrolment photos an error is linked to.
const CAUSES: usize = 3;

impl PhotoResult {
    pub fn genuine_accepted(&self) -> bool {
        self.enrolled && self.predicted == self.person
    }

    /// Accepted as somebody they are not (an impostor let in, or an enrolled
    /// person taken for a colleague).
    pub fn false_accept(&self) -> bool {
        self.predicted != "unknown" && self.predicted != self.person
    }

    /// An enrolled person not let in as themselves.
    pub fn false_reject(&self) -> bool {
        self.enrolled && !self.genuine_accepted()
    }

    /// Why this error happened, in a sentence, from its causes (empty when it has none).
    pub fn diagnosis(&self) -> String {
        let Some(nearest) = self.causes.first() else {
            return String::new();
        };
        let own = self.causes.iter().find(|c| c.person == self.person);
        if nearest.person != self.person {
            format!(
                "looks most like {}'s enrolment photo {} ({:.2}): check that that photo \
                 shows {} and that this one shows {}",
                nearest.person,
                crate::dataset::shown(&nearest.path),
                nearest.similarity,
                nearest.person,
                self.person
            )
        } else if self.enrolled {
            format!(
                "its nearest enrolment photo is {}'s own, at only {:.2}: add photos of {} \
                 like this one (light, glasses, angle)",
                self.person,
                own.map_or(nearest.similarity, |c| c.similarity),
                self.person
            )
        } else {
            String::new()
        }
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
        &Scope {
            unknown,
            enrolment: None,
            cache_dir,
            photos: &PhotoOptions::default(),
            progress,
        },
    )
}

/// What an evaluation looks at, besides the labelled photos.
#[derive(Debug, Clone, Copy)]
pub struct Scope<'a> {
    /// Photos of people who must not get in.
    pub unknown: Option<&'a std::path::Path>,
    /// The photos the classifier was trained on: each error is linked to the enrolment
    /// photos nearest to it ([`PhotoResult::causes`]).
    pub enrolment: Option<&'a std::path::Path>,
    pub cache_dir: Option<&'a std::path::Path>,
    pub photos: &'a PhotoOptions,
    pub progress: bool,
}

/// [`evaluate`] with the given photo limits, strangers and enrolment photos.
pub fn evaluate_with(
    pipeline: &FacePipeline,
    classifier: &Classifier,
    images: &std::path::Path,
    scope: &Scope,
) -> Result<Evaluation> {
    let Scope {
        unknown,
        enrolment,
        cache_dir,
        photos: photo_options,
        progress,
    } = *scope;
    let labels = classifier.labels().to_vec();
    let mut vectors = Vec::new();
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
            vectors.push(e.embedding.as_slice().to_vec());
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
                causes: Vec::new(),
            });
        }
    }
    if let Some(dir) = enrolment {
        // The enrolment photos as training saw them: each photo's face of its person.
        let mut extraction = embed_dataset(
            pipeline,
            &Dataset::people(dir)?,
            cache_dir,
            photo_options,
            progress,
        )?;
        crate::enroll::pick_by_person(&mut extraction);
        let enrolled: Vec<(PathBuf, String, Vec<f32>)> = extraction
            .embedded
            .into_iter()
            .map(|e| {
                (
                    e.sample.path,
                    e.sample.person,
                    e.embedding.as_slice().to_vec(),
                )
            })
            .collect();
        for (photo, vector) in photos.iter_mut().zip(&vectors) {
            if photo.false_reject() || photo.false_accept() {
                photo.causes = nearest(&enrolled, vector);
            }
        }
    }
    Ok(summarise(
        labels,
        classifier.meta().thresholds,
        photos,
        skipped,
    ))
}

/// The [`CAUSES`] enrolment photos nearest (cosine) to `vector`.
fn nearest(enrolled: &[(PathBuf, String, Vec<f32>)], vector: &[f32]) -> Vec<Cause> {
    let mut causes: Vec<Cause> = enrolled
        .iter()
        .map(|(path, person, e)| Cause {
            path: path.clone(),
            person: person.clone(),
            similarity: e.iter().zip(vector).map(|(a, b)| a * b).sum(),
        })
        .collect();
    causes.sort_by(|a, b| b.similarity.total_cmp(&a.similarity));
    causes.truncate(CAUSES);
    causes
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
