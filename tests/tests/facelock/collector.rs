//! The data collector (`[collect]`): off by default; when on, it keeps unknown faces as
//! private crops within its file limit, audits each, and `trainer review` shows them and
//! adds only the ones the admin names.

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::time::Duration;

use crate::daemon::{empty_hallway, Lock, Timing, FAST};
use crate::support::{extra, output_within, workspace_binary, PROCESS_LIMIT};
use crate::training::sample_classifier;

const LOOPING: Timing = Timing {
    fps: 10.0,
    unlock_secs: 1.0,
    cooldown_secs: 0.5,
    looping: true,
};

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn trainer(args: &[&str]) -> (bool, String) {
    let mut command = std::process::Command::new(workspace_binary("trainer"));
    command.args(args);
    let out = output_within(command, PROCESS_LIMIT);
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

#[test]
fn without_collect_the_lock_keeps_no_faces() {
    let lock = Lock::new(&sample_classifier().0.bytes, FAST, None);
    lock.add_frames(&[extra("stranger/grace_hopper.jpg")], 4);
    lock.run_replay();
    assert!(!lock.events("denied-unknown").is_empty());
    assert!(lock.events("collected").is_empty());
    assert!(!lock.path("collected").exists());
}

#[test]
fn the_collector_keeps_unknown_faces_privately_within_its_limit_and_review_adds_only_what_is_named()
{
    let lock = Lock::new(&sample_classifier().0.bytes, LOOPING, None);
    // A stranger, then an empty hallway for longer than the policy's 2 s window: each
    // loop is a new encounter.
    lock.add_frames(&[extra("stranger/grace_hopper.jpg")], 3);
    lock.add_frames(&empty_hallway(), 25);
    let path = lock.path("lock.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(
        &path,
        format!("{text}[collect]\nenabled = true\ndir = \"collected\"\nmax_files = 2\n"),
    )
    .unwrap();
    let mut child = lock.spawn();
    lock.wait_for(Duration::from_secs(90), "three faces collected", |l| {
        l.events("collected").len() >= 3
    });
    crate::daemon::signal(&child, "-TERM");
    crate::support::wait_within(&mut child, PROCESS_LIMIT);
    assert_eq!(lock.unlocks(), 0);

    let dir = lock.path("collected");
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&dir.join("unknown")), 0o700);
    let files: Vec<_> = std::fs::read_dir(dir.join("unknown"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 2, "the limit holds: {files:?}");
    for file in &files {
        assert_eq!(mode(file), 0o600);
        let crop = image::open(file).unwrap();
        assert!(
            crop.width() < 640,
            "a crop, not the frame: {}",
            crop.width()
        );
    }
    // The index names the files and the scores, nothing else (no embedding).
    let index = std::fs::read_to_string(dir.join("index.jsonl")).unwrap();
    let lines: Vec<serde_json::Value> = index
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2, "{index}");
    for line in &lines {
        let mut keys: Vec<&String> = line.as_object().unwrap().keys().collect();
        keys.sort();
        assert_eq!(
            keys,
            [
                "file",
                "kind",
                "probability",
                "similarity",
                "suggested",
                "time"
            ]
        );
        assert_eq!(line["kind"], "unknown");
    }
    for record in lock.events("collected") {
        let message = record["message"].as_str().unwrap();
        assert!(message.starts_with("unknown (p "), "{message}");
        assert!(message.contains("unknown/"), "{message}");
    }

    // Review: a page of the faces; nothing is added until named.
    let work = tempfile::tempdir().unwrap();
    let images = work.path().join("images");
    std::fs::create_dir_all(images.join("madonna")).unwrap();
    let html = work.path().join("review.html");
    let (ok, out) = trainer(&[
        "review",
        dir.to_str().unwrap(),
        "--images",
        images.to_str().unwrap(),
        "--html",
        html.to_str().unwrap(),
    ]);
    assert!(ok, "{out}");
    assert!(out.contains("(unknown): 2 face(s)"), "{out}");
    let page = std::fs::read_to_string(&html).unwrap();
    let first = lines[0]["file"].as_str().unwrap();
    assert!(page.contains(first), "the page shows {first}");
    assert_eq!(
        std::fs::read_dir(images.join("madonna")).unwrap().count(),
        0
    );
    let (ok, out) = trainer(&[
        "review",
        dir.to_str().unwrap(),
        "--images",
        images.to_str().unwrap(),
        "--accept",
        "madonna",
        first,
    ]);
    assert!(ok, "{out}");
    assert_eq!(
        std::fs::read_dir(images.join("madonna")).unwrap().count(),
        1
    );
    // A file the collector did not keep is refused.
    let (ok, out) = trainer(&[
        "review",
        dir.to_str().unwrap(),
        "--images",
        images.to_str().unwrap(),
        "--accept",
        "madonna",
        "../../etc/passwd",
    ]);
    assert!(!ok && out.contains("is not in"), "{out}");
}
