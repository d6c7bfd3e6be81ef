//! Is a camera frame worth enrolling from? The quality gate of guided capture.
//!
//! A frame is kept only with exactly one face, large enough, sharp, well lit, with
//! contrast, and not a near-copy of a frame already kept. Each check measures the face
//! crop as the embedder sees it (the detector's box resized to 160×160), so the figures
//! do not depend on how far away the person stands. The thresholds were measured with
//! `cargo run --release -p recognition --example quality -- PHOTOS...` (see
//! [`QualityGate::for_door`]).
//!
//! Pose comes from MTCNN's five landmarks: yaw is the nose's sideways offset from the
//! eyes' midpoint in inter-eye distances, pitch the nose's height between the eyes and
//! the mouth. Twenty frames of the same pose teach the head one view, so a frame whose
//! pose and look are both within a small distance of a kept frame is a near-duplicate.

use image::imageops::FilterType;
use image::RgbImage;

use crate::align::crop_face;
use crate::detect::Face;

/// Side of the crop the checks measure.
const CHECK_SIDE: u32 = 112;
/// Side of the thumbnail compared for near-duplicates.
const THUMB_SIDE: u32 = 24;

/// What the checks measured on one face.
#[derive(Debug, Clone, PartialEq)]
pub struct Measures {
    /// Face box side, pixels.
    pub side_px: f32,
    /// Variance of the Laplacian of the grey crop (higher is sharper).
    pub sharpness: f32,
    /// Mean grey level of the crop, 0–255.
    pub brightness: f32,
    /// Standard deviation of the grey level of the crop.
    pub contrast: f32,
    pub pose: Pose,
    /// 24×24 grey thumbnail, for near-duplicates.
    thumb: Vec<u8>,
}

/// Head pose from the landmarks (dimensionless; 0/≈0.5 straight ahead).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pose {
    /// Nose offset from the eyes' midpoint, in inter-eye distances (+ = towards the
    /// image's right).
    pub yaw: f32,
    /// Nose height between the eyes (0) and the mouth (1).
    pub pitch: f32,
}

/// Why a frame was not kept.
#[derive(Debug, Clone, PartialEq)]
pub enum Reject {
    NoFace,
    SeveralFaces(usize),
    TooSmall { side_px: f32, min_px: f32 },
    Blurred { sharpness: f32, min: f32 },
    TooDark { brightness: f32, min: f32 },
    TooBright { brightness: f32, max: f32 },
    LowContrast { contrast: f32, min: f32 },
    NearDuplicate,
}

impl Reject {
    /// A short stable name, for counts.
    pub fn kind(&self) -> &'static str {
        match self {
            Reject::NoFace => "no face",
            Reject::SeveralFaces(_) => "several faces",
            Reject::TooSmall { .. } => "face too small",
            Reject::Blurred { .. } => "blurred",
            Reject::TooDark { .. } => "too dark",
            Reject::TooBright { .. } => "too bright",
            Reject::LowContrast { .. } => "low contrast",
            Reject::NearDuplicate => "near-duplicate",
        }
    }
}

impl std::fmt::Display for Reject {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Reject::NoFace => write!(f, "no face in view: look at the camera"),
            Reject::SeveralFaces(n) => {
                write!(f, "{n} faces in view: capture needs one person alone")
            }
            Reject::TooSmall { side_px, min_px } => write!(
                f,
                "face too small ({side_px:.0} px, needs {min_px:.0}): step closer"
            ),
            Reject::Blurred { sharpness, min } => write!(
                f,
                "blurred (sharpness {sharpness:.0}, needs {min:.0}): hold still"
            ),
            Reject::TooDark { brightness, min } => write!(
                f,
                "too dark (brightness {brightness:.0}, needs {min:.0}): more light on the face"
            ),
            Reject::TooBright { brightness, max } => write!(
                f,
                "too bright (brightness {brightness:.0}, at most {max:.0}): less direct light"
            ),
            Reject::LowContrast { contrast, min } => write!(
                f,
                "low contrast ({contrast:.0}, needs {min:.0}): avoid back light and haze"
            ),
            Reject::NearDuplicate => write!(
                f,
                "near-duplicate of a kept frame: turn the head a little, or change expression"
            ),
        }
    }
}

/// The thresholds.
#[derive(Debug, Clone, PartialEq)]
pub struct QualityGate {
    /// Smallest face box side, pixels (1.5 × the door's `min_face_px`).
    pub min_side_px: f32,
    pub min_sharpness: f32,
    pub min_brightness: f32,
    pub max_brightness: f32,
    pub min_contrast: f32,
    /// Two frames are near-duplicates when their poses differ by less than this
    /// (|Δyaw| + |Δpitch|) …
    pub duplicate_pose: f32,
    /// … and their thumbnails by less than this mean absolute grey difference.
    pub duplicate_look: f32,
}

impl QualityGate {
    /// The measured thresholds, with the face size floor at 1.5 × `door_min_face_px`.
    ///
    /// Measured with `examples/quality.rs` on the sample set's 117 photos with a face and on
    /// 249 frames of a 640×360 video clip, each as it is, blurred (Gaussian, σ = 3 px at
    /// the embedder's 160 px face scale) and darkened (× 0.25), as percentiles p5/p95:
    /// - sharpness: as they are p5 31 (photos) and 17 (video); blurred p95 28 and 18. The
    ///   floor 25 keeps about 95 % of the photos and 90 % of the frames and refuses about
    ///   95 % of the blurred ones;
    /// - brightness: as they are p5 93 and 37 (a dim stage); darkened p95 44 and 25. The
    ///   floor 40 refuses every darkened frame and keeps about 93 % of the dim ones; the
    ///   ceiling 220 refuses a washed-out face (no photo or frame reached 185);
    /// - contrast: as they are p5 35 and 23; darkened p95 17 and 13: the floor is 18;
    /// - near-duplicates: consecutive frames (30 fps, a moving performer) differ on the
    ///   thumbnail by p5 0.8, p25 4.1, p50 10 grey levels, and in pose by p25 0.035: a
    ///   frame within 4 grey levels and 0.04 of pose of a kept one adds nothing.
    pub fn for_door(door_min_face_px: f32) -> QualityGate {
        QualityGate {
            min_side_px: 1.5 * door_min_face_px,
            min_sharpness: 25.0,
            min_brightness: 40.0,
            max_brightness: 220.0,
            min_contrast: 18.0,
            duplicate_pose: 0.04,
            duplicate_look: 4.0,
        }
    }

    /// Judges a frame with these detected faces against the frames kept so far. Returns
    /// the measures of the one face when the frame is worth keeping.
    pub fn judge(
        &self,
        image: &RgbImage,
        faces: &[Face],
        kept: &[Measures],
    ) -> Result<Measures, Reject> {
        let face = match faces {
            [] => return Err(Reject::NoFace),
            [one] => one,
            several => return Err(Reject::SeveralFaces(several.len())),
        };
        let side_px = face.bbox.side();
        if side_px < self.min_side_px {
            return Err(Reject::TooSmall {
                side_px,
                min_px: self.min_side_px,
            });
        }
        let m = measure(image, face);
        if m.brightness < self.min_brightness {
            return Err(Reject::TooDark {
                brightness: m.brightness,
                min: self.min_brightness,
            });
        }
        if m.brightness > self.max_brightness {
            return Err(Reject::TooBright {
                brightness: m.brightness,
                max: self.max_brightness,
            });
        }
        if m.contrast < self.min_contrast {
            return Err(Reject::LowContrast {
                contrast: m.contrast,
                min: self.min_contrast,
            });
        }
        if m.sharpness < self.min_sharpness {
            return Err(Reject::Blurred {
                sharpness: m.sharpness,
                min: self.min_sharpness,
            });
        }
        if kept.iter().any(|k| self.near_duplicate(k, &m)) {
            return Err(Reject::NearDuplicate);
        }
        Ok(m)
    }

    fn near_duplicate(&self, a: &Measures, b: &Measures) -> bool {
        let pose = (a.pose.yaw - b.pose.yaw).abs() + (a.pose.pitch - b.pose.pitch).abs();
        pose < self.duplicate_pose && thumb_difference(a, b) < self.duplicate_look
    }
}

/// Mean absolute grey difference of two thumbnails.
pub fn thumb_difference(a: &Measures, b: &Measures) -> f32 {
    let sum: u32 = a
        .thumb
        .iter()
        .zip(&b.thumb)
        .map(|(x, y)| u32::from(x.abs_diff(*y)))
        .sum();
    sum as f32 / a.thumb.len().max(1) as f32
}

/// Measures one detected face in its frame.
pub fn measure(image: &RgbImage, face: &Face) -> Measures {
    let crop = crop_face(image, &face.bbox, 0.0);
    let grey = grey(&image::imageops::resize(
        &crop,
        CHECK_SIDE,
        CHECK_SIDE,
        FilterType::Triangle,
    ));
    let n = grey.len() as f32;
    let brightness = grey.iter().map(|&v| f32::from(v)).sum::<f32>() / n;
    let contrast = (grey
        .iter()
        .map(|&v| (f32::from(v) - brightness).powi(2))
        .sum::<f32>()
        / n)
        .sqrt();
    let thumb = grey_of(&image::imageops::resize(
        &crop,
        THUMB_SIDE,
        THUMB_SIDE,
        FilterType::Triangle,
    ));
    Measures {
        side_px: face.bbox.side(),
        sharpness: laplacian_variance(&grey, CHECK_SIDE as usize),
        brightness,
        contrast,
        pose: pose(face),
        thumb,
    }
}

/// Pose from the five landmarks (left eye, right eye, nose, mouth corners).
pub fn pose(face: &Face) -> Pose {
    let [le, re, nose, lm, rm] = face.landmarks;
    let eyes = ((le.0 + re.0) / 2.0, (le.1 + re.1) / 2.0);
    let mouth_y = (lm.1 + rm.1) / 2.0;
    let eye_distance = ((re.0 - le.0).powi(2) + (re.1 - le.1).powi(2))
        .sqrt()
        .max(1.0);
    let eye_to_mouth = (mouth_y - eyes.1).max(1.0);
    Pose {
        yaw: (nose.0 - eyes.0) / eye_distance,
        pitch: (nose.1 - eyes.1) / eye_to_mouth,
    }
}

fn grey(image: &RgbImage) -> Vec<u8> {
    grey_of(image)
}

fn grey_of(image: &RgbImage) -> Vec<u8> {
    image
        .pixels()
        .map(|p| {
            let [r, g, b] = p.0;
            ((299 * u32::from(r) + 587 * u32::from(g) + 114 * u32::from(b)) / 1000) as u8
        })
        .collect()
}

/// Variance of the 4-neighbour Laplacian over the interior of a square grey image.
fn laplacian_variance(grey: &[u8], side: usize) -> f32 {
    let at = |x: usize, y: usize| f32::from(grey[y * side + x]);
    let mut values = Vec::with_capacity((side - 2) * (side - 2));
    for y in 1..side - 1 {
        for x in 1..side - 1 {
            values.push(at(x - 1, y) + at(x + 1, y) + at(x, y - 1) + at(x, y + 1) - 4.0 * at(x, y));
        }
    }
    let n = values.len() as f32;
    let mean = values.iter().sum::<f32>() / n;
    values.iter().map(|v| (v - mean).powi(2)).sum::<f32>() / n
}

/// The spread of poses in a kept set: (yaw range, pitch range).
pub fn pose_spread(kept: &[Measures]) -> (f32, f32) {
    let range = |f: &dyn Fn(&Measures) -> f32| {
        let (lo, hi) = kept
            .iter()
            .map(f)
            .fold((f32::MAX, f32::MIN), |(lo, hi), v| (lo.min(v), hi.max(v)));
        if kept.is_empty() {
            0.0
        } else {
            hi - lo
        }
    };
    (range(&|m| m.pose.yaw), range(&|m| m.pose.pitch))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::BBox;
    use image::Rgb;

    /// A 200×200 frame with a 120 px "face": a checkerboard of `level` ± `swing`.
    fn frame(level: u8, swing: u8, cell: u32) -> RgbImage {
        RgbImage::from_fn(200, 200, |x, y| {
            let on = ((x / cell) + (y / cell)).is_multiple_of(2);
            let v = if on {
                level.saturating_add(swing)
            } else {
                level.saturating_sub(swing)
            };
            Rgb([v, v, v])
        })
    }

    fn face(side: f32) -> Face {
        Face {
            bbox: BBox {
                x1: 40.0,
                y1: 40.0,
                x2: 40.0 + side,
                y2: 40.0 + side,
            },
            score: 0.99,
            landmarks: [
                (70.0, 80.0),
                (130.0, 80.0),
                (100.0, 110.0),
                (75.0, 140.0),
                (125.0, 140.0),
            ],
        }
    }

    fn gate() -> QualityGate {
        QualityGate::for_door(80.0)
    }

    #[test]
    fn a_sharp_well_lit_single_face_is_kept() {
        let m = gate()
            .judge(&frame(128, 60, 6), &[face(125.0)], &[])
            .unwrap();
        assert!(m.sharpness > 25.0 && m.contrast > 18.0, "{m:?}");
        assert!(m.pose.yaw.abs() < 1e-6 && (m.pose.pitch - 0.5).abs() < 1e-6);
    }

    #[test]
    fn each_failing_check_gives_its_reason() {
        let g = gate();
        let sharp = frame(128, 60, 6);
        assert_eq!(g.judge(&sharp, &[], &[]), Err(Reject::NoFace));
        assert_eq!(
            g.judge(&sharp, &[face(125.0), face(125.0)], &[]),
            Err(Reject::SeveralFaces(2))
        );
        assert!(matches!(
            g.judge(&sharp, &[face(100.0)], &[]),
            Err(Reject::TooSmall { .. })
        ));
        assert!(matches!(
            g.judge(&frame(20, 10, 6), &[face(125.0)], &[]),
            Err(Reject::TooDark { .. })
        ));
        assert!(matches!(
            g.judge(&frame(240, 10, 6), &[face(125.0)], &[]),
            Err(Reject::TooBright { .. })
        ));
        assert!(matches!(
            g.judge(&frame(128, 8, 6), &[face(125.0)], &[]),
            Err(Reject::LowContrast { .. })
        ));
        // Wide soft bands: contrast, but no fine detail.
        let soft = RgbImage::from_fn(200, 200, |x, _| {
            let v = (128.0 + 60.0 * (x as f32 / 25.0).sin()) as u8;
            Rgb([v, v, v])
        });
        assert!(matches!(
            g.judge(&soft, &[face(125.0)], &[]),
            Err(Reject::Blurred { .. })
        ));
    }

    #[test]
    fn the_same_frame_twice_is_a_near_duplicate_but_a_turned_head_is_not() {
        let g = gate();
        let image = frame(128, 60, 6);
        let first = g.judge(&image, &[face(125.0)], &[]).unwrap();
        assert_eq!(
            g.judge(&image, &[face(125.0)], std::slice::from_ref(&first)),
            Err(Reject::NearDuplicate)
        );
        let mut turned = face(125.0);
        turned.landmarks[2].0 += 12.0; // nose 0.2 eye distances to the side
        assert!(g.judge(&image, &[turned], &[first]).is_ok());
    }

    #[test]
    fn reasons_say_what_to_do() {
        let text = Reject::TooSmall {
            side_px: 60.0,
            min_px: 120.0,
        }
        .to_string();
        assert!(
            text.contains("60 px, needs 120") && text.contains("step closer"),
            "{text}"
        );
        assert!(Reject::SeveralFaces(2)
            .to_string()
            .contains("one person alone"));
    }
}
