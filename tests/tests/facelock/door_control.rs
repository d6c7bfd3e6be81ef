//! The door controller as a process: the control socket (`lock-daemon ctl`), modes that
//! survive a restart, lockdown refusing an enrolled face and a manual unlock, and hostile
//! clients on the socket. Real models, real photos, the simulated relay.

use std::io::{Read as _, Write as _};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use lock_daemon::relay::LockState;

use crate::daemon::{
    empty_hallway, output_within, photos, signal, wait_within, Lock, Timing, PROCESS_LIMIT,
};
use crate::training::sample_classifier;

const LOOPING: Timing = Timing {
    fps: 10.0,
    unlock_secs: 1.0,
    cooldown_secs: 0.5,
    looping: true,
};

/// A lock with the control socket on.
pub(crate) fn lock_with_control(timing: Timing) -> Lock {
    let lock = Lock::new(&sample_classifier().0.bytes, timing, None);
    let path = lock.path("lock.toml");
    let mut text = std::fs::read_to_string(&path).unwrap();
    text.push_str("[control]\nsocket = \"control.sock\"\n");
    std::fs::write(&path, text).unwrap();
    lock
}

/// Runs `lock-daemon ctl ARGS` against the lock; returns (success, stdout + stderr).
pub(crate) fn ctl(lock: &Lock, args: &[&str]) -> (bool, String) {
    let mut full = vec!["ctl"];
    full.extend_from_slice(args);
    let out = output_within(lock.command(&full), PROCESS_LIMIT);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

pub(crate) fn started(lock: &Lock) {
    lock.wait_for(Duration::from_secs(60), "start", |l| {
        !l.events("start").is_empty() && l.path("control.sock").exists()
    });
}

pub(crate) fn my_uid() -> String {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let uid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned();
    format!("uid {uid}")
}

#[test]
fn ctl_unlock_reaches_the_relay_for_its_seconds_and_is_audited_under_the_callers_uid() {
    let lock = lock_with_control(LOOPING);
    lock.add_frames(&empty_hallway(), 3);
    let mut child = lock.spawn();
    started(&lock);
    let (ok, text) = ctl(&lock, &["status"]);
    assert!(ok, "{text}");
    assert!(
        text.contains("locked, door not wired, mode normal"),
        "{text}"
    );
    let (ok, text) = ctl(&lock, &["unlock", "--seconds", "1", "--reason", "delivery"]);
    assert!(ok, "{text}");
    lock.wait_for(Duration::from_secs(10), "relock", |l| {
        l.relay().last().unwrap().state == LockState::Locked && l.unlocks() == 1
    });
    let relay = lock.relay();
    let opened = relay
        .iter()
        .find(|t| t.state == LockState::Unlocked)
        .unwrap();
    let closed = relay
        .iter()
        .find(|t| t.monotonic_ms > opened.monotonic_ms && t.state == LockState::Locked)
        .unwrap();
    let open_ms = closed.monotonic_ms - opened.monotonic_ms;
    assert!((995..1100).contains(&open_ms), "open for {open_ms} ms");
    let manual = &lock.events("manual-unlock")[0];
    assert!(
        manual["by"].as_str().unwrap().starts_with(&my_uid()),
        "{manual}"
    );
    assert!(
        manual["message"].as_str().unwrap().contains("delivery"),
        "{manual}"
    );
    // Over the maximum: refused and audited, the door stays locked.
    let (ok, text) = ctl(
        &lock,
        &["unlock", "--seconds", "100000", "--reason", "party"],
    );
    assert!(!ok && text.contains("max_manual_unlock_secs"), "{text}");
    assert_eq!(lock.events("refused").len(), 1);
    signal(&child, "-TERM");
    assert!(wait_within(&mut child, PROCESS_LIMIT).success());
}

#[test]
fn lockdown_refuses_an_enrolled_face_and_a_manual_unlock_and_survives_a_restart() {
    let lock = lock_with_control(LOOPING);
    lock.add_frames(&empty_hallway(), 5);
    let mut child = lock.spawn();
    started(&lock);
    let (ok, text) = ctl(&lock, &["mode", "lockdown"]);
    assert!(ok, "{text}");
    assert_eq!(
        lock.events("mode-changed")[0]["message"],
        "normal -> lockdown"
    );
    let (ok, text) = ctl(&lock, &["unlock", "--seconds", "5", "--reason", "courier"]);
    assert!(!ok && text.contains("lockdown"), "{text}");
    signal(&child, "-TERM");
    assert!(wait_within(&mut child, PROCESS_LIMIT).success());

    // Restarted with madonna at the door: still in lockdown, so she is refused.
    lock.add_frames(&photos("madonna"), 1);
    let mut child = lock.spawn();
    lock.wait_for(Duration::from_secs(60), "a refused face", |l| {
        l.events("refused").iter().any(|e| e["person"] == "madonna")
    });
    let starts = lock.events("start");
    assert!(
        starts[1]["message"]
            .as_str()
            .unwrap()
            .contains("mode lockdown"),
        "{starts:?}"
    );
    assert_eq!(lock.unlocks(), 0, "{:?}", lock.relay());
    // Back to normal: she gets in.
    let (ok, text) = ctl(&lock, &["mode", "normal"]);
    assert!(ok, "{text}");
    lock.wait_for(Duration::from_secs(60), "unlock", |l| l.unlocks() >= 1);
    signal(&child, "-TERM");
    assert!(wait_within(&mut child, PROCESS_LIMIT).success());
    assert_eq!(lock.relay().last().unwrap().state, LockState::Locked);
}

#[test]
fn a_corrupt_mode_file_stops_the_start_and_the_door_stays_locked() {
    let lock = lock_with_control(LOOPING);
    lock.add_frames(&photos("madonna"), 1);
    std::fs::create_dir_all(lock.path("state")).unwrap();
    std::fs::write(lock.path("state/mode.json"), "{\"mode\": \"lockd").unwrap();
    let out = output_within(lock.command(&["run"]), PROCESS_LIMIT);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("mode.json is corrupt"), "{stderr}");
    assert!(stderr.contains("Delete it"), "{stderr}");
    assert_eq!(lock.unlocks(), 0);
    assert_eq!(lock.relay().last().unwrap().state, LockState::Locked);
}

#[test]
fn hostile_control_clients_get_errors_and_the_door_keeps_working() {
    let lock = lock_with_control(LOOPING);
    lock.add_frames(&photos("madonna"), 1);
    let mut child = lock.spawn();
    started(&lock);
    let socket = lock.path("control.sock");
    // Clients that connect and say nothing, more than are served at once.
    let silent: Vec<UnixStream> = (0..20)
        .map(|_| UnixStream::connect(&socket).unwrap())
        .collect();
    // Garbage, an over-long line, and a command that does not exist.
    let ask = |bytes: &[u8]| {
        let mut s = UnixStream::connect(&socket).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let _ = s.write_all(bytes);
        let mut reply = String::new();
        let _ = s.read_to_string(&mut reply);
        reply
    };
    // While the silent ones hold every slot, others are told the socket is busy; once
    // they time out (2 s), each bad request gets its own error.
    let busy = ask(b"{\"command\": \"status\"}\n");
    assert!(busy.contains("busy"), "{busy}");
    let started_at = Instant::now();
    let served = |bytes: &[u8]| loop {
        let reply = ask(bytes);
        if !reply.contains("busy") {
            return reply;
        }
        assert!(
            started_at.elapsed() < Duration::from_secs(20),
            "always busy"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let garbage = served(b"\x00\xffnot json\n");
    let unknown = served(b"{\"command\": \"open-sesame\"}\n");
    for reply in [&garbage, &unknown] {
        assert!(reply.contains("\"ok\":false"), "{reply}");
        assert!(reply.contains("not a request"), "{reply}");
    }
    let long = served(&vec![b'x'; 100_000]);
    assert!(long.contains("longer than"), "{long}");
    // Meanwhile madonna keeps getting in and the door relocks on time.
    lock.wait_for(Duration::from_secs(60), "an unlock", |l| l.unlocks() >= 1);
    drop(silent);
    let (ok, text) = ctl(&lock, &["status", "--json"]);
    assert!(ok, "{text}");
    assert!(text.contains("\"enrolled\""), "{text}");
    signal(&child, "-TERM");
    assert!(wait_within(&mut child, PROCESS_LIMIT).success());
    assert_eq!(lock.relay().last().unwrap().state, LockState::Locked);
}

/// A lock whose door inputs come from a FIFO the test writes (`inputs.backend = "sim"`),
/// with a 1 s held-open limit and the control socket on.
fn lock_with_inputs(timing: Timing, extra: &str) -> Lock {
    let lock = lock_with_control(timing);
    let fifo = lock.path("inputs.fifo");
    let status = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(status.success());
    let path = lock.path("lock.toml");
    let mut text = std::fs::read_to_string(&path).unwrap();
    text.push_str(
        "[inputs]\nbackend = \"sim\"\nsim_script = \"inputs.fifo\"\n[door]\nheld_open_secs = 1.0\n\
         [outputs]\nbackend = \"sim\"\nsim_log = \"indicator.log\"\n",
    );
    text.push_str(extra);
    std::fs::write(&path, text).unwrap();
    lock
}

/// Writes one line to the input FIFO ("now door open").
fn input(lock: &Lock, line: &str) {
    let mut fifo = std::fs::OpenOptions::new()
        .write(true)
        .open(lock.path("inputs.fifo"))
        .unwrap();
    writeln!(fifo, "{line}").unwrap();
}

fn audit_kinds(lock: &Lock) -> Vec<String> {
    lock.audit()
        .iter()
        .map(|e| e["event"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn an_enrolled_person_enters_and_the_door_relocks_when_it_closes() {
    let timing = Timing {
        unlock_secs: 10.0,
        ..LOOPING
    };
    let lock = lock_with_inputs(timing, "");
    lock.add_frames(&photos("madonna"), 1);
    let mut child = lock.spawn();
    lock.wait_for(Duration::from_secs(60), "unlock", |l| l.unlocks() == 1);
    input(&lock, "now door open");
    lock.wait_for(Duration::from_secs(10), "entry", |l| {
        !l.events("entry").is_empty()
    });
    input(&lock, "now door closed");
    lock.wait_for(Duration::from_secs(10), "relock on close", |l| {
        l.relay().last().unwrap().state == LockState::Locked
    });
    let relay = lock.relay();
    let opened = relay
        .iter()
        .find(|t| t.state == LockState::Unlocked)
        .unwrap();
    let closed = relay.last().unwrap();
    assert!(
        closed.monotonic_ms - opened.monotonic_ms < 10_000,
        "relocked at close, long before unlock_secs: {relay:?}"
    );
    assert_eq!(lock.events("entry")[0]["person"], "madonna");
    let relock = &lock.events("relock")[0];
    assert_eq!(relock["message"], "door closed", "{relock}");
    assert!(lock.events("forced-open").is_empty());
    signal(&child, "-TERM");
    assert!(wait_within(&mut child, PROCESS_LIMIT).success());
}

#[test]
fn exit_button_forced_door_held_open_and_input_errors_are_told_apart() {
    let lock = lock_with_inputs(LOOPING, "");
    lock.add_frames(&empty_hallway(), 3);
    let mut child = lock.spawn();
    started(&lock);
    // Exit: released without an alarm, relocked when the door closes.
    input(&lock, "now exit press");
    lock.wait_for(Duration::from_secs(10), "exit", |l| l.unlocks() == 1);
    input(&lock, "now door open");
    input(&lock, "now door closed");
    lock.wait_for(Duration::from_secs(10), "relock", |l| {
        !l.events("relock").is_empty()
    });
    assert_eq!(lock.events("door-opened")[0]["message"], "exit");
    // Opened with nothing released (and past the grace after re-locking): forced; left
    // open past 1 s: held open, cleared on close.
    std::thread::sleep(lock_daemon::door::FORCED_GRACE + Duration::from_millis(200));
    input(&lock, "now door open");
    lock.wait_for(Duration::from_secs(10), "held-open", |l| {
        !l.events("held-open").is_empty()
    });
    input(&lock, "now door closed");
    lock.wait_for(Duration::from_secs(10), "held-open-end", |l| {
        !l.events("held-open-end").is_empty()
    });
    assert_eq!(
        lock.events("forced-open").len(),
        1,
        "{:?}",
        audit_kinds(&lock)
    );
    // The LED lit for the exit grant; the buzzer sounded for the alarms.
    let indicator = std::fs::read_to_string(lock.path("indicator.log")).unwrap();
    assert!(indicator.contains("led on"), "{indicator}");
    assert!(indicator.contains("buzzer on"), "{indicator}");
    // Lockdown: faces and manual unlocks refused, the exit button still opens.
    let (ok, text) = ctl(&lock, &["mode", "lockdown"]);
    assert!(ok, "{text}");
    input(&lock, "now exit press");
    lock.wait_for(Duration::from_secs(10), "exit in lockdown", |l| {
        l.unlocks() == 2
    });
    // A read error: audited, and the door state is unknown until it reports again.
    input(&lock, "now error wire cut");
    lock.wait_for(Duration::from_secs(10), "input-error", |l| {
        !l.events("input-error").is_empty()
    });
    let (ok, text) = ctl(&lock, &["status"]);
    assert!(ok && text.contains("door unknown"), "{text}");
    signal(&child, "-TERM");
    assert!(wait_within(&mut child, PROCESS_LIMIT).success());
    assert_eq!(lock.relay().last().unwrap().state, LockState::Locked);
    assert_eq!(
        audit_kinds(&lock).iter().filter(|k| *k == "exit").count(),
        2
    );
}

#[test]
fn the_schedule_holds_the_door_unlocked_and_keeps_faces_to_their_hours() {
    // Held unlocked all day; face unlock only in a minute that is not now.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let day = ["thu", "fri", "sat", "sun", "mon", "tue", "wed"][((now / 86_400 + 2) % 7) as usize];
    let schedule = format!(
        "[schedule]\ntime_zone = \"UTC\"\nassume_clock_synchronized = true\n\
         unlock = [\"daily 00:00-24:00\"]\nface = [\"{day} 00:00-00:01\"]\n"
    );
    let lock = lock_with_inputs(LOOPING, &schedule);
    lock.add_frames(&photos("madonna"), 1);
    let mut child = lock.spawn();
    lock.wait_for(Duration::from_secs(60), "held unlocked", |l| {
        l.unlocks() == 1
    });
    let (ok, text) = ctl(&lock, &["status"]);
    assert!(ok && text.contains("schedule"), "{text}");
    lock.wait_for(Duration::from_secs(60), "a face refused", |l| {
        l.events("refused")
            .iter()
            .any(|e| e["message"] == "outside the schedule's face-unlock hours")
    });
    // Lockdown overrides the schedule's hold.
    let (ok, text) = ctl(&lock, &["mode", "lockdown"]);
    assert!(ok, "{text}");
    lock.wait_for(Duration::from_secs(10), "locked", |l| {
        l.relay().last().unwrap().state == LockState::Locked
    });
    signal(&child, "-TERM");
    assert!(wait_within(&mut child, PROCESS_LIMIT).success());
}
