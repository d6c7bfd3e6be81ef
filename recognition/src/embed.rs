//! FaceNet (Inception-ResNet-v1, 128-D): a 160×160 face crop → an L2-normalised
//! embedding.

use image::RgbImage;

use crate::align::{prewhiten, FACE_SIZE};
use crate::engine::{Arith, Dim, Network, Tensor32};
use crate::error::{Error, Result};
use crate::models::{ModelDir, FACENET};

/// A unit-length face embedding. Biometric data: its `Debug` output never
/// shows the values, and nothing in facelock logs them.
#[derive(Clone, PartialEq)]
pub struct Embedding(Vec<f32>);

impl std::fmt::Debug for Embedding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Embedding({}-D, values withheld)", self.0.len())
    }
}

impl Embedding {
    /// Normalises a raw vector to unit length.
    pub fn from_raw(mut v: Vec<f32>) -> Embedding {
        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
        v.iter_mut().for_each(|x| *x /= norm);
        Embedding(v)
    }

    pub fn as_slice(&self) -> &[f32] {
        &self.0
    }

    pub fn dim(&self) -> usize {
        self.0.len()
    }

    /// Cosine similarity (both vectors are unit length).
    pub fn cosine(&self, other: &[f32]) -> f32 {
        self.0.iter().zip(other).map(|(a, b)| a * b).sum()
    }
}

/// The number format FaceNet computes in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Precision {
    /// The network's own 32-bit floats.
    #[default]
    F32,
    /// 16-bit floats (tract's `f32_to_f16` transform). Fast only on CPUs with FP16
    /// arithmetic (ARMv8.2-A FP16, e.g. the Pi 5's Cortex-A76); elsewhere tract emulates
    /// it, slowly.
    F16,
}

impl Precision {
    /// `F16` where the CPU has FP16 arithmetic, detected at run time, `F32` elsewhere.
    pub fn native() -> Precision {
        #[cfg(target_arch = "aarch64")]
        if std::arch::is_aarch64_feature_detected!("fp16") {
            return Precision::F16;
        }
        Precision::F32
    }

    /// The lower-case name: `f32` or `f16`.
    pub fn as_str(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::F16 => "f16",
        }
    }
}

impl std::fmt::Display for Precision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Precision {
    type Err = String;

    /// `f32`, `f16`, or `auto` ([`Precision::native`]).
    fn from_str(s: &str) -> std::result::Result<Precision, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "f32" => Ok(Precision::F32),
            "f16" => Ok(Precision::F16),
            "auto" => Ok(Precision::native()),
            other => Err(format!("`{other}` is not a precision: f32, f16 or auto")),
        }
    }
}

/// The layers kept in `f32` by [`Precision::F16`] (node names containing these).
const F16_KEEP_F32: &[&str] = &[];

/// The FaceNet embedder, loaded and optimised once.
#[derive(Debug)]
pub struct Embedder {
    net: Network,
    sha256: String,
    dim: usize,
    precision: Precision,
}

impl Embedder {
    /// Loads FaceNet from a verified model directory, in `f32`.
    pub fn load(models: &ModelDir) -> Result<Embedder> {
        Self::load_with(models, Precision::F32)
    }

    /// Loads FaceNet computing in `precision`.
    pub fn load_with(models: &ModelDir, precision: Precision) -> Result<Embedder> {
        let arith = match precision {
            Precision::F32 => Arith::F32,
            Precision::F16 => Arith::F16 {
                keep_f32: F16_KEEP_F32.iter().map(|s| s.to_string()).collect(),
            },
        };
        Self::load_arith(models, precision, arith)
    }

    /// FaceNet in `f16` except the nodes whose names contain one of `keep_f32`: for
    /// measuring which layers need `f32` (see `examples/f16.rs`).
    #[doc(hidden)]
    pub fn load_f16_keeping(models: &ModelDir, keep_f32: &[&str]) -> Result<Embedder> {
        let keep_f32 = keep_f32.iter().map(|s| s.to_string()).collect();
        Self::load_arith(models, Precision::F16, Arith::F16 { keep_f32 })
    }

    fn load_arith(models: &ModelDir, precision: Precision, arith: Arith) -> Result<Embedder> {
        let size = FACE_SIZE as usize;
        let net = models.load(FACENET)?.into_plan_with(
            &[
                Dim::Fixed(1),
                Dim::Fixed(size),
                Dim::Fixed(size),
                Dim::Fixed(3),
            ],
            &arith,
        )?;
        Ok(Embedder {
            net,
            sha256: models.embedder_sha256().to_owned(),
            dim: models.embedding_size(),
            precision,
        })
    }

    /// The number format the network computes in.
    pub fn precision(&self) -> Precision {
        self.precision
    }

    /// The sha256 of the embedding network file.
    pub fn sha256(&self) -> &str {
        &self.sha256
    }

    /// The embedding size.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Embeds an aligned 160×160 crop.
    pub fn embed(&self, crop: &RgbImage) -> Result<Embedding> {
        let raw = self.embed_raw(crop)?;
        Ok(Embedding::from_raw(raw))
    }

    /// The network's raw (un-normalised) output for a crop.
    pub fn embed_raw(&self, crop: &RgbImage) -> Result<Vec<f32>> {
        if crop.dimensions() != (FACE_SIZE, FACE_SIZE) {
            return Err(Error::Inference {
                network: "facenet".into(),
                reason: format!(
                    "crop is {}x{}, expected {FACE_SIZE}x{FACE_SIZE}",
                    crop.width(),
                    crop.height()
                ),
            });
        }
        self.embed_tensor(prewhiten(crop))
    }

    /// Runs the network on an already normalised NHWC input.
    pub fn embed_tensor(&self, input: Vec<f32>) -> Result<Vec<f32>> {
        let size = FACE_SIZE as usize;
        let out = self
            .net
            .run(&Tensor32::new(vec![1, size, size, 3], input))?;
        let first = out.into_iter().next().ok_or_else(|| Error::Inference {
            network: "facenet".into(),
            reason: "no output".into(),
        })?;
        if first.data.len() != self.dim {
            return Err(Error::Inference {
                network: "facenet".into(),
                reason: format!(
                    "embedding has {} values, the manifest says {}",
                    first.data.len(),
                    self.dim
                ),
            });
        }
        Ok(first.data)
    }
}

#[cfg(test)]
mod tests {
    use super::Precision;

    #[test]
    fn precision_parses_and_defaults_to_f32() {
        assert_eq!(Precision::default(), Precision::F32);
        assert_eq!("F16".parse(), Ok(Precision::F16));
        assert_eq!(" f32 ".parse(), Ok(Precision::F32));
        assert_eq!("auto".parse(), Ok(Precision::native()));
        assert!("f64".parse::<Precision>().is_err());
        assert_eq!(Precision::F16.to_string(), "f16");
        // Off aarch64 there is no FP16 arithmetic to use.
        if !cfg!(target_arch = "aarch64") {
            assert_eq!(Precision::native(), Precision::F32);
        }
    }
}
