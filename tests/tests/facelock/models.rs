//! A damaged or outdated model directory is refused with an error that names
//! the file and says how to fix it, before any network runs.

use std::path::Path;

use recognition::embed::Embedder;
use recognition::{FacePipeline, ModelDir, PipelineConfig};

use crate::support::models;

/// A copy of the real model directory, with `edit` applied to it.
fn damaged_copy(edit: impl FnOnce(&Path)) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(models().path()).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dir.path().join(entry.file_name())).unwrap();
    }
    edit(dir.path());
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
    let dir = damaged_copy(|d| {
        let path = d.join("facenet.onnx.data");
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() / 3]).unwrap();
    });
    let err = load_error(dir.path());
    assert!(err.contains("facenet.onnx.data"), "{err}");
    assert!(err.contains("truncated"), "{err}");
    assert!(err.contains("models/fetch.sh"), "{err}");
}

#[test]
fn a_changed_weight_file_fails_its_checksum() {
    let dir = damaged_copy(|d| {
        let path = d.join("facenet.onnx.data");
        let mut bytes = std::fs::read(&path).unwrap();
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0x40;
        std::fs::write(&path, &bytes).unwrap();
    });
    let err = Embedder::load(&ModelDir::open(dir.path()).unwrap()).unwrap_err();
    let err = err.to_string();
    assert!(err.contains("facenet.onnx.data"), "{err}");
    assert!(err.contains("sha256"), "{err}");
}

#[test]
fn a_damaged_network_file_fails_its_checksum() {
    let dir = damaged_copy(|d| {
        let path = d.join("onet.onnx");
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() - 100]).unwrap();
    });
    let err = load_error(dir.path());
    assert!(err.contains("onet.onnx"), "{err}");
    assert!(err.contains("models/fetch.sh"), "{err}");
}

#[test]
fn a_missing_weight_file_is_named() {
    let dir = damaged_copy(|d| std::fs::remove_file(d.join("facenet.onnx.data")).unwrap());
    let err = load_error(dir.path());
    assert!(err.contains("facenet.onnx.data"), "{err}");
}

#[test]
fn a_manifest_from_an_older_converter_asks_for_a_new_fetch() {
    let dir = damaged_copy(|d| {
        let path = d.join("manifest.json");
        let text = std::fs::read_to_string(&path).unwrap();
        let text = text.replacen("\"format\": 2", "\"format\": 1", 1);
        std::fs::write(&path, text).unwrap();
    });
    let err = ModelDir::open(dir.path()).unwrap_err().to_string();
    assert!(err.contains("format 1"), "{err}");
    assert!(err.contains("models/fetch.sh"), "{err}");
}
