//! Door inputs without hardware: a script of timed events, for the demo and the tests.
//!
//! One event per line, `<seconds since start> <input> <value>`:
//!
//! ```text
//! # the door is open when the service starts
//! 0    door open
//! 2.4  door closed
//! 5    exit press
//! 6    fire on
//! 7    fire off
//! 8    error wire cut        # an input read error; the text is the reason
//! now  door open             # `now` (or `-`): right after the line before
//! ```
//!
//! Inputs and values: `door open|closed`, `exit press`, `fire on|off`, `error <text>`.
//! Blank lines are ignored, and so is everything from a `#` to the end of its line. Times
//! are seconds (decimals allowed) counted from the call to [`super::start`].
//!
//! - **A regular file** is read and checked whole at start: a malformed line, or a time
//!   earlier than the line before, refuses the start ([`InputError::Script`], naming the
//!   line, its text and the syntax), so a typo is caught when the service starts, not in
//!   the middle of a demo. The initial state is door closed, fire off, unless the lines at
//!   time 0 (or `now` before any timed line) say otherwise: their door and fire values are
//!   the initial state, reported first; their other events follow it. Events are then
//!   delivered at their times, and the inputs stop after the last one.
//! - **A FIFO** is read as lines arrive, by any number of successive writers
//!   (`echo "now exit press" > inputs.fifo`): each event is delivered when its line
//!   arrives, or at its time if that is still to come. The initial state is door closed,
//!   fire off. A malformed line is reported as [`InputEvent::Error`] (naming the line, its
//!   text and the syntax) and reading continues.

use std::fs::File;
use std::io::{ErrorKind, Read as _};
use std::os::unix::fs::{FileTypeExt as _, OpenOptionsExt as _};
use std::path::Path;
use std::time::{Duration, Instant};

use super::{DoorContact, InputError, InputEvent, Inputs, Sink, Stop};

/// The accepted syntax, quoted by every parse error.
pub const SYNTAX: &str = "expected `<seconds|now> door open|closed`, `<seconds|now> exit \
                          press`, `<seconds|now> fire on|off` or `<seconds|now> error <text>`";

/// When a line's event is due.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum When {
    /// Seconds since start.
    At(Duration),
    /// Right after the line before (a FIFO: when the line arrives).
    Now,
}

/// One event line of a script.
#[derive(Debug, Clone, PartialEq)]
pub struct ScriptLine {
    pub when: When,
    pub event: InputEvent,
}

/// Parses one line: `Ok(None)` for a blank or comment line, `Err(reason)` (without the
/// line number) for a malformed one.
pub fn parse_line(line: &str) -> Result<Option<ScriptLine>, String> {
    let line = line.split('#').next().unwrap_or_default().trim();
    if line.is_empty() {
        return Ok(None);
    }
    let (time, rest) = first_word(line);
    let (input, value) = first_word(rest);
    let when = match time {
        "now" | "-" => When::Now,
        seconds => When::At(
            seconds
                .parse::<f64>()
                .ok()
                .filter(|s| s.is_finite() && *s >= 0.0)
                .and_then(|s| Duration::try_from_secs_f64(s).ok())
                .ok_or_else(|| {
                    format!(
                        "{seconds:?} is not a time: use seconds since start (e.g. 2.5) or `now`"
                    )
                })?,
        ),
    };
    let event = match (input, value) {
        ("door", "open") => InputEvent::Door(DoorContact::Open),
        ("door", "closed") => InputEvent::Door(DoorContact::Closed),
        ("exit", "press") => InputEvent::ExitRequest,
        ("fire", "on") => InputEvent::Fire(true),
        ("fire", "off") => InputEvent::Fire(false),
        ("error", "") => return Err("`error` needs a reason after it".into()),
        ("error", text) => InputEvent::Error(text.to_owned()),
        ("", _) => return Err("an input and a value must follow the time".into()),
        (input @ ("door" | "exit" | "fire"), value) => {
            return Err(format!("{value:?} is not a value for `{input}`"))
        }
        (input, _) => return Err(format!("unknown input {input:?}")),
    };
    Ok(Some(ScriptLine { when, event }))
}

/// The first whitespace-separated word of `text`, and the rest, trimmed.
fn first_word(text: &str) -> (&str, &str) {
    let text = text.trim_start();
    match text.find(char::is_whitespace) {
        Some(end) => (&text[..end], text[end..].trim()),
        None => (text, ""),
    }
}

/// The error for line `number` (from 1).
fn line_error(number: usize, text: &str, reason: &str) -> String {
    format!("line {number} ({:?}): {reason}; {SYNTAX}", text.trim())
}

/// Parses a whole script into events with their times since start (`now` = the time of
/// the line before). A malformed line, or a time earlier than the line before, is an error
/// naming the line.
pub fn parse_script(text: &str) -> Result<Vec<(Duration, InputEvent)>, String> {
    let mut events = Vec::new();
    let mut last = Duration::ZERO;
    for (i, line) in text.lines().enumerate() {
        let Some(parsed) = parse_line(line).map_err(|reason| line_error(i + 1, line, &reason))?
        else {
            continue;
        };
        let at = match parsed.when {
            When::Now => last,
            When::At(at) if at < last => {
                return Err(line_error(
                    i + 1,
                    line,
                    &format!(
                        "{} s is earlier than the line before ({} s); list the events in \
                         time order",
                        at.as_secs_f64(),
                        last.as_secs_f64()
                    ),
                ))
            }
            When::At(at) => at,
        };
        last = at;
        events.push((at, parsed.event));
    }
    Ok(events)
}

/// Splits the events at time 0 off a parsed script: the initial state (door closed and
/// fire off unless they say otherwise), reported first, then the events still to deliver
/// (the time-0 events other than door and fire first).
pub fn initial_state(
    events: Vec<(Duration, InputEvent)>,
) -> ([InputEvent; 2], Vec<(Duration, InputEvent)>) {
    let (mut door, mut fire) = (DoorContact::Closed, false);
    let mut rest = Vec::with_capacity(events.len());
    for (at, event) in events {
        match event {
            InputEvent::Door(d) if at.is_zero() => door = d,
            InputEvent::Fire(f) if at.is_zero() => fire = f,
            event => rest.push((at, event)),
        }
    }
    ([InputEvent::Door(door), InputEvent::Fire(fire)], rest)
}

/// Starts the simulated inputs from `script` (a regular file or a FIFO).
pub(super) fn start(script: &Path, mut sink: Sink) -> Result<Inputs, InputError> {
    let fail = |reason: String| InputError::Script {
        path: script.to_owned(),
        reason,
    };
    let t0 = Instant::now();
    let meta = std::fs::metadata(script).map_err(|e| fail(open_failure(&e)))?;
    if meta.file_type().is_fifo() {
        // Non-blocking, so that opening does not wait for a writer and reading can stop.
        let fifo = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(script)
            .map_err(|e| fail(open_failure(&e)))?;
        let (initial, _) = initial_state(Vec::new());
        for event in initial {
            if !sink(event) {
                return Ok(Inputs::idle());
            }
        }
        log::info!(
            "inputs: simulated, reading events from the FIFO {}",
            script.display()
        );
        let name = script.to_owned();
        return Inputs::spawn("door-inputs-sim", move |stop| {
            read_fifo(fifo, &name, t0, &stop, sink)
        });
    }
    if !meta.is_file() {
        return Err(fail(
            "is neither a file nor a FIFO; point inputs.sim_script at a script file, or at a \
             FIFO made with `mkfifo`"
                .into(),
        ));
    }
    let text = std::fs::read_to_string(script).map_err(|e| fail(open_failure(&e)))?;
    let events = parse_script(&text).map_err(|reason| fail(format!("{reason}; fix the line")))?;
    let (initial, rest) = initial_state(events);
    for event in initial {
        if !sink(event) {
            return Ok(Inputs::idle());
        }
    }
    log::info!(
        "inputs: simulated, {} timed events from {}",
        rest.len(),
        script.display()
    );
    Inputs::spawn("door-inputs-sim", move |stop| {
        for (at, event) in rest {
            if stop.until(t0, at) || !sink(event) {
                return;
            }
        }
    })
}

fn open_failure(e: &std::io::Error) -> String {
    match e.kind() {
        ErrorKind::NotFound => "no such file; create it, or fix inputs.sim_script".into(),
        ErrorKind::PermissionDenied => {
            "permission denied: the service user (facelock) must be able to read it".into()
        }
        _ => format!("cannot read it: {e}"),
    }
}

/// How long the FIFO reader sleeps when there is nothing to read.
const FIFO_IDLE: Duration = Duration::from_millis(10);
/// The longest line accepted from a FIFO.
const MAX_LINE: usize = 4096;

/// Delivers the FIFO's lines as they arrive, until stopped or refused.
fn read_fifo(mut fifo: File, name: &Path, t0: Instant, stop: &Stop, mut sink: Sink) {
    let mut pending: Vec<u8> = Vec::new();
    let mut chunk = [0u8; 1024];
    let mut number = 0usize;
    loop {
        match fifo.read(&mut chunk) {
            Ok(n) if n > 0 => pending.extend_from_slice(&chunk[..n]),
            // 0: no writer at the moment. A line left unterminated by a writer that has
            // closed is complete.
            Ok(_) => {
                if !pending.is_empty() {
                    number += 1;
                    let line = std::mem::take(&mut pending);
                    if !deliver(&line, number, name, t0, stop, &mut sink) {
                        return;
                    }
                }
                if stop.wait(FIFO_IDLE) {
                    return;
                }
                continue;
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                if stop.wait(FIFO_IDLE) {
                    return;
                }
                continue;
            }
            Err(e) => {
                sink(InputEvent::Error(format!(
                    "simulated inputs {}: read failed: {e}; simulated inputs stopped",
                    name.display()
                )));
                return;
            }
        }
        while let Some(end) = pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = pending.drain(..=end).collect();
            number += 1;
            if !deliver(&line[..end], number, name, t0, stop, &mut sink) {
                return;
            }
        }
        if pending.len() > MAX_LINE {
            number += 1;
            pending.clear();
            let event = InputEvent::Error(format!(
                "simulated inputs {}: line {number} is longer than {MAX_LINE} bytes and was \
                 dropped; {SYNTAX}",
                name.display()
            ));
            if !sink(event) {
                return;
            }
        }
    }
}

/// Delivers one line read from the FIFO (at its time if that is still to come); false
/// when the inputs are to stop.
fn deliver(
    text: &[u8],
    number: usize,
    name: &Path,
    t0: Instant,
    stop: &Stop,
    sink: &mut Sink,
) -> bool {
    let text = String::from_utf8_lossy(text);
    match parse_line(&text) {
        Ok(None) => true,
        Ok(Some(line)) => {
            if let When::At(at) = line.when {
                if stop.until(t0, at) {
                    return false;
                }
            }
            sink(line.event)
        }
        Err(reason) => sink(InputEvent::Error(format!(
            "simulated inputs {}: {}",
            name.display(),
            line_error(number, &text, &reason)
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::super::{InputsBackend, InputsSettings};
    use super::*;
    use std::io::Write as _;
    use std::path::PathBuf;
    use std::sync::mpsc;

    /// The running inputs, their timestamped events and when they were started.
    type Recording = (Inputs, mpsc::Receiver<(Duration, InputEvent)>, Instant);

    fn at(seconds: f64) -> When {
        When::At(Duration::from_secs_f64(seconds))
    }

    #[test]
    fn script_lines_parse_into_events() {
        let ok = |when, event| Ok(Some(ScriptLine { when, event }));
        let table = [
            (
                "2.4 door open",
                ok(at(2.4), InputEvent::Door(DoorContact::Open)),
            ),
            (
                "3.0 door closed",
                ok(at(3.0), InputEvent::Door(DoorContact::Closed)),
            ),
            ("5 exit press", ok(at(5.0), InputEvent::ExitRequest)),
            ("6 fire on", ok(at(6.0), InputEvent::Fire(true))),
            ("7 fire off", ok(at(7.0), InputEvent::Fire(false))),
            (
                "8 error wire cut",
                ok(at(8.0), InputEvent::Error("wire cut".into())),
            ),
            (
                "  now   exit   press  ",
                ok(When::Now, InputEvent::ExitRequest),
            ),
            (
                "- door open # comment",
                ok(When::Now, InputEvent::Door(DoorContact::Open)),
            ),
            ("0\tfire\ton", ok(at(0.0), InputEvent::Fire(true))),
            ("", Ok(None)),
            ("   ", Ok(None)),
            ("# 1 door open", Ok(None)),
        ];
        for (line, expected) in table {
            assert_eq!(parse_line(line), expected, "{line:?}");
        }
        for bad in [
            "2.4 door ajar",
            "2.4 door",
            "soon door open",
            "-1 door open",
            "inf door open",
            "NaN door open",
            "1e30 door open",
            "1e20 door open",
            "5 exit release",
            "5 window open",
            "8 error",
            "3",
            "fire on",
        ] {
            assert!(parse_line(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn a_malformed_line_names_its_number_its_text_and_the_syntax() {
        let err = parse_script("# demo\n1 door open\n\n2 door ajar\n").unwrap_err();
        assert!(err.starts_with("line 4 (\"2 door ajar\")"), "{err}");
        assert!(err.contains("\"ajar\" is not a value for `door`"), "{err}");
        assert!(err.contains(SYNTAX), "{err}");
    }

    #[test]
    fn times_must_not_go_backwards_and_now_follows_the_line_before() {
        let err = parse_script("3 door open\n2 door closed\n").unwrap_err();
        assert!(
            err.contains("line 2") && err.contains("time order"),
            "{err}"
        );
        let events = parse_script("now door open\n1.5 exit press\nnow fire on\n").unwrap();
        let times: Vec<f64> = events.iter().map(|(t, _)| t.as_secs_f64()).collect();
        assert_eq!(times, [0.0, 1.5, 1.5]);
    }

    #[test]
    fn lines_at_time_zero_set_the_initial_state() {
        let events = parse_script("0 error stuck\n0 door open\n1 door closed\n").unwrap();
        let (initial, rest) = initial_state(events);
        assert_eq!(
            initial,
            [InputEvent::Door(DoorContact::Open), InputEvent::Fire(false)]
        );
        assert_eq!(
            rest,
            [
                (Duration::ZERO, InputEvent::Error("stuck".into())),
                (
                    Duration::from_secs(1),
                    InputEvent::Door(DoorContact::Closed)
                ),
            ]
        );
        let (initial, _) = initial_state(parse_script("1 fire on\n").unwrap());
        assert_eq!(
            initial,
            [
                InputEvent::Door(DoorContact::Closed),
                InputEvent::Fire(false)
            ],
            "door closed and fire off by default"
        );
    }

    fn sim(path: &Path) -> InputsSettings {
        InputsSettings {
            backend: InputsBackend::Sim {
                script: path.to_owned(),
            },
        }
    }

    /// Starts the inputs with a sink that timestamps every event.
    fn start_recording(path: &Path) -> Result<Recording, InputError> {
        let (tx, rx) = mpsc::channel();
        let t0 = Instant::now();
        let inputs = super::super::start(
            &sim(path),
            Box::new(move |e| tx.send((t0.elapsed(), e)).is_ok()),
        )?;
        Ok((inputs, rx, t0))
    }

    fn script(text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("inputs.txt");
        std::fs::write(&path, text).unwrap();
        (dir, path)
    }

    #[test]
    fn events_are_delivered_at_their_times_after_the_initial_state() {
        let (_dir, path) = script(
            "# a visit\n0 door open\n0.05 door closed\n0.10 exit press\nnow fire on\n0.15 \
             error wire cut\n",
        );
        let (inputs, rx, _) = start_recording(&path).unwrap();
        // The initial state is delivered before start returns.
        let initial: Vec<_> = rx.try_iter().map(|(_, e)| e).collect();
        assert_eq!(
            initial,
            [InputEvent::Door(DoorContact::Open), InputEvent::Fire(false)]
        );
        let timed: Vec<_> = (0..4)
            .map(|_| rx.recv_timeout(Duration::from_secs(5)).unwrap())
            .collect();
        let expected = [
            (0.05, InputEvent::Door(DoorContact::Closed)),
            (0.10, InputEvent::ExitRequest),
            (0.10, InputEvent::Fire(true)),
            (0.15, InputEvent::Error("wire cut".into())),
        ];
        for ((time, event), (due, expected)) in timed.iter().zip(expected) {
            assert_eq!(*event, expected);
            let late = time.as_secs_f64() - due;
            assert!((-0.001..0.5).contains(&late), "{event:?} at {time:?}");
        }
        // Played to its end: the inputs stop by themselves.
        let t = Instant::now();
        while inputs.is_running() {
            assert!(t.elapsed() < Duration::from_secs(5));
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn a_malformed_script_file_refuses_the_start() {
        let (_dir, path) = script("1 door open\n2 dor closed\n");
        let err = start_recording(&path).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, InputError::Script { .. }), "{msg}");
        assert!(
            msg.contains("inputs.txt") && msg.contains("line 2") && msg.contains("dor"),
            "{msg}"
        );
        let missing = start_recording(&path.with_file_name("absent.txt")).unwrap_err();
        assert!(
            missing.to_string().contains("inputs.sim_script"),
            "{missing}"
        );
        let dir = start_recording(path.parent().unwrap()).unwrap_err();
        assert!(dir.to_string().contains("mkfifo"), "{dir}");
    }

    #[test]
    fn dropping_the_handle_stops_a_script_waiting_for_its_next_event() {
        let (_dir, path) = script("100 exit press\n");
        let (inputs, rx, _) = start_recording(&path).unwrap();
        assert_eq!(rx.try_iter().count(), 2, "initial state");
        assert!(inputs.is_running());
        let t = Instant::now();
        drop(inputs);
        assert!(t.elapsed() < Duration::from_secs(1));
        assert!(rx.try_recv().is_err());
    }

    #[test]
    fn a_time_beyond_the_clock_waits_forever_and_still_stops_when_dropped() {
        let (_dir, path) = script("0.01 exit press\n1.8e19 exit press\n");
        let (inputs, rx, _) = start_recording(&path).unwrap();
        assert_eq!(rx.try_iter().count(), 2, "initial state");
        let (_, event) = rx.recv_timeout(Duration::from_secs(5)).unwrap();
        assert_eq!(event, InputEvent::ExitRequest);
        assert!(inputs.is_running());
        let t = Instant::now();
        drop(inputs);
        assert!(t.elapsed() < Duration::from_secs(1));
        assert!(rx.try_recv().is_err());
    }

    #[test]
    fn a_sink_refusing_an_event_stops_the_script() {
        let (_dir, path) = script("0.01 exit press\n0.02 exit press\n100 exit press\n");
        let (tx, rx) = mpsc::channel();
        let mut exits = 0;
        let inputs = super::super::start(
            &sim(&path),
            Box::new(move |e| {
                if e == InputEvent::ExitRequest {
                    exits += 1;
                    let _ = tx.send(exits);
                }
                exits < 1
            }),
        )
        .unwrap();
        assert_eq!(rx.recv_timeout(Duration::from_secs(5)), Ok(1));
        let t = Instant::now();
        while inputs.is_running() {
            assert!(t.elapsed() < Duration::from_secs(5), "still running");
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(rx.try_recv().is_err(), "nothing after the refusal");
    }

    fn fifo() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("inputs.fifo");
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &path,
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        (dir, path)
    }

    fn write_fifo(path: &Path, text: &str) {
        let mut out = std::fs::OpenOptions::new().write(true).open(path).unwrap();
        out.write_all(text.as_bytes()).unwrap();
    }

    #[test]
    fn a_fifo_delivers_events_as_lines_arrive_from_successive_writers() {
        let (_dir, path) = fifo();
        let (inputs, rx, t0) = start_recording(&path).unwrap();
        let initial: Vec<_> = rx.try_iter().map(|(_, e)| e).collect();
        assert_eq!(
            initial,
            [
                InputEvent::Door(DoorContact::Closed),
                InputEvent::Fire(false)
            ]
        );
        let next = || rx.recv_timeout(Duration::from_secs(5)).unwrap();

        std::thread::sleep(Duration::from_millis(50));
        write_fifo(&path, "now door open\n");
        let (time, event) = next();
        assert_eq!(event, InputEvent::Door(DoorContact::Open));
        assert!(time >= Duration::from_millis(50), "{time:?}");

        // A second writer; a malformed line is reported and reading goes on; an
        // unterminated last line counts once its writer closes.
        write_fifo(&path, "# comment\n0 exit press\n1 door ajar\nnow fire on");
        assert_eq!(next().1, InputEvent::ExitRequest);
        let (_, error) = next();
        let InputEvent::Error(msg) = error else {
            panic!("{error:?}")
        };
        assert!(msg.contains("line 4") && msg.contains("door ajar"), "{msg}");
        assert!(msg.contains(SYNTAX), "{msg}");
        assert_eq!(next().1, InputEvent::Fire(true));

        // A time still to come is waited for.
        let due = t0.elapsed() + Duration::from_millis(100);
        write_fifo(&path, &format!("{} door closed\n", due.as_secs_f64()));
        let (time, event) = next();
        assert_eq!(event, InputEvent::Door(DoorContact::Closed));
        assert!(time + Duration::from_millis(1) >= due, "{time:?} < {due:?}");

        let t = Instant::now();
        drop(inputs);
        assert!(t.elapsed() < Duration::from_secs(1));
    }

    #[test]
    fn a_fifo_reader_stops_when_the_sink_refuses() {
        let (_dir, path) = fifo();
        let inputs =
            super::super::start(&sim(&path), Box::new(|e| e != InputEvent::ExitRequest)).unwrap();
        assert!(inputs.is_running());
        write_fifo(&path, "now exit press\n");
        let t = Instant::now();
        while inputs.is_running() {
            assert!(t.elapsed() < Duration::from_secs(5), "still running");
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}
