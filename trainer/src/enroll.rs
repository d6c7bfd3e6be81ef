//! Turning photos into embeddings: decode, detect, pick the photo's subject, embed.
//! Unreadable photos, image bombs and photos without a face are reported and skipped,
//! never fatal. Results are cached by file content so retraining only embeds new photos.
//!
//! A photo with several faces has up to [`MAX_FACES`] of them embedded. With no other
//! context (`trainer embed`) the subject is the main face by size and closeness to the
//! centre ([`recognition::subject::main_face`]); evaluation takes the largest, as the door
//! does ([`largest_faces`]). At enrolment
//! [`pick_by_person`] then uses the person's single-face photos as context: it keeps the
//! face that agrees with them, and leaves the photo out, with the reason, when no face
//! clearly does.
//!
//! A photo whose header declares more than [`PhotoOptions::max_side`] pixels a side
//! is refused before it is decoded; a photo above [`PhotoOptions::detect_side`] is
//! scaled down before detection (boxes are reported in the original's pixels).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use recognition::subject::{self, Agreement};
use recognition::{BBox, Embedding, FacePipeline};
use serde::{Deserialize, Serialize};

use recognition::photo::{DecodeLimits, DETECT_MAX_SIDE, MAX_PHOTO_SIDE};

use crate::dataset::{Sample, Skipped};

/// The most faces of one photo that are embedded (the largest ones, and always the
/// main face). A crowd photo costs at most this many embeddings.
pub const MAX_FACES: usize = 4;

/// The most photos the embedding cache remembers, about 5 KB each on disk (50 MB); the
/// least recently used are dropped first. An office of 50 people with 50 photos each
/// uses a quarter of it.
pub const CACHE_MAX_PHOTOS: usize = 10_000;

/// Cache files of other settings (another embedder, detector size or crop margin) not
/// written for this many days are deleted when the cache is saved.
pub const CACHE_STALE_DAYS: u64 = 180;

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

/// How the face used from a photo was chosen.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Pick {
    /// The photo shows one face.
    Only,
    /// The main face by size and closeness to the centre, for lack of context.
    Main,
    /// The face that agrees with the person's single-face photos, at this cosine
    /// similarity to their centroid.
    Agrees { similarity: f32 },
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
    /// How many faces the photo showed.
    pub faces: usize,
    /// The photo's other embedded faces (box, embedding), when it showed several.
    pub others: Vec<(BBox, Embedding)>,
    /// How the face above was chosen.
    pub pick: Pick,
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
struct CachedPhoto {
    /// Day (since 1970) the entry was last used, for the least-recently-used limit.
    #[serde(default)]
    used: u64,
    /// How many faces the photo showed.
    faces: usize,
    /// Up to [`MAX_FACES`] of them, the main face first.
    embedded: Vec<CachedFace>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct CachedFace {
    bbox: BBox,
    embedding: Vec<f32>,
}

/// Embeddings by photo content hash, for one embedder and one pipeline
/// configuration. Kept in the user's cache folder, readable by the owner only:
/// embeddings are biometric data.
#[derive(Debug)]
pub struct EmbeddingCache {
    path: PathBuf,
    entries: HashMap<String, CachedPhoto>,
    dirty: bool,
}

impl EmbeddingCache {
    /// Opens (or starts) the cache file for this pipeline and detection size under
    /// `dir`. An existing cache file or folder that others may read is made private.
    pub fn open(dir: &Path, pipeline: &FacePipeline, photos: &PhotoOptions) -> EmbeddingCache {
        let key = recognition::models::sha256_hex(
            format!(
                "{}|{:?}|detect<={}|faces<={MAX_FACES}|pipeline {}|v2",
                pipeline.embedder.sha256(),
                pipeline.config,
                photos.detect_side,
                recognition::artifact::PIPELINE_VERSION
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
        limit(&mut self.entries, CACHE_MAX_PHOTOS);
        write_cache_file(&self.path, &self.entries)?;
        self.dirty = false;
        remove_stale_files(dir, &self.path, CACHE_STALE_DAYS);
        Ok(())
    }
}

fn today() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() / 86_400)
        .unwrap_or(0)
}

/// Keeps the `max` most recently used entries.
fn limit(entries: &mut HashMap<String, CachedPhoto>, max: usize) {
    if entries.len() <= max {
        return;
    }
    let mut by_use: Vec<(u64, String)> = entries.iter().map(|(k, v)| (v.used, k.clone())).collect();
    by_use.sort_unstable_by(|a, b| b.cmp(a));
    for (_, key) in by_use.into_iter().skip(max) {
        entries.remove(&key);
    }
}

/// Writes a cache file privately (0600: embeddings are biometric data) and atomically.
fn write_cache_file(path: &Path, entries: &HashMap<String, CachedPhoto>) -> Result<()> {
    use std::io::Write as _;
    let bytes = serde_json::to_vec(entries)?;
    recognition::atomic::replace_file(path, 0o600, |f| f.write_all(&bytes)).with_context(|| {
        format!(
            "cannot write embedding cache {}; make its folder writable, or pass --no-cache",
            path.display()
        )
    })
}

/// The cache files (one per pipeline setting) in `dir`.
fn cache_files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("embeddings-") && n.ends_with(".json"))
        })
        .collect()
}

/// Deletes the cache files of other settings not written for `days` days.
fn remove_stale_files(dir: &Path, current: &Path, days: u64) {
    let max_age = std::time::Duration::from_secs(days * 86_400);
    for path in cache_files(dir) {
        let age = std::fs::metadata(&path)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok());
        if path != current && age.is_some_and(|a| a > max_age) {
            match std::fs::remove_file(&path) {
                Ok(()) => log::info!("removed unused embedding cache {}", path.display()),
                Err(e) => log::warn!(
                    "cannot remove unused embedding cache {}: {e}",
                    path.display()
                ),
            }
        }
    }
}

/// Removes the photos with these content hashes from every cache file in `dir` (every
/// pipeline setting). Returns how many entries were removed.
pub fn forget_cached(dir: &Path, hashes: &std::collections::HashSet<String>) -> Result<usize> {
    let mut removed = 0;
    for path in cache_files(dir) {
        let bytes = std::fs::read(&path)
            .with_context(|| format!("cannot read embedding cache {}", path.display()))?;
        let Ok(mut entries) = serde_json::from_slice::<HashMap<String, CachedPhoto>>(&bytes) else {
            // A cache of an older format is never read again: delete it whole.
            std::fs::remove_file(&path)
                .with_context(|| format!("cannot remove old embedding cache {}", path.display()))?;
            continue;
        };
        let before = entries.len();
        entries.retain(|k, _| !hashes.contains(k));
        if entries.len() != before {
            removed += before - entries.len();
            write_cache_file(&path, &entries)?;
        }
    }
    Ok(removed)
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

/// Embeds the faces of each photo; the main face is the one used (see the module doc).
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
        let cached = cache.as_deref_mut().and_then(|c| {
            let entry = c.entries.get_mut(&hash)?;
            let today = today();
            if entry.used != today {
                entry.used = today;
                c.dirty = true;
            }
            Some(entry.clone())
        });
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
        let mut faces = result
            .embedded
            .into_iter()
            .map(|f| (f.bbox, Embedding::from_raw(f.embedding)));
        match faces.next() {
            Some((bbox, embedding)) => out.embedded.push(Embedded {
                sample: sample.clone(),
                embedding,
                bbox,
                content: hash,
                faces: result.faces,
                others: faces.collect(),
                pick: if result.faces > 1 {
                    Pick::Main
                } else {
                    Pick::Only
                },
            }),
            None => out.skipped.push(skip("no face found".into())),
        }
    }
    bar.finish_and_clear();
    out
}

fn embed_photo(
    pipeline: &FacePipeline,
    path: &Path,
    photos: &PhotoOptions,
) -> std::result::Result<CachedPhoto, String> {
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
        let (width, height) = photo.image.dimensions();
        // The main face first, then the others largest first (detection's order).
        let main = subject::main_face(&faces, width, height);
        let chosen = main
            .into_iter()
            .chain((0..faces.len()).filter(|&i| Some(i) != main))
            .take(MAX_FACES);
        let embedded = chosen
            .map(|i| {
                let embedding = pipeline.embed_face(&photo.image, &faces[i])?;
                Ok(CachedFace {
                    bbox: photo.to_original(&faces[i].bbox),
                    embedding: embedding.as_slice().to_vec(),
                })
            })
            .collect::<recognition::Result<Vec<_>>>()?;
        Ok::<_, recognition::Error>(CachedPhoto {
            used: today(),
            faces: faces.len(),
            embedded,
        })
    }));
    match detected {
        Ok(result) => result.map_err(|e| e.to_string()),
        Err(panic) => {
            let what = panic
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| panic.downcast_ref::<&str>().copied())
                .unwrap_or("unknown error");
            Err(format!("detection failed on it (internal error: {what})"))
        }
    }
}

/// Uses each photo's largest face, as the door does (it takes the largest face as the
/// candidate): for evaluation, which measures what the door would answer.
pub fn largest_faces(extraction: &mut Extraction) {
    for e in &mut extraction.embedded {
        let largest = e
            .others
            .iter()
            .enumerate()
            .max_by(|a, b| a.1 .0.area().total_cmp(&b.1 .0.area()))
            .filter(|(_, (b, _))| b.area() > e.bbox.area())
            .map(|(i, _)| i);
        if let Some(i) = largest {
            let (bbox, embedding) = e.others.remove(i);
            let main = std::mem::replace(&mut e.embedding, embedding);
            let main_box = std::mem::replace(&mut e.bbox, bbox);
            e.others.insert(0, (main_box, main));
        }
    }
}

/// Uses each person's single-face photos as context for their photos with several faces:
/// keeps the face that agrees with them ([`recognition::subject::agreeing_face`]).
/// A photo where no face clearly agrees is moved to `skipped` with the reason, so a
/// bystander is never enrolled. A person with no single-face photo keeps the main faces.
pub fn pick_by_person(extraction: &mut Extraction) {
    let mut centroids: HashMap<String, Option<Vec<f32>>> = HashMap::new();
    for e in &extraction.embedded {
        centroids.entry(e.sample.person.clone()).or_insert(None);
    }
    for (person, centroid) in centroids.iter_mut() {
        *centroid = subject::centroid(
            extraction
                .embedded
                .iter()
                .filter(|e| &e.sample.person == person && e.faces == 1)
                .map(|e| e.embedding.as_slice()),
        );
    }
    let mut kept = Vec::with_capacity(extraction.embedded.len());
    for mut e in std::mem::take(&mut extraction.embedded) {
        let centroid = centroids.get(&e.sample.person).and_then(|c| c.as_deref());
        let (Some(centroid), false) = (centroid, e.others.is_empty()) else {
            kept.push(e);
            continue;
        };
        let all: Vec<(&BBox, &[f32])> = std::iter::once((&e.bbox, e.embedding.as_slice()))
            .chain(e.others.iter().map(|(b, o)| (b, o.as_slice())))
            .collect();
        let reason = match subject::agreeing_face(&all, centroid) {
            Some(Agreement::Clear { index, similarity }) => {
                if index > 0 {
                    let (bbox, embedding) = e.others.remove(index - 1);
                    let main = std::mem::replace(&mut e.embedding, embedding);
                    let main_box = std::mem::replace(&mut e.bbox, bbox);
                    e.others.insert(0, (main_box, main));
                }
                e.pick = Pick::Agrees { similarity };
                kept.push(e);
                continue;
            }
            Some(Agreement::NoneAgree { similarity, .. }) => format!(
                "{} faces, and none looks like {}'s single-face photos (best similarity \
                 {similarity:.2}, needs {:.2}); check that the photo shows {}, or crop it \
                 to their face",
                e.faces,
                e.sample.person,
                subject::AGREE_SIMILARITY,
                e.sample.person
            ),
            Some(Agreement::Ambiguous {
                similarity,
                runner_up,
                ..
            }) => format!(
                "{} faces, and two look about equally like {}'s single-face photos \
                 (similarity {similarity:.2} and {runner_up:.2}); crop the photo to their face",
                e.faces, e.sample.person
            ),
            None => unreachable!("the main face is always there"),
        };
        extraction.skipped.push(Skipped {
            path: e.sample.path.clone(),
            reason,
        });
    }
    extraction.embedded = kept;
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn a_cache_file_readable_by_others_is_replaced_by_a_private_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("embeddings-x.json");
        std::fs::write(&path, b"left over").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        write_cache_file(&path, &HashMap::new()).unwrap();
        assert_eq!(mode(&path), 0o600);
        assert_eq!(std::fs::read(&path).unwrap(), b"{}");
    }

    #[test]
    fn the_cache_keeps_the_most_recently_used_photos_within_its_limit() {
        let mut entries: HashMap<String, CachedPhoto> = (0..5u64)
            .map(|day| {
                let photo = CachedPhoto {
                    used: day,
                    faces: 0,
                    embedded: Vec::new(),
                };
                (format!("photo{day}"), photo)
            })
            .collect();
        limit(&mut entries, 3);
        let mut kept: Vec<&str> = entries.keys().map(String::as_str).collect();
        kept.sort();
        assert_eq!(kept, ["photo2", "photo3", "photo4"]);
    }

    #[test]
    fn cache_files_of_other_settings_unused_for_long_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let current = dir.path().join("embeddings-current.json");
        let old = dir.path().join("embeddings-old.json");
        let recent = dir.path().join("embeddings-recent.json");
        for f in [&current, &old, &recent] {
            std::fs::write(f, b"{}").unwrap();
        }
        let long_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(200 * 86_400);
        for f in [&current, &old] {
            std::fs::File::options()
                .write(true)
                .open(f)
                .unwrap()
                .set_modified(long_ago)
                .unwrap();
        }
        remove_stale_files(dir.path(), &current, CACHE_STALE_DAYS);
        assert!(current.exists() && recent.exists() && !old.exists());
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
