//! The classifier file: a small ONNX model (the exported softmax head plus a
//! centroid-similarity output) whose metadata carries everything needed to use
//! it safely: format version, labels, open-set thresholds, the embedder it was
//! trained against, and provenance.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::engine::{HeadGraph, OnnxFile};
use crate::error::{Error, Result};

/// The classifier format this build reads and writes.
pub const FORMAT_VERSION: u32 = 1;

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

/// Writes a classifier atomically: a temporary file next to `path`, then a
/// rename, so a reader (the daemon's reload) never sees half a file.
pub fn write(path: &Path, bytes: &[u8]) -> Result<()> {
    let io = |e: std::io::Error| Error::ClassifierInvalid {
        path: path.to_owned(),
        reason: format!("cannot write: {e}"),
    };
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(io)?;
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        path.file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default(),
        std::process::id()
    ));
    std::fs::write(&tmp, bytes).map_err(io)?;
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        io(e)
    })
}

/// Reads and checks the metadata of classifier bytes without building the network (no
/// embedder needed): for tools that only need to know what a file is, such as the lock's
/// rollback check. `path` names the file in errors.
pub fn meta_from_bytes(path: &Path, bytes: &[u8]) -> Result<ClassifierMeta> {
    let file = OnnxFile::from_bytes(path, bytes).map_err(|e| Error::ClassifierInvalid {
        path: path.to_owned(),
        reason: e.to_string(),
    })?;
    Ok(read_meta(&file)?.0)
}

/// Reads and checks the metadata of a parsed classifier file.
pub(crate) fn read_meta(file: &OnnxFile) -> Result<(ClassifierMeta, HashMap<String, String>)> {
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
    Ok((meta, props))
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
}
