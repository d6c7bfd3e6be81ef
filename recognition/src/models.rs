//! The model directory written by `models/fetch.sh`: ONNX files plus a manifest
//! with their checksums and provenance.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::engine::{Dim, OnnxFile, Tensor32};
use crate::error::{Error, Result};

/// The manifest file name inside a model directory.
pub const MANIFEST: &str = "manifest.json";

/// The networks the pipeline needs, by manifest key.
pub(crate) const PNET: &str = "pnet";
pub(crate) const RNET: &str = "rnet";
pub(crate) const ONET: &str = "onet";
pub(crate) const FACENET: &str = "facenet";

/// The manifest layout this build reads (`MANIFEST_FORMAT` in `models/convert.py`).
const MANIFEST_FORMAT: u32 = 2;

#[derive(Debug, Clone, Deserialize)]
struct Manifest {
    #[serde(default)]
    format: u32,
    models: BTreeMap<String, ModelEntry>,
}

#[derive(Debug, Clone, Deserialize)]
struct ModelEntry {
    file: String,
    sha256: String,
    /// The separate weight file (ONNX external data), if the network has one.
    #[serde(default)]
    weights: Option<FileEntry>,
    #[serde(default)]
    embedding_size: Option<usize>,
}

#[derive(Debug, Clone, Deserialize)]
struct FileEntry {
    file: String,
    sha256: String,
    bytes: u64,
}

/// A verified model directory.
#[derive(Debug, Clone)]
pub struct ModelDir {
    dir: PathBuf,
    manifest: Manifest,
    embedder_sha256: String,
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
        if manifest.format != MANIFEST_FORMAT {
            return Err(Error::ModelInvalid {
                path,
                reason: format!(
                    "manifest format {} is not the {MANIFEST_FORMAT} this build reads; \
                     re-run models/fetch.sh (and copy the models again)",
                    manifest.format
                ),
            });
        }
        let mut dir = ModelDir {
            dir,
            manifest,
            embedder_sha256: String::new(),
        };
        for name in [PNET, RNET, ONET, FACENET] {
            dir.entry(name)?;
        }
        let facenet = dir.entry(FACENET)?;
        dir.embedder_sha256 = match &facenet.weights {
            None => facenet.sha256.clone(),
            Some(w) => sha256_hex(format!("{}\n{}\n", facenet.sha256, w.sha256).as_bytes()),
        };
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

    /// The embedding network's identity: the sha256 of its file as recorded in
    /// the manifest or, when its weights are in a separate file, the sha256 of
    /// the text `"<network sha256>\n<weights sha256>\n"`. A classifier records it
    /// so it is never used with another embedder.
    pub fn embedder_sha256(&self) -> &str {
        &self.embedder_sha256
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
        match &entry.weights {
            None => OnnxFile::from_bytes(&path, &bytes),
            Some(weights) => {
                let check = self.verify_weights(weights)?;
                OnnxFile::from_bytes_with_weights(&path, &bytes, &self.dir, check)
            }
        }
    }

    /// Checks a weight file's size now and its sha256 on another thread
    /// (reading it in pieces), so hashing overlaps with parsing and optimising.
    /// On a Pi 4, which has no SHA instructions, hashing FaceNet's 91 MB takes
    /// about half a second of one core.
    fn verify_weights(&self, entry: &FileEntry) -> Result<crate::engine::WeightsCheck> {
        let path = self.dir.join(&entry.file);
        let io = |e| Error::model_io(&path, e);
        let file = std::fs::File::open(&path).map_err(io)?;
        let size = file.metadata().map_err(io)?.len();
        if size != entry.bytes {
            return Err(Error::ModelInvalid {
                path: path.clone(),
                reason: format!(
                    "{size} bytes where the manifest says {}: the file is truncated or \
                     from another conversion; re-run models/fetch.sh",
                    entry.bytes
                ),
            });
        }
        let expected = entry.sha256.clone();
        Ok(std::thread::spawn(move || {
            let actual = sha256_reader(file).map_err(|e| Error::model_io(&path, e))?;
            if actual.eq_ignore_ascii_case(&expected) {
                Ok(())
            } else {
                Err(Error::ModelChecksum {
                    path,
                    expected,
                    actual,
                })
            }
        }))
    }
}

/// Lower-case hex sha256 of everything `reader` yields, read in 1 MiB pieces.
fn sha256_reader(mut reader: impl std::io::Read) -> std::io::Result<String> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        match reader.read(&mut buf) {
            Ok(0) => return Ok(hex::encode(hasher.finalize())),
            Ok(n) => hasher.update(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// Where one network spends its time, per operator: see [`ModelDir::profile`].
#[derive(Debug, Clone)]
pub struct Profile {
    /// Median time of a whole run.
    pub median_ms: f64,
    /// Every operator of the optimised graph, slowest first.
    pub ops: Vec<crate::engine::OpTime>,
}

impl ModelDir {
    /// Loads one network (`pnet`, `rnet`, `onet`, `facenet`) for a fixed input
    /// shape and times each of its operators over `runs` runs on a
    /// deterministic pseudo-random input in [-1, 1].
    pub fn profile(&self, name: &str, shape: &[usize], runs: usize) -> Result<Profile> {
        let dims: Vec<Dim> = shape.iter().map(|&n| Dim::Fixed(n)).collect();
        let net = self.load(name)?.into_plan(&dims)?;
        let mut seed = 0x2545_f491_u32;
        let data = (0..shape.iter().product::<usize>())
            .map(|_| {
                seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                (seed >> 8) as f32 / (1u32 << 23) as f32 - 1.0
            })
            .collect();
        let (median_ms, ops) = net.profile(&Tensor32::new(shape.to_vec(), data), runs)?;
        Ok(Profile { median_ms, ops })
    }
}

/// Lower-case hex sha256 of a byte string.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}
