//! The classifier: softmax head + open-set gate. Softmax alone always names
//! somebody; the gate turns low-confidence or far-from-centroid faces into
//! "unknown".

use std::path::Path;

use crate::artifact::{self, ClassifierMeta};
use crate::embed::Embedding;
use crate::engine::{Dim, Network, OnnxFile, Tensor32};
use crate::error::{Error, Result};

/// What the classifier says about one embedding.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Prediction {
    /// The accepted person, or `None` for unknown.
    pub identity: Option<String>,
    /// The most likely enrolled person (even when the gate refused).
    pub nearest: String,
    /// Softmax probability of `nearest`.
    pub probability: f32,
    /// Cosine similarity to `nearest`'s centroid.
    pub similarity: f32,
}

impl Prediction {
    /// The name to show: the person, or `unknown`.
    pub fn label(&self) -> &str {
        self.identity.as_deref().unwrap_or("unknown")
    }
}

/// Per-class scores of one embedding.
#[derive(Debug, Clone, PartialEq)]
pub struct Scores {
    pub probabilities: Vec<f32>,
    pub similarities: Vec<f32>,
}

/// A loaded classifier file.
#[derive(Debug)]
pub struct Classifier {
    meta: ClassifierMeta,
    extra: std::collections::HashMap<String, String>,
    net: Network,
}

impl Classifier {
    /// Loads a classifier file and checks it belongs to this embedder.
    pub fn load(path: &Path, embedder_sha256: &str, embedding_size: usize) -> Result<Classifier> {
        let bytes = std::fs::read(path).map_err(|e| Error::ClassifierInvalid {
            path: path.to_owned(),
            reason: format!("cannot read it: {e}"),
        })?;
        Self::from_bytes(path, &bytes, embedder_sha256, embedding_size)
    }

    /// Parses classifier bytes; `path` names the file in errors.
    pub fn from_bytes(
        path: &Path,
        bytes: &[u8],
        embedder_sha256: &str,
        embedding_size: usize,
    ) -> Result<Classifier> {
        let invalid = |reason: String| Error::ClassifierInvalid {
            path: path.to_owned(),
            reason,
        };
        let file = OnnxFile::from_bytes(path, bytes).map_err(|e| invalid(e.to_string()))?;
        let (meta, extra) = artifact::read_meta(&file)?;
        if meta.embedder_sha256 != embedder_sha256 || meta.embedding_size != embedding_size {
            return Err(Error::ClassifierEmbedderMismatch {
                path: path.to_owned(),
                trained: meta.embedder_sha256.clone(),
                trained_dim: meta.embedding_size,
                installed: embedder_sha256.to_owned(),
                installed_dim: embedding_size,
            });
        }
        let net = file
            .into_plan(&[Dim::Fixed(1), Dim::Fixed(embedding_size)])
            .map_err(|e| invalid(e.to_string()))?;
        let classifier = Classifier { meta, extra, net };
        // A head whose outputs do not match its labels is refused now, not per frame.
        let probe = Embedding::from_raw(vec![1.0; embedding_size]);
        let scores = classifier
            .scores(&probe)
            .map_err(|e| invalid(e.to_string()))?;
        if scores.probabilities.len() != classifier.meta.labels.len()
            || scores.similarities.len() != classifier.meta.labels.len()
        {
            return Err(invalid(format!(
                "the network has {} outputs but {} labels",
                scores.probabilities.len(),
                classifier.meta.labels.len()
            )));
        }
        Ok(classifier)
    }

    pub fn meta(&self) -> &ClassifierMeta {
        &self.meta
    }

    pub fn labels(&self) -> &[String] {
        &self.meta.labels
    }

    /// Metadata entries that are not part of the facelock metadata (e.g. a signature).
    pub fn extra_metadata(&self, key: &str) -> Option<&str> {
        self.extra.get(key).map(String::as_str)
    }

    /// Per-class probabilities and centroid similarities.
    pub fn scores(&self, embedding: &Embedding) -> Result<Scores> {
        let input = Tensor32::new(vec![1, embedding.dim()], embedding.as_slice().to_vec());
        let mut out = self.net.run(&input)?.into_iter();
        match (out.next(), out.next()) {
            (Some(p), Some(s)) => Ok(Scores {
                probabilities: p.data,
                similarities: s.data,
            }),
            _ => Err(Error::Inference {
                network: "classifier".into(),
                reason: "expected outputs `probabilities` and `similarities`".into(),
            }),
        }
    }

    /// Classifies one embedding through the softmax head and the open-set gate.
    pub fn classify(&self, embedding: &Embedding) -> Result<Prediction> {
        let scores = self.scores(embedding)?;
        Ok(self.decide(&scores))
    }

    /// Applies the gate to scores already computed.
    pub fn decide(&self, scores: &Scores) -> Prediction {
        let best = scores
            .probabilities
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .map(|(i, _)| i)
            .unwrap_or(0);
        let probability = scores.probabilities[best];
        let similarity = scores.similarities[best];
        let nearest = self.meta.labels[best].clone();
        let identity = self
            .meta
            .thresholds
            .accepts(probability, similarity)
            .then(|| nearest.clone());
        Prediction {
            identity,
            nearest,
            probability,
            similarity,
        }
    }
}
