//! The lock daemon as a process: real models, real photos replayed as camera
//! frames, the simulated relay's log as the door.

use std::os::unix::ffi::OsStrExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use std::time::{Duration, Instant};

use lock_daemon::relay::sim::{parse_log, Transition};
use lock_daemon::relay::LockState;
use recognition::signature;

use crate::support::{celeb5, extra, workspace_binary};
pub(crate) use crate::support::{output_within, wait_within, PROCESS_LIMIT};
use crate::training::{classifier_without_ben, sample_classifier};

/// The daemon binary, built once.
pub(crate) fn daemon_binary() -> PathBuf {
    workspace_binary("lock-daemon")
}

/// A lock installation in a temporary folder.
pub(crate) struct Lock {
    dir: tempfile::TempDir,
    /// The daemons [`Lock::spawn`] started: killed when the lock is dropped if still
    /// running, so a test that fails mid-way leaves no daemon behind.
    spawned: std::sync::Mutex<Vec<u32>>,
}

#[derive(Clone, Copy)]
pub(crate) struct Timing {
    pub(crate) fps: f64,
    pub(crate) unlock_secs: f64,
    pub(crate) cooldown_secs: f64,
    pub(crate) looping: bool,
}

pub(crate) const FAST: Timing = Timing {
    fps: 10.0,
    unlock_secs: 1.0,
    cooldown_secs: 0.5,
    looping: false,
};

impl Lock {
    pub(crate) fn new(classifier: &[u8], timing: Timing, trusted_key: Option<&str>) -> Lock {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("frames")).unwrap();
        std::fs::write(dir.path().join("classifier.onnx"), classifier).unwrap();
        let security = trusted_key
            .map(|k| {
                std::fs::write(dir.path().join("trusted.pub"), k).unwrap();
                "[security]\ntrusted_key = \"trusted.pub\"\n".to_owned()
            })
            .unwrap_or_else(|| "[security]\nallow_unsigned = true\n".to_owned());
        let config = format!(
            "[camera]\nreplay_dir = \"frames\"\nreplay_fps = {:.1}\nreplay_loop = {}\n\
             read_timeout_ms = 100\n\
             [recognition]\nclassifier = \"classifier.onnx\"\nmodel_dir = \"{}\"\n\
             [policy]\nframes_required = 3\nwindow_secs = 2.0\nunlock_secs = {:.1}\ncooldown_secs = {:.1}\n\
             [relay]\nbackend = \"sim\"\nsim_log = \"relay.log\"\n\
             [audit]\nlog = \"audit.jsonl\"\n[state]\ndir = \"state\"\n{security}",
            timing.fps,
            timing.looping,
            recognition::ModelDir::default_location().display(),
            timing.unlock_secs,
            timing.cooldown_secs,
        );
        std::fs::write(dir.path().join("lock.toml"), config).unwrap();
        Lock {
            dir,
            spawned: Default::default(),
        }
    }

    pub(crate) fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Appends `count` copies of each photo to the replay, in order.
    pub(crate) fn add_frames(&self, photos: &[PathBuf], count: usize) {
        let frames = self.path("frames");
        let mut n = std::fs::read_dir(&frames).unwrap().count();
        for photo in photos {
            for _ in 0..count {
                n += 1;
                let ext = photo.extension().unwrap().to_string_lossy();
                std::fs::copy(photo, frames.join(format!("{n:05}.{ext}"))).unwrap();
            }
        }
    }

    pub(crate) fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(daemon_binary());
        cmd.args(args)
            .arg("--config")
            .arg(self.path("lock.toml"))
            .env("RUST_LOG", "info")
            .stdin(Stdio::null());
        cmd
    }

    /// Runs the daemon until the replay ends (at most [`PROCESS_LIMIT`]).
    pub(crate) fn run_replay(&self) -> Output {
        let out = output_within(
            self.command(&["run", "--exit-when-replay-ends"]),
            PROCESS_LIMIT,
        );
        assert!(
            out.status.success(),
            "daemon failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    /// Starts `lock-daemon run`; its standard error goes to `daemon.stderr` (a pipe nobody
    /// reads would fill up and stall the daemon's logging, and with it the door loop). Wait
    /// for it with [`wait_within`]; it is killed when the lock is dropped.
    pub(crate) fn spawn(&self) -> Child {
        let stderr = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.path("daemon.stderr"))
            .unwrap();
        let child = self
            .command(&["run"])
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .unwrap();
        self.spawned.lock().unwrap().push(child.id());
        child
    }

    /// The end of what the daemons [`Lock::spawn`] started wrote to standard error.
    pub(crate) fn stderr_tail(&self) -> String {
        let text = std::fs::read_to_string(self.path("daemon.stderr")).unwrap_or_default();
        let mut from = text.len().saturating_sub(4000);
        while !text.is_char_boundary(from) {
            from += 1;
        }
        text[from..].to_owned()
    }

    pub(crate) fn relay(&self) -> Vec<Transition> {
        parse_log(&std::fs::read_to_string(self.path("relay.log")).unwrap_or_default()).unwrap()
    }

    pub(crate) fn unlocks(&self) -> usize {
        self.relay()
            .iter()
            .filter(|t| t.state == LockState::Unlocked)
            .count()
    }

    pub(crate) fn audit(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(self.path("audit.jsonl"))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    pub(crate) fn events(&self, kind: &str) -> Vec<serde_json::Value> {
        self.audit()
            .into_iter()
            .filter(|e| e["event"] == kind)
            .collect()
    }

    /// Waits until `done` holds, or panics after `limit`.
    pub(crate) fn wait_for(&self, limit: Duration, what: &str, done: impl Fn(&Lock) -> bool) {
        let start = Instant::now();
        while !done(self) {
            assert!(
                start.elapsed() < limit,
                "timed out waiting for {what}; relay {:?}; audit {:?}\n--- daemon stderr \
                 (end):\n{}",
                self.relay(),
                self.audit(),
                self.stderr_tail()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        let config = self.path("lock.toml");
        let spawned = self.spawned.get_mut().unwrap_or_else(|e| e.into_inner());
        for pid in spawned.drain(..) {
            // Only a process still running on this lock's configuration: the pid of one
            // that has exited and been waited for may belong to another process by now.
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let ours = cmdline
                .split(|b| *b == 0)
                .any(|arg| arg == config.as_os_str().as_bytes());
            if ours {
                eprintln!("killing lock-daemon {pid}, still running at the end of the test");
                let _ = Command::new("kill")
                    .args(["-KILL", &pid.to_string()])
                    .status();
            }
        }
    }
}

pub(crate) fn photos(person: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(celeb5("val").join(person))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    v.sort();
    v
}

pub(crate) fn empty_hallway() -> Vec<PathBuf> {
    vec![extra("noface/present.png")]
}

pub(crate) fn signal(child: &Child, sig: &str) {
    let status = Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

#[test]
fn an_enrolled_person_unlocks_once_and_the_door_relocks_on_time() {
    let lock = Lock::new(&sample_classifier().0.bytes, FAST, None);
    lock.add_frames(&photos("madonna"), 1);
    lock.add_frames(&empty_hallway(), 5);
    lock.run_replay();
    let relay = lock.relay();
    let unlocks: Vec<&Transition> = relay
        .iter()
        .filter(|t| t.state == LockState::Unlocked)
        .collect();
    assert_eq!(unlocks.len(), 1, "{relay:?}");
    let after = relay
        .iter()
        .find(|t| t.monotonic_ms > unlocks[0].monotonic_ms && t.state == LockState::Locked)
        .expect("locked again");
    let open_ms = after.monotonic_ms - unlocks[0].monotonic_ms;
    assert!((995..2000).contains(&open_ms), "door open for {open_ms} ms");
    assert_eq!(relay.last().unwrap().state, LockState::Locked);
    let unlock = &lock.events("unlock")[0];
    assert_eq!(unlock["person"], "madonna");
    assert_eq!(unlock["frames"], 3);
    // From the camera delivering the first of the three frames to the relay: at least
    // two frame intervals at 10 frames/s.
    let latency = unlock["latency_ms"].as_u64().expect("the unlock's latency");
    assert!((195..5000).contains(&latency), "latency {latency} ms");
}

impl Lock {
    /// Sets `recognition.workers` (frames recognised at once).
    fn with_workers(self, workers: u32) -> Lock {
        let path = self.path("lock.toml");
        let config = std::fs::read_to_string(&path).unwrap().replace(
            "[recognition]\n",
            &format!("[recognition]\nworkers = {workers}\n"),
        );
        std::fs::write(path, config).unwrap();
        self
    }
}

#[test]
fn recognising_several_frames_at_once_reaches_the_same_decisions_as_one_at_a_time() {
    // A stranger next to nobody, then an enrolled person, then the stranger again and the
    // person again: one unlock (the stranger's frames break nothing already granted and
    // never unlock), one refusal per encounter.
    // 5 frames/s: slow enough that three workers keep up on a loaded 2-core machine, so
    // no frame is dropped and both runs decide on the same frames.
    let timing = Timing { fps: 5.0, ..FAST };
    let decisions = |workers: u32| {
        let lock = Lock::new(&classifier_without_ben().0.bytes, timing, None).with_workers(workers);
        lock.add_frames(&photos("ben_afflek")[..1], 4);
        lock.add_frames(&empty_hallway(), 3);
        lock.add_frames(&photos("madonna")[..1], 4);
        lock.add_frames(&empty_hallway(), 20);
        let out = lock.run_replay();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        let events: Vec<String> = lock
            .audit()
            .iter()
            .filter_map(|r| match r["event"].as_str()? {
                e @ ("unlock" | "relock" | "denied-unknown") => {
                    Some(format!("{e} {}", r["person"].as_str().unwrap_or("-")))
                }
                _ => None,
            })
            .collect();
        (events, stderr)
    };
    let (one, _) = decisions(1);
    let (three, stderr) = decisions(3);
    assert_eq!(
        one,
        ["denied-unknown -", "unlock madonna", "relock madonna"],
        "one at a time"
    );
    assert_eq!(three, one, "three at once");
    assert!(
        stderr.contains("recognising up to 3 frames at once"),
        "{stderr}"
    );
}

#[test]
fn strangers_never_unlock() {
    let lock = Lock::new(&classifier_without_ben().0.bytes, FAST, None);
    lock.add_frames(&photos("ben_afflek"), 2);
    lock.add_frames(&[extra("stranger/grace_hopper.jpg")], 4);
    lock.run_replay();
    assert_eq!(lock.unlocks(), 0, "{:?}", lock.relay());
    let denied = lock.events("denied-unknown");
    assert!(!denied.is_empty());
    assert!(denied[0]["similarity"].is_number(), "{denied:?}");
    // Embeddings are biometric data: the audit log carries scores only.
    let text = std::fs::read_to_string(lock.path("audit.jsonl")).unwrap();
    assert_no_embedding(&text);
}

/// Panics when a line of an audit log could hold an embedding: under any key, as an
/// array or a nested object, or printed into a text (a run of numbers).
fn assert_no_embedding(text: &str) {
    for line in text.lines() {
        let record: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        for (key, value) in &record {
            assert!(!key.contains("embedding"), "{line}");
            assert!(
                !value.is_array() && !value.is_object(),
                "{key} holds a structure: {line}"
            );
            let numbers = value.as_str().map_or(0, |text| {
                text.split(|c: char| !(c.is_ascii_digit() || matches!(c, '.' | '-' | 'e')))
                    .filter(|t| t.contains('.') && t.parse::<f64>().is_ok())
                    .count()
            });
            assert!(numbers < 8, "{key} holds {numbers} numbers: {line}");
        }
    }
}

#[test]
fn the_door_relocks_on_time_when_the_camera_stalls() {
    // The replay ends right after the unlock: no more frames arrive.
    let lock = Lock::new(&sample_classifier().0.bytes, FAST, None);
    lock.add_frames(&photos("madonna")[..3], 1);
    let started = Instant::now();
    lock.run_replay();
    let relay = lock.relay();
    assert_eq!(lock.unlocks(), 1, "{relay:?}");
    assert_eq!(relay.last().unwrap().state, LockState::Locked);
    assert!(started.elapsed() < Duration::from_secs(30));
}

pub(crate) fn held_open() -> Timing {
    Timing {
        fps: 10.0,
        unlock_secs: 600.0,
        cooldown_secs: 1.0,
        looping: true,
    }
}

#[test]
fn sigterm_while_unlocked_leaves_the_door_locked() {
    let lock = Lock::new(&sample_classifier().0.bytes, held_open(), None);
    lock.add_frames(&photos("madonna"), 1);
    let mut child = lock.spawn();
    lock.wait_for(Duration::from_secs(60), "unlock", |l| l.unlocks() == 1);
    signal(&child, "-TERM");
    let status = wait_within(&mut child, PROCESS_LIMIT);
    assert!(status.success(), "exit status {status}");
    assert_eq!(lock.relay().last().unwrap().state, LockState::Locked);
}

#[test]
fn after_kill_9_while_unlocked_secure_locks_the_door() {
    let lock = Lock::new(&sample_classifier().0.bytes, held_open(), None);
    lock.add_frames(&photos("madonna"), 1);
    let mut child = lock.spawn();
    lock.wait_for(Duration::from_secs(60), "unlock", |l| l.unlocks() == 1);
    signal(&child, "-KILL");
    wait_within(&mut child, PROCESS_LIMIT);
    assert_eq!(lock.relay().last().unwrap().state, LockState::Unlocked);
    // What systemd's ExecStopPost runs:
    let out = output_within(lock.command(&["secure"]), PROCESS_LIMIT);
    assert!(out.status.success());
    assert_eq!(lock.relay().last().unwrap().state, LockState::Locked);
}

/// Replaces the classifier the way an admin's copy does: write aside, rename.
pub(crate) fn install(lock: &Lock, bytes: &[u8]) {
    let tmp = lock.path("classifier.onnx.new");
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::rename(&tmp, lock.path("classifier.onnx")).unwrap();
}

#[test]
fn replacing_the_classifier_switches_the_enrolled_people() {
    // ben_afflek walks up again and again; he is enrolled only by the new file.
    let timing = Timing {
        unlock_secs: 1.0,
        ..held_open()
    };
    // Both classifiers are trained in this run; their creation times decide which is
    // newer (an older one is refused), so they are set explicitly.
    let lock = Lock::new(
        &crate::trust::created_in(&classifier_without_ben().0.bytes, "2020"),
        timing,
        None,
    );
    lock.add_frames(&photos("ben_afflek"), 1);
    let mut child = lock.spawn();
    lock.wait_for(Duration::from_secs(60), "a refusal", |l| {
        !l.events("denied-unknown").is_empty()
    });
    assert_eq!(lock.unlocks(), 0);
    install(
        &lock,
        &crate::trust::created_in(&sample_classifier().0.bytes, "2021"),
    );
    lock.wait_for(Duration::from_secs(60), "reload", |l| {
        !l.events("reload").is_empty()
    });
    lock.wait_for(Duration::from_secs(60), "ben's unlock", |l| {
        l.unlocks() >= 1
    });
    signal(&child, "-TERM");
    assert!(wait_within(&mut child, PROCESS_LIMIT).success());
    assert_eq!(lock.events("unlock")[0]["person"], "ben_afflek");
}

#[test]
fn bad_classifier_files_are_refused_and_the_old_one_keeps_working() {
    let keys = signature::keygen();
    let key = signature::signing_key_from_pem(&keys.private_pem, Path::new("test.key")).unwrap();
    let good = signature::sign(&sample_classifier().0.bytes, &key);
    let timing = Timing {
        unlock_secs: 0.5,
        cooldown_secs: 0.5,
        ..held_open()
    };
    let lock = Lock::new(&good, timing, Some(&keys.public_pem));
    lock.add_frames(&photos("madonna"), 1);
    lock.add_frames(&empty_hallway(), 10);
    let mut child = lock.spawn();
    lock.wait_for(Duration::from_secs(60), "first unlock", |l| {
        l.unlocks() >= 1
    });

    let mut tampered = good.clone();
    let middle = tampered.len() / 2;
    tampered[middle] ^= 0x01;
    let other_key = signature::keygen();
    let other =
        signature::signing_key_from_pem(&other_key.private_pem, Path::new("other.key")).unwrap();
    let bad_files: [(&str, Vec<u8>); 4] = [
        ("truncated", good[..good.len() / 2].to_vec()),
        ("tampered", tampered),
        ("unsigned", sample_classifier().0.bytes.clone()),
        (
            "signed by someone else",
            signature::sign(&sample_classifier().0.bytes, &other),
        ),
    ];
    for (i, (what, bytes)) in bad_files.iter().enumerate() {
        install(&lock, bytes);
        lock.wait_for(Duration::from_secs(30), what, |l| {
            l.events("reload-refused").len() > i
        });
    }
    assert!(lock.events("reload").is_empty());
    // The old classifier is still in service: madonna keeps getting in.
    let before = lock.unlocks();
    lock.wait_for(Duration::from_secs(60), "another unlock", |l| {
        l.unlocks() > before
    });
    signal(&child, "-TERM");
    assert!(wait_within(&mut child, PROCESS_LIMIT).success());
    assert_eq!(lock.relay().last().unwrap().state, LockState::Locked);
}

#[test]
fn a_missing_camera_is_reported_with_how_to_fix_it() {
    let lock = Lock::new(&sample_classifier().0.bytes, FAST, None);
    let config = std::fs::read_to_string(lock.path("lock.toml"))
        .unwrap()
        .replace("replay_dir = \"frames\"", "device = \"/dev/video-missing\"")
        .replace("replay_fps = 10.0\n", "")
        .replace("replay_loop = false\n", "");
    std::fs::write(lock.path("lock.toml"), config).unwrap();
    let out = output_within(lock.command(&["run"]), PROCESS_LIMIT);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("no camera at /dev/video-missing"),
        "{stderr}"
    );
    assert!(stderr.contains("/dev/v4l/by-id"), "{stderr}");
    // The door was locked before the failure.
    assert_eq!(lock.relay().last().unwrap().state, LockState::Locked);
}

#[test]
fn check_config_names_an_unknown_key() {
    let lock = Lock::new(&sample_classifier().0.bytes, FAST, None);
    let config = std::fs::read_to_string(lock.path("lock.toml"))
        .unwrap()
        .replace("unlock_secs", "unlock_second");
    std::fs::write(lock.path("lock.toml"), config).unwrap();
    let out = output_within(lock.command(&["check-config"]), PROCESS_LIMIT);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("unlock_second"), "{stderr}");
}

#[test]
fn systemd_hears_ready_watchdog_status_and_stopping() {
    use std::os::unix::net::UnixDatagram;
    let lock = Lock::new(&sample_classifier().0.bytes, held_open(), None);
    lock.add_frames(&photos("madonna"), 1);
    let socket_path = lock.path("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let mut child = lock
        .command(&["run"])
        .env("NOTIFY_SOCKET", &socket_path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut heard = String::new();
    let mut buf = [0u8; 4096];
    let mut receive = |until: &str, heard: &mut String| {
        while !heard.contains(until) {
            let n = socket.recv(&mut buf).expect("a notification within 60 s");
            heard.push_str(&String::from_utf8_lossy(&buf[..n]));
            heard.push('\n');
        }
    };
    receive("READY=1", &mut heard);
    // READY comes only once the relay has been written Locked.
    assert_eq!(lock.relay().last().unwrap().state, LockState::Locked);
    receive("WATCHDOG=1", &mut heard);
    receive("STATUS=unlocked for madonna", &mut heard);
    signal(&child, "-TERM");
    receive("STOPPING=1", &mut heard);
    assert!(wait_within(&mut child, PROCESS_LIMIT).success());
    assert_eq!(lock.relay().last().unwrap().state, LockState::Locked);
}
