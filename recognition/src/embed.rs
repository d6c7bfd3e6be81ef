//! FaceNet (Inception-ResNet-v1, 128-D): a 160×160 face crop → an L2-normalised
//! embedding.

use image::RgbImage;

use crate::align::{prewhiten, FACE_SIZE};
use crate::engine::{Dim, Network, Tensor32};
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

    /// Euclidean distance to another embedding.
    pub fn distance(&self, other: &Embedding) -> f32 {
        self.0
            .iter()
            .zip(&other.0)
            .map(|(a, b)| (a - b) * (a - b))
            .sum::<f32>()
            .sqrt()
    }
}

/// The FaceNet embedder, loaded and optimised once.
#[derive(Debug)]
pub struct Embedder {
    net: Network,
    sha256: String,
    dim: usize,
}

impl Embedder {
    /// Loads FaceNet from a verified model directory.
    pub fn load(models: &ModelDir) -> Result<Embedder> {
        let size = FACE_SIZE as usize;
        let net = models.load(FACENET)?.into_plan(&[
            Dim::Fixed(1),
            Dim::Fixed(size),
            Dim::Fixed(size),
            Dim::Fixed(3),
        ])?;
        Ok(Embedder {
            net,
            sha256: models.embedder_sha256().to_owned(),
            dim: models.embedding_size(),
        })
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
