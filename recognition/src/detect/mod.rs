//! MTCNN face detection: image pyramid → P-Net proposals → R-Net refinement →
//! O-Net boxes and five landmarks (Zhang et al. 2016, as in Sandberg's
//! `detect_face.py`, with the transposed-image convention folded into the ONNX
//! weights by the converter).

mod boxes;
mod resample;

use std::collections::HashMap;

use image::RgbImage;

use crate::engine::{Dim, Network, OnnxFile, Tensor32};
use crate::error::{Error, Result};
use crate::models::{ModelDir, ONET, PNET, RNET};
use boxes::{crop_padded, nms, regress, square, truncate, Candidate, Overlap};
use resample::{push_mtcnn_chw, resize_area, Plane};

/// Detector settings. The defaults are the reference values.
#[derive(Debug, Clone, PartialEq)]
pub struct DetectorConfig {
    /// Smallest face side, in pixels, the pyramid looks for.
    pub min_face_px: f32,
    /// Pyramid scale step.
    pub factor: f32,
    /// Score thresholds of P-Net, R-Net and O-Net.
    pub thresholds: [f32; 3],
}

impl Default for DetectorConfig {
    fn default() -> Self {
        DetectorConfig {
            min_face_px: 20.0,
            factor: 0.709,
            thresholds: [0.6, 0.7, 0.7],
        }
    }
}

/// An axis-aligned box in image pixels (`x2`, `y2` exclusive-ish, as MTCNN reports them).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct BBox {
    pub x1: f32,
    pub y1: f32,
    pub x2: f32,
    pub y2: f32,
}

impl BBox {
    pub fn width(&self) -> f32 {
        self.x2 - self.x1
    }

    pub fn height(&self) -> f32 {
        self.y2 - self.y1
    }

    /// The shorter side: what "face size" means for the size floor.
    pub fn side(&self) -> f32 {
        self.width().min(self.height())
    }

    pub fn area(&self) -> f32 {
        self.width().max(0.0) * self.height().max(0.0)
    }

    /// Intersection over union with another box.
    pub fn iou(&self, other: &BBox) -> f32 {
        let w = (self.x2.min(other.x2) - self.x1.max(other.x1)).max(0.0);
        let h = (self.y2.min(other.y2) - self.y1.max(other.y1)).max(0.0);
        let inter = w * h;
        inter / (self.area() + other.area() - inter)
    }
}

/// A detected face.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Face {
    pub bbox: BBox,
    /// O-Net face probability.
    pub score: f32,
    /// Left eye, right eye, nose, left and right mouth corner, as (x, y).
    pub landmarks: [(f32, f32); 5],
}

/// One pyramid level: scale and the resized input size.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Scale {
    pub scale: f64,
    pub width: usize,
    pub height: usize,
}

/// The pyramid scales MTCNN uses for an image of the given size.
pub fn pyramid(width: u32, height: u32, config: &DetectorConfig) -> Vec<Scale> {
    let m = 12.0 / f64::from(config.min_face_px);
    let mut min_side = f64::from(width.min(height)) * m;
    let mut scale = m;
    let mut out = Vec::new();
    while min_side >= 12.0 {
        out.push(Scale {
            scale,
            width: (f64::from(width) * scale).ceil() as usize,
            height: (f64::from(height) * scale).ceil() as usize,
        });
        scale *= f64::from(config.factor);
        min_side *= f64::from(config.factor);
    }
    out
}

/// Where detection time went, for benchmarks and debug logs.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct StageTimes {
    /// Pyramid resampling + P-Net + NMS.
    pub pnet: std::time::Duration,
    /// Crops + R-Net (batched) + NMS.
    pub rnet: std::time::Duration,
    /// Crops + O-Net (batched) + landmarks + NMS.
    pub onet: std::time::Duration,
    /// Candidates after P-Net and after R-Net.
    pub proposals: usize,
    pub refined: usize,
}

/// One of the three MTCNN networks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    PNet,
    RNet,
    ONet,
}

/// The three MTCNN networks, loaded and optimised once.
pub struct Mtcnn {
    config: DetectorConfig,
    pnet_file: std::sync::Arc<OnnxFile>,
    /// P-Net with symbolic height and width, for images of any size.
    pnet_any: Network,
    /// P-Net plans with concrete shapes, keyed by (height, width): built for
    /// the camera's frame size at start, so frames never pay for planning.
    pnet_fixed: HashMap<(usize, usize), Network>,
    rnet: Network,
    onet: Network,
}

impl std::fmt::Debug for Mtcnn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mtcnn")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Mtcnn {
    /// Loads P-, R- and O-Net from a verified model directory.
    pub fn load(models: &ModelDir, config: DetectorConfig) -> Result<Mtcnn> {
        let pnet_file = std::sync::Arc::new(models.load(PNET)?);
        let pnet_any = pnet_file.plan(&[
            Dim::Fixed(1),
            Dim::Fixed(3),
            Dim::Symbolic("H"),
            Dim::Symbolic("W"),
        ])?;
        // One crop per run: measured faster in tract than batched plans
        // (57 crops: 18 ms one by one, 39 ms as one batch).
        let rnet = models.load(RNET)?.into_plan(&[
            Dim::Fixed(1),
            Dim::Fixed(3),
            Dim::Fixed(24),
            Dim::Fixed(24),
        ])?;
        let onet = models.load(ONET)?.into_plan(&[
            Dim::Fixed(1),
            Dim::Fixed(3),
            Dim::Fixed(48),
            Dim::Fixed(48),
        ])?;
        Ok(Mtcnn {
            config,
            pnet_file,
            pnet_any,
            pnet_fixed: HashMap::new(),
            rnet,
            onet,
        })
    }

    pub fn config(&self) -> &DetectorConfig {
        &self.config
    }

    /// The same networks (shared, not reloaded) with another configuration: e.g. the
    /// trainer's defaults for photos uploaded to the daemon, whose own detector is tuned
    /// for the camera.
    pub fn with_config(&self, config: DetectorConfig) -> Mtcnn {
        Mtcnn {
            config,
            pnet_file: self.pnet_file.clone(),
            pnet_any: self.pnet_any.clone(),
            pnet_fixed: HashMap::new(),
            rnet: self.rnet.clone(),
            onet: self.onet.clone(),
        }
    }

    /// Builds one optimised P-Net plan per pyramid scale of a fixed frame size
    /// (the camera's), so detection on such frames skips symbolic shapes.
    pub fn prepare_for_frame_size(&mut self, width: u32, height: u32) -> Result<()> {
        for s in pyramid(width, height, &self.config) {
            if let std::collections::hash_map::Entry::Vacant(slot) =
                self.pnet_fixed.entry((s.height, s.width))
            {
                let plan = self.pnet_file.plan(&[
                    Dim::Fixed(1),
                    Dim::Fixed(3),
                    Dim::Fixed(s.height),
                    Dim::Fixed(s.width),
                ])?;
                slot.insert(plan);
            }
        }
        Ok(())
    }

    /// Runs P-Net at one scale.
    fn run_pnet(&self, input: &Tensor32) -> Result<Vec<Tensor32>> {
        let key = (input.shape[2], input.shape[3]);
        match self.pnet_fixed.get(&key) {
            Some(plan) => plan.run(input),
            None => self.pnet_any.run(input),
        }
    }

    /// Runs one network on a raw NCHW input and returns its outputs in graph
    /// order as (shape, values): for golden-tensor checks and benchmarks.
    pub fn run_network(
        &self,
        stage: Stage,
        shape: Vec<usize>,
        data: Vec<f32>,
    ) -> Result<Vec<(Vec<usize>, Vec<f32>)>> {
        let input = Tensor32::new(shape, data);
        let out = match stage {
            Stage::PNet => self.run_pnet(&input)?,
            Stage::RNet => self.rnet.run(&input)?,
            Stage::ONet => self.onet.run(&input)?,
        };
        Ok(out.into_iter().map(|t| (t.shape, t.data)).collect())
    }

    /// Detects faces in an RGB image, best score first.
    pub fn detect(&self, image: &RgbImage) -> Result<Vec<Face>> {
        Ok(self.detect_profiled(image)?.0)
    }

    /// [`Mtcnn::detect`], also reporting how long each stage took.
    pub fn detect_profiled(&self, image: &RgbImage) -> Result<(Vec<Face>, StageTimes)> {
        let t = std::time::Instant::now();
        let plane = Plane::from_rgb(image);
        let candidates = self.stage1(&plane)?;
        let proposals = candidates.len();
        let t1 = t.elapsed();
        let candidates = self.stage2(&plane, candidates)?;
        let refined = candidates.len();
        let t2 = t.elapsed();
        let faces = self.stage3(&plane, candidates)?;
        let times = StageTimes {
            pnet: t1,
            rnet: t2 - t1,
            onet: t.elapsed() - t2,
            proposals,
            refined,
        };
        log::debug!(
            "mtcnn {}x{}: P-Net {proposals} candidates {:.1} ms, R-Net {refined} {:.1} ms, \
             O-Net {} faces {:.1} ms",
            image.width(),
            image.height(),
            times.pnet.as_secs_f64() * 1e3,
            times.rnet.as_secs_f64() * 1e3,
            faces.len(),
            times.onet.as_secs_f64() * 1e3
        );
        Ok((faces, times))
    }

    /// P-Net over the pyramid: proposals, NMS per scale and across scales,
    /// regression, squaring.
    fn stage1(&self, image: &Plane) -> Result<Vec<Candidate>> {
        let (w, h) = (image.width as u32, image.height as u32);
        let mut all = Vec::new();
        for s in pyramid(w, h, &self.config) {
            let mut resized = resize_area(image, s.width, s.height);
            // The reference resizes uint8 images, so pyramid pixels are rounded.
            resized.data.iter_mut().for_each(|v| *v = v.round());
            let mut data = Vec::new();
            push_mtcnn_chw(&resized, &mut data);
            let input = Tensor32::new(vec![1, 3, s.height, s.width], data);
            let out = self.run_pnet(&input)?;
            let [reg, prob] = expect_outputs::<2>(&out, "pnet")?;
            let (oh, ow) = (prob.shape[2], prob.shape[3]);
            let plane = oh * ow;
            let mut level = Vec::new();
            for y in 0..oh {
                for x in 0..ow {
                    let score = prob.data[plane + y * ow + x];
                    if score < self.config.thresholds[0] {
                        continue;
                    }
                    let r = |c: usize| reg.data[c * plane + y * ow + x];
                    let (fx, fy) = (x as f64, y as f64);
                    level.push(Candidate {
                        x1: ((2.0 * fx + 1.0) / s.scale).trunc(),
                        y1: ((2.0 * fy + 1.0) / s.scale).trunc(),
                        x2: ((2.0 * fx + 12.0) / s.scale).trunc(),
                        y2: ((2.0 * fy + 12.0) / s.scale).trunc(),
                        score,
                        reg: [r(0), r(1), r(2), r(3)],
                    });
                }
            }
            let keep = nms(&level, 0.5, Overlap::Union);
            all.extend(keep.into_iter().map(|i| level[i]));
        }
        let keep = nms(&all, 0.7, Overlap::Union);
        Ok(keep
            .into_iter()
            .map(|i| {
                let mut b = all[i];
                regress(&mut b, false);
                square(&mut b);
                truncate(&mut b);
                b
            })
            .collect())
    }

    /// Runs `net` on every candidate's crop, resized to `size`×`size` and
    /// normalised; returns each candidate's outputs.
    fn per_crop(
        net: &Network,
        image: &Plane,
        candidates: &[Candidate],
        size: usize,
    ) -> Result<Vec<Vec<Tensor32>>> {
        candidates
            .iter()
            .map(|b| {
                let mut data = Vec::with_capacity(3 * size * size);
                push_mtcnn_chw(&resize_area(&crop_padded(image, b), size, size), &mut data);
                net.run(&Tensor32::new(vec![1, 3, size, size], data))
            })
            .collect()
    }

    /// R-Net: rescore and refine the proposals.
    fn stage2(&self, image: &Plane, candidates: Vec<Candidate>) -> Result<Vec<Candidate>> {
        if candidates.is_empty() {
            return Ok(candidates);
        }
        let outputs = Self::per_crop(&self.rnet, image, &candidates, 24)?;
        let mut passed = Vec::new();
        for (b, out) in candidates.iter().zip(&outputs) {
            let [reg, prob] = expect_outputs::<2>(out, "rnet")?;
            let score = prob.data[1];
            if score > self.config.thresholds[1] {
                passed.push(Candidate {
                    score,
                    reg: [reg.data[0], reg.data[1], reg.data[2], reg.data[3]],
                    ..*b
                });
            }
        }
        let keep = nms(&passed, 0.7, Overlap::Union);
        Ok(keep
            .into_iter()
            .map(|i| {
                let mut b = passed[i];
                regress(&mut b, true);
                square(&mut b);
                b
            })
            .collect())
    }

    /// O-Net: final score, box and landmarks.
    fn stage3(&self, image: &Plane, mut candidates: Vec<Candidate>) -> Result<Vec<Face>> {
        if candidates.is_empty() {
            return Ok(Vec::new());
        }
        candidates.iter_mut().for_each(truncate);
        let outputs = Self::per_crop(&self.onet, image, &candidates, 48)?;
        let mut passed = Vec::new();
        let mut points = Vec::new();
        for (b, out) in candidates.iter().zip(&outputs) {
            let [reg, landmarks, prob] = expect_outputs::<3>(out, "onet")?;
            let score = prob.data[1];
            if score <= self.config.thresholds[2] {
                continue;
            }
            let w = (b.x2 - b.x1 + 1.0) as f32;
            let h = (b.y2 - b.y1 + 1.0) as f32;
            let l = &landmarks.data[..10];
            let mut p = [(0.0f32, 0.0f32); 5];
            for (k, pt) in p.iter_mut().enumerate() {
                *pt = (
                    b.x1 as f32 + w * l[k] - 1.0,
                    b.y1 as f32 + h * l[5 + k] - 1.0,
                );
            }
            let mut c = Candidate {
                score,
                reg: [reg.data[0], reg.data[1], reg.data[2], reg.data[3]],
                ..*b
            };
            regress(&mut c, true);
            passed.push(c);
            points.push(p);
        }
        let keep = nms(&passed, 0.7, Overlap::Min);
        Ok(keep
            .into_iter()
            .map(|i| {
                let b = &passed[i];
                Face {
                    bbox: BBox {
                        x1: b.x1 as f32,
                        y1: b.y1 as f32,
                        x2: b.x2 as f32,
                        y2: b.y2 as f32,
                    },
                    score: b.score,
                    landmarks: points[i],
                }
            })
            .collect())
    }
}

/// Checks a network returned the expected number of outputs.
fn expect_outputs<'a, const N: usize>(
    out: &'a [Tensor32],
    network: &str,
) -> Result<[&'a Tensor32; N]> {
    let refs: Vec<&Tensor32> = out.iter().collect();
    refs.try_into()
        .map_err(|v: Vec<&Tensor32>| Error::Inference {
            network: network.into(),
            reason: format!("expected {N} outputs, got {}", v.len()),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pyramid_for_640x480_at_min_face_40_has_eight_scales() {
        let config = DetectorConfig {
            min_face_px: 40.0,
            ..Default::default()
        };
        let scales = pyramid(640, 480, &config);
        assert_eq!(scales.len(), 8);
        assert_eq!((scales[0].height, scales[0].width), (144, 192));
        assert_eq!((scales[7].height, scales[7].width), (13, 18));
    }

    #[test]
    fn pyramid_for_640x480_at_min_face_80_has_six_scales() {
        let config = DetectorConfig {
            min_face_px: 80.0,
            ..Default::default()
        };
        let scales = pyramid(640, 480, &config);
        assert_eq!(scales.len(), 6);
        assert_eq!((scales[0].height, scales[0].width), (72, 96));
    }

    #[test]
    fn iou_of_identical_boxes_is_one_and_of_disjoint_boxes_zero() {
        let a = BBox {
            x1: 0.0,
            y1: 0.0,
            x2: 10.0,
            y2: 10.0,
        };
        let b = BBox {
            x1: 20.0,
            y1: 20.0,
            x2: 30.0,
            y2: 30.0,
        };
        assert_eq!(a.iou(&a), 1.0);
        assert_eq!(a.iou(&b), 0.0);
    }
}
