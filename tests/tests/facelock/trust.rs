//! Trust in the classifier at the door, with the daemon as a process: an older classifier,
//! even validly signed, is refused at reload and at start unless an administrator allows it
//! deliberately; the daemon refuses to run without a trusted key unless unsigned classifiers
//! are allowed explicitly; and `check-config` refuses what `run` refuses (among it, a
//! classifier made with other pipeline settings than the lock's).

use std::path::Path;
use std::time::Duration;

use lock_daemon::relay::LockState;
use recognition::{artifact, signature};

use crate::daemon::{
    empty_hallway, held_open, install, output_within, photos, signal, wait_within, Lock, Timing,
    FAST, PROCESS_LIMIT,
};
use crate::training::{classifier_without_ben, sample_classifier};

/// `bytes` with its `created` metadata moved to `year`. The text keeps its length, so the
/// protobuf lengths around it still hold; sign the file afterwards. Tests that replace the
/// classifier use it to make the new one newer: the daemon refuses an older one.
pub(crate) fn created_in(bytes: &[u8], year: &str) -> Vec<u8> {
    let created = artifact::meta_from_bytes(Path::new("c.onnx"), bytes)
        .unwrap()
        .created;
    let new = format!("{year}{}", &created[4..]);
    let old = format!("\"created\":\"{created}\"");
    let replacement = format!("\"created\":\"{new}\"");
    let at = bytes
        .windows(old.len())
        .position(|w| w == old.as_bytes())
        .expect("the metadata holds the creation time");
    let mut out = bytes.to_vec();
    out[at..at + old.len()].copy_from_slice(replacement.as_bytes());
    let meta = artifact::meta_from_bytes(Path::new("c.onnx"), &out).unwrap();
    assert_eq!(meta.created, new);
    out
}

/// A signing key with its public half as PEM.
pub(crate) struct Signer {
    pub(crate) key: signature::SigningKey,
    pub(crate) public_pem: String,
}

impl Signer {
    pub(crate) fn new() -> Signer {
        let keys = signature::keygen();
        Signer {
            key: signature::signing_key_from_pem(&keys.private_pem, Path::new("test.key")).unwrap(),
            public_pem: keys.public_pem,
        }
    }

    /// A: the whole sample set, ben_afflek enrolled, made in 2020.
    pub(crate) fn older_with_ben(&self) -> Vec<u8> {
        signature::sign(&created_in(&sample_classifier().0.bytes, "2020"), &self.key)
    }

    /// B: ben_afflek removed, made in 2021.
    pub(crate) fn newer_without_ben(&self) -> Vec<u8> {
        signature::sign(
            &created_in(&classifier_without_ben().0.bytes, "2021"),
            &self.key,
        )
    }
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn allow_downgrade(lock: &Lock) -> String {
    let out = output_within(lock.command(&["allow-downgrade"]), PROCESS_LIMIT);
    assert!(out.status.success(), "allow-downgrade: {}", stderr(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn an_older_signed_classifier_is_refused_until_a_downgrade_is_allowed() {
    let signer = Signer::new();
    let timing = Timing {
        unlock_secs: 1.0,
        ..held_open()
    };
    // B is in service; ben_afflek, removed from it, walks up again and again.
    let lock = Lock::new(
        &signer.newer_without_ben(),
        timing,
        Some(&signer.public_pem),
    );
    lock.add_frames(&photos("ben_afflek"), 1);
    lock.add_frames(&empty_hallway(), 25);
    let mut child = lock.spawn();
    lock.wait_for(Duration::from_secs(60), "ben refused", |l| {
        !l.events("denied-unknown").is_empty()
    });

    // A, older but validly signed, would let him in again: refused, B stays in service.
    install(&lock, &signer.older_with_ben());
    lock.wait_for(Duration::from_secs(30), "the refusal", |l| {
        !l.events("reload-refused").is_empty()
    });
    let refused = lock.events("reload-refused")[0]["message"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        refused.contains("older than the classifier in service (created 2020-")
            && refused.contains(" < 2021-"),
        "{refused}"
    );
    assert!(
        refused.contains("to downgrade deliberately run `lock-daemon allow-downgrade`"),
        "{refused}"
    );
    let denied = lock.events("denied-unknown").len();
    lock.wait_for(Duration::from_secs(60), "ben refused again", |l| {
        l.events("denied-unknown").len() > denied
    });
    assert_eq!(lock.unlocks(), 0);
    assert!(lock.events("reload").is_empty());

    // The administrator allows exactly this file, audited with who did it.
    let said = allow_downgrade(&lock);
    assert!(said.contains("allowed once"), "{said}");
    let allowed = &lock.events("downgrade-allowed")[0];
    assert!(
        allowed["message"].as_str().unwrap().starts_with("uid "),
        "{allowed}"
    );
    signal(&child, "-HUP");
    lock.wait_for(Duration::from_secs(30), "the reload", |l| {
        !l.events("reload").is_empty()
    });
    assert_eq!(lock.events("downgrade").len(), 1);
    lock.wait_for(Duration::from_secs(60), "ben's unlock", |l| {
        l.unlocks() >= 1
    });
    signal(&child, "-TERM");
    assert!(wait_within(&mut child, PROCESS_LIMIT).success());
    assert_eq!(lock.events("unlock")[0]["person"], "ben_afflek");
    // A is now the classifier in service, and the allowance was used up.
    let state = std::fs::read_to_string(lock.path("state/classifier.json")).unwrap();
    assert!(state.contains("\"created\": \"2020-"), "{state}");
    assert!(!lock.path("state/downgrade-allowed.json").exists());
}

#[test]
fn a_restart_with_an_older_classifier_refuses_to_start() {
    let signer = Signer::new();
    let lock = Lock::new(&signer.newer_without_ben(), FAST, Some(&signer.public_pem));
    lock.add_frames(&photos("madonna"), 1);
    lock.run_replay();
    // While it was stopped, someone puts the older file back.
    install(&lock, &signer.older_with_ben());
    let out = output_within(
        lock.command(&["run", "--exit-when-replay-ends"]),
        PROCESS_LIMIT,
    );
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("older than the classifier in service"),
        "{}",
        stderr(&out)
    );
    assert_eq!(lock.relay().last().unwrap().state, LockState::Locked);
    // check-config says so too, before systemd starts anything.
    let out = output_within(lock.command(&["check-config"]), PROCESS_LIMIT);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("allow-downgrade"), "{}", stderr(&out));
    // Allowed deliberately, it starts, and the downgrade is in the audit log.
    allow_downgrade(&lock);
    lock.run_replay();
    assert_eq!(lock.events("downgrade").len(), 1);
}

#[test]
fn without_a_trusted_key_the_daemon_starts_only_when_unsigned_is_allowed() {
    let lock = Lock::new(&sample_classifier().0.bytes, FAST, None);
    lock.add_frames(&photos("madonna"), 1);
    let config = std::fs::read_to_string(lock.path("lock.toml")).unwrap();
    std::fs::write(
        lock.path("lock.toml"),
        config.replace("allow_unsigned = true", ""),
    )
    .unwrap();
    for command in ["run", "check-config"] {
        let out = output_within(lock.command(&[command]), PROCESS_LIMIT);
        assert!(!out.status.success(), "{command}");
        assert!(
            stderr(&out).contains("`security.trusted_key` is not set"),
            "{command}: {}",
            stderr(&out)
        );
    }
    // Allowed explicitly: it runs, and says so in the log and the audit log.
    std::fs::write(lock.path("lock.toml"), config).unwrap();
    let out = lock.run_replay();
    assert!(
        stderr(&out).contains("signatures are not checked"),
        "{}",
        stderr(&out)
    );
    let warnings = lock.events("warning");
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0]["message"]
        .as_str()
        .unwrap()
        .contains("allow_unsigned"));
}

#[test]
fn check_config_refuses_what_run_refuses() {
    let signer = Signer::new();
    let good = signer.newer_without_ben();
    type Break = fn(&Lock);
    let cases: [(&str, Break, &str); 5] = [
        (
            "a tampered classifier",
            |l| {
                let mut bytes = std::fs::read(l.path("classifier.onnx")).unwrap();
                let middle = bytes.len() / 2;
                bytes[middle] ^= 0x01;
                std::fs::write(l.path("classifier.onnx"), bytes).unwrap();
            },
            "signature does not match",
        ),
        (
            "a crop margin other than the classifier's",
            |l| {
                let config = std::fs::read_to_string(l.path("lock.toml"))
                    .unwrap()
                    .replace("[recognition]\n", "[recognition]\ncrop_margin = 0.2\n");
                std::fs::write(l.path("lock.toml"), config).unwrap();
            },
            "was made with crop margin 0, but this pipeline uses 0.2 (the lock's \
             `recognition.crop_margin`",
        ),
        (
            "a missing camera",
            |l| {
                let config = std::fs::read_to_string(l.path("lock.toml"))
                    .unwrap()
                    .replace("replay_dir = \"frames\"", "device = \"/dev/video-missing\"")
                    .replace("replay_fps = 10.0\n", "")
                    .replace("replay_loop = false\n", "");
                std::fs::write(l.path("lock.toml"), config).unwrap();
            },
            "no camera at /dev/video-missing",
        ),
        (
            "an empty replay directory",
            |l| {
                for entry in std::fs::read_dir(l.path("frames")).unwrap() {
                    std::fs::remove_file(entry.unwrap().path()).unwrap();
                }
            },
            "holds no .jpg",
        ),
        (
            "a corrupt state file",
            |l| {
                std::fs::create_dir_all(l.path("state")).unwrap();
                std::fs::write(l.path("state/classifier.json"), "{\"format\":").unwrap();
            },
            "is corrupt",
        ),
    ];
    // The intact installation passes both, models loaded.
    let lock = Lock::new(&good, FAST, Some(&signer.public_pem));
    lock.add_frames(&photos("madonna"), 1);
    let out = output_within(lock.command(&["check-config"]), PROCESS_LIMIT);
    assert!(out.status.success(), "{}", stderr(&out));
    for (what, break_it, expected) in cases {
        let lock = Lock::new(&good, FAST, Some(&signer.public_pem));
        lock.add_frames(&photos("madonna"), 1);
        break_it(&lock);
        for command in ["run", "check-config"] {
            let args: &[&str] = match command {
                "run" => &["run", "--exit-when-replay-ends"],
                _ => &["check-config"],
            };
            let out = output_within(lock.command(args), PROCESS_LIMIT);
            assert!(!out.status.success(), "{what}: {command} passed");
            assert!(
                stderr(&out).contains(expected),
                "{what}: {command}: {}",
                stderr(&out)
            );
        }
    }
}
