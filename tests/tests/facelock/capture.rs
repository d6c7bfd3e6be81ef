//! Guided capture at the door: the quality gate refuses each kind of bad frame for its own
//! reason on the real detector; `lock-daemon ctl capture` keeps good replayed frames,
//! honours its count and time limit, never unlocks and is audited; and a person enrolled
//! only from captured frames (pulled with `scripts/pull-captures.sh`) is let in on other
//! photos of them, while a stranger is not.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use image::{imageops, Rgb, RgbImage};
use recognition::quality::QualityGate;
use recognition::{DetectorConfig, Face};

use crate::daemon::{photos, Lock, Timing};
use crate::door_control::{ctl, my_uid, started};
use crate::enrolment::{face_tile, group_photo};
use crate::support::{celeb5, copy_tree, extra, output_within, pipeline, PROCESS_LIMIT};
use crate::training::{classifier_without_ben, train_on};

const LOOPING: Timing = Timing {
    fps: 10.0,
    unlock_secs: 1.0,
    cooldown_secs: 0.5,
    looping: true,
};

/// The person the classifier without ben has never seen.
pub(crate) const NEWCOMER: &str = "ben_afflek";

/// The lock's detector (60 px, as `recognition.detector_min_face_px` defaults).
fn door_faces(image: &RgbImage) -> Vec<Face> {
    let detector = pipeline().mtcnn.with_config(DetectorConfig {
        min_face_px: 60.0,
        ..pipeline().mtcnn.config().clone()
    });
    detector.detect(image).unwrap()
}

/// `tile` centred on a 640×480 grey frame (the lock's frame size).
pub(crate) fn on_frame(tile: &RgbImage) -> RgbImage {
    let mut frame = RgbImage::from_pixel(640, 480, Rgb([128, 128, 128]));
    let x = (640 - tile.width() as i64) / 2;
    let y = (480 - tile.height() as i64) / 2;
    imageops::overlay(&mut frame, tile, x, y);
    frame
}

fn train_photo(person: &str, n: usize) -> PathBuf {
    let mut all: Vec<PathBuf> = std::fs::read_dir(celeb5("train").join(person))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    all.sort();
    all[n].clone()
}

/// Frames of `person` at the door (their training photos, the face about 170 px) that the
/// quality gate keeps, in order, judged as a capture would judge them: at most `n`.
pub(crate) fn good_frames(person: &str, n: usize) -> Vec<RgbImage> {
    let gate = QualityGate::for_door(80.0);
    let (mut frames, mut kept) = (Vec::new(), Vec::new());
    let count = std::fs::read_dir(celeb5("train").join(person))
        .unwrap()
        .count();
    for i in 0..count {
        let frame = on_frame(&face_tile(&train_photo(person, i), 300));
        if let Ok(m) = gate.judge(&frame, &door_faces(&frame), &kept) {
            kept.push(m);
            frames.push(frame);
        }
        if frames.len() == n {
            break;
        }
    }
    frames
}

/// Frames that must each be refused, with the reason they must be refused for.
pub(crate) fn bad_frames() -> Vec<(&'static str, RgbImage)> {
    let photo = train_photo(NEWCOMER, 0);
    let good = on_frame(&face_tile(&photo, 420));
    let darkened = RgbImage::from_fn(640, 480, |x, y| {
        let p = good.get_pixel(x, y);
        Rgb(p.0.map(|v| (f32::from(v) * 0.2) as u8))
    });
    let other = face_tile(&train_photo("madonna", 0), 220);
    vec![
        (
            "no face",
            image::open(extra("noface/present.png")).unwrap().to_rgb8(),
        ),
        (
            "several faces",
            group_photo(&face_tile(&photo, 220), &other),
        ),
        ("face too small", on_frame(&face_tile(&photo, 130))),
        ("blurred", imageops::blur(&good, 6.0)),
        ("too dark", darkened),
    ]
}

#[test]
fn the_quality_gate_refuses_each_bad_frame_for_its_own_reason_on_the_real_detector() {
    let gate = QualityGate::for_door(80.0);
    for (reason, frame) in bad_frames() {
        let faces = door_faces(&frame);
        let verdict = gate.judge(&frame, &faces, &[]);
        let sides: Vec<f32> = faces.iter().map(|f| f.bbox.side()).collect();
        match verdict {
            Err(reject) => assert_eq!(reject.kind(), reason, "{reject}; faces {sides:?}"),
            Ok(m) => panic!("a {reason} frame was kept: {m:?}; faces {sides:?}"),
        }
    }
    // A good frame is kept, and the same frame again is a near-duplicate.
    let good = good_frames(NEWCOMER, 1).remove(0);
    let faces = door_faces(&good);
    let kept = gate
        .judge(&good, &faces, &[])
        .expect("a good frame is kept");
    let again = gate.judge(&good, &faces, &[kept]).unwrap_err();
    assert_eq!(again.kind(), "near-duplicate", "{again}");
}

/// A lock that knows everyone but ben, with the control socket and capture on.
fn lock_with_capture(extra_capture: &str) -> Lock {
    let lock = Lock::new(&classifier_without_ben().0.bytes, LOOPING, None);
    let path = lock.path("lock.toml");
    let mut text = std::fs::read_to_string(&path).unwrap();
    text.push_str(&format!(
        "[control]\nsocket = \"control.sock\"\n[capture]\nenabled = true\ndir = \
         \"captures\"\n{extra_capture}\n"
    ));
    std::fs::write(&path, text).unwrap();
    lock
}

fn write_frames(lock: &Lock, frames: &[RgbImage]) {
    let dir = lock.path("frames");
    let n = std::fs::read_dir(&dir).unwrap().count();
    for (i, frame) in frames.iter().enumerate() {
        frame
            .save(dir.join(format!("{:05}.png", n + i + 1)))
            .unwrap();
    }
}

fn status(lock: &Lock) -> serde_json::Value {
    let (ok, text) = ctl(lock, &["status", "--json"]);
    assert!(ok, "{text}");
    serde_json::from_str(&text).unwrap()
}

fn captured(lock: &Lock) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(lock.path("captures").join(NEWCOMER))
        .map(|d| d.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default();
    files.sort();
    files
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn capture_at_the_door_keeps_good_frames_refuses_bad_ones_by_reason_and_never_unlocks() {
    let lock = lock_with_capture("");
    let bad: Vec<RgbImage> = bad_frames().into_iter().map(|(_, f)| f).collect();
    write_frames(&lock, &bad);
    // Five good frames of the newcomer, each a different photo.
    let good = good_frames(NEWCOMER, 5);
    assert_eq!(good.len(), 5);
    write_frames(&lock, &good);
    let mut child = lock.spawn();
    started(&lock);

    // More frames than the replay holds good ones: it runs until every frame has been
    // judged at least once (however slowly this machine runs), then it is cancelled.
    let watch = lock.command(&[
        "ctl",
        "capture",
        NEWCOMER,
        "--count",
        "30",
        "--seconds",
        "120",
    ]);
    let watcher = std::thread::spawn(move || output_within(watch, PROCESS_LIMIT));
    let reasons = [
        "no face",
        "several faces",
        "face too small",
        "blurred",
        "too dark",
        "near-duplicate",
    ];
    let all_seen = |p: &serde_json::Value| {
        p["kept"] == 5
            && reasons
                .iter()
                .all(|r| p["rejected"][r].as_u64().unwrap_or(0) >= 1)
    };
    let waiting = std::time::Instant::now();
    loop {
        let progress = status(&lock)["capture"].clone();
        if all_seen(&progress) {
            break;
        }
        assert!(
            waiting.elapsed() < Duration::from_secs(100),
            "not every frame judged: {progress}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let (ok, out) = ctl(&lock, &["capture", "--cancel"]);
    assert!(ok, "{out}");
    let out = watcher.join().unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a cancelled capture fails: {text}");
    assert!(text.contains("cancelled: kept 5 of 30"), "{text}");
    assert!(text.contains("kept 5/30"), "progress is shown: {text}");
    assert!(text.contains("refused: "), "reasons are shown: {text}");
    let progress = status(&lock)["capture"].clone();
    assert_eq!(progress["state"], "cancelled", "{progress}");
    let files = captured(&lock);
    assert_eq!(files.len(), 5, "{files:?}");
    assert_eq!(mode(&lock.path("captures")), 0o700);
    assert_eq!(mode(&lock.path("captures").join(NEWCOMER)), 0o700);
    for file in &files {
        assert_eq!(mode(file), 0o600, "{}", file.display());
        let saved = image::open(file).unwrap();
        assert!(
            saved.width() >= 240 && saved.width() < 640,
            "{}",
            saved.width()
        );
    }

    // The time limit is honoured.
    let started_at = std::time::Instant::now();
    let (ok, out) = ctl(
        &lock,
        &["capture", NEWCOMER, "--count", "30", "--seconds", "2"],
    );
    assert!(!ok && out.contains("timed out: kept"), "{out}");
    assert!(started_at.elapsed() < Duration::from_secs(10));
    let kept = status(&lock)["capture"]["kept"].as_u64().unwrap();

    // The count is honoured: two more, then it is done.
    let (ok, out) = ctl(
        &lock,
        &["capture", NEWCOMER, "--count", "2", "--seconds", "30"],
    );
    assert!(ok, "{out}");
    assert!(out.contains("done: kept 2 of 2"), "{out}");
    assert_eq!(captured(&lock).len() as u64, 5 + kept + 2);

    // One at a time, and a name that cannot be a folder is refused.
    let (ok, out) = ctl(&lock, &["capture", "../etc", "--count", "2"]);
    assert!(!ok && out.contains("use letters, digits"), "{out}");

    crate::daemon::signal(&child, "-TERM");
    crate::support::wait_within(&mut child, PROCESS_LIMIT);
    assert_eq!(
        lock.unlocks(),
        0,
        "capture never unlocks: {:?}",
        lock.relay()
    );
    let records = lock.events("capture");
    let by = my_uid();
    assert!(
        records
            .iter()
            .all(|r| r["by"].as_str().unwrap().contains(&by)),
        "{records:?}"
    );
    let messages: Vec<&str> = records
        .iter()
        .map(|r| r["message"].as_str().unwrap())
        .collect();
    assert!(
        messages[0].starts_with("started: 30 frames"),
        "{messages:?}"
    );
    assert!(messages.iter().any(|m| m.starts_with("timed out: kept")));
    assert!(messages.iter().any(|m| m.starts_with("done: kept 2 of 2")));
    assert!(messages.iter().any(|m| m.starts_with("refused: ")));
}

#[test]
fn capture_is_refused_with_the_fix_when_it_is_not_enabled() {
    let lock = Lock::new(&classifier_without_ben().0.bytes, LOOPING, None);
    let path = lock.path("lock.toml");
    let mut text = std::fs::read_to_string(&path).unwrap();
    text.push_str("[control]\nsocket = \"control.sock\"\n");
    std::fs::write(&path, text).unwrap();
    lock.add_frames(&crate::daemon::empty_hallway(), 2);
    let mut child = lock.spawn();
    started(&lock);
    let (ok, out) = ctl(&lock, &["capture", NEWCOMER]);
    assert!(!ok, "{out}");
    assert!(out.contains("[capture] enabled = true"), "{out}");
    crate::daemon::signal(&child, "-TERM");
    crate::support::wait_within(&mut child, PROCESS_LIMIT);
    assert!(!lock.path("captures").exists());
}

/// `ssh HOST COMMAND` and `sudo COMMAND` that run the command on this machine, for
/// `scripts/pull-captures.sh`.
fn loopback_ssh(dir: &Path) -> String {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let ssh = "#!/bin/bash\nwhile [[ $1 == -o ]]; do shift 2; done\nshift\nexec bash -c \"$*\"\n";
    let sudo = "#!/bin/bash\nexec \"$@\"\n";
    for (name, text) in [("ssh", ssh), ("sudo", sudo)] {
        std::fs::write(bin.join(name), text).unwrap();
        std::fs::set_permissions(bin.join(name), std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

#[test]
fn a_person_enrolled_only_from_door_captures_is_let_in_and_a_stranger_is_not() {
    // 1. At the door: the newcomer's training photos pass before the camera.
    let lock = lock_with_capture("");
    let frames = good_frames(NEWCOMER, 14);
    assert!(frames.len() >= 8, "only {} usable photos", frames.len());
    write_frames(&lock, &frames);
    let count = frames.len().to_string();
    let mut child = lock.spawn();
    started(&lock);
    let (ok, out) = ctl(
        &lock,
        &["capture", NEWCOMER, "--count", &count, "--seconds", "100"],
    );
    assert!(ok, "{out}");
    crate::daemon::signal(&child, "-TERM");
    crate::support::wait_within(&mut child, PROCESS_LIMIT);
    assert_eq!(lock.unlocks(), 0);

    // 2. To the workstation, with the script, into images/ with everyone else.
    let work = tempfile::tempdir().unwrap();
    let images = work.path().join("images");
    copy_tree(&celeb5("train"), &images);
    std::fs::remove_dir_all(images.join(NEWCOMER)).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/pull-captures.sh");
    let mut pull = Command::new("bash");
    pull.arg(script)
        .arg("--images")
        .arg(&images)
        .arg("--dir")
        .arg(lock.path("captures"))
        .arg("--remove")
        .arg("door-lock")
        .env("PATH", loopback_ssh(work.path()));
    let out = output_within(pull, Duration::from_secs(60));
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains(&format!("{NEWCOMER}: {count} new photos")),
        "{text}"
    );
    assert!(text.contains("removed from the lock"), "{text}");
    assert_eq!(
        std::fs::read_dir(images.join(NEWCOMER)).unwrap().count(),
        frames.len()
    );
    assert!(!lock.path("captures").join(NEWCOMER).exists());

    // 3. Train on them, and put the classifier on a lock.
    let report = train_on(&images, None);
    let trained = |replay: &[PathBuf], copies: usize| {
        let lock = Lock::new(&report.bytes, crate::daemon::FAST, None);
        lock.add_frames(replay, copies);
        lock.run_replay();
        lock
    };
    // Other photos of the newcomer (held out from training and capture) open the door.
    let door = trained(&photos(NEWCOMER), 3);
    let unlocks = door.events("unlock");
    assert!(!unlocks.is_empty(), "{:?}", door.audit());
    assert!(
        unlocks.iter().all(|u| u["person"] == NEWCOMER),
        "{unlocks:?}"
    );
    // A stranger does not.
    let door = trained(&[extra("stranger/grace_hopper.jpg")], 6);
    assert_eq!(door.unlocks(), 0, "{:?}", door.audit());
}
