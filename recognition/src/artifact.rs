//! The classifier file: a small ONNX model (the exported softmax head plus a
//! centroid-similarity output) whose metadata carries everything needed to use
//! it safely: format version, labels, open-set thresholds, the embedder it was
//! trained against, the pipeline settings its embeddings were made with, and
//! provenance.
//!
//! Loading one for use goes through [`crate::classify::load_trusted`] (or
//! [`crate::Classifier::from_trusted_bytes`]), which checks the signature, the embedder and
//! the pipeline settings recorded here against those in use.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::engine::{HeadGraph, OnnxFile};
use crate::error::{Error, Result};
use crate::pipeline::PipelineConfig;

/// The classifier format this build reads and writes.
pub const FORMAT_VERSION: u32 = 1;

/// The version of the face pipeline whose embeddings a classifier is trained on: detection
/// (MTCNN and its resampling), cropping (`align`) and embedding preprocessing (prewhitening,
/// the FaceNet input). Bump it whenever any of these changes what embedding a photo gets:
/// classifiers made by another version are refused ([`ClassifierMeta::check_pipeline`]),
/// because their thresholds were calibrated on embeddings this build no longer produces.
pub const PIPELINE_VERSION: u32 = 1;

const KEY_FORMAT: &str = "facelock.format";
const KEY_META: &str = "facelock.meta";

/// The open-set gate: a face is accepted as the predicted person only if both
/// the softmax probability and the cosine similarity to that person's centroid
/// reach these values.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Thresholds {
    pub min_probability: f32,
    pub min_similarity: f32,
}

impl Thresholds {
    pub fn accepts(&self, probability: f32, similarity: f32) -> bool {
        probability >= self.min_probability && similarity >= self.min_similarity
    }
}

/// Everything the classifier file says about itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassifierMeta {
    /// Enrolled people, in output order.
    pub labels: Vec<String>,
    pub thresholds: Thresholds,
    /// sha256 of the FaceNet ONNX file the embeddings came from.
    pub embedder_sha256: String,
    pub embedding_size: usize,
    /// Creation time, RFC 3339 (UTC).
    pub created: String,
    /// Usable photos per enrolled person.
    pub photos_per_person: BTreeMap<String, usize>,
    /// Free-form notes from training (e.g. cross-validation figures).
    #[serde(default)]
    pub notes: BTreeMap<String, String>,
    /// Crop margin the embeddings were made with, as a fraction of the face box side
    /// (`trainer --crop-margin`). Must equal the crop margin in use. Files written before
    /// this field existed load with 0.0, the only value the trainer used by default then.
    #[serde(default = "legacy::crop_margin")]
    pub crop_margin: f32,
    /// Smallest face, in pixels, the detector looked for while enrolling
    /// (`trainer --min-face-px`). It sets the detector's image pyramid, so the boxes and the
    /// embeddings of the same face differ with it (cosine 0.90-0.97 between 20 and 60 px on
    /// the sample photos): it must equal the detector minimum face in use. Files written
    /// before this field existed load with 20, the trainer's default then.
    #[serde(default = "legacy::detector_min_face_px")]
    pub detector_min_face_px: f32,
    /// [`PIPELINE_VERSION`] of the build that made the embeddings. Files written before
    /// this field existed load with 1, the version of the pipeline when it was introduced.
    #[serde(default = "legacy::pipeline_version")]
    pub pipeline_version: u32,
}

/// The values of the pipeline fields for classifier files written before they were
/// recorded: the settings of that time, fixed (not today's defaults, which may change).
mod legacy {
    pub(super) fn crop_margin() -> f32 {
        0.0
    }

    pub(super) fn detector_min_face_px() -> f32 {
        20.0
    }

    pub(super) fn pipeline_version() -> u32 {
        1
    }
}

/// A pipeline setting a classifier records and the one using it must match.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PipelineSetting {
    /// [`PIPELINE_VERSION`].
    Version,
    /// [`crate::PipelineConfig::crop_margin`].
    CropMargin,
    /// [`crate::DetectorConfig::min_face_px`].
    DetectorMinFace,
}

impl std::fmt::Display for PipelineSetting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PipelineSetting::Version => "pipeline version",
            PipelineSetting::CropMargin => "crop margin",
            PipelineSetting::DetectorMinFace => "detector minimum face",
        })
    }
}

/// Recorded settings are decimal text read back as `f32`, and the lock's settings go
/// through `f64` first: equal up to this.
const SETTING_TOLERANCE: f32 = 1e-6;

impl ClassifierMeta {
    /// Refuses a classifier made with another crop margin than `config` (or by another
    /// [`PIPELINE_VERSION`]): its thresholds were calibrated on embeddings made another way,
    /// so at the door they would silently mean something else. The error names both values
    /// and the fix. `path` names the file in errors.
    ///
    /// The detector's minimum face is recorded but not enforced. The trainer looks for faces
    /// from 20 px, because enrolment photos hold small faces, and the lock from 60 px,
    /// because it only acts on faces of `recognition.min_face_px` (80) and up and the finer
    /// pyramid levels triple detection time (96 against 31 ms for one face at 640×480) and
    /// find spurious faces in upscaled frames, each of which blocks an unlock. The two
    /// pyramids box the same face slightly differently (cosine 0.90–0.97 between the two
    /// embeddings on the sample photos); every classifier the project has calibrated was
    /// used at the door this way, and the door tests let people in and keep strangers out
    /// at this pairing.
    pub fn check_pipeline(&self, path: &Path, config: &PipelineConfig) -> Result<()> {
        let mismatch = |setting, trained: String, in_use: String, fix: String| {
            Err(Error::ClassifierSettingMismatch {
                path: path.to_owned(),
                setting,
                trained,
                in_use,
                fix,
            })
        };
        if self.pipeline_version != PIPELINE_VERSION {
            let fix = if self.pipeline_version > PIPELINE_VERSION {
                "it was made by a newer facelock: upgrade the lock and the trainer to the \
                 release that made it, or retrain it with this release's `trainer train`"
            } else {
                "face detection, cropping or embedding changed since it was made: retrain \
                 it with this release's `trainer train`"
            };
            return mismatch(
                PipelineSetting::Version,
                self.pipeline_version.to_string(),
                PIPELINE_VERSION.to_string(),
                fix.into(),
            );
        }
        if (self.crop_margin - config.crop_margin).abs() > SETTING_TOLERANCE {
            return mismatch(
                PipelineSetting::CropMargin,
                self.crop_margin.to_string(),
                format!(
                    "{} (the lock's `recognition.crop_margin`, the trainer's `--crop-margin`)",
                    config.crop_margin
                ),
                format!(
                    "faces would be cropped differently than at training: set it to {}, or \
                     retrain with `trainer --crop-margin {} train`",
                    self.crop_margin, config.crop_margin
                ),
            );
        }
        Ok(())
    }
}

/// The trained parameters of the head.
#[derive(Debug, Clone, PartialEq)]
pub struct HeadParams {
    /// Row-major `[embedding_size, classes]`.
    pub weights: Vec<f32>,
    pub bias: Vec<f32>,
    /// Unit-length class centroids, row-major `[embedding_size, classes]`.
    pub centroids: Vec<f32>,
}

/// Serialises a classifier to ONNX bytes. `extra` metadata entries (such as a
/// signature) are appended after the facelock keys.
pub fn encode(meta: &ClassifierMeta, head: &HeadParams, extra: &[(String, String)]) -> Vec<u8> {
    let (dim, classes) = (meta.embedding_size, meta.labels.len());
    assert_eq!(head.weights.len(), dim * classes, "weights shape");
    assert_eq!(head.bias.len(), classes, "bias shape");
    assert_eq!(head.centroids.len(), dim * classes, "centroids shape");
    let mut metadata = vec![
        (KEY_FORMAT.to_owned(), FORMAT_VERSION.to_string()),
        (
            KEY_META.to_owned(),
            serde_json::to_string(meta).expect("metadata serialises"),
        ),
    ];
    metadata.extend_from_slice(extra);
    HeadGraph {
        dim,
        classes,
        weights: &head.weights,
        bias: &head.bias,
        centroids: &head.centroids,
        metadata: &metadata,
    }
    .to_onnx_bytes()
}

/// Writes a classifier atomically ([`crate::atomic::replace_file`]), so a reader (the
/// daemon's reload) never sees half a file. The folder is created if needed.
pub fn write(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write as _;
    let io = |e: std::io::Error| Error::ClassifierInvalid {
        path: path.to_owned(),
        reason: format!("cannot write: {e}"),
    };
    if let Some(dir) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    // An ordinary file (0666 less the umask): the lock's service user must read the copy.
    crate::atomic::replace_file(path, 0o666, |f| f.write_all(bytes)).map_err(io)
}

/// Reads and checks the metadata of classifier bytes without building the network (no
/// embedder needed): for tools that only need to know what a file is, such as
/// `trainer push`'s look before uploading. No trust check (signature, settings, embedder):
/// a classifier to be used goes through [`crate::classify::load_trusted`]. `path` names the
/// file in errors.
pub fn meta_from_bytes(path: &Path, bytes: &[u8]) -> Result<ClassifierMeta> {
    let file = OnnxFile::from_bytes(path, bytes).map_err(|e| Error::ClassifierInvalid {
        path: path.to_owned(),
        reason: e.to_string(),
    })?;
    read_meta(&file)
}

/// Reads and checks the metadata of a parsed classifier file.
pub(crate) fn read_meta(file: &OnnxFile) -> Result<ClassifierMeta> {
    let invalid = |reason: String| Error::ClassifierInvalid {
        path: file.path().to_owned(),
        reason,
    };
    let props = file.metadata();
    let format = props.get(KEY_FORMAT).ok_or_else(|| {
        invalid(
            "it carries no facelock metadata; is it a classifier made by `trainer train`?".into(),
        )
    })?;
    if format != &FORMAT_VERSION.to_string() {
        return Err(invalid(format!(
            "format version {format}, this build reads version {FORMAT_VERSION}; \
             retrain with the matching `trainer`"
        )));
    }
    let meta: ClassifierMeta = props
        .get(KEY_META)
        .ok_or_else(|| invalid("metadata entry missing".into()))
        .and_then(|m| serde_json::from_str(m).map_err(|e| invalid(format!("bad metadata: {e}"))))?;
    if meta.labels.is_empty() {
        return Err(invalid("it enrolls nobody".into()));
    }
    Ok(meta)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(created: &str) -> ClassifierMeta {
        ClassifierMeta {
            labels: vec!["ada".into()],
            thresholds: Thresholds {
                min_probability: 0.5,
                min_similarity: 0.5,
            },
            embedder_sha256: "00".into(),
            embedding_size: 2,
            created: created.into(),
            photos_per_person: Default::default(),
            notes: Default::default(),
            crop_margin: 0.0,
            detector_min_face_px: 20.0,
            pipeline_version: PIPELINE_VERSION,
        }
    }

    #[test]
    fn metadata_reads_back_without_an_embedder() {
        let head = HeadParams {
            weights: vec![0.1; 2],
            bias: vec![0.0],
            centroids: vec![0.5; 2],
        };
        let m = meta("2026-01-02T03:04:05.123456789Z");
        let bytes = encode(&m, &head, &[]);
        assert_eq!(meta_from_bytes(Path::new("c.onnx"), &bytes).unwrap(), m);
        let err = meta_from_bytes(Path::new("c.onnx"), &bytes[..bytes.len() / 2]).unwrap_err();
        assert!(err.to_string().contains("c.onnx"), "{err}");
    }

    #[test]
    fn metadata_written_before_the_pipeline_fields_reads_with_the_settings_of_that_time() {
        let mut json = serde_json::to_value(meta("2024-01-01T00:00:00Z")).unwrap();
        let fields = json.as_object_mut().unwrap();
        for key in ["crop_margin", "detector_min_face_px", "pipeline_version"] {
            assert!(fields.remove(key).is_some(), "{key}");
        }
        let old: ClassifierMeta = serde_json::from_value(json).unwrap();
        assert_eq!(old.crop_margin, 0.0);
        assert_eq!(old.detector_min_face_px, 20.0);
        assert_eq!(old.pipeline_version, 1);
        // ... which is what the trainer's and the pipeline's defaults still are.
        old.check_pipeline(Path::new("old.onnx"), &PipelineConfig::default())
            .unwrap();
    }

    fn refusal(meta: &ClassifierMeta, config: &PipelineConfig) -> String {
        meta.check_pipeline(Path::new("c.onnx"), config)
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn another_crop_margin_is_refused_naming_both_values_and_the_fix() {
        let trained = ClassifierMeta {
            crop_margin: 0.2,
            ..meta("2024-01-01T00:00:00Z")
        };
        let err = refusal(&trained, &PipelineConfig::default());
        assert!(
            err.contains("c.onnx was made with crop margin 0.2, but this pipeline uses 0 ")
                && err.contains("set it to 0.2, or retrain with `trainer --crop-margin 0 train`"),
            "{err}"
        );
        let same = PipelineConfig {
            crop_margin: 0.2,
            ..PipelineConfig::default()
        };
        trained.check_pipeline(Path::new("c.onnx"), &same).unwrap();
    }

    #[test]
    fn another_detector_minimum_face_is_recorded_but_not_refused() {
        let door = PipelineConfig {
            detector: crate::DetectorConfig {
                min_face_px: 60.0,
                ..Default::default()
            },
            ..PipelineConfig::default()
        };
        let trained = meta("2024-01-01T00:00:00Z");
        assert_eq!(trained.detector_min_face_px, 20.0);
        trained.check_pipeline(Path::new("c.onnx"), &door).unwrap();
    }

    #[test]
    fn another_pipeline_version_is_refused_with_retrain_or_upgrade() {
        let older = ClassifierMeta {
            pipeline_version: 0,
            ..meta("2024-01-01T00:00:00Z")
        };
        let err = refusal(&older, &PipelineConfig::default());
        assert!(
            err.contains(&format!(
                "pipeline version 0, but this pipeline uses {PIPELINE_VERSION}"
            )) && err.contains("retrain it with this release's `trainer train`"),
            "{err}"
        );
        let newer = ClassifierMeta {
            pipeline_version: PIPELINE_VERSION + 1,
            ..older
        };
        let err = refusal(&newer, &PipelineConfig::default());
        assert!(err.contains("made by a newer facelock: upgrade"), "{err}");
    }
}
