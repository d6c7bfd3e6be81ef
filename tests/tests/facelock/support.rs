//! Shared test fixtures: the real models and photos fetched by `models/fetch.sh`,
//! loaded once per test binary.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use recognition::{FacePipeline, ModelDir, PipelineConfig};

/// The fetch cache (`$FACELOCK_CACHE`, default `~/.cache/facelock`).
pub fn cache_dir() -> PathBuf {
    ModelDir::default_location()
        .parent()
        .expect("model dir has a parent")
        .to_owned()
}

fn require(path: PathBuf) -> PathBuf {
    assert!(
        path.exists(),
        "{} is missing: run `models/fetch.sh` first (the tests use the real models and photos)",
        path.display()
    );
    path
}

/// `data/celeb5/{train,val}` of the sample set.
pub fn celeb5(split: &str) -> PathBuf {
    require(cache_dir().join("data/celeb5").join(split))
}

/// `data/extra/<name>`: `stranger/grace_hopper.jpg`, `noface/present.png`.
pub fn extra(name: &str) -> PathBuf {
    require(cache_dir().join("data/extra").join(name))
}

pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(name)
}

pub fn models() -> ModelDir {
    let dir = require(ModelDir::default_location());
    ModelDir::open(dir).expect("model directory opens")
}

/// The pipeline with reference detector settings, loaded once.
pub fn pipeline() -> &'static FacePipeline {
    static PIPELINE: OnceLock<FacePipeline> = OnceLock::new();
    PIPELINE.get_or_init(|| {
        FacePipeline::load(&models(), PipelineConfig::default()).expect("pipeline loads")
    })
}

/// Copies a folder tree (photos only need to be readable).
pub fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}
