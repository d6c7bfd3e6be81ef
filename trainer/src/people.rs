//! The people of an image tree and the health of their photos (`trainer people`):
//! how many photos each has, how many are usable, whether the lock's classifier knows
//! them, and the photos that will hurt them at the door.
//!
//! Warnings, each with what to do:
//! - too few usable photos ([`crate::train::MIN_PHOTOS_WARNING`]);
//! - a photo unlike the person's other photos: its similarity to the centroid of the
//!   others is below [`recognition::subject::AGREE_SIMILARITY`], the level at which two
//!   photos are taken for the same person (likely another person's photo, or mislabelled);
//! - two people whose centroids are as close as the gate's similarity threshold (the
//!   classifier's, when one is given; else the agreement level): the gate cannot keep
//!   them apart reliably;
//! - photos whose face is smaller than the door's `recognition.min_face_px` (one warning
//!   per person, naming the smallest): the door never looks at faces that small, so such
//!   photos teach the head a view it never sees;
//! - photos that could not be used, with the reason.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use recognition::subject::{centroid, AGREE_SIMILARITY};
use recognition::ClassifierMeta;

use crate::dataset::{shown, Dataset};
use crate::enroll::Extraction;
use crate::train::MIN_PHOTOS_WARNING;

/// What `trainer people` is compared against.
#[derive(Debug, Clone)]
pub struct PeopleOptions {
    /// The door's `recognition.min_face_px`.
    pub door_min_face_px: f32,
    /// The classifier in service (or about to be), if the admin gives one.
    pub classifier: Option<ClassifierMeta>,
}

/// Something about a person's photos that will hurt them at the door.
#[derive(Debug, Clone, PartialEq)]
pub enum Warning {
    TooFew {
        usable: usize,
    },
    UnlikeTheOthers {
        path: PathBuf,
        similarity: f32,
    },
    LooksLike {
        other: String,
        similarity: f32,
        gate: f32,
    },
    SmallFaces {
        /// The photos, smallest face first.
        paths: Vec<PathBuf>,
        usable: usize,
        smallest_px: f32,
        door_min: f32,
    },
    Unusable {
        path: PathBuf,
        reason: String,
    },
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Warning::TooFew { usable } => write!(
                f,
                "only {usable} usable photo(s): add {} or more, from different days and angles",
                MIN_PHOTOS_WARNING.saturating_sub(*usable).max(1)
            ),
            Warning::UnlikeTheOthers { path, similarity } => write!(
                f,
                "{} looks unlike the other photos (similarity {similarity:.2}, below \
                 {AGREE_SIMILARITY:.2}): another person's photo, or in the wrong folder?",
                shown(path)
            ),
            Warning::LooksLike {
                other,
                similarity,
                gate,
            } => write!(
                f,
                "looks like {other} to the model (centroid similarity {similarity:.2}, \
                 gate {gate:.2}): the gate cannot keep them apart reliably; check that they \
                 are not the same person, and add clearer photos of both"
            ),
            Warning::SmallFaces {
                paths,
                usable,
                smallest_px,
                door_min,
            } => {
                write!(
                    f,
                    "{} of {usable} photos show a face smaller than the door's min_face_px \
                     {door_min:.0} (smallest {smallest_px:.0} px), a view the door never \
                     sees; closer photos work better, e.g.",
                    paths.len()
                )?;
                for p in paths.iter().take(3) {
                    write!(f, " {}", shown(p))?;
                }
                if paths.len() > 3 {
                    write!(f, " ...")?;
                }
                Ok(())
            }
            Warning::Unusable { path, reason } => {
                write!(f, "{} is not used: {reason}", shown(path))
            }
        }
    }
}

/// One person's photos.
#[derive(Debug, Clone)]
pub struct Person {
    pub name: String,
    pub folder: PathBuf,
    /// Files in the folder.
    pub photos: usize,
    /// Photos that gave an embedding.
    pub usable: usize,
    /// Photos the given classifier was trained on; `None` when it does not know them
    /// (or no classifier was given).
    pub trained: Option<usize>,
    pub warnings: Vec<Warning>,
}

/// `trainer people`'s answer; prints itself.
#[derive(Debug, Clone)]
pub struct PeopleReport {
    pub people: Vec<Person>,
    /// The given classifier's creation time.
    pub classifier_created: Option<String>,
    /// People the given classifier knows who have no folder any more.
    pub only_in_classifier: Vec<String>,
}

impl PeopleReport {
    pub fn warnings(&self) -> usize {
        self.people.iter().map(|p| p.warnings.len()).sum()
    }
}

impl fmt::Display for PeopleReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let width = self
            .people
            .iter()
            .map(|p| p.name.chars().count())
            .max()
            .unwrap_or(6)
            .max(6);
        writeln!(f, "{:width$}  photos  usable  trained", "person")?;
        for p in &self.people {
            let trained = match (&self.classifier_created, p.trained) {
                (None, _) => "-".to_owned(),
                (Some(_), Some(n)) => n.to_string(),
                (Some(_), None) => "no".to_owned(),
            };
            writeln!(
                f,
                "{:width$}  {:>6}  {:>6}  {:>7}",
                p.name, p.photos, p.usable, trained
            )?;
        }
        if let Some(created) = &self.classifier_created {
            writeln!(f, "(trained: photos in the classifier made {created})")?;
        }
        for name in &self.only_in_classifier {
            writeln!(
                f,
                "{name} is in the classifier but has no folder: retrain and push to remove them from the lock"
            )?;
        }
        for p in self.people.iter().filter(|p| !p.warnings.is_empty()) {
            writeln!(f, "\n{}:", p.name)?;
            for w in &p.warnings {
                writeln!(f, "  - {w}")?;
            }
        }
        if self.warnings() == 0 {
            writeln!(f, "\nno warnings")?;
        }
        Ok(())
    }
}

/// Judges each person's photos (after [`crate::enroll::pick_by_person`]).
pub fn people(dataset: &Dataset, extraction: &Extraction, options: &PeopleOptions) -> PeopleReport {
    let gate = options
        .classifier
        .as_ref()
        .map(|m| m.thresholds.min_similarity)
        .unwrap_or(AGREE_SIMILARITY);
    let mut by_person: BTreeMap<&str, Vec<&crate::enroll::Embedded>> = BTreeMap::new();
    for e in &extraction.embedded {
        by_person.entry(&e.sample.person).or_default().push(e);
    }
    let centroids: BTreeMap<&str, Vec<f32>> = by_person
        .iter()
        .filter_map(|(name, photos)| {
            centroid(photos.iter().map(|e| e.embedding.as_slice())).map(|c| (*name, c))
        })
        .collect();
    let mut people = Vec::new();
    for (name, folder) in &dataset.folders {
        let photos = by_person.get(name.as_str()).cloned().unwrap_or_default();
        let mut warnings = Vec::new();
        if photos.len() < MIN_PHOTOS_WARNING {
            warnings.push(Warning::TooFew {
                usable: photos.len(),
            });
        }
        // Each photo against the centroid of the others, so a wrong photo does not pull
        // the reference towards itself. Needs two others to say anything.
        if photos.len() >= 3 {
            for (i, e) in photos.iter().enumerate() {
                let others = photos
                    .iter()
                    .enumerate()
                    .filter(|(j, _)| *j != i)
                    .map(|(_, o)| o.embedding.as_slice());
                if let Some(c) = centroid(others) {
                    let similarity = e.embedding.cosine(&c);
                    if similarity < AGREE_SIMILARITY {
                        warnings.push(Warning::UnlikeTheOthers {
                            path: e.sample.path.clone(),
                            similarity,
                        });
                    }
                }
            }
        }
        if let Some(mine) = centroids.get(name.as_str()) {
            for (other, theirs) in &centroids {
                if *other != name.as_str() {
                    let similarity: f32 = mine.iter().zip(theirs).map(|(a, b)| a * b).sum();
                    if similarity >= gate {
                        warnings.push(Warning::LooksLike {
                            other: other.to_string(),
                            similarity,
                            gate,
                        });
                    }
                }
            }
        }
        let mut small: Vec<(f32, PathBuf)> = photos
            .iter()
            .map(|e| (e.bbox.side(), e.sample.path.clone()))
            .filter(|(side, _)| *side < options.door_min_face_px)
            .collect();
        small.sort_by(|a, b| a.0.total_cmp(&b.0));
        if let Some(&(smallest_px, _)) = small.first() {
            warnings.push(Warning::SmallFaces {
                smallest_px,
                paths: small.into_iter().map(|(_, p)| p).collect(),
                usable: photos.len(),
                door_min: options.door_min_face_px,
            });
        }
        let unusable: Vec<_> = extraction
            .skipped
            .iter()
            .filter(|s| s.path.starts_with(folder))
            .collect();
        for s in &unusable {
            warnings.push(Warning::Unusable {
                path: s.path.clone(),
                reason: s.reason.clone(),
            });
        }
        people.push(Person {
            name: name.clone(),
            folder: folder.clone(),
            photos: photos.len() + unusable.len(),
            usable: photos.len(),
            trained: options
                .classifier
                .as_ref()
                .and_then(|m| m.photos_per_person.get(name).copied()),
            warnings,
        });
    }
    let only_in_classifier = options
        .classifier
        .as_ref()
        .map(|m| {
            m.labels
                .iter()
                .filter(|l| !dataset.folders.contains_key(*l))
                .cloned()
                .collect()
        })
        .unwrap_or_default();
    PeopleReport {
        people,
        classifier_created: options.classifier.as_ref().map(|m| m.created.clone()),
        only_in_classifier,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataset::{Sample, Skipped};
    use crate::enroll::{Embedded, Pick};
    use recognition::{BBox, Embedding};
    use std::path::Path;

    fn photo(person: &str, name: &str, embedding: &[f32], side: f32) -> Embedded {
        Embedded {
            sample: Sample {
                person: person.into(),
                path: Path::new("images").join(person).join(name),
            },
            embedding: Embedding::from_raw(embedding.to_vec()),
            bbox: BBox {
                x1: 0.0,
                y1: 0.0,
                x2: side,
                y2: side,
            },
            content: name.into(),
            faces: 1,
            others: Vec::new(),
            pick: Pick::Only,
        }
    }

    fn dataset(people: &[&str]) -> Dataset {
        Dataset {
            folders: people
                .iter()
                .map(|p| (p.to_string(), Path::new("images").join(p)))
                .collect(),
            ..Dataset::default()
        }
    }

    fn options() -> PeopleOptions {
        PeopleOptions {
            door_min_face_px: 80.0,
            classifier: None,
        }
    }

    /// Five photos of `person` around `direction`, each a little different.
    fn five(person: &str, direction: [f32; 3]) -> Vec<Embedded> {
        (0..5)
            .map(|i| {
                let wobble = 0.05 * i as f32;
                let v = [direction[0] + wobble, direction[1], direction[2] + wobble];
                photo(person, &format!("{i}.jpg"), &v, 120.0)
            })
            .collect()
    }

    #[test]
    fn a_healthy_tree_has_no_warnings() {
        let mut embedded = five("ada", [1.0, 0.0, 0.0]);
        embedded.extend(five("bob", [0.0, 1.0, 0.0]));
        let extraction = Extraction {
            embedded,
            ..Extraction::default()
        };
        let report = people(&dataset(&["ada", "bob"]), &extraction, &options());
        assert_eq!(report.warnings(), 0, "{report}");
        assert_eq!((report.people[0].photos, report.people[0].usable), (5, 5));
        assert!(report.to_string().contains("no warnings"));
    }

    #[test]
    fn another_persons_photo_in_a_folder_is_flagged() {
        let mut embedded = five("ada", [1.0, 0.0, 0.0]);
        embedded.extend(five("bob", [0.0, 1.0, 0.0]));
        embedded.push(photo("ada", "actually_bob.jpg", &[0.0, 1.0, 0.1], 120.0));
        let extraction = Extraction {
            embedded,
            ..Extraction::default()
        };
        let report = people(&dataset(&["ada", "bob"]), &extraction, &options());
        let ada = &report.people[0];
        assert!(
            matches!(&ada.warnings[..], [Warning::UnlikeTheOthers { path, .. }] if path.ends_with("actually_bob.jpg")),
            "{report}"
        );
        assert!(report
            .to_string()
            .contains("actually_bob.jpg looks unlike the other photos"));
    }

    #[test]
    fn two_people_the_gate_cannot_separate_are_flagged_both_ways() {
        let mut embedded = five("ada", [1.0, 0.0, 0.0]);
        embedded.extend(five("twin", [1.0, 0.2, 0.0]));
        let extraction = Extraction {
            embedded,
            ..Extraction::default()
        };
        let report = people(&dataset(&["ada", "twin"]), &extraction, &options());
        for (p, other) in report.people.iter().zip(["twin", "ada"]) {
            assert!(
                p.warnings
                    .iter()
                    .any(|w| matches!(w, Warning::LooksLike { other: o, .. } if o == other)),
                "{report}"
            );
        }
    }

    #[test]
    fn few_photos_small_faces_and_unusable_files_are_flagged() {
        let mut embedded = vec![photo("ada", "far.jpg", &[1.0, 0.0, 0.0], 50.0)];
        embedded.extend(five("bob", [0.0, 1.0, 0.0]));
        let extraction = Extraction {
            embedded,
            skipped: vec![Skipped {
                path: Path::new("images/ada/cat.jpg").to_owned(),
                reason: "no face found".into(),
            }],
            ..Extraction::default()
        };
        let report = people(&dataset(&["ada", "bob"]), &extraction, &options());
        let ada = &report.people[0];
        assert_eq!((ada.photos, ada.usable), (2, 1));
        let text = report.to_string();
        assert!(text.contains("only 1 usable photo(s)"), "{text}");
        assert!(
            text.contains(
                "1 of 1 photos show a face smaller than the door's min_face_px 80 (smallest 50 px)"
            ) && text.contains("e.g. images/ada/far.jpg"),
            "{text}"
        );
        assert!(
            text.contains("cat.jpg is not used: no face found"),
            "{text}"
        );
        assert!(report.people[1].warnings.is_empty(), "{text}");
    }
}
