//! The classifier: softmax head + open-set gate. Softmax alone always names
//! somebody; the gate turns low-confidence or far-from-centroid faces into
//! "unknown".

use std::path::Path;

use crate::artifact::{self, ClassifierMeta};
use crate::embed::Embedding;
use crate::engine::{Dim, Network, OnnxFile, Tensor32};
use crate::error::{Error, Result};
use crate::pipeline::{FacePipeline, PipelineConfig};
use crate::signature::{self, VerifyingKey};

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
    net: Network,
}

/// What a classifier file must match to be used here: the embedder and the pipeline
/// settings in use. [`Expected::of`] takes them from the pipeline that will use it.
#[derive(Debug, Clone, Copy)]
pub struct Expected<'a> {
    /// sha256 of the FaceNet ONNX file in use.
    pub embedder_sha256: &'a str,
    pub embedding_size: usize,
    /// Crop margin and detector minimum face in use.
    pub config: &'a PipelineConfig,
}

impl<'a> Expected<'a> {
    /// What `pipeline` needs of a classifier.
    pub fn of(pipeline: &'a FacePipeline) -> Expected<'a> {
        Expected {
            embedder_sha256: pipeline.embedder.sha256(),
            embedding_size: pipeline.embedder.dim(),
            config: &pipeline.config,
        }
    }
}

/// Reads a classifier file once and loads it through [`Classifier::from_trusted_bytes`]:
/// the trainer's `recognize` and `evaluate` load classifiers this way, the lock (which also
/// keeps the bytes for its rollback check) calls [`Classifier::from_trusted_bytes`].
pub fn load_trusted(
    path: &Path,
    trusted_key: Option<&VerifyingKey>,
    expected: &Expected,
) -> Result<Classifier> {
    let bytes = std::fs::read(path).map_err(|e| Error::ClassifierInvalid {
        path: path.to_owned(),
        reason: format!("cannot read it: {e}"),
    })?;
    Classifier::from_trusted_bytes(path, &bytes, trusted_key, expected)
}

/// The trust checks that need no models, on bytes already read: the signature (with a
/// trusted key), the format and metadata, and the pipeline version and settings against
/// `config`. Everything [`Classifier::from_trusted_bytes`] checks except the embedder, for
/// tools that must judge a file without the models (the lock's `check-config` when the
/// models are the problem, `allow-downgrade`).
pub fn check_without_models(
    path: &Path,
    bytes: &[u8],
    trusted_key: Option<&VerifyingKey>,
    config: &PipelineConfig,
) -> Result<ClassifierMeta> {
    Ok(checked_file(path, bytes, trusted_key, config)?.1)
}

/// Signature, format, metadata and pipeline settings: the part of the trust path shared by
/// [`Classifier::from_trusted_bytes`] and [`check_without_models`].
fn checked_file(
    path: &Path,
    bytes: &[u8],
    trusted_key: Option<&VerifyingKey>,
    config: &PipelineConfig,
) -> Result<(OnnxFile, ClassifierMeta)> {
    // The signature first: nothing of an untrusted file is parsed beyond it.
    if let Some(key) = trusted_key {
        signature::verify(bytes, key).map_err(|reason| Error::ClassifierSignature {
            path: path.to_owned(),
            reason,
        })?;
    }
    let file = OnnxFile::from_bytes(path, bytes).map_err(|e| Error::ClassifierInvalid {
        path: path.to_owned(),
        reason: e.to_string(),
    })?;
    let meta = artifact::read_meta(&file)?;
    meta.check_pipeline(path, config)?;
    Ok((file, meta))
}

impl Classifier {
    /// The one trust path for classifier files, used by the trainer and the lock alike. On
    /// the bytes given (read once, so what is checked is what is used):
    ///
    /// 1. with a trusted key, the signature: an unsigned, modified or otherwise signed file
    ///    is refused ([`Error::ClassifierSignature`]); without one, signatures are not
    ///    looked at;
    /// 2. the format and metadata;
    /// 3. the pipeline version, crop margin and detector minimum face it was made with,
    ///    which must equal those in use ([`ClassifierMeta::check_pipeline`]);
    /// 4. the embedder it was trained against, which must be the one in use;
    /// 5. the network, whose outputs must match its labels.
    ///
    /// `path` names the file in errors.
    pub fn from_trusted_bytes(
        path: &Path,
        bytes: &[u8],
        trusted_key: Option<&VerifyingKey>,
        expected: &Expected,
    ) -> Result<Classifier> {
        let (file, meta) = checked_file(path, bytes, trusted_key, expected.config)?;
        if meta.embedder_sha256 != expected.embedder_sha256
            || meta.embedding_size != expected.embedding_size
        {
            return Err(Error::ClassifierEmbedderMismatch {
                path: path.to_owned(),
                trained: meta.embedder_sha256.clone(),
                trained_dim: meta.embedding_size,
                installed: expected.embedder_sha256.to_owned(),
                installed_dim: expected.embedding_size,
            });
        }
        let invalid = |reason: String| Error::ClassifierInvalid {
            path: path.to_owned(),
            reason,
        };
        let embedding_size = expected.embedding_size;
        let net = file
            .into_plan(&[Dim::Fixed(1), Dim::Fixed(embedding_size)])
            .map_err(|e| invalid(e.to_string()))?;
        let classifier = Classifier { meta, net };
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::artifact::{HeadParams, Thresholds, PIPELINE_VERSION};
    use crate::signature::SigningKey;

    const EMBEDDER: &str = "00";
    const DIM: usize = 4;

    fn meta() -> ClassifierMeta {
        ClassifierMeta {
            labels: vec!["ada".into(), "grace".into()],
            thresholds: Thresholds {
                min_probability: 0.5,
                min_similarity: 0.5,
            },
            embedder_sha256: EMBEDDER.into(),
            embedding_size: DIM,
            created: "2024-01-01T00:00:00Z".into(),
            photos_per_person: Default::default(),
            notes: Default::default(),
            crop_margin: 0.0,
            detector_min_face_px: 20.0,
            pipeline_version: PIPELINE_VERSION,
        }
    }

    fn bytes_of(meta: &ClassifierMeta) -> Vec<u8> {
        let head = HeadParams {
            weights: vec![0.1, -0.1, 0.2, 0.0, -0.3, 0.1, 0.0, 0.2],
            bias: vec![0.0; 2],
            centroids: vec![0.5; DIM * 2],
        };
        artifact::encode(meta, &head, &[])
    }

    fn key() -> (SigningKey, VerifyingKey) {
        let keys = signature::keygen();
        let path = Path::new("k.pem");
        (
            signature::signing_key_from_pem(&keys.private_pem, path).unwrap(),
            signature::verifying_key_from_pem(&keys.public_pem, path).unwrap(),
        )
    }

    fn load(
        bytes: &[u8],
        key: Option<&VerifyingKey>,
        config: &PipelineConfig,
    ) -> Result<Classifier> {
        let expected = Expected {
            embedder_sha256: EMBEDDER,
            embedding_size: DIM,
            config,
        };
        Classifier::from_trusted_bytes(Path::new("c.onnx"), bytes, key, &expected)
    }

    #[test]
    fn a_classifier_signed_with_the_trusted_key_loads() {
        let (signing, trusted) = key();
        let signed = signature::sign(&bytes_of(&meta()), &signing);
        let loaded = load(&signed, Some(&trusted), &PipelineConfig::default()).unwrap();
        assert_eq!(loaded.meta(), &meta());
    }

    #[test]
    fn an_unsigned_classifier_is_refused_when_a_trusted_key_is_given() {
        let (_, trusted) = key();
        let unsigned = bytes_of(&meta());
        let err = load(&unsigned, Some(&trusted), &PipelineConfig::default()).unwrap_err();
        assert!(
            matches!(
                &err,
                Error::ClassifierSignature {
                    reason: signature::SignatureError::Unsigned,
                    ..
                }
            ),
            "{err}"
        );
        assert!(
            err.to_string()
                .starts_with("classifier c.onnx refused: unsigned")
                && err.to_string().contains("trainer sign"),
            "{err}"
        );
        // Without a key, signatures are not looked at.
        load(&unsigned, None, &PipelineConfig::default()).unwrap();
    }

    #[test]
    fn a_classifier_signed_with_another_key_is_refused() {
        let (other, _) = key();
        let (_, trusted) = key();
        let signed = signature::sign(&bytes_of(&meta()), &other);
        let err = load(&signed, Some(&trusted), &PipelineConfig::default()).unwrap_err();
        assert!(
            err.to_string().contains("signed by another key")
                && err.to_string().contains("re-sign it"),
            "{err}"
        );
        // The same refusal where the models are missing.
        let err = check_without_models(
            Path::new("c.onnx"),
            &signed,
            Some(&trusted),
            &PipelineConfig::default(),
        )
        .unwrap_err();
        assert!(matches!(err, Error::ClassifierSignature { .. }), "{err}");
    }

    #[test]
    fn a_classifier_made_with_another_crop_margin_is_refused_with_and_without_models() {
        let trained = ClassifierMeta {
            crop_margin: 0.25,
            ..meta()
        };
        let bytes = bytes_of(&trained);
        let err = load(&bytes, None, &PipelineConfig::default()).unwrap_err();
        assert!(
            matches!(
                &err,
                Error::ClassifierSettingMismatch {
                    setting: artifact::PipelineSetting::CropMargin,
                    ..
                }
            ) && err
                .to_string()
                .contains("crop margin 0.25, but this pipeline uses 0 "),
            "{err}"
        );
        let err = check_without_models(
            Path::new("c.onnx"),
            &bytes,
            None,
            &PipelineConfig::default(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("set it to 0.25"), "{err}");
        let matching = PipelineConfig {
            crop_margin: 0.25,
            ..PipelineConfig::default()
        };
        load(&bytes, None, &matching).unwrap();
    }

    #[test]
    fn a_classifier_for_another_embedder_is_refused() {
        let other = ClassifierMeta {
            embedder_sha256: "ff".into(),
            ..meta()
        };
        let err = load(&bytes_of(&other), None, &PipelineConfig::default()).unwrap_err();
        assert!(
            matches!(err, Error::ClassifierEmbedderMismatch { .. }),
            "{err}"
        );
    }
}
