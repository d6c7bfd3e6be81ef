//! Candidate boxes and the box arithmetic of MTCNN: non-maximum suppression,
//! regression, squaring and zero-padded crops.
//!
//! Coordinates follow the reference implementation (Zhang et al.'s MATLAB code
//! as ported by Sandberg): inclusive pixel boxes with a 1-based origin in the
//! cropping step, which is why some formulas carry a `+ 1` or `- 1`.

use super::resample::Plane;

/// A candidate face box with its score and regression offsets.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Candidate {
    pub x1: f64,
    pub y1: f64,
    pub x2: f64,
    pub y2: f64,
    pub score: f32,
    /// Regression offsets (dx1, dy1, dx2, dy2), relative to the box size.
    pub reg: [f32; 4],
}

/// How overlap is measured in non-maximum suppression.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Overlap {
    /// Intersection over union.
    Union,
    /// Intersection over the smaller box.
    Min,
}

/// Indices of the boxes kept by greedy non-maximum suppression, best first.
pub(crate) fn nms(boxes: &[Candidate], threshold: f64, overlap: Overlap) -> Vec<usize> {
    let area = |b: &Candidate| (b.x2 - b.x1 + 1.0) * (b.y2 - b.y1 + 1.0);
    let mut order: Vec<usize> = (0..boxes.len()).collect();
    // Highest score first; stable so equal scores keep a deterministic order.
    order.sort_by(|&a, &b| boxes[b].score.total_cmp(&boxes[a].score));
    let mut keep = Vec::new();
    let mut suppressed = vec![false; boxes.len()];
    for (pos, &i) in order.iter().enumerate() {
        if suppressed[i] {
            continue;
        }
        keep.push(i);
        let a = &boxes[i];
        for &j in &order[pos + 1..] {
            if suppressed[j] {
                continue;
            }
            let b = &boxes[j];
            let w = (a.x2.min(b.x2) - a.x1.max(b.x1) + 1.0).max(0.0);
            let h = (a.y2.min(b.y2) - a.y1.max(b.y1) + 1.0).max(0.0);
            let inter = w * h;
            let o = match overlap {
                Overlap::Union => inter / (area(a) + area(b) - inter),
                Overlap::Min => inter / area(a).min(area(b)),
            };
            if o > threshold {
                suppressed[j] = true;
            }
        }
    }
    keep
}

/// Applies the regression offsets; `plus_one` selects the `w = x2 − x1 + 1`
/// convention of stages 2 and 3 (stage 1 uses `w = x2 − x1`).
pub(crate) fn regress(b: &mut Candidate, plus_one: bool) {
    let extra = if plus_one { 1.0 } else { 0.0 };
    let w = b.x2 - b.x1 + extra;
    let h = b.y2 - b.y1 + extra;
    b.x1 += f64::from(b.reg[0]) * w;
    b.y1 += f64::from(b.reg[1]) * h;
    b.x2 += f64::from(b.reg[2]) * w;
    b.y2 += f64::from(b.reg[3]) * h;
}

/// Turns a box into a square with the same centre and its longer side.
pub(crate) fn square(b: &mut Candidate) {
    let w = b.x2 - b.x1;
    let h = b.y2 - b.y1;
    let l = w.max(h);
    b.x1 += w * 0.5 - l * 0.5;
    b.y1 += h * 0.5 - l * 0.5;
    b.x2 = b.x1 + l;
    b.y2 = b.y1 + l;
}

/// Truncates the coordinates towards zero (numpy's `fix`).
pub(crate) fn truncate(b: &mut Candidate) {
    b.x1 = b.x1.trunc();
    b.y1 = b.y1.trunc();
    b.x2 = b.x2.trunc();
    b.y2 = b.y2.trunc();
}

/// Cuts the box out of the image, zero-padding whatever lies outside it.
/// The box is inclusive and 1-based, as in the reference `pad()`.
pub(crate) fn crop_padded(image: &Plane, b: &Candidate) -> Plane {
    let (x1, y1, x2, y2) = (b.x1 as i64, b.y1 as i64, b.x2 as i64, b.y2 as i64);
    let w = (x2 - x1 + 1).max(1) as usize;
    let h = (y2 - y1 + 1).max(1) as usize;
    let c = image.channels;
    let mut out = Plane::zeros(w, h, c);
    for row in 0..h {
        let sy = y1 - 1 + row as i64;
        if sy < 0 || sy >= image.height as i64 {
            continue;
        }
        let first = (1 - x1).max(0) as usize; // first column inside the image
        let last = ((image.width as i64) - (x1 - 1)).min(w as i64); // one past the last
        if last <= first as i64 {
            continue;
        }
        let last = last as usize;
        let sx = (x1 - 1 + first as i64) as usize;
        let src = &image.data[(sy as usize * image.width + sx) * c..];
        out.data[(row * w + first) * c..(row * w + last) * c]
            .copy_from_slice(&src[..(last - first) * c]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cand(x1: f64, y1: f64, x2: f64, y2: f64, score: f32) -> Candidate {
        Candidate {
            x1,
            y1,
            x2,
            y2,
            score,
            reg: [0.0; 4],
        }
    }

    #[test]
    fn nms_keeps_the_best_of_overlapping_boxes_and_distant_ones() {
        let boxes = [
            cand(0.0, 0.0, 10.0, 10.0, 0.8),
            cand(1.0, 1.0, 11.0, 11.0, 0.9),
            cand(50.0, 50.0, 60.0, 60.0, 0.7),
        ];
        assert_eq!(nms(&boxes, 0.5, Overlap::Union), vec![1, 2]);
    }

    #[test]
    fn min_overlap_suppresses_a_box_inside_another() {
        let boxes = [
            cand(0.0, 0.0, 40.0, 40.0, 0.9),
            cand(10.0, 10.0, 20.0, 20.0, 0.95),
        ];
        assert_eq!(nms(&boxes, 0.7, Overlap::Union).len(), 2);
        assert_eq!(nms(&boxes, 0.7, Overlap::Min), vec![1]);
    }

    #[test]
    fn square_keeps_the_centre_and_the_longer_side() {
        let mut b = cand(10.0, 20.0, 30.0, 60.0, 1.0);
        square(&mut b);
        assert_eq!((b.x1, b.y1, b.x2, b.y2), (0.0, 20.0, 40.0, 60.0));
    }

    #[test]
    fn crop_outside_the_image_is_zero_padded() {
        let image = Plane {
            width: 2,
            height: 2,
            channels: 1,
            data: vec![1.0, 2.0, 3.0, 4.0],
        };
        // 1-based inclusive box from (0,0) to (2,2): one row and column of padding.
        let out = crop_padded(&image, &cand(0.0, 0.0, 2.0, 2.0, 1.0));
        assert_eq!((out.width, out.height), (3, 3));
        assert_eq!(out.data, vec![0.0, 0.0, 0.0, 0.0, 1.0, 2.0, 0.0, 3.0, 4.0]);
    }
}
