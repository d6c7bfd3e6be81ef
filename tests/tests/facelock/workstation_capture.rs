//! Capture at a workstation: `trainer capture NAME --replay DIR` (the webcam's frames
//! replayed) keeps the good frames into images/NAME with the door's quality gate, reports
//! the bad ones with their reasons, and ends on its count or its time limit.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use image::RgbImage;

use crate::capture::{bad_frames, good_frames, NEWCOMER};
use crate::support::{output_within, workspace_binary, PROCESS_LIMIT};

/// `frames` written as 00001.png, 00002.png, … into `dir`.
fn replay_folder(dir: &Path, frames: &[RgbImage]) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    for (i, frame) in frames.iter().enumerate() {
        frame.save(dir.join(format!("{:05}.png", i + 1))).unwrap();
    }
    dir.to_owned()
}

/// Runs `trainer capture NEWCOMER --replay REPLAY --images IMAGES ARGS`.
fn capture(replay: &Path, images: &Path, args: &[&str]) -> (Output, String) {
    let mut command = Command::new(workspace_binary("trainer"));
    command
        .args(["capture", NEWCOMER, "--replay"])
        .arg(replay)
        .arg("--images")
        .arg(images)
        .args(args);
    let out = output_within(command, PROCESS_LIMIT);
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out, text)
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| d.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default();
    files.sort();
    files
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn workstation_capture_keeps_good_frames_into_images_and_reports_bad_ones_by_reason() {
    let work = tempfile::tempdir().unwrap();
    let bad = bad_frames();
    let good = good_frames(NEWCOMER, 4);
    assert_eq!(good.len(), 4);
    // The bad frames first: each is judged before the count is reached.
    let frames: Vec<RgbImage> = bad
        .iter()
        .map(|(_, f)| f.clone())
        .chain(good.iter().cloned())
        .collect();
    let replay = replay_folder(&work.path().join("webcam"), &frames);
    let images = work.path().join("images");

    let (out, text) = capture(&replay, &images, &["--count", "4", "--seconds", "100"]);
    assert!(out.status.success(), "{text}");
    for n in 1..=4 {
        assert!(text.contains(&format!("kept {n}/4\n")), "{text}");
    }
    assert!(text.contains("done: kept 4 of 4"), "{text}");
    // The first refusal is shown as it happens, with what to do about it; the summary
    // counts every one by its reason.
    assert!(
        text.contains("refused: no face in view: look at the camera"),
        "{text}"
    );
    let summary = text.lines().find(|l| l.starts_with("done: ")).unwrap();
    for (reason, _) in &bad {
        assert!(
            summary.contains(&format!("1 {reason}")),
            "{reason}: {summary}"
        );
    }
    assert!(text.contains("4 new photo(s)"), "{text}");

    let person = images.join(NEWCOMER);
    let saved = files(&person);
    assert_eq!(saved.len(), 4, "{saved:?}");
    assert_eq!(mode(&person), 0o700);
    for file in &saved {
        assert_eq!(mode(file), 0o600, "{}", file.display());
        // The face with half its size of margin, not the whole 640×480 frame.
        let photo = image::open(file).unwrap();
        assert!(
            photo.width() >= 240 && photo.width() < 640,
            "{}",
            photo.width()
        );
    }
}

#[test]
fn workstation_capture_ends_at_its_time_limit_saying_how_many_were_kept() {
    let work = tempfile::tempdir().unwrap();
    let replay = replay_folder(&work.path().join("webcam"), &good_frames(NEWCOMER, 2));
    let images = work.path().join("images");
    workspace_binary("trainer"); // built before the clock starts
    let started = Instant::now();
    let (out, text) = capture(&replay, &images, &["--count", "5", "--seconds", "4"]);
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("timed out: kept 2 of 5"), "{text}");
    assert!(
        text.contains("with 2 of 5 photos kept"),
        "the error says how many were kept: {text}"
    );
    assert_eq!(files(&images.join(NEWCOMER)).len(), 2);
    // Loading the models, then four seconds.
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "{:?}",
        started.elapsed()
    );

    // A name that cannot be a folder is refused before anything is opened.
    let mut command = Command::new(workspace_binary("trainer"));
    command.args(["capture", "../etc", "--replay"]).arg(&replay);
    let out = output_within(command, PROCESS_LIMIT);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("use letters, digits"),
        "{err}"
    );
}
