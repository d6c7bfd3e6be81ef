//! Indicator outputs: an optional status LED and an optional buzzer that show what the door
//! decided. The seam speaks [`Signal`]s — granted, refused, alarm, alarm cleared — never pin
//! levels. [`Patterns`] (pure, time passed in) turns signals into on/off schedules;
//! [`start`] drives them on a thread of their own through a backend: [`gpio`] (Raspberry Pi
//! pins, the only indicator module that imports `rppal`) or [`sim`] (a log file, for the
//! demo and tests).
//!
//! # Patterns
//!
//! | signal        | LED                                 | buzzer                         |
//! |---------------|-------------------------------------|--------------------------------|
//! | granted       | steady on for the unlock time       | one 150 ms beep                |
//! | refused       | 3 blinks, 150 ms on / 150 ms off    | 2 beeps with the first 2 blinks|
//! | alarm         | 500 ms on / 500 ms off until cleared| pulses with the LED            |
//! | alarm cleared | ends the alarm (both off)           | ends the alarm                 |
//!
//! A new signal replaces the pattern being shown, except that an active alarm is only ended
//! by `AlarmCleared`: granted and refused during an alarm are not shown, and a repeated
//! alarm keeps the pulse going without restarting it. `AlarmCleared` without an alarm
//! changes nothing.
//!
//! # Cosmetic
//!
//! The indicator never affects the lock: [`Indicator::send`] never blocks (a bounded queue
//! of [`QUEUE`] signals; a signal that finds it full is dropped), and a backend that fails
//! while running is logged once per outage and otherwise ignored. Both outputs are off
//! when the indicator starts and are turned off again when its handle is dropped.

pub mod gpio;
pub mod sim;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub use gpio::GpioOutputs;
pub use sim::SimOutputs;

/// What the door wants to show.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// The door was released: LED on for the unlock time, one short beep.
    Granted,
    /// A request was refused: three short blinks, two short beeps.
    Refused,
    /// Forced-open or held-open: LED and buzzer pulse until [`Signal::AlarmCleared`].
    Alarm,
    /// The alarm is over.
    AlarmCleared,
}

/// Whether each output is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Levels {
    pub led: bool,
    pub buzzer: bool,
}

impl Levels {
    /// Both outputs off.
    pub const OFF: Levels = Levels {
        led: false,
        buzzer: false,
    };
}

/// A short beep or blink.
pub const SHORT: Duration = Duration::from_millis(150);
/// Half a period of the alarm's pulse.
pub const ALARM_HALF: Duration = Duration::from_millis(500);
/// How many times a refusal blinks the LED.
pub const REFUSED_BLINKS: u32 = 3;
/// How many times a refusal beeps.
pub const REFUSED_BEEPS: u32 = 2;

/// One output's schedule, relative to the start of its pattern: `count` pulses (forever
/// when `None`) of `on` followed by `off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Track {
    on: Duration,
    off: Duration,
    count: Option<u32>,
}

impl Track {
    const OFF: Track = Track {
        on: Duration::ZERO,
        off: Duration::ZERO,
        count: Some(0),
    };

    /// On from the start for `on`, then off.
    fn once(on: Duration) -> Track {
        Track {
            on,
            off: Duration::ZERO,
            count: Some(1),
        }
    }

    fn pulses(on: Duration, off: Duration, count: Option<u32>) -> Track {
        Track { on, off, count }
    }

    /// When the pulses end (`None`: never, or past any representable time).
    fn end(&self) -> Option<Duration> {
        match self.count {
            Some(n) => (self.on + self.off).checked_mul(n),
            None => None,
        }
    }

    /// Where `elapsed` falls: the start of its period and the offset into it. `None` once
    /// the pulses are over (or when there are none).
    fn period_of(&self, elapsed: Duration) -> Option<(Duration, Duration)> {
        if self.on.is_zero() || self.end().is_some_and(|end| elapsed >= end) {
            return None;
        }
        let period = self.on + self.off;
        let phase = elapsed.as_nanos() % period.as_nanos();
        // `phase` < `period`, which is a Duration: it fits.
        let phase = Duration::new(
            (phase / 1_000_000_000) as u64,
            (phase % 1_000_000_000) as u32,
        );
        Some((elapsed - phase, phase))
    }

    fn level(&self, elapsed: Duration) -> bool {
        self.period_of(elapsed)
            .is_some_and(|(_, phase)| phase < self.on)
    }

    /// The next offset after `elapsed` at which the level changes.
    fn next_change(&self, elapsed: Duration) -> Option<Duration> {
        if self.off.is_zero() {
            // Pulses back to back: one continuous on.
            let end = self.end()?;
            return (!self.on.is_zero() && elapsed < end).then_some(end);
        }
        let (start, phase) = self.period_of(elapsed)?;
        if phase < self.on {
            start.checked_add(self.on)
        } else {
            let next = start.checked_add(self.on + self.off)?;
            // The last pulse's off time runs into the end: no new pulse.
            self.end().is_none_or(|end| next < end).then_some(next)
        }
    }
}

/// What is being shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pattern {
    Idle,
    Granted { start: Instant, led_for: Duration },
    Refused { start: Instant },
    Alarm { start: Instant },
}

/// The on/off schedule of the LED and the buzzer. Pure: time is passed in, never read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Patterns {
    pattern: Pattern,
}

impl Default for Patterns {
    fn default() -> Self {
        Patterns::new()
    }
}

impl Patterns {
    /// Nothing shown: both outputs off.
    pub fn new() -> Self {
        Patterns {
            pattern: Pattern::Idle,
        }
    }

    /// Shows `signal` from `now` (see the module documentation for the patterns and which
    /// signal replaces which). `granted_for` is how long a grant keeps the LED on (the
    /// unlock time); other signals ignore it.
    pub fn signal(&mut self, now: Instant, signal: Signal, granted_for: Duration) {
        let alarm = self.alarm_active();
        self.pattern = match signal {
            // An alarm is only ended by AlarmCleared, and not restarted by a repeat.
            _ if alarm && signal != Signal::AlarmCleared => return,
            Signal::Granted => Pattern::Granted {
                start: now,
                led_for: granted_for,
            },
            Signal::Refused => Pattern::Refused { start: now },
            Signal::Alarm => Pattern::Alarm { start: now },
            Signal::AlarmCleared if alarm => Pattern::Idle,
            Signal::AlarmCleared => return,
        };
    }

    /// Whether the alarm is being shown (until [`Signal::AlarmCleared`]).
    pub fn alarm_active(&self) -> bool {
        matches!(self.pattern, Pattern::Alarm { .. })
    }

    /// The pattern's start and its LED and buzzer tracks.
    fn tracks(&self) -> Option<(Instant, Track, Track)> {
        Some(match self.pattern {
            Pattern::Idle => return None,
            Pattern::Granted { start, led_for } => {
                (start, Track::once(led_for), Track::once(SHORT))
            }
            Pattern::Refused { start } => (
                start,
                Track::pulses(SHORT, SHORT, Some(REFUSED_BLINKS)),
                Track::pulses(SHORT, SHORT, Some(REFUSED_BEEPS)),
            ),
            Pattern::Alarm { start } => {
                let pulse = Track::pulses(ALARM_HALF, ALARM_HALF, None);
                (start, pulse, pulse)
            }
        })
    }

    /// The outputs at `now` (not before the last signal's `now`).
    pub fn levels(&self, now: Instant) -> Levels {
        let Some((start, led, buzzer)) = self.tracks() else {
            return Levels::OFF;
        };
        let elapsed = now.saturating_duration_since(start);
        Levels {
            led: led.level(elapsed),
            buzzer: buzzer.level(elapsed),
        }
    }

    /// The first time after `now` at which [`Patterns::levels`] changes; `None` while they
    /// stay as they are until the next signal.
    pub fn next_change(&self, now: Instant) -> Option<Instant> {
        let (start, led, buzzer) = self.tracks().unwrap_or((now, Track::OFF, Track::OFF));
        let elapsed = now.saturating_duration_since(start);
        [led, buzzer]
            .iter()
            .filter_map(|t| t.next_change(elapsed))
            .min()
            .and_then(|offset| start.checked_add(offset))
    }
}

/// One indicator output on a GPIO pin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutputPin {
    /// BCM GPIO number (not the header pin number).
    pub bcm_pin: u8,
    /// On is a low pin (e.g. an LED wired from 3.3 V to the pin, or a low-triggered buzzer
    /// board).
    pub active_low: bool,
}

/// The indicator outputs' settings (built by config.rs).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct IndicatorSettings {
    pub backend: IndicatorBackend,
}

/// Where the indicator is shown.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum IndicatorBackend {
    /// An LED and a buzzer on Raspberry Pi GPIO pins; each is optional.
    Gpio {
        led: Option<OutputPin>,
        buzzer: Option<OutputPin>,
    },
    /// A log file of every change; see [`sim`].
    Sim { log: PathBuf },
    /// No indicator: signals are ignored.
    #[default]
    None,
}

/// Which output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    Led,
    Buzzer,
}

impl Output {
    /// The output's name in logs and in the configuration (`outputs.<name>_pin`).
    pub fn name(self) -> &'static str {
        match self {
            Output::Led => "led",
            Output::Buzzer => "buzzer",
        }
    }
}

/// Indicator failures, each with what the operator can do about it.
#[derive(Debug, thiserror::Error)]
pub enum IndicatorError {
    /// The GPIO backend runs on a machine that is not a (recognised) Raspberry Pi.
    #[error(
        "outputs.backend = \"gpio\" needs a Raspberry Pi, and this machine is not one rppal \
         recognises; use backend = \"sim\" or \"none\" on other machines"
    )]
    NotAPi,
    /// The service user may not open the GPIO device.
    #[error(
        "permission denied on {path}: add the service user to the `gpio` group \
         (`usermod -aG gpio facelock`) and allow /dev/gpiomem (/dev/gpiomem0 on a Pi 5) in \
         the unit's DeviceAllow"
    )]
    PermissionDenied { path: String },
    /// The configured pin does not exist on this board.
    #[error(
        "BCM GPIO {pin} does not exist on this board; check outputs.{}_pin (BCM numbering, \
         not the header pin number)",
        output.name()
    )]
    PinNotAvailable { output: Output, pin: u8 },
    /// The pin is already claimed elsewhere in this process.
    #[error(
        "GPIO {pin} (outputs.{}_pin) is already in use by this process: it is also \
         relay.bcm_pin, a door input's pin or the other output's pin; give every output a \
         pin of its own",
        output.name()
    )]
    PinInUse { output: Output, pin: u8 },
    /// Any other GPIO failure.
    #[error("GPIO {pin} (outputs.{}_pin): {reason}", output.name())]
    Gpio {
        output: Output,
        pin: u8,
        reason: String,
    },
    /// The simulated indicator's log cannot be written.
    #[error(
        "cannot write the simulated indicator log {path}: {source}; check that its \
         directory is writable (ReadWritePaths in the unit)"
    )]
    SimLog {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The indicator's thread cannot be started.
    #[error(
        "cannot start the indicator thread: {0}; the system is out of memory or of threads \
         (check TasksMax in the unit)"
    )]
    Thread(std::io::Error),
}

/// Something that can switch the LED and the buzzer.
pub trait Outputs: Send {
    /// Drives both outputs to `levels`. Idempotent.
    fn set(&mut self, levels: Levels) -> Result<(), IndicatorError>;
}

/// How many signals may wait for the indicator's thread; more are dropped.
pub const QUEUE: usize = 16;

/// The running indicator. Dropping it turns both outputs off and stops its thread.
#[derive(Debug)]
pub struct Indicator {
    tx: Option<mpsc::SyncSender<(Signal, Duration)>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Indicator {
    /// Shows `signal` (`granted_for`: how long a grant keeps the LED on). Never blocks: when
    /// [`QUEUE`] signals are already waiting (the indicator's thread is stuck, e.g. on a
    /// hung log file) the signal is dropped. Does nothing with backend `none`.
    pub fn send(&self, signal: Signal, granted_for: Duration) {
        let Some(tx) = &self.tx else { return };
        match tx.try_send((signal, granted_for)) {
            Ok(()) => {}
            Err(mpsc::TrySendError::Full(_)) => {
                log::debug!("indicator: busy, {signal:?} not shown");
            }
            // The thread has ended (it only does so when stopped); nothing to show on.
            Err(mpsc::TrySendError::Disconnected(_)) => {}
        }
    }

    /// Whether the indicator's thread is running (false with backend `none`).
    pub fn is_running(&self) -> bool {
        self.thread.as_ref().is_some_and(|t| !t.is_finished())
    }

    fn spawn(outputs: Box<dyn Outputs>) -> Result<Indicator, IndicatorError> {
        let (tx, rx) = mpsc::sync_channel(QUEUE);
        let stop = Arc::new(AtomicBool::new(false));
        let thread = std::thread::Builder::new()
            .name("indicator".to_owned())
            .spawn({
                let stop = stop.clone();
                move || run(Driver::new(outputs), &rx, &stop)
            })
            .map_err(IndicatorError::Thread)?;
        Ok(Indicator {
            tx: Some(tx),
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for Indicator {
    fn drop(&mut self) {
        // Signals still queued are not shown: the thread turns the outputs off and ends.
        self.stop.store(true, Ordering::SeqCst);
        drop(self.tx.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Applies levels to the backend, logging a failure once per outage.
struct Driver {
    outputs: Box<dyn Outputs>,
    failing: bool,
}

impl Driver {
    fn new(outputs: Box<dyn Outputs>) -> Driver {
        Driver {
            outputs,
            failing: false,
        }
    }

    /// Drives the outputs; returns whether a failure was logged.
    fn apply(&mut self, levels: Levels) -> bool {
        match self.outputs.set(levels) {
            Ok(()) => {
                if std::mem::replace(&mut self.failing, false) {
                    log::info!("indicator: working again");
                }
                false
            }
            Err(e) => {
                let first = !std::mem::replace(&mut self.failing, true);
                if first {
                    log::warn!("indicator: {e} (the lock is not affected)");
                }
                first
            }
        }
    }
}

/// The indicator's thread: shows each signal until the handle stops it.
fn run(mut driver: Driver, rx: &mpsc::Receiver<(Signal, Duration)>, stop: &AtomicBool) {
    let mut patterns = Patterns::new();
    let mut shown = None;
    loop {
        let now = Instant::now();
        let levels = patterns.levels(now);
        if shown != Some(levels) {
            driver.apply(levels);
            // After a failure, retried at the next change or signal.
            shown = (!driver.failing).then_some(levels);
        }
        let received = match patterns.next_change(now) {
            Some(at) => rx.recv_timeout(at.saturating_duration_since(now)),
            None => rx
                .recv()
                .map_err(|mpsc::RecvError| mpsc::RecvTimeoutError::Disconnected),
        };
        match received {
            Ok(_) if stop.load(Ordering::SeqCst) => break,
            Ok((signal, granted_for)) => patterns.signal(Instant::now(), signal, granted_for),
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    driver.apply(Levels::OFF);
}

/// Starts the configured indicator on its own thread, both outputs off. Backend `none`
/// returns a handle that ignores every signal.
pub fn start(settings: &IndicatorSettings) -> Result<Indicator, IndicatorError> {
    let outputs: Box<dyn Outputs> = match &settings.backend {
        IndicatorBackend::Gpio { led, buzzer } => Box::new(GpioOutputs::open(*led, *buzzer)?),
        IndicatorBackend::Sim { log } => Box::new(SimOutputs::open(log)?),
        IndicatorBackend::None => {
            return Ok(Indicator {
                tx: None,
                stop: Arc::new(AtomicBool::new(false)),
                thread: None,
            })
        }
    };
    Indicator::spawn(outputs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    const MS: fn(u64) -> Duration = Duration::from_millis;
    const UNLOCK: Duration = Duration::from_secs(5);

    fn lv(led: bool, buzzer: bool) -> Levels {
        Levels { led, buzzer }
    }

    /// Levels at each offset (ms) after one signal at t0.
    fn check(signal: Signal, granted_for: Duration, table: &[(u64, bool, bool)]) {
        let t0 = Instant::now();
        let mut p = Patterns::new();
        p.signal(t0, signal, granted_for);
        for &(ms, led, buzzer) in table {
            assert_eq!(
                p.levels(t0 + MS(ms)),
                lv(led, buzzer),
                "{signal:?} at {ms} ms"
            );
        }
    }

    /// Every change after t0, walking `next_change` (at most `limit` of them).
    fn changes(p: &Patterns, t0: Instant, limit: usize) -> Vec<(u64, Levels)> {
        let mut out = Vec::new();
        let mut now = t0;
        while let Some(at) = p.next_change(now) {
            assert!(at > now, "next_change moves forward");
            now = at;
            out.push(((at - t0).as_millis() as u64, p.levels(at)));
            if out.len() == limit {
                break;
            }
        }
        out
    }

    #[test]
    fn nothing_is_shown_before_a_signal() {
        let p = Patterns::new();
        let now = Instant::now();
        assert_eq!(p.levels(now), Levels::OFF);
        assert_eq!(p.next_change(now), None);
        assert!(!p.alarm_active());
    }

    #[test]
    fn granted_keeps_the_led_on_for_the_unlock_time_with_one_beep() {
        check(
            Signal::Granted,
            UNLOCK,
            &[
                (0, true, true),
                (149, true, true),
                (150, true, false),
                (4_999, true, false),
                (5_000, false, false),
                (60_000, false, false),
            ],
        );
        // Shorter than the beep: the beep still completes.
        check(
            Signal::Granted,
            MS(100),
            &[(0, true, true), (100, false, true), (150, false, false)],
        );
    }

    #[test]
    fn refused_blinks_three_times_and_beeps_twice() {
        check(
            Signal::Refused,
            UNLOCK,
            &[
                (0, true, true),
                (149, true, true),
                (150, false, false),
                (299, false, false),
                (300, true, true),
                (449, true, true),
                (450, false, false),
                (600, true, false),
                (749, true, false),
                (750, false, false),
                (900, false, false),
                (10_000, false, false),
            ],
        );
    }

    #[test]
    fn alarm_pulses_both_until_cleared() {
        check(
            Signal::Alarm,
            UNLOCK,
            &[
                (0, true, true),
                (499, true, true),
                (500, false, false),
                (999, false, false),
                (1_000, true, true),
                (3_600_250, true, true),
                (3_600_750, false, false),
            ],
        );
    }

    #[test]
    fn next_change_walks_every_edge_of_each_pattern() {
        let t0 = Instant::now();
        // (signal, granted_for) -> every change (ms after t0, levels after it).
        let table = [
            (
                Signal::Granted,
                UNLOCK,
                vec![(150, lv(true, false)), (5_000, lv(false, false))],
            ),
            (
                Signal::Refused,
                UNLOCK,
                vec![
                    (150, lv(false, false)),
                    (300, lv(true, true)),
                    (450, lv(false, false)),
                    (600, lv(true, false)),
                    (750, lv(false, false)),
                ],
            ),
            (
                Signal::Alarm,
                UNLOCK,
                vec![
                    (500, lv(false, false)),
                    (1_000, lv(true, true)),
                    (1_500, lv(false, false)),
                    (2_000, lv(true, true)),
                    (2_500, lv(false, false)),
                    (3_000, lv(true, true)),
                ],
            ),
            // Nothing to clear: nothing shown, nothing scheduled.
            (Signal::AlarmCleared, UNLOCK, vec![]),
        ];
        for (signal, granted_for, expected) in table {
            let mut p = Patterns::new();
            p.signal(t0, signal, granted_for);
            assert_eq!(changes(&p, t0, 6), expected, "{signal:?}");
        }
        // From the middle of a pulse, and once everything is over.
        let mut p = Patterns::new();
        p.signal(t0, Signal::Refused, UNLOCK);
        assert_eq!(p.next_change(t0 + MS(200)), Some(t0 + MS(300)));
        assert_eq!(p.next_change(t0 + MS(750)), None);
        // A grant that never ends (as far as the clock goes): the beep ends, then nothing.
        p.signal(t0, Signal::Granted, Duration::MAX);
        assert_eq!(p.next_change(t0), Some(t0 + SHORT));
        assert_eq!(p.next_change(t0 + SHORT), None);
        assert!(p.levels(t0 + Duration::from_secs(86_400)).led);
    }

    #[test]
    fn a_new_signal_replaces_the_pattern_from_its_own_start() {
        let t0 = Instant::now();
        let mut p = Patterns::new();
        p.signal(t0, Signal::Granted, UNLOCK);
        // Refused 1 s into the grant: the LED blinks instead of staying on.
        p.signal(t0 + MS(1_000), Signal::Refused, UNLOCK);
        assert_eq!(p.levels(t0 + MS(1_000)), lv(true, true));
        assert_eq!(p.levels(t0 + MS(1_200)), lv(false, false));
        assert_eq!(
            p.levels(t0 + MS(2_000)),
            Levels::OFF,
            "the grant's LED is gone"
        );
        // Granted during the refusal's blinks: steady on, one beep, from then.
        p.signal(t0 + MS(2_000), Signal::Granted, MS(3_000));
        assert_eq!(p.levels(t0 + MS(2_200)), lv(true, false));
        assert_eq!(p.levels(t0 + MS(4_999)), lv(true, false));
        assert_eq!(p.levels(t0 + MS(5_000)), Levels::OFF);
    }

    #[test]
    fn an_alarm_is_not_silenced_by_grants_or_refusals_only_by_alarm_cleared() {
        let t0 = Instant::now();
        let mut p = Patterns::new();
        p.signal(t0, Signal::Granted, UNLOCK);
        p.signal(t0 + MS(100), Signal::Alarm, UNLOCK);
        assert!(p.alarm_active());
        assert_eq!(
            p.levels(t0 + MS(700)),
            Levels::OFF,
            "pulsing from the alarm"
        );
        // (signal during the alarm, at ms) -> still pulsing on the alarm's own phase.
        let table = [
            (Signal::Granted, 1_300),
            (Signal::Refused, 2_000),
            (Signal::Alarm, 2_100),
        ];
        for (signal, at) in table {
            p.signal(t0 + MS(at), signal, UNLOCK);
            assert!(p.alarm_active(), "{signal:?}");
            assert_eq!(p.levels(t0 + MS(2_300)), lv(true, true), "{signal:?}");
            assert_eq!(p.levels(t0 + MS(2_700)), Levels::OFF, "{signal:?}");
            assert_eq!(p.next_change(t0 + MS(2_700)), Some(t0 + MS(3_100)));
        }
        p.signal(t0 + MS(3_000), Signal::AlarmCleared, UNLOCK);
        assert!(!p.alarm_active());
        assert_eq!(p.levels(t0 + MS(3_200)), Levels::OFF);
        assert_eq!(p.next_change(t0 + MS(3_000)), None);
        // After the alarm, signals are shown again.
        p.signal(t0 + MS(4_000), Signal::Granted, UNLOCK);
        assert_eq!(p.levels(t0 + MS(4_000)), lv(true, true));
    }

    #[test]
    fn alarm_cleared_without_an_alarm_changes_nothing() {
        let t0 = Instant::now();
        let mut p = Patterns::new();
        p.signal(t0, Signal::Granted, UNLOCK);
        let before = p.clone();
        p.signal(t0 + MS(500), Signal::AlarmCleared, UNLOCK);
        assert_eq!(p, before);
        assert!(p.levels(t0 + MS(1_000)).led);
    }

    /// A backend that records every write and fails while told to.
    #[derive(Clone, Default)]
    struct Fake {
        writes: Arc<Mutex<Vec<Levels>>>,
        fail: Arc<AtomicBool>,
    }

    impl Outputs for Fake {
        fn set(&mut self, levels: Levels) -> Result<(), IndicatorError> {
            if self.fail.load(Ordering::SeqCst) {
                return Err(IndicatorError::Gpio {
                    output: Output::Led,
                    pin: 5,
                    reason: "gone".into(),
                });
            }
            self.writes.lock().unwrap().push(levels);
            Ok(())
        }
    }

    #[test]
    fn a_failing_backend_is_logged_once_per_outage() {
        let fake = Fake::default();
        let mut driver = Driver::new(Box::new(fake.clone()));
        fake.fail.store(true, Ordering::SeqCst);
        assert!(driver.apply(lv(true, false)), "first failure logged");
        assert!(!driver.apply(Levels::OFF), "not again");
        fake.fail.store(false, Ordering::SeqCst);
        assert!(!driver.apply(lv(true, true)));
        fake.fail.store(true, Ordering::SeqCst);
        assert!(driver.apply(Levels::OFF), "a new outage is logged");
        assert_eq!(*fake.writes.lock().unwrap(), [lv(true, true)]);
    }

    #[test]
    fn a_failing_backend_never_blocks_the_sender_and_recovers() {
        let fake = Fake::default();
        fake.fail.store(true, Ordering::SeqCst);
        let indicator = Indicator::spawn(Box::new(fake.clone())).unwrap();
        let t = Instant::now();
        for _ in 0..1_000 {
            indicator.send(Signal::Refused, UNLOCK);
        }
        assert!(t.elapsed() < MS(500), "send never waits: {:?}", t.elapsed());
        fake.fail.store(false, Ordering::SeqCst);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !fake.writes.lock().unwrap().contains(&lv(true, true)) {
            assert!(
                Instant::now() < deadline,
                "the alarm is shown once it works"
            );
            // Dropped while the queue is full; a repeated alarm does not restart.
            indicator.send(Signal::Alarm, UNLOCK);
            std::thread::sleep(MS(10));
        }
        assert!(indicator.is_running());
        drop(indicator);
        assert_eq!(fake.writes.lock().unwrap().last(), Some(&Levels::OFF));
    }

    #[test]
    fn dropping_the_handle_turns_both_outputs_off_and_stops_the_thread() {
        let fake = Fake::default();
        let indicator = Indicator::spawn(Box::new(fake.clone())).unwrap();
        indicator.send(Signal::Alarm, UNLOCK);
        let deadline = Instant::now() + Duration::from_secs(10);
        while fake.writes.lock().unwrap().last() != Some(&lv(true, true)) {
            assert!(Instant::now() < deadline, "the alarm is shown");
            std::thread::sleep(MS(5));
        }
        drop(indicator);
        let writes = fake.writes.lock().unwrap();
        assert_eq!(writes.first(), Some(&Levels::OFF), "off at start");
        assert_eq!(writes.last(), Some(&Levels::OFF), "off at the end");
        // The writer is gone with the thread: only this test's clone holds it.
        assert_eq!(Arc::strong_count(&fake.writes), 1);
    }

    #[test]
    fn backend_none_ignores_signals() {
        let indicator = start(&IndicatorSettings::default()).unwrap();
        assert!(!indicator.is_running());
        indicator.send(Signal::Alarm, UNLOCK);
    }

    #[test]
    fn errors_name_the_setting_to_fix() {
        let msg = IndicatorError::PinInUse {
            output: Output::Buzzer,
            pin: 17,
        }
        .to_string();
        assert!(
            msg.contains("outputs.buzzer_pin") && msg.contains("relay.bcm_pin"),
            "{msg}"
        );
        let msg = IndicatorError::PinNotAvailable {
            output: Output::Led,
            pin: 60,
        }
        .to_string();
        assert!(msg.contains("outputs.led_pin"), "{msg}");
    }
}
