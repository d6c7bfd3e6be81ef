//! Training on the sample set: the classifier recognises the held-out photos,
//! refuses a person it was not trained on, survives bad files, and its file
//! refuses to be misused.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use recognition::classify::Expected;
use recognition::{artifact, Classifier, Error, PipelineConfig};
use trainer::evaluate::evaluate;
use trainer::train::{train, TrainOptions, TrainReport};

use crate::support::{celeb5, copy_tree, extra, pipeline};

/// One embedding cache for the whole test binary; training runs one at a time
/// so later runs reuse the embeddings of earlier ones.
fn cache() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| tempfile::tempdir().unwrap()).path()
}

pub(crate) fn train_on(images: &Path, unknown: Option<PathBuf>) -> TrainReport {
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
    Classifier::from_trusted_bytes(
        Path::new("trained.onnx"),
        &report.bytes,
        None,
        &Expected::of(pipeline()),
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
    // Every photo is used, including one where the detector reports madonna's face twice
    // with overlapping boxes (one face, not two people).
    assert_eq!(report.extraction.embedded.len(), 93);
    assert!(
        report.extraction.skipped.is_empty(),
        "{:?}",
        report.extraction.skipped
    );
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

#[test]
fn the_evaluation_links_each_error_to_the_enrolment_photos_that_explain_it() {
    // A photo of madonna filed under elton_john: refused as elton, taken for madonna.
    let (_, classifier) = sample_classifier();
    let dir = tempfile::tempdir().unwrap();
    copy_tree(&celeb5("val"), dir.path());
    let mut madonna: Vec<PathBuf> = std::fs::read_dir(dir.path().join("madonna"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    madonna.sort();
    let misfiled = dir.path().join("elton_john/misfiled.jpg");
    std::fs::rename(&madonna[0], &misfiled).unwrap();
    let scope = trainer::evaluate::Scope {
        unknown: None,
        enrolment: Some(&celeb5("train")),
        cache_dir: Some(cache()),
        photos: &trainer::enroll::PhotoOptions::default(),
        progress: false,
    };
    let eval =
        trainer::evaluate::evaluate_with(pipeline(), classifier, dir.path(), &scope).unwrap();
    let errors: Vec<_> = eval
        .photos
        .iter()
        .filter(|p| p.false_reject() || p.false_accept())
        .collect();
    assert_eq!(errors.len(), 1, "{errors:#?}");
    let error = errors[0];
    assert_eq!(error.path, misfiled);
    assert_eq!(error.causes.len(), 3);
    assert!(
        error
            .causes
            .iter()
            .all(|c| c.person == "madonna" && c.path.starts_with(celeb5("train").join("madonna"))),
        "{:#?}",
        error.causes
    );
    assert!(error.causes[0].similarity >= error.causes[2].similarity);
    let why = error.diagnosis();
    assert!(
        why.starts_with("looks most like madonna's enrolment photo")
            && why.contains("this one shows elton_john"),
        "{why}"
    );
    // Photos that were let in as themselves carry no causes.
    assert!(eval
        .photos
        .iter()
        .filter(|p| p.genuine_accepted())
        .all(|p| p.causes.is_empty()));
    let html = trainer::report::html(&eval, "t");
    let cause = error.causes[0].path.display().to_string();
    assert!(
        html.contains(&format!("href=\"file://{cause}\"")),
        "the report links the enrolment photo"
    );
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
    assert!(reason_of("truncated.jpg").contains("the JPEG is truncated"));
    assert_eq!(report.meta.labels, vec!["elton_john", "madonna"]);
    assert_eq!(report.extraction.embedded.len(), 17 + 19);
}

#[test]
fn a_truncated_classifier_is_refused_with_a_clear_error() {
    let (report, _) = sample_classifier();
    let cut = &report.bytes[..report.bytes.len() / 2];
    let err =
        Classifier::from_trusted_bytes(Path::new("cut.onnx"), cut, None, &Expected::of(pipeline()))
            .unwrap_err();
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
    let err = Classifier::from_trusted_bytes(
        Path::new("other.onnx"),
        &bytes,
        None,
        &Expected::of(pipeline()),
    )
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
    let expected = Expected {
        embedder_sha256: "x",
        embedding_size: 128,
        config: &PipelineConfig::default(),
    };
    let err = Classifier::from_trusted_bytes(Path::new("pnet.onnx"), &bytes, None, &expected)
        .unwrap_err();
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
    let loaded = pipeline().load_classifier(&path, None).unwrap();
    assert_eq!(loaded.meta(), meta);
}

#[test]
fn the_classifier_records_the_pipeline_settings_it_was_trained_with() {
    let meta = sample_classifier().1.meta();
    let config = &pipeline().config;
    assert_eq!(meta.crop_margin, config.crop_margin);
    assert_eq!(meta.detector_min_face_px, config.detector.min_face_px);
    assert_eq!(meta.pipeline_version, artifact::PIPELINE_VERSION);
}

#[test]
fn a_pipeline_with_another_crop_margin_refuses_the_classifier() {
    let (report, _) = sample_classifier();
    let p = pipeline();
    let other = PipelineConfig {
        crop_margin: 0.2,
        ..p.config.clone()
    };
    let expected = Expected {
        config: &other,
        ..Expected::of(p)
    };
    let err = Classifier::from_trusted_bytes(Path::new("c.onnx"), &report.bytes, None, &expected)
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("was made with crop margin 0, but this pipeline uses 0.2")
            && text.contains("set it to 0, or retrain with `trainer --crop-margin 0.2 train`"),
        "{text}"
    );
}

/// The gate's thresholds are chosen on scores of the Rust head (`trainer::fit::Head`, in
/// cross-validation); the lock scores with the exported ONNX head through tract. Both must
/// give the same probabilities and similarities, or the thresholds would mean something
/// else at the door.
#[test]
fn the_calibration_head_and_the_exported_onnx_head_score_every_photo_alike() {
    let (report, classifier) = sample_classifier();
    let val = trainer::train::embed_dataset(
        pipeline(),
        &trainer::dataset::Dataset::people(&celeb5("val")).unwrap(),
        Some(cache()),
        &trainer::enroll::PhotoOptions::default(),
        false,
    )
    .unwrap();
    let probes: Vec<_> = report
        .extraction
        .embedded
        .iter()
        .chain(&val.embedded)
        .collect();
    assert!(val.embedded.len() >= 20, "{}", val.embedded.len());
    let mut worst = 0.0f32;
    for probe in probes {
        let (probabilities, similarities) = report.head.scores(probe.embedding.as_slice());
        let onnx = classifier.scores(&probe.embedding).unwrap();
        assert_eq!(onnx.probabilities.len(), probabilities.len());
        assert_eq!(onnx.similarities.len(), similarities.len());
        let pairs = probabilities
            .iter()
            .zip(&onnx.probabilities)
            .chain(similarities.iter().zip(&onnx.similarities));
        for (rust, tract) in pairs {
            let diff = (rust - tract).abs();
            assert!(
                diff <= 1e-5,
                "{}: Rust head {rust}, ONNX head {tract}",
                probe.sample.path.display()
            );
            worst = worst.max(diff);
        }
    }
    eprintln!("largest difference between the two heads: {worst:e}");
}

// ---- `trainer recognize` and `evaluate` with --trusted-key ------------------------------

/// A key pair: the private key to sign with, the public key file for `--trusted-key`.
fn key_pair(dir: &Path, name: &str) -> (recognition::signature::SigningKey, PathBuf) {
    let keys = recognition::signature::keygen();
    let public = dir.join(format!("{name}.pub"));
    std::fs::write(&public, &keys.public_pem).unwrap();
    let key =
        recognition::signature::signing_key_from_pem(&keys.private_pem, Path::new(name)).unwrap();
    (key, public)
}

/// Runs the trainer binary on the sample models (no embedding cache).
fn trainer(args: &[&std::ffi::OsStr]) -> std::process::Output {
    let mut cmd = std::process::Command::new(crate::support::workspace_binary("trainer"));
    cmd.arg("--quiet").arg("--no-cache").args(args);
    crate::support::output_within(cmd, crate::support::PROCESS_LIMIT)
}

fn recognize(classifier: &Path, trusted_key: &Path) -> std::process::Output {
    let photo = std::fs::read_dir(celeb5("val").join("madonna"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    trainer(&[
        "recognize".as_ref(),
        "--trusted-key".as_ref(),
        trusted_key.as_os_str(),
        classifier.as_os_str(),
        photo.as_os_str(),
    ])
}

fn evaluate_cli(classifier: &Path, trusted_key: &Path, html: &Path) -> std::process::Output {
    trainer(&[
        "evaluate".as_ref(),
        "--trusted-key".as_ref(),
        trusted_key.as_os_str(),
        "--html".as_ref(),
        html.as_os_str(),
        classifier.as_os_str(),
        celeb5("val").as_os_str(),
    ])
}

fn stderr_of(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn trainer_recognize_with_a_trusted_key_uses_a_classifier_signed_with_it() {
    let dir = tempfile::tempdir().unwrap();
    let (key, public) = key_pair(dir.path(), "right");
    let path = dir.path().join("signed.onnx");
    let signed = recognition::signature::sign(&sample_classifier().0.bytes, &key);
    std::fs::write(&path, signed).unwrap();
    let out = recognize(&path, &public);
    assert!(out.status.success(), "{}", stderr_of(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("\tmadonna\t"), "{stdout}");
}

#[test]
fn trainer_recognize_and_evaluate_refuse_a_classifier_signed_with_another_key() {
    let dir = tempfile::tempdir().unwrap();
    let (other, _) = key_pair(dir.path(), "other");
    let (_, trusted) = key_pair(dir.path(), "trusted");
    let path = dir.path().join("signed-by-other.onnx");
    let signed = recognition::signature::sign(&sample_classifier().0.bytes, &other);
    std::fs::write(&path, signed).unwrap();
    refused_by_recognize_and_evaluate(
        &path,
        &trusted,
        &[
            "signed-by-other.onnx refused: signature does not match",
            "signed by another key",
            "re-sign it with `trainer sign`",
        ],
    );
}

/// `trainer recognize` and `trainer evaluate`, given `trusted`, both refuse the classifier
/// at `path` with every one of `reasons` in the error, print nothing and write no report.
fn refused_by_recognize_and_evaluate(path: &Path, trusted: &Path, reasons: &[&str]) {
    let html = path.with_extension("html");
    for out in [recognize(path, trusted), evaluate_cli(path, trusted, &html)] {
        assert_eq!(out.status.code(), Some(1), "{}", stderr_of(&out));
        let err = stderr_of(&out);
        assert!(reasons.iter().all(|r| err.contains(r)), "{err}");
        assert!(out.stdout.is_empty(), "nothing recognised or evaluated");
    }
    assert!(!html.exists(), "no report from a refused classifier");
}

#[test]
fn trainer_recognize_and_evaluate_refuse_an_unsigned_classifier_when_given_a_trusted_key() {
    let dir = tempfile::tempdir().unwrap();
    let (_, trusted) = key_pair(dir.path(), "trusted");
    let path = dir.path().join("unsigned.onnx");
    std::fs::write(&path, &sample_classifier().0.bytes).unwrap();
    refused_by_recognize_and_evaluate(
        &path,
        &trusted,
        &[
            "unsigned.onnx refused: unsigned",
            "`trainer train --sign <private key>`",
            "`trainer sign`",
        ],
    );
}

#[test]
fn trainer_recognize_refuses_a_classifier_trained_with_another_crop_margin() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.onnx");
    std::fs::write(&path, &sample_classifier().0.bytes).unwrap();
    let photo = extra("stranger/grace_hopper.jpg");
    let out = trainer(&[
        "--crop-margin".as_ref(),
        "0.2".as_ref(),
        "recognize".as_ref(),
        path.as_os_str(),
        photo.as_os_str(),
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr_of(&out));
    let err = stderr_of(&out);
    assert!(
        err.contains("was made with crop margin 0, but this pipeline uses 0.2")
            && err.contains("`--crop-margin`"),
        "{err}"
    );
}
