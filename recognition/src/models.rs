//! The model directory written by `models/fetch.sh`: ONNX files plus a manifest
//! with their checksums and provenance.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::engine::OnnxFile;
use crate::error::{Error, Result};

/// The manifest file name inside a model directory.
pub const MANIFEST: &str = "manifest.json";

/// The networks the pipeline needs, by manifest key.
pub(crate) const PNET: &str = "pnet";
pub(crate) const RNET: &str = "rnet";
pub(crate) const ONET: &str = "onet";
pub(crate) const FACENET: &str = "facenet";

#[derive(Debug, Clone, Deserialize)]
struct Manifest {
    models: BTreeMap<String, ModelEntry>,
}

#[derive(Debug, Clone, Deserialize)]
struct ModelEntry {
    file: String,
    sha256: String,
    #[serde(default)]
    embedding_size: Option<usize>,
}

/// A verified model directory.
#[derive(Debug, Clone)]
pub struct ModelDir {
    dir: PathBuf,
    manifest: Manifest,
}

impl ModelDir {
    /// Where `models/fetch.sh` puts the models unless told otherwise:
    /// `$FACELOCK_MODELS`, else `$FACELOCK_CACHE/models`, else `~/.cache/facelock/models`.
    pub fn default_location() -> PathBuf {
        if let Some(dir) = std::env::var_os("FACELOCK_MODELS") {
            return PathBuf::from(dir);
        }
        let cache = std::env::var_os("FACELOCK_CACHE")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache/facelock")))
            .unwrap_or_else(|| PathBuf::from(".cache/facelock"));
        cache.join("models")
    }

    /// Opens a model directory and reads its manifest. Checksums are verified
    /// when each model is loaded.
    pub fn open(dir: impl AsRef<Path>) -> Result<ModelDir> {
        let dir = dir.as_ref().to_owned();
        let path = dir.join(MANIFEST);
        let text = std::fs::read_to_string(&path).map_err(|e| Error::model_io(&path, e))?;
        let manifest: Manifest = serde_json::from_str(&text).map_err(|e| Error::ModelInvalid {
            path: path.clone(),
            reason: format!("manifest is not valid: {e}"),
        })?;
        let dir = ModelDir { dir, manifest };
        for name in [PNET, RNET, ONET, FACENET] {
            dir.entry(name)?;
        }
        Ok(dir)
    }

    /// The directory path.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    fn entry(&self, name: &str) -> Result<&ModelEntry> {
        self.manifest
            .models
            .get(name)
            .ok_or_else(|| Error::ModelInvalid {
                path: self.dir.join(MANIFEST),
                reason: format!("the manifest lists no `{name}` model"),
            })
    }

    /// The sha256 of the embedding network, as recorded in the manifest; a
    /// classifier records it so it is never used with another embedder.
    pub fn embedder_sha256(&self) -> &str {
        &self.manifest.models[FACENET].sha256
    }

    /// The embedding size the manifest declares (128 for the Keras FaceNet).
    pub fn embedding_size(&self) -> usize {
        self.manifest.models[FACENET].embedding_size.unwrap_or(128)
    }

    /// Reads one network, verifies its checksum and parses it.
    pub(crate) fn load(&self, name: &str) -> Result<OnnxFile> {
        let entry = self.entry(name)?;
        let path = self.dir.join(&entry.file);
        let bytes = std::fs::read(&path).map_err(|e| Error::model_io(&path, e))?;
        let actual = sha256_hex(&bytes);
        if !actual.eq_ignore_ascii_case(&entry.sha256) {
            return Err(Error::ModelChecksum {
                path,
                expected: entry.sha256.clone(),
                actual,
            });
        }
        OnnxFile::from_bytes(&path, &bytes)
    }
}

/// Lower-case hex sha256 of a byte string.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}
