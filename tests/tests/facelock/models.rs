//! A damaged or outdated model directory is refused with an error that names
//! the file and says how to fix it, before any network runs.

use std::path::Path;

use recognition::embed::Embedder;
use recognition::{FacePipeline, ModelDir, PipelineConfig};

use crate::support::models;

/// A copy of the real model directory.
fn models_copy() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(models().path()).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dir.path().join(entry.file_name())).unwrap();
    }
    dir
}

/// A copy of the real model directory whose `file` went through `edit`.
fn damaged_copy(file: &str, edit: impl FnOnce(&mut Vec<u8>)) -> tempfile::TempDir {
    let dir = models_copy();
    let path = dir.path().join(file);
    let mut bytes = std::fs::read(&path).unwrap();
    edit(&mut bytes);
    std::fs::write(&path, bytes).unwrap();
    dir
}

fn load_error(dir: &Path) -> String {
    match ModelDir::open(dir).and_then(|m| FacePipeline::load(&m, PipelineConfig::default())) {
        Ok(_) => panic!("a damaged model directory loaded"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn a_truncated_weight_file_is_named_with_the_fix() {
    let dir = damaged_copy("facenet.onnx.data", |b| b.truncate(b.len() / 3));
    let err = load_error(dir.path());
    assert!(err.contains("facenet.onnx.data"), "{err}");
    assert!(err.contains("truncated"), "{err}");
    assert!(err.contains("models/fetch.sh"), "{err}");
}

#[test]
fn a_changed_weight_file_fails_its_checksum() {
    let dir = damaged_copy("facenet.onnx.data", |b| {
        let middle = b.len() / 2;
        b[middle] ^= 0x40;
    });
    let err = Embedder::load(&ModelDir::open(dir.path()).unwrap()).unwrap_err();
    let err = err.to_string();
    assert!(err.contains("facenet.onnx.data"), "{err}");
    assert!(err.contains("sha256"), "{err}");
}

#[test]
fn a_damaged_network_file_fails_its_checksum() {
    let dir = damaged_copy("onet.onnx", |b| b.truncate(b.len() - 100));
    let err = load_error(dir.path());
    assert!(err.contains("onet.onnx"), "{err}");
    assert!(err.contains("models/fetch.sh"), "{err}");
}

#[test]
fn a_missing_weight_file_is_named() {
    let dir = models_copy();
    std::fs::remove_file(dir.path().join("facenet.onnx.data")).unwrap();
    let err = load_error(dir.path());
    assert!(err.contains("facenet.onnx.data"), "{err}");
}

#[test]
fn a_manifest_from_an_older_converter_asks_for_a_new_fetch() {
    let dir = damaged_copy("manifest.json", |b| {
        let text = String::from_utf8(std::mem::take(b)).unwrap();
        *b = text
            .replacen("\"format\": 2", "\"format\": 1", 1)
            .into_bytes();
    });
    let err = ModelDir::open(dir.path()).unwrap_err().to_string();
    assert!(err.contains("format 1"), "{err}");
    assert!(err.contains("models/fetch.sh"), "{err}");
}
