//! The whole recognition pass as one call: detect → crop → embed → classify.
//! Both the trainer and the lock daemon go through here, so enrolment and
//! recognition see faces exactly the same way.

use std::path::Path;

use image::RgbImage;

use crate::align::crop_face;
use crate::classify::{Classifier, Prediction};
use crate::detect::{DetectorConfig, Face, Mtcnn};
use crate::embed::{Embedder, Embedding, Precision};
use crate::error::Result;
use crate::models::ModelDir;

/// Settings shared by enrolment and recognition.
#[derive(Debug, Clone, PartialEq)]
pub struct PipelineConfig {
    pub detector: DetectorConfig,
    /// Crop margin as a fraction of the face box side (0 = tight box).
    pub crop_margin: f32,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        PipelineConfig {
            detector: DetectorConfig::default(),
            crop_margin: 0.0,
        }
    }
}

/// A face with its embedding.
#[derive(Debug, Clone)]
pub struct EmbeddedFace {
    pub face: Face,
    pub embedding: Embedding,
}

/// A face with what the classifier made of it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Recognized {
    pub face: Face,
    pub prediction: Prediction,
}

/// Detector and embedder, loaded once.
#[derive(Debug)]
pub struct FacePipeline {
    pub mtcnn: Mtcnn,
    pub embedder: Embedder,
    pub config: PipelineConfig,
}

impl FacePipeline {
    /// Loads MTCNN and FaceNet from a model directory.
    pub fn load(models: &ModelDir, config: PipelineConfig) -> Result<FacePipeline> {
        Self::load_with(models, config, Precision::F32)
    }

    /// Loads MTCNN, and FaceNet computing in `precision`.
    pub fn load_with(
        models: &ModelDir,
        config: PipelineConfig,
        precision: Precision,
    ) -> Result<FacePipeline> {
        // FaceNet first: the detector's smaller allocations then reuse what its
        // loading freed, rather than adding to its peak.
        let embedder = Embedder::load_with(models, precision)?;
        Ok(FacePipeline {
            mtcnn: Mtcnn::load(models, config.detector.clone())?,
            embedder,
            config,
        })
    }

    /// Loads a classifier for this pipeline through the one trust path
    /// ([`crate::classify::load_trusted`]): signed by `trusted_key` when one is given, made
    /// for this embedder and with this pipeline's settings.
    pub fn load_classifier(
        &self,
        path: &Path,
        trusted_key: Option<&crate::signature::VerifyingKey>,
    ) -> Result<Classifier> {
        crate::classify::load_trusted(path, trusted_key, &crate::classify::Expected::of(self))
    }

    /// Detects faces, largest first.
    pub fn detect(&self, image: &RgbImage) -> Result<Vec<Face>> {
        let mut faces = self.mtcnn.detect(image)?;
        faces.sort_by(|a, b| b.bbox.area().total_cmp(&a.bbox.area()));
        Ok(faces)
    }

    /// Embeds one detected face.
    pub fn embed_face(&self, image: &RgbImage, face: &Face) -> Result<Embedding> {
        let crop = crop_face(image, &face.bbox, self.config.crop_margin);
        self.embedder.embed(&crop)
    }

    /// Detects and embeds every face at least `min_side` pixels on its shorter
    /// side, largest first. Smaller faces never reach the embedder.
    pub fn embed_all(&self, image: &RgbImage, min_side: f32) -> Result<Vec<EmbeddedFace>> {
        self.detect(image)?
            .into_iter()
            .filter(|f| f.bbox.side() >= min_side)
            .map(|face| {
                let embedding = self.embed_face(image, &face)?;
                Ok(EmbeddedFace { face, embedding })
            })
            .collect()
    }

    /// Recognises every face at least `min_side` pixels wide, largest first.
    pub fn recognize(
        &self,
        image: &RgbImage,
        classifier: &Classifier,
        min_side: f32,
    ) -> Result<Vec<Recognized>> {
        self.embed_all(image, min_side)?
            .into_iter()
            .map(|e| {
                Ok(Recognized {
                    prediction: classifier.classify(&e.embedding)?,
                    face: e.face,
                })
            })
            .collect()
    }
}
