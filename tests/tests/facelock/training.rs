//! Training on the sample set: the classifier recognises the held-out photos,
//! refuses a person it was not trained on, survives bad files, and its file
//! refuses to be misused.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use recognition::{artifact, Classifier, Error};
use trainer::evaluate::evaluate;
use trainer::train::{train, TrainOptions, TrainReport};

use crate::support::{celeb5, copy_tree, extra, pipeline};

/// One embedding cache for the whole test binary; training runs one at a time
/// so later runs reuse the embeddings of earlier ones.
fn cache() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| tempfile::tempdir().unwrap()).path()
}

fn train_on(images: &Path, unknown: Option<PathBuf>) -> TrainReport {
    static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
    let _guard = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let options = TrainOptions {
        images: images.to_owned(),
        output: PathBuf::from("unused.onnx"),
        unknown,
        target_far: 0.0,
        tar_slack: 0.05,
        folds: 5,
        cache_dir: Some(cache().to_owned()),
        progress: false,
    };
    train(pipeline(), &options).expect("training succeeds")
}

fn classifier_of(report: &TrainReport) -> Classifier {
    let p = pipeline();
    Classifier::from_bytes(
        Path::new("trained.onnx"),
        &report.bytes,
        p.embedder.sha256(),
        p.embedder.dim(),
    )
    .expect("the exported classifier loads back")
}

/// The sample set's classifier, trained once.
pub fn sample_classifier() -> &'static (TrainReport, Classifier) {
    static TRAINED: OnceLock<(TrainReport, Classifier)> = OnceLock::new();
    TRAINED.get_or_init(|| {
        let report = train_on(&celeb5("train"), None);
        let classifier = classifier_of(&report);
        (report, classifier)
    })
}

#[test]
fn training_on_the_sample_set_recognises_every_validation_photo() {
    let (report, classifier) = sample_classifier();
    assert_eq!(report.meta.labels.len(), 5);
    assert_eq!(report.extraction.embedded.len(), 93);
    let eval = evaluate(
        pipeline(),
        classifier,
        &celeb5("val"),
        None,
        Some(cache()),
        false,
    )
    .unwrap();
    let wrong: Vec<_> = eval
        .photos
        .iter()
        .filter(|p| !p.genuine_accepted())
        .map(|p| {
            format!(
                "{} -> {} ({:.2}/{:.2})",
                p.person, p.predicted, p.probability, p.similarity
            )
        })
        .collect();
    assert_eq!(eval.enrolled_photos, 25);
    assert!(wrong.is_empty(), "{wrong:#?}");
    assert_eq!(eval.true_accept_rate, 1.0);
}

/// A classifier trained without ben_afflek, trained once.
pub fn classifier_without_ben() -> &'static (TrainReport, Classifier) {
    static TRAINED: OnceLock<(TrainReport, Classifier)> = OnceLock::new();
    TRAINED.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        copy_tree(&celeb5("train"), dir.path());
        std::fs::remove_dir_all(dir.path().join("ben_afflek")).unwrap();
        let report = train_on(dir.path(), None);
        let classifier = classifier_of(&report);
        (report, classifier)
    })
}

#[test]
fn a_person_left_out_of_training_is_always_unknown() {
    let (report, classifier) = classifier_without_ben();
    assert_eq!(report.meta.labels.len(), 4);
    for split in ["train", "val"] {
        let folder = celeb5(split).join("ben_afflek");
        for entry in std::fs::read_dir(&folder).unwrap() {
            let path = entry.unwrap().path();
            let image = recognition::photo::load_rgb(&path).unwrap();
            for r in pipeline().recognize(&image, classifier, 0.0).unwrap() {
                assert_eq!(
                    r.prediction.identity,
                    None,
                    "{} was let in as {} (p {:.2}, sim {:.2})",
                    path.display(),
                    r.prediction.nearest,
                    r.prediction.probability,
                    r.prediction.similarity
                );
            }
        }
    }
}

#[test]
fn a_stranger_photo_is_unknown() {
    let (_, classifier) = sample_classifier();
    let image = recognition::photo::load_rgb(&extra("stranger/grace_hopper.jpg")).unwrap();
    let found = pipeline().recognize(&image, classifier, 0.0).unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].prediction.label(), "unknown");
}

#[test]
fn corrupt_empty_and_non_image_files_are_skipped_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    for person in ["elton_john", "madonna"] {
        copy_tree(&celeb5("train").join(person), &root.join(person));
    }
    let photo = std::fs::read_dir(root.join("madonna"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let bytes = std::fs::read(&photo).unwrap();
    std::fs::write(
        root.join("madonna/truncated.jpg"),
        &bytes[..bytes.len() / 3],
    )
    .unwrap();
    std::fs::write(root.join("madonna/empty.jpg"), b"").unwrap();
    std::fs::write(root.join("madonna/notes.txt"), b"holiday pictures").unwrap();
    std::fs::write(root.join("elton_john/text.jpg"), b"not a picture at all").unwrap();
    std::fs::copy(
        extra("noface/present.png"),
        root.join("elton_john/present.png"),
    )
    .unwrap();

    let report = train_on(root, None);
    let reason_of = |name: &str| {
        report
            .extraction
            .skipped
            .iter()
            .find(|s| s.path.file_name().unwrap() == name)
            .map(|s| s.reason.clone())
            .unwrap_or_else(|| panic!("{name} not reported: {:#?}", report.extraction.skipped))
    };
    assert!(reason_of("empty.jpg").contains("empty"));
    assert!(reason_of("notes.txt").contains("not a .jpg"));
    assert!(reason_of("text.jpg").contains("not a JPEG or PNG"));
    assert!(reason_of("present.png").contains("no face"));
    assert!(!reason_of("truncated.jpg").is_empty());
    assert_eq!(report.meta.labels, vec!["elton_john", "madonna"]);
    assert_eq!(report.extraction.embedded.len(), 17 + 19);
}

#[test]
fn a_truncated_classifier_is_refused_with_a_clear_error() {
    let (report, _) = sample_classifier();
    let p = pipeline();
    let cut = &report.bytes[..report.bytes.len() / 2];
    let err =
        Classifier::from_bytes(Path::new("cut.onnx"), cut, p.embedder.sha256(), 128).unwrap_err();
    assert!(matches!(err, Error::ClassifierInvalid { .. }), "{err}");
    assert!(err.to_string().contains("cut.onnx"), "{err}");
}

#[test]
fn a_classifier_from_another_embedder_is_refused() {
    let (report, _) = sample_classifier();
    let mut meta = report.meta.clone();
    meta.embedder_sha256 = "0".repeat(64);
    let head = recognition::HeadParams {
        weights: vec![0.0; 128 * 5],
        bias: vec![0.0; 5],
        centroids: vec![0.0; 128 * 5],
    };
    let bytes = artifact::encode(&meta, &head, &[]);
    let p = pipeline();
    let err = Classifier::from_bytes(Path::new("other.onnx"), &bytes, p.embedder.sha256(), 128)
        .unwrap_err();
    assert!(
        matches!(err, Error::ClassifierEmbedderMismatch { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("retrain"), "{err}");
}

#[test]
fn a_model_file_that_is_not_a_classifier_is_refused() {
    let models = crate::support::models();
    let bytes = std::fs::read(models.path().join("pnet.onnx")).unwrap();
    let err = Classifier::from_bytes(Path::new("pnet.onnx"), &bytes, "x", 128).unwrap_err();
    assert!(err.to_string().contains("no facelock metadata"), "{err}");
}

#[test]
fn the_classifier_file_keeps_its_metadata() {
    let (report, classifier) = sample_classifier();
    let meta = classifier.meta();
    assert_eq!(meta, &report.meta);
    assert_eq!(meta.photos_per_person["mindy_kaling"], 22);
    assert!(meta.thresholds.min_similarity > 0.0);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.onnx");
    artifact::write(&path, &report.bytes).unwrap();
    let loaded = pipeline().load_classifier(&path).unwrap();
    assert_eq!(loaded.meta(), meta);
}
