//! facelock's recognition pipeline: RGB image → faces (MTCNN) → aligned crops →
//! embeddings (FaceNet) → prediction (softmax head + open-set gate).
//!
//! The same code serves the trainer on the workstation and the lock daemon on
//! the Pi, so a face is seen the same way at enrolment and at the door.

pub mod align;
pub mod annotate;
pub mod artifact;
pub mod atomic;
pub mod classify;
pub mod detect;
pub mod embed;
mod engine;
pub mod error;
pub mod models;
pub mod photo;
pub mod pipeline;
pub mod quality;
pub mod signature;
pub mod subject;

pub use artifact::{ClassifierMeta, HeadParams, Thresholds};
pub use classify::{Classifier, Prediction, Scores};
pub use detect::{BBox, DetectorConfig, Face, Mtcnn};
pub use embed::{Embedder, Embedding, Precision};
pub use engine::{set_threads, OpTime};
pub use error::{Error, Result};
pub use models::ModelDir;
pub use pipeline::{EmbeddedFace, FacePipeline, PipelineConfig, Recognized};
