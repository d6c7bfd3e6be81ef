//! Turning photos into embeddings: decode, detect, keep the largest face,
//! embed. Unreadable photos, image bombs and photos without a face are reported
//! and skipped, never fatal. Results are cached by file content so retraining
//! only embeds new photos.
//!
//! A photo whose header declares more than [`PhotoOptions::max_side`] pixels a side
//! is refused before it is decoded; a photo above [`PhotoOptions::detect_side`] is
//! scaled down before detection (boxes are reported in the original's pixels).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use recognition::{BBox, Embedding, FacePipeline};
use serde::{Deserialize, Serialize};

use recognition::photo::{DecodeLimits, DETECT_MAX_SIDE, MAX_PHOTO_SIDE};

use crate::dataset::{Sample, Skipped};

/// How photos are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PhotoOptions {
    /// Photos declaring more pixels than this on either side are refused unread.
    pub max_side: u32,
    /// Photos larger than this on their longer side are scaled down before detection.
    pub detect_side: u32,
}

impl Default for PhotoOptions {
    fn default() -> Self {
        PhotoOptions {
            max_side: MAX_PHOTO_SIDE,
            detect_side: DETECT_MAX_SIDE,
        }
    }
}

/// A photo that gave an embedding.
#[derive(Debug, Clone)]
pub struct Embedded {
    pub sample: Sample,
    pub embedding: Embedding,
    /// The face box, in the original photo's pixels.
    pub bbox: BBox,
    /// sha256 of the file's content.
    pub content: String,
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
    /// Opens (or starts) the cache file for this pipeline and detection size under
    /// `dir`. An existing cache file or folder that others may read is made private.
    pub fn open(dir: &Path, pipeline: &FacePipeline, photos: &PhotoOptions) -> EmbeddingCache {
        let key = recognition::models::sha256_hex(
            format!(
                "{}|{:?}|detect<={}",
                pipeline.embedder.sha256(),
                pipeline.config,
                photos.detect_side
            )
            .as_bytes(),
        );
        let path = dir.join(format!("embeddings-{}.json", &key[..16]));
        for (p, mode) in [(dir, 0o700), (path.as_path(), 0o600)] {
            if let Err(e) = make_private(p, mode) {
                log::warn!("cannot make {} private: {e}", p.display());
            }
        }
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
        make_private(dir, 0o700)
            .with_context(|| format!("cannot make cache folder {} private", dir.display()))?;
        let tmp = self.path.with_extension("tmp");
        let bytes = serde_json::to_vec(&self.entries)?;
        write_private(&tmp, &bytes)
            .with_context(|| format!("cannot write embedding cache {}", tmp.display()))?;
        std::fs::rename(&tmp, &self.path)?;
        self.dirty = false;
        Ok(())
    }
}

/// Writes a file only its owner may read. A file left behind by an earlier run keeps its
/// mode when reopened, so the mode is set on the open file too.
#[cfg(unix)]
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    f.write_all(bytes)
}

#[cfg(not(unix))]
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    std::fs::write(path, bytes)
}

/// Removes group and other permissions from an existing file or folder (a missing one is
/// fine: it is created private).
#[cfg(unix)]
fn make_private(path: &Path, mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    match std::fs::metadata(path) {
        Ok(meta) if meta.permissions().mode() & 0o077 != 0 => {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        }
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(not(unix))]
fn make_private(_: &Path, _: u32) -> std::io::Result<()> {
    Ok(())
}

/// Embeds the main (largest) face of each photo.
pub fn extract(
    pipeline: &FacePipeline,
    samples: &[Sample],
    mut cache: Option<&mut EmbeddingCache>,
    photos: &PhotoOptions,
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
            None => match embed_photo(pipeline, &sample.path, photos) {
                Ok(fresh) => {
                    if let Some(c) = cache.as_deref_mut() {
                        c.entries.insert(hash.clone(), fresh.clone());
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
                content: hash,
                faces: result.faces,
            }),
            _ => out.skipped.push(skip("no face found".into())),
        }
    }
    bar.finish_and_clear();
    out
}

fn embed_photo(
    pipeline: &FacePipeline,
    path: &Path,
    photos: &PhotoOptions,
) -> std::result::Result<CachedFace, String> {
    let limits = DecodeLimits::photos(photos.max_side);
    let photo =
        recognition::photo::load_photo(path, &limits, photos.detect_side).map_err(|e| match e {
            recognition::Error::Image { reason, .. } => reason,
            other => other.to_string(),
        })?;
    // A photo must never end a training run: should the networks panic on one, it is
    // skipped like any other unusable photo.
    let detected = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let faces = pipeline.detect(&photo.image)?;
        let embedding = match faces.first() {
            Some(main) => Some(pipeline.embed_face(&photo.image, main)?),
            None => None,
        };
        Ok::<_, recognition::Error>((faces, embedding))
    }));
    let (faces, embedding) = match detected {
        Ok(result) => result.map_err(|e| e.to_string())?,
        Err(panic) => {
            let what = panic
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| panic.downcast_ref::<&str>().copied())
                .unwrap_or("unknown error");
            return Err(format!("detection failed on it (internal error: {what})"));
        }
    };
    Ok(CachedFace {
        faces: faces.len(),
        bbox: faces.first().map(|f| photo.to_original(&f.bbox)),
        embedding: embedding.map(|e| e.as_slice().to_vec()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn a_stale_temporary_file_does_not_make_the_cache_readable_by_others() {
        let dir = tempfile::tempdir().unwrap();
        let tmp = dir.path().join("embeddings-x.tmp");
        std::fs::write(&tmp, b"left over").unwrap();
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o644)).unwrap();
        write_private(&tmp, b"{}").unwrap();
        assert_eq!(mode(&tmp), 0o600);
        assert_eq!(std::fs::read(&tmp).unwrap(), b"{}");
    }

    #[test]
    fn an_existing_cache_folder_and_file_are_made_private() {
        let dir = tempfile::tempdir().unwrap();
        let cache = dir.path().join("embeddings");
        std::fs::create_dir(&cache).unwrap();
        std::fs::set_permissions(&cache, std::fs::Permissions::from_mode(0o755)).unwrap();
        let file = cache.join("embeddings-x.json");
        std::fs::write(&file, b"{}").unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        make_private(&cache, 0o700).unwrap();
        make_private(&file, 0o600).unwrap();
        assert_eq!((mode(&cache), mode(&file)), (0o700, 0o600));
        make_private(&dir.path().join("missing"), 0o700).unwrap();
    }
}
