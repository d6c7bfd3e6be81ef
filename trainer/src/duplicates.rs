//! Copies of one photo in the enrolment set: the same file content, or embeddings so
//! close that they can only come from one picture (re-encoded, resized, renamed).
//!
//! A folder of copies would otherwise count as many photos: the head and the per-person
//! counts would weigh that one picture many times, and cross-validation would test a
//! copy against a head trained on its twin, reporting accuracy that a new photo never
//! reaches while the gate is pulled up to the copies' similarity of 1.00.

use std::collections::HashMap;
use std::path::PathBuf;

use serde::Serialize;

use crate::dataset::{serialize_path, shown};
use crate::enroll::Extraction;

/// A photo left out of training because it copies another.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Duplicate {
    #[serde(serialize_with = "serialize_path")]
    pub path: PathBuf,
    pub person: String,
    /// The photo it copies.
    #[serde(serialize_with = "serialize_path")]
    pub of: PathBuf,
    /// Set when `of` is in another person's folder: the photo is then used for neither.
    pub other_person: Option<String>,
    /// Cosine similarity of the two embeddings (1 for the same content).
    pub similarity: f32,
    pub same_bytes: bool,
}

impl Duplicate {
    /// Why the photo is left out, for the operator.
    pub fn reason(&self) -> String {
        let how = if self.same_bytes {
            "the same file content as".to_owned()
        } else {
            format!(
                "a near-copy (embedding similarity {:.4}) of",
                self.similarity
            )
        };
        match &self.other_person {
            Some(other) => format!(
                "{how} {}, which is in {other}'s folder; used for neither person: move it \
                 to the right folder",
                shown(&self.of)
            ),
            None => format!("{how} {}; counted once", shown(&self.of)),
        }
    }
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Finds the copies among the embedded photos, in photo order: the first photo of a set
/// of copies is kept, the others are returned. Copies of one content in several people's
/// folders are all returned.
pub fn find_copies(extraction: &Extraction, threshold: f32) -> Vec<Duplicate> {
    let photos = &extraction.embedded;
    let mut out = Vec::new();
    let mut left_out = vec![false; photos.len()];
    let mut by_content: HashMap<&str, Vec<usize>> = HashMap::new();
    for (i, e) in photos.iter().enumerate() {
        by_content.entry(e.content.as_str()).or_default().push(i);
    }
    let mut groups: Vec<&Vec<usize>> = by_content.values().filter(|g| g.len() > 1).collect();
    groups.sort();
    for group in groups {
        let first = group[0];
        let person_of = |i: usize| &photos[i].sample.person;
        let mixed = group.iter().any(|&i| person_of(i) != person_of(first));
        for (n, &i) in group.iter().enumerate() {
            let of = if mixed {
                group
                    .iter()
                    .copied()
                    .find(|&j| person_of(j) != person_of(i))
            } else if n > 0 {
                Some(first)
            } else {
                None
            };
            let Some(of) = of else { continue };
            left_out[i] = true;
            out.push(Duplicate {
                path: photos[i].sample.path.clone(),
                person: person_of(i).clone(),
                of: photos[of].sample.path.clone(),
                other_person: mixed.then(|| person_of(of).clone()),
                similarity: 1.0,
                same_bytes: true,
            });
        }
    }
    // Near-copies within a person: each photo against the photos of that person kept so far.
    let mut kept: HashMap<&str, Vec<usize>> = HashMap::new();
    for (i, e) in photos.iter().enumerate() {
        if left_out[i] {
            continue;
        }
        let kept = kept.entry(e.sample.person.as_str()).or_default();
        let closest = kept
            .iter()
            .map(|&k| {
                (
                    k,
                    cosine(e.embedding.as_slice(), photos[k].embedding.as_slice()),
                )
            })
            .max_by(|a, b| a.1.total_cmp(&b.1));
        match closest {
            Some((k, similarity)) if similarity > threshold => out.push(Duplicate {
                path: e.sample.path.clone(),
                person: e.sample.person.clone(),
                of: photos[k].sample.path.clone(),
                other_person: None,
                similarity,
                same_bytes: false,
            }),
            _ => kept.push(i),
        }
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataset::Sample;
    use crate::enroll::Embedded;
    use recognition::{BBox, Embedding};

    fn photo(person: &str, name: &str, content: &str, embedding: [f32; 2]) -> Embedded {
        let norm = embedding.iter().map(|v| v * v).sum::<f32>().sqrt();
        Embedded {
            sample: Sample {
                person: person.into(),
                path: PathBuf::from(format!("{person}/{name}")),
            },
            embedding: Embedding::from_raw(embedding.iter().map(|v| v / norm).collect()),
            bbox: BBox {
                x1: 0.0,
                y1: 0.0,
                x2: 1.0,
                y2: 1.0,
            },
            content: content.into(),
            faces: 1,
            others: Vec::new(),
            pick: crate::enroll::Pick::Only,
        }
    }

    #[test]
    fn copies_within_a_person_count_once_and_distinct_photos_stay() {
        let extraction = Extraction {
            embedded: vec![
                photo("ann", "1.jpg", "a", [1.0, 0.0]),
                photo("ann", "2.jpg", "a", [1.0, 0.0]),
                photo("ann", "3.jpg", "b", [1.0, 0.05]), // re-encoded: cosine 0.9988
                photo("ann", "4.jpg", "c", [1.0, 0.3]),  // another photo: cosine 0.958
                photo("bob", "1.jpg", "d", [1.0, 0.0]),  // looks like ann's, but bob's folder
            ],
            ..Extraction::default()
        };
        let copies = find_copies(&extraction, 0.995);
        let paths: Vec<String> = copies.iter().map(|c| shown(&c.path)).collect();
        assert_eq!(paths, ["ann/2.jpg", "ann/3.jpg"]);
        assert!(copies[0].same_bytes);
        assert!(copies[0]
            .reason()
            .contains("the same file content as ann/1.jpg"));
        assert!(!copies[1].same_bytes);
        assert!(
            copies[1].reason().contains("near-copy"),
            "{}",
            copies[1].reason()
        );
    }

    #[test]
    fn one_photo_in_two_peoples_folders_is_used_for_neither() {
        let extraction = Extraction {
            embedded: vec![
                photo("ann", "x.jpg", "same", [1.0, 0.0]),
                photo("bob", "x.jpg", "same", [1.0, 0.0]),
                photo("bob", "y.jpg", "other", [0.0, 1.0]),
            ],
            ..Extraction::default()
        };
        let copies = find_copies(&extraction, 0.995);
        assert_eq!(copies.len(), 2, "{copies:?}");
        assert_eq!(copies[0].other_person.as_deref(), Some("bob"));
        assert_eq!(copies[1].other_person.as_deref(), Some("ann"));
        assert!(copies[1].reason().contains("used for neither"));
    }
}
