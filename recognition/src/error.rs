//! Errors of the recognition pipeline, each saying what the operator can do about it.

use std::path::{Path, PathBuf};

/// The command that fetches and converts the models.
pub const FETCH_COMMAND: &str = "models/fetch.sh";

/// Everything that can go wrong while loading models or recognising faces.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A model file or the model manifest is missing: the models were never
    /// fetched, or the model directory setting points elsewhere.
    #[error(
        "model file {path} is missing; run `{FETCH_COMMAND}` to fetch and convert the models, \
         or point the model directory setting at the folder that holds manifest.json"
    )]
    ModelMissing { path: PathBuf },

    /// A model file exists but cannot be read (permissions, I/O error).
    #[error("cannot read model file {path}: {reason}")]
    ModelUnreadable { path: PathBuf, reason: String },

    /// A model file is truncated, corrupt, or not the network it should be.
    #[error(
        "model file {path} is not usable: {reason}; \
         re-run `{FETCH_COMMAND}` to restore it"
    )]
    ModelInvalid { path: PathBuf, reason: String },

    /// A model file's checksum differs from the one in the manifest.
    #[error(
        "model file {path} has sha256 {actual}, but the manifest expects {expected}; \
         the file was changed or damaged: re-run `{FETCH_COMMAND}`"
    )]
    ModelChecksum {
        path: PathBuf,
        expected: String,
        actual: String,
    },

    /// The network failed at run time (wrong input shape, internal error).
    #[error("network {network} failed: {reason}")]
    Inference { network: String, reason: String },

    /// An image file could not be read or decoded.
    #[error("cannot use image {path}: {reason}")]
    Image { path: PathBuf, reason: String },

    /// A classifier file is unreadable, corrupt, or of an unknown format.
    #[error("classifier {path} is not usable: {reason}")]
    ClassifierInvalid { path: PathBuf, reason: String },

    /// A classifier was trained against another embedding model.
    #[error(
        "classifier {path} was trained with embedder {trained} ({trained_dim}-D), but the \
         installed embedder is {installed} ({installed_dim}-D); retrain it with \
         `trainer train` against the current models"
    )]
    ClassifierEmbedderMismatch {
        path: PathBuf,
        trained: String,
        trained_dim: usize,
        installed: String,
        installed_dim: usize,
    },

    /// A trusted key is set and the classifier is unsigned, modified, or signed with
    /// another key. The reason says which, and what to do.
    #[error("classifier {path} refused: {reason}")]
    ClassifierSignature {
        path: PathBuf,
        reason: crate::signature::SignatureError,
    },

    /// A classifier was made with pipeline settings (or a pipeline version) other than
    /// those in use, so its embeddings and thresholds do not hold here.
    #[error("classifier {path} was made with {setting} {trained}, but this pipeline uses {in_use}; {fix}")]
    ClassifierSettingMismatch {
        path: PathBuf,
        setting: crate::artifact::PipelineSetting,
        trained: String,
        in_use: String,
        fix: String,
    },
}

impl Error {
    pub(crate) fn model_io(path: &Path, e: std::io::Error) -> Error {
        if e.kind() == std::io::ErrorKind::NotFound {
            Error::ModelMissing {
                path: path.to_owned(),
            }
        } else {
            Error::ModelUnreadable {
                path: path.to_owned(),
                reason: e.to_string(),
            }
        }
    }
}

/// Result alias for the recognition library.
pub type Result<T, E = Error> = std::result::Result<T, E>;
