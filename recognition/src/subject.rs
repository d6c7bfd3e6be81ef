//! Which face in a photo is its subject.
//!
//! A photo can show bystanders. With nothing else to go on, the subject is the face the
//! reference alignment (FaceNet's `align_dataset_mtcnn`) picks: the largest box area minus
//! twice the squared distance of the box's centre from the photo's centre, both in pixels.
//! A slightly smaller face in the middle beats a larger one at the edge.
//!
//! At enrolment a person's other photos are context: [`agreeing_face`] picks the face
//! that agrees with them, and says when no face clearly does.
//!
//! The door uses neither rule: there the largest face is the candidate and any unknown
//! face in view blocks the unlock.

use crate::detect::{BBox, Face};

/// The index of the photo's main face: the reference alignment's rule (see the module
/// doc). `None` when there is no face.
pub fn main_face(faces: &[Face], width: u32, height: u32) -> Option<usize> {
    let (cx, cy) = (width as f32 / 2.0, height as f32 / 2.0);
    let score = |f: &Face| {
        let b = &f.bbox;
        let dx = (b.x1 + b.x2) / 2.0 - cx;
        let dy = (b.y1 + b.y2) / 2.0 - cy;
        b.area() - 2.0 * (dx * dx + dy * dy)
    };
    (0..faces.len()).max_by(|&a, &b| score(&faces[a]).total_cmp(&score(&faces[b])))
}

/// Cosine similarity at or above which a face agrees with a person's other photos.
///
/// Measured with the project's FaceNet on the LFW View 1 development pairs (crop margin 0,
/// main faces; `scripts/lfw-pairs.py`): 0.8 % of the 500 same-person pairs score below
/// 0.40 and 0.6 % of the 500 different-person pairs at or above it. A centroid of several
/// photos is steadier than the single photo of a pair, so enrolment errs less than that.
pub const AGREE_SIMILARITY: f32 = 0.40;

/// How far ahead of the runner-up the agreeing face must be. Below this gap two faces
/// resemble the person about equally and the photo is ambiguous. On the same pairs the
/// 5th percentile of same-person scores (0.57) is 0.2 above the 99th percentile of
/// different-person ones (0.37); a gap under 0.15 says the two faces are not told apart.
pub const AGREE_MARGIN: f32 = 0.15;

/// What [`agreeing_face`] made of a photo's faces.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Agreement {
    /// This face agrees with the person's other photos, clearly ahead of the others.
    Clear { index: usize, similarity: f32 },
    /// No face agrees with the person's other photos: the photo may not show them at all.
    NoneAgree { best: usize, similarity: f32 },
    /// Two faces agree about equally well.
    Ambiguous {
        best: usize,
        similarity: f32,
        runner_up: f32,
    },
}

/// Boxes overlapping at least this much (intersection over union) are one face that the
/// detector reported twice, not two people. MTCNN's own merge stops at 0.7; on the sample
/// set one face came back as two boxes at 0.46.
pub const SAME_FACE_IOU: f32 = 0.3;

/// Picks, among a photo's faces (box and embedding), the one nearest (by cosine) to the
/// person's `centroid` (the normalised mean of their single-face photos). Embeddings are
/// L2-normalised, so the dot product is the cosine. A face overlapping the best one
/// ([`SAME_FACE_IOU`]) is the same face and never makes the photo ambiguous. `None` when
/// there are no faces.
pub fn agreeing_face(faces: &[(&BBox, &[f32])], centroid: &[f32]) -> Option<Agreement> {
    let cosine = |e: &[f32]| -> f32 { e.iter().zip(centroid).map(|(a, b)| a * b).sum() };
    let mut ranked: Vec<(usize, f32)> = faces
        .iter()
        .enumerate()
        .map(|(i, (_, e))| (i, cosine(e)))
        .collect();
    ranked.sort_by(|a, b| b.1.total_cmp(&a.1));
    let &(best, similarity) = ranked.first()?;
    let runner_up = ranked
        .iter()
        .skip(1)
        .find(|(i, _)| faces[*i].0.iou(faces[best].0) < SAME_FACE_IOU)
        .map(|r| r.1);
    Some(if similarity < AGREE_SIMILARITY {
        Agreement::NoneAgree { best, similarity }
    } else if let Some(runner_up) = runner_up.filter(|r| similarity - r < AGREE_MARGIN) {
        Agreement::Ambiguous {
            best,
            similarity,
            runner_up,
        }
    } else {
        Agreement::Clear {
            index: best,
            similarity,
        }
    })
}

/// The L2-normalised mean of embeddings (`None` for none, or when they cancel out).
pub fn centroid<'a>(embeddings: impl IntoIterator<Item = &'a [f32]>) -> Option<Vec<f32>> {
    let mut sum: Vec<f32> = Vec::new();
    for e in embeddings {
        if sum.is_empty() {
            sum = vec![0.0; e.len()];
        }
        for (s, v) in sum.iter_mut().zip(e) {
            *s += v;
        }
    }
    let norm = sum.iter().map(|v| v * v).sum::<f32>().sqrt();
    (norm > 1e-6).then(|| sum.iter().map(|v| v / norm).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn face(x1: f32, y1: f32, side: f32) -> Face {
        Face {
            bbox: BBox {
                x1,
                y1,
                x2: x1 + side,
                y2: y1 + side,
            },
            score: 0.99,
            landmarks: [(0.0, 0.0); 5],
        }
    }

    #[test]
    fn a_centred_face_beats_a_slightly_larger_one_at_the_edge() {
        // 250×250 like an LFW photo: the subject in the middle, a bystander at the edge.
        let subject = face(85.0, 85.0, 80.0);
        let bystander = face(170.0, 0.0, 90.0);
        assert_eq!(main_face(&[bystander, subject], 250, 250), Some(1));
    }

    #[test]
    fn a_much_larger_face_wins_even_off_centre() {
        let small_centre = face(115.0, 115.0, 20.0);
        let large_left = face(0.0, 60.0, 130.0);
        assert_eq!(main_face(&[small_centre, large_left], 250, 250), Some(1));
    }

    #[test]
    fn no_faces_no_main_face() {
        assert_eq!(main_face(&[], 250, 250), None);
    }

    fn unit(v: &[f32]) -> Vec<f32> {
        let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        v.iter().map(|x| x / n).collect()
    }

    /// Side-by-side boxes, one per face.
    fn apart(n: usize) -> Vec<BBox> {
        (0..n)
            .map(|i| face(100.0 * i as f32, 0.0, 80.0).bbox)
            .collect()
    }

    #[test]
    fn the_face_like_the_persons_other_photos_is_chosen() {
        let centroid = unit(&[1.0, 0.0, 0.0]);
        let bystander = unit(&[0.0, 1.0, 0.0]);
        let person = unit(&[0.9, 0.1, 0.0]);
        let boxes = apart(2);
        let got = agreeing_face(&[(&boxes[0], &bystander), (&boxes[1], &person)], &centroid);
        assert!(
            matches!(got, Some(Agreement::Clear { index: 1, .. })),
            "{got:?}"
        );
    }

    #[test]
    fn two_faces_equally_like_the_person_are_ambiguous() {
        let centroid = unit(&[1.0, 0.0, 0.0]);
        let a = unit(&[0.8, 0.6, 0.0]);
        let b = unit(&[0.8, 0.0, 0.6]);
        let boxes = apart(2);
        let got = agreeing_face(&[(&boxes[0], &a), (&boxes[1], &b)], &centroid);
        assert!(matches!(got, Some(Agreement::Ambiguous { .. })), "{got:?}");
    }

    #[test]
    fn one_face_reported_twice_is_not_ambiguous() {
        let centroid = unit(&[1.0, 0.0, 0.0]);
        let a = unit(&[0.8, 0.6, 0.0]);
        let b = unit(&[0.8, 0.0, 0.6]);
        // The sample set's case: two boxes on one face, IoU 0.46.
        let first = face(117.0, 49.0, 105.0).bbox;
        let second = face(84.0, 50.0, 98.0).bbox;
        assert!(first.iou(&second) > SAME_FACE_IOU);
        let got = agreeing_face(&[(&first, &a), (&second, &b)], &centroid);
        assert!(matches!(got, Some(Agreement::Clear { .. })), "{got:?}");
    }

    #[test]
    fn a_photo_of_strangers_only_agrees_with_nobody() {
        let centroid = unit(&[1.0, 0.0, 0.0]);
        let a = unit(&[0.1, 1.0, 0.0]);
        let b = unit(&[0.0, 0.0, 1.0]);
        let boxes = apart(2);
        let got = agreeing_face(&[(&boxes[0], &a), (&boxes[1], &b)], &centroid);
        assert!(
            matches!(got, Some(Agreement::NoneAgree { best: 0, .. })),
            "{got:?}"
        );
    }

    #[test]
    fn the_centroid_is_the_normalised_mean() {
        let a = [1.0, 0.0];
        let b = [0.0, 1.0];
        let c = centroid([&a[..], &b[..]]).unwrap();
        assert!((c[0] - c[1]).abs() < 1e-6 && (c[0] - 0.5f32.sqrt()).abs() < 1e-6);
        assert_eq!(centroid(std::iter::empty()), None);
    }
}
