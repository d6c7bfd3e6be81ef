//! Turning photos into embeddings: decode, detect, keep the largest face,
//! embed. Unreadable photos and photos without a face are reported and
//! skipped, never fatal. Results are cached by file content so retraining only
//! embeds new photos.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use recognition::{BBox, Embedding, FacePipeline};
use serde::{Deserialize, Serialize};

use crate::dataset::{Sample, Skipped};

/// A photo that gave an embedding.
#[derive(Debug, Clone)]
pub struct Embedded {
    pub sample: Sample,
    pub embedding: Embedding,
    pub bbox: BBox,
    /// How many faces the photo showed (the largest was used).
    pub faces: usize,
}

/// The result of embedding a set of photos.
#[derive(Debug, Default)]
pub struct Extraction {
    pub embedded: Vec<Embedded>,
    pub skipped: Vec<Skipped>,
    pub cache_hits: usize,
}

impl Extraction {
    /// Photos that showed more than one face.
    pub fn multi_face(&self) -> impl Iterator<Item = &Embedded> {
        self.embedded.iter().filter(|e| e.faces > 1)
    }
}

/// What the cache remembers about one photo's content.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct CachedFace {
    faces: usize,
    bbox: Option<BBox>,
    embedding: Option<Vec<f32>>,
}

/// Embeddings by photo content hash, for one embedder and one pipeline
/// configuration. Kept in the user's cache folder, readable by the owner only:
/// embeddings are biometric data.
#[derive(Debug)]
pub struct EmbeddingCache {
    path: PathBuf,
    entries: HashMap<String, CachedFace>,
    dirty: bool,
}

impl EmbeddingCache {
    /// Opens (or starts) the cache file for this pipeline under `dir`.
    pub fn open(dir: &Path, pipeline: &FacePipeline) -> EmbeddingCache {
        let key = recognition::models::sha256_hex(
            format!("{}|{:?}", pipeline.embedder.sha256(), pipeline.config).as_bytes(),
        );
        let path = dir.join(format!("embeddings-{}.json", &key[..16]));
        let entries = std::fs::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        EmbeddingCache {
            path,
            entries,
            dirty: false,
        }
    }

    /// Writes the cache back if anything was added.
    pub fn save(&mut self) -> Result<()> {
        if !self.dirty {
            return Ok(());
        }
        let dir = self.path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create cache folder {}", dir.display()))?;
        let tmp = self.path.with_extension("tmp");
        let bytes = serde_json::to_vec(&self.entries)?;
        write_private(&tmp, &bytes)
            .with_context(|| format!("cannot write embedding cache {}", tmp.display()))?;
        std::fs::rename(&tmp, &self.path)?;
        self.dirty = false;
        Ok(())
    }
}

#[cfg(unix)]
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(bytes)
}

#[cfg(not(unix))]
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    std::fs::write(path, bytes)
}

/// Embeds the main (largest) face of each photo.
pub fn extract(
    pipeline: &FacePipeline,
    samples: &[Sample],
    mut cache: Option<&mut EmbeddingCache>,
    show_progress: bool,
) -> Extraction {
    let bar = if show_progress {
        ProgressBar::new(samples.len() as u64).with_style(
            ProgressStyle::with_template(
                "{bar:40} {pos}/{len} photos  {elapsed} (eta {eta}) {msg}",
            )
            .expect("valid template"),
        )
    } else {
        ProgressBar::hidden()
    };
    let mut out = Extraction::default();
    for sample in samples {
        bar.inc(1);
        let skip = |reason: String| Skipped {
            path: sample.path.clone(),
            reason,
        };
        let bytes = match std::fs::read(&sample.path) {
            Ok(b) => b,
            Err(e) => {
                out.skipped.push(skip(format!("cannot read: {e}")));
                continue;
            }
        };
        let hash = recognition::models::sha256_hex(&bytes);
        let cached = cache.as_ref().and_then(|c| c.entries.get(&hash).cloned());
        let result = match cached {
            Some(hit) => {
                out.cache_hits += 1;
                hit
            }
            None => match embed_photo(pipeline, &sample.path) {
                Ok(fresh) => {
                    if let Some(c) = cache.as_deref_mut() {
                        c.entries.insert(hash, fresh.clone());
                        c.dirty = true;
                    }
                    fresh
                }
                Err(reason) => {
                    out.skipped.push(skip(reason));
                    continue;
                }
            },
        };
        match (result.embedding, result.bbox) {
            (Some(v), Some(bbox)) => out.embedded.push(Embedded {
                sample: sample.clone(),
                embedding: Embedding::from_raw(v),
                bbox,
                faces: result.faces,
            }),
            _ => out.skipped.push(skip("no face found".into())),
        }
    }
    bar.finish_and_clear();
    out
}

fn embed_photo(pipeline: &FacePipeline, path: &Path) -> std::result::Result<CachedFace, String> {
    let image = recognition::photo::load_rgb(path).map_err(|e| match e {
        recognition::Error::Image { reason, .. } => reason,
        other => other.to_string(),
    })?;
    let faces = pipeline.detect(&image).map_err(|e| e.to_string())?;
    let Some(main) = faces.first() else {
        return Ok(CachedFace {
            faces: 0,
            bbox: None,
            embedding: None,
        });
    };
    let embedding = pipeline
        .embed_face(&image, main)
        .map_err(|e| e.to_string())?;
    Ok(CachedFace {
        faces: faces.len(),
        bbox: Some(main.bbox),
        embedding: Some(embedding.as_slice().to_vec()),
    })
}
