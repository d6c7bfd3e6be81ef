//! The indicator without hardware: every change of an output is appended to a log file as
//! `<CLOCK_MONOTONIC ms> led on|off` or `<CLOCK_MONOTONIC ms> buzzer on|off`, one line per
//! change, so the demo can show and the tests can check what the LED and the buzzer did
//! and when (on the same clock as the simulated relay's log).
//!
//! Opening writes `led off` and `buzzer off`; dropping writes `off` for an output still on.

use std::fs::File;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use super::{IndicatorError, Levels, Output, Outputs};
use crate::clock;

/// The simulated LED and buzzer.
#[derive(Debug)]
pub struct SimOutputs {
    path: PathBuf,
    file: File,
    /// What the log says each output is (`None` before the first line).
    written: [Option<bool>; 2],
}

impl SimOutputs {
    /// Opens (appends to) the log, creating it and its directory if needed, and writes both
    /// outputs off.
    pub fn open(path: &Path) -> Result<SimOutputs, IndicatorError> {
        let file = crate::relay::sim::open_log(path).map_err(|source| IndicatorError::SimLog {
            path: path.to_owned(),
            source,
        })?;
        let mut outputs = SimOutputs {
            path: path.to_owned(),
            file,
            written: [None; 2],
        };
        outputs.set(Levels::OFF)?;
        Ok(outputs)
    }
}

impl Outputs for SimOutputs {
    fn set(&mut self, levels: Levels) -> Result<(), IndicatorError> {
        let ms = clock::monotonic_ms();
        let mut text = String::new();
        for (i, (output, on)) in [(Output::Led, levels.led), (Output::Buzzer, levels.buzzer)]
            .into_iter()
            .enumerate()
        {
            if self.written[i] != Some(on) {
                let state = if on { "on" } else { "off" };
                text.push_str(&format!("{ms} {} {state}\n", output.name()));
            }
        }
        if text.is_empty() {
            return Ok(());
        }
        // One write of whole lines: appends from several processes never interleave.
        self.file
            .write_all(text.as_bytes())
            .and_then(|()| self.file.flush())
            .map_err(|source| IndicatorError::SimLog {
                path: self.path.clone(),
                source,
            })?;
        self.written = [Some(levels.led), Some(levels.buzzer)];
        Ok(())
    }
}

impl Drop for SimOutputs {
    fn drop(&mut self) {
        if self.written.iter().any(|w| *w != Some(false)) {
            if let Err(e) = self.set(Levels::OFF) {
                log::warn!("indicator: {e}");
            }
        }
    }
}

/// One line of a simulated indicator log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Change {
    /// `CLOCK_MONOTONIC` milliseconds.
    pub monotonic_ms: u64,
    pub output: Output,
    pub on: bool,
}

/// Parses a simulated indicator log (for tests and the demo's summary).
pub fn parse_log(text: &str) -> Result<Vec<Change>, String> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .enumerate()
        .map(|(i, line)| {
            let bad = || format!("indicator log line {}: cannot parse {line:?}", i + 1);
            let mut fields = line.split_whitespace();
            let (Some(ms), Some(output), Some(state), None) =
                (fields.next(), fields.next(), fields.next(), fields.next())
            else {
                return Err(bad());
            };
            Ok(Change {
                monotonic_ms: ms.parse().map_err(|_| bad())?,
                output: match output {
                    "led" => Output::Led,
                    "buzzer" => Output::Buzzer,
                    _ => return Err(bad()),
                },
                on: match state {
                    "on" => true,
                    "off" => false,
                    _ => return Err(bad()),
                },
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::{start, IndicatorBackend, IndicatorSettings, Signal};
    use super::*;

    fn read(path: &Path) -> Vec<Change> {
        parse_log(&std::fs::read_to_string(path).unwrap()).unwrap()
    }

    /// The changes after the two opening `off` lines, as (ms after the first of them,
    /// output, on).
    fn after_open(path: &Path) -> Vec<(u64, &'static str, bool)> {
        let log = read(path);
        assert_eq!(
            log[..2]
                .iter()
                .map(|c| (c.output, c.on))
                .collect::<Vec<_>>(),
            [(Output::Led, false), (Output::Buzzer, false)],
            "both off at start"
        );
        let t0 = log[2].monotonic_ms;
        log[2..]
            .iter()
            .map(|c| (c.monotonic_ms - t0, c.output.name(), c.on))
            .collect()
    }

    /// Same outputs and states in the same order, each time within tolerance: never early
    /// (a few ms for rounding), late by at most `late` ms (a loaded machine).
    fn assert_timeline(got: &[(u64, &str, bool)], expected: &[(u64, &str, bool)], late: u64) {
        let names = |v: &[(u64, &str, bool)]| {
            v.iter()
                .map(|&(_, o, on)| format!("{o} {}", if on { "on" } else { "off" }))
                .collect::<Vec<_>>()
        };
        assert_eq!(names(got), names(expected), "{got:?}");
        for (g, e) in got.iter().zip(expected) {
            assert!(
                g.0 + 5 >= e.0 && g.0 <= e.0 + late,
                "{} {} at {} ms, expected {} ms: {got:?}",
                g.1,
                g.2,
                g.0,
                e.0
            );
        }
    }

    fn sim(path: &Path) -> IndicatorSettings {
        IndicatorSettings {
            backend: IndicatorBackend::Sim {
                log: path.to_owned(),
            },
        }
    }

    fn wait_for(path: &Path, lines: usize) {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while read(path).len() < lines {
            assert!(std::time::Instant::now() < deadline, "{:?}", read(path));
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    #[test]
    fn opening_writes_both_off_and_only_changes_are_logged() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested/indicator.log");
        let mut outputs = SimOutputs::open(&path).unwrap();
        outputs.set(Levels::OFF).unwrap();
        assert_eq!(read(&path).len(), 2);
        outputs
            .set(Levels {
                led: true,
                buzzer: false,
            })
            .unwrap();
        // Visible to a reader at once (flushed per write).
        let log = read(&path);
        assert_eq!(log.len(), 3);
        assert_eq!((log[2].output, log[2].on), (Output::Led, true));
        drop(outputs);
        let log = read(&path);
        assert_eq!(log.len(), 4, "dropping turns the LED off");
        assert_eq!((log[3].output, log[3].on), (Output::Led, false));
        assert!(log
            .windows(2)
            .all(|w| w[0].monotonic_ms <= w[1].monotonic_ms));
    }

    #[test]
    fn a_grant_shows_the_led_for_the_unlock_time_with_one_beep() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("indicator.log");
        let indicator = start(&sim(&path)).unwrap();
        indicator.send(Signal::Granted, Duration::from_millis(400));
        wait_for(&path, 6);
        std::thread::sleep(Duration::from_millis(100));
        drop(indicator);
        assert_timeline(
            &after_open(&path),
            &[
                (0, "led", true),
                (0, "buzzer", true),
                (150, "buzzer", false),
                (400, "led", false),
            ],
            250,
        );
    }

    #[test]
    fn a_refusal_blinks_three_times_and_beeps_twice() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("indicator.log");
        let indicator = start(&sim(&path)).unwrap();
        indicator.send(Signal::Refused, Duration::from_secs(5));
        wait_for(&path, 12);
        drop(indicator);
        assert_timeline(
            &after_open(&path),
            &[
                (0, "led", true),
                (0, "buzzer", true),
                (150, "led", false),
                (150, "buzzer", false),
                (300, "led", true),
                (300, "buzzer", true),
                (450, "led", false),
                (450, "buzzer", false),
                (600, "led", true),
                (750, "led", false),
            ],
            250,
        );
    }

    #[test]
    fn dropping_during_an_alarm_turns_both_off() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("indicator.log");
        let indicator = start(&sim(&path)).unwrap();
        indicator.send(Signal::Alarm, Duration::ZERO);
        // A grant during the alarm does not silence it.
        indicator.send(Signal::Granted, Duration::from_secs(5));
        wait_for(&path, 4);
        drop(indicator);
        let log = after_open(&path);
        let n = log.len();
        assert!(n >= 4, "{log:?}");
        assert_eq!(
            log[..2].iter().map(|c| (c.1, c.2)).collect::<Vec<_>>(),
            [("led", true), ("buzzer", true)]
        );
        // Whatever phase the pulse was in, both end off.
        let last = |name| log.iter().rev().find(|c| c.1 == name).unwrap().2;
        assert!(!last("led") && !last("buzzer"), "{log:?}");
        // The file is complete when the handle is gone: nothing is written later.
        std::thread::sleep(Duration::from_millis(600));
        assert_eq!(after_open(&path).len(), n);
    }

    #[test]
    fn unwritable_log_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let err = SimOutputs::open(dir.path()).unwrap_err().to_string();
        assert!(err.contains("simulated indicator log"), "{err}");
        assert!(start(&sim(dir.path())).is_err());
        assert!(parse_log("12 led dim").is_err());
        assert!(parse_log("12 horn on").is_err());
        assert_eq!(
            parse_log("12 buzzer on\n").unwrap(),
            [Change {
                monotonic_ms: 12,
                output: Output::Buzzer,
                on: true
            }]
        );
    }
}
