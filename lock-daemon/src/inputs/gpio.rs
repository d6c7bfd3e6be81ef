//! Door inputs on Raspberry Pi GPIO pins (BCM numbering): the only inputs module that
//! imports `rppal`.
//!
//! The pins are claimed as inputs with the configured internal resistor and sampled every
//! [`SAMPLE_EVERY`] on a thread of their own; [`Watch`] (pure, time passed in) debounces
//! the samples and turns them into events. Sampling, rather than edge interrupts, keeps the
//! debounce exact (a level must be seen stable for the whole debounce time) and costs a few
//! register reads per period. On drop the pins go back to how they were (rppal's
//! reset-on-drop).

use std::time::{Duration, Instant};

use rppal::gpio::Gpio;

use super::debounce::Debouncer;
use super::{asserted, InputError, InputEvent, InputPin, Inputs, Pull, Role, Sink};

/// How often the pins are read: the resolution of the debounce time.
pub const SAMPLE_EVERY: Duration = Duration::from_millis(5);

/// Where pin levels come from: rppal on a Pi, a fake in the tests.
pub trait Levels: Send + 'static {
    /// The level (high = true) of every watched pin, in [`Watch`]'s order.
    fn read(&mut self) -> Result<Vec<bool>, String>;
}

/// Debounces samples of every watched pin and turns them into events. Pure: no pin, no
/// clock.
#[derive(Debug, Clone)]
pub struct Watch {
    pins: Vec<(Role, InputPin)>,
    /// `None` until the first good sample, and again after a read error.
    debouncers: Option<Vec<Debouncer>>,
    error_reported: bool,
}

impl Watch {
    pub fn new(pins: &[(Role, &InputPin)]) -> Watch {
        Watch {
            pins: pins
                .iter()
                .map(|&(role, pin)| (role, pin.clone()))
                .collect(),
            debouncers: None,
            error_reported: false,
        }
    }

    /// Feeds one sample of every pin taken at `now` (non-decreasing). The first good
    /// sample, and the first after a read error, reports the door and fire states as they
    /// are (the exit input starts from its current state: a button held then is no press);
    /// later samples report debounced changes. A read error is reported once per outage.
    pub fn step(&mut self, levels: Result<Vec<bool>, String>, now: Duration) -> Vec<InputEvent> {
        let levels = match levels {
            Ok(levels) => levels,
            Err(reason) => {
                self.debouncers = None;
                if std::mem::replace(&mut self.error_reported, true) {
                    return Vec::new();
                }
                return vec![InputEvent::Error(reason)];
            }
        };
        self.error_reported = false;
        assert_eq!(levels.len(), self.pins.len(), "one level per watched pin");
        let states = self
            .pins
            .iter()
            .zip(&levels)
            .map(|((_, pin), &high)| asserted(pin.contact, pin.pull, high));
        match &mut self.debouncers {
            None => {
                let debouncers: Vec<Debouncer> = self
                    .pins
                    .iter()
                    .zip(states)
                    .map(|((_, pin), state)| Debouncer::new(state, pin.debounce))
                    .collect();
                let events = self
                    .pins
                    .iter()
                    .zip(&debouncers)
                    .filter(|((role, _), _)| role.reports_state())
                    .filter_map(|((role, _), d)| role.event(d.stable()))
                    .collect();
                self.debouncers = Some(debouncers);
                events
            }
            Some(debouncers) => self
                .pins
                .iter()
                .zip(debouncers.iter_mut())
                .zip(states)
                .filter_map(|(((role, _), d), state)| {
                    d.sample(state, now).and_then(|s| role.event(s))
                })
                .collect(),
        }
    }
}

/// The claimed pins.
#[derive(Debug)]
struct Pins(Vec<rppal::gpio::InputPin>);

impl Levels for Pins {
    fn read(&mut self) -> Result<Vec<bool>, String> {
        // Memory-mapped register reads: they cannot fail once the pins are claimed.
        Ok(self.0.iter().map(|p| p.is_high()).collect())
    }
}

/// Claims the pins (in order: door, exit, fire) and starts watching them.
pub(super) fn start(pins: &[(Role, &InputPin)], sink: Sink) -> Result<Inputs, InputError> {
    let Some(&(first_role, first)) = pins.first() else {
        return Ok(Inputs::idle());
    };
    let gpio = Gpio::new().map_err(|e| map_error(first_role, first.bcm_pin, e))?;
    let mut claimed = Vec::with_capacity(pins.len());
    for &(role, pin) in pins {
        let raw = gpio
            .get(pin.bcm_pin)
            .map_err(|e| map_error(role, pin.bcm_pin, e))?;
        claimed.push(match pin.pull {
            Pull::Up => raw.into_input_pullup(),
            Pull::Down => raw.into_input_pulldown(),
            Pull::Off => raw.into_input(),
        });
        log::info!(
            "inputs: {} on BCM GPIO {} ({}, {}, debounce {} ms)",
            role.name(),
            pin.bcm_pin,
            pin.contact,
            pin.pull,
            pin.debounce.as_millis()
        );
    }
    run(Pins(claimed), Watch::new(pins), sink)
}

/// Reports the initial state from a first sample, then samples on a thread of its own.
pub(super) fn run(
    mut levels: impl Levels,
    mut watch: Watch,
    mut sink: Sink,
) -> Result<Inputs, InputError> {
    let t0 = Instant::now();
    for event in watch.step(levels.read(), Duration::ZERO) {
        if !sink(event) {
            return Ok(Inputs::idle());
        }
    }
    Inputs::spawn("door-inputs", move |stop| loop {
        if stop.wait(SAMPLE_EVERY) {
            return;
        }
        for event in watch.step(levels.read(), t0.elapsed()) {
            if !sink(event) {
                return;
            }
        }
    })
}

fn map_error(role: Role, pin: u8, e: rppal::gpio::Error) -> InputError {
    use rppal::gpio::Error;
    let input = role.name();
    match e {
        Error::UnknownModel => InputError::NotAPi,
        Error::PermissionDenied(path) => InputError::PermissionDenied { path },
        Error::PinNotAvailable(pin) => InputError::PinNotAvailable { input, pin },
        Error::PinUsed(pin) => InputError::PinInUse { input, pin },
        Error::Io(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            InputError::PermissionDenied {
                path: "/dev/gpiomem".into(),
            }
        }
        other => InputError::Gpio {
            input,
            pin,
            reason: other.to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::super::{ContactKind, DoorContact};
    use super::*;
    use std::sync::{mpsc, Arc, Mutex};

    fn pin(bcm_pin: u8, contact: ContactKind, debounce_ms: u64) -> InputPin {
        InputPin {
            bcm_pin,
            contact,
            pull: Pull::Up,
            debounce: Duration::from_millis(debounce_ms),
        }
    }

    /// Door (NC reed), exit (NO button) and fire (NC relay), all to ground with pull-ups:
    /// low = circuit closed.
    fn watch() -> Watch {
        let (door, exit, fire) = (
            pin(22, ContactKind::NormallyClosed, 50),
            pin(23, ContactKind::NormallyOpen, 20),
            pin(24, ContactKind::NormallyClosed, 100),
        );
        Watch::new(&[
            (Role::Door, &door),
            (Role::Exit, &exit),
            (Role::Fire, &fire),
        ])
    }

    const LOW: bool = false;
    const HIGH: bool = true;

    /// Feeds `levels` every 5 ms from `from_ms` for `for_ms`; returns the events.
    fn hold(w: &mut Watch, levels: [bool; 3], from_ms: u64, for_ms: u64) -> Vec<InputEvent> {
        (0..for_ms / 5)
            .flat_map(|i| w.step(Ok(levels.to_vec()), Duration::from_millis(from_ms + i * 5)))
            .collect()
    }

    #[test]
    fn the_first_sample_reports_the_door_and_fire_states_and_no_exit() {
        let mut w = watch();
        // Door open (reed open: high), exit button held (low), fire relay closed (low).
        assert_eq!(
            w.step(Ok(vec![HIGH, LOW, LOW]), Duration::ZERO),
            [InputEvent::Door(DoorContact::Open), InputEvent::Fire(false)]
        );
        // Releasing the button held at start is no request either.
        assert_eq!(hold(&mut w, [HIGH, HIGH, LOW], 5, 200), []);
    }

    #[test]
    fn the_exit_button_gives_one_request_per_press_not_per_bounce_nor_on_release() {
        let mut w = watch();
        w.step(Ok(vec![LOW, HIGH, LOW]), Duration::ZERO);
        let mut events = Vec::new();
        // Press with chatter, held 100 ms, released with chatter; twice.
        for start in [100, 400] {
            for (i, level) in [LOW, HIGH, LOW, HIGH, LOW].into_iter().enumerate() {
                events.extend(w.step(
                    Ok(vec![LOW, level, LOW]),
                    Duration::from_millis(start + i as u64),
                ));
            }
            events.extend(hold(&mut w, [LOW, LOW, LOW], start + 5, 100));
            for (i, level) in [HIGH, LOW, HIGH, LOW, HIGH].into_iter().enumerate() {
                events.extend(w.step(
                    Ok(vec![LOW, level, LOW]),
                    Duration::from_millis(start + 105 + i as u64),
                ));
            }
            events.extend(hold(&mut w, [LOW, HIGH, LOW], start + 110, 100));
        }
        assert_eq!(events, [InputEvent::ExitRequest, InputEvent::ExitRequest]);
    }

    #[test]
    fn a_door_opening_is_reported_once_after_its_debounce_time() {
        let mut w = watch();
        w.step(Ok(vec![LOW, HIGH, LOW]), Duration::ZERO);
        // A 30 ms blip (door rattled) is shorter than the 50 ms debounce.
        assert_eq!(hold(&mut w, [HIGH, HIGH, LOW], 100, 30), []);
        assert_eq!(hold(&mut w, [LOW, HIGH, LOW], 130, 30), []);
        let opened = hold(&mut w, [HIGH, HIGH, LOW], 200, 300);
        assert_eq!(opened, [InputEvent::Door(DoorContact::Open)]);
        // Fire: the panel relay opens (NC asserted).
        assert_eq!(
            hold(&mut w, [HIGH, HIGH, HIGH], 500, 300),
            [InputEvent::Fire(true)]
        );
    }

    #[test]
    fn a_read_error_is_reported_once_and_the_state_again_when_reads_recover() {
        let mut w = watch();
        w.step(Ok(vec![LOW, HIGH, LOW]), Duration::ZERO);
        let t = Duration::from_millis(10);
        assert_eq!(
            w.step(Err("bus error".into()), t),
            [InputEvent::Error("bus error".into())]
        );
        assert_eq!(w.step(Err("bus error".into()), t), []);
        // Back: the door is reported as it is now, never assumed closed.
        assert_eq!(
            w.step(Ok(vec![HIGH, HIGH, LOW]), t),
            [InputEvent::Door(DoorContact::Open), InputEvent::Fire(false)]
        );
    }

    /// Pin levels the test sets while the watching thread samples them.
    #[derive(Clone)]
    struct Fake(Arc<Mutex<Vec<bool>>>);

    impl Levels for Fake {
        fn read(&mut self) -> Result<Vec<bool>, String> {
            Ok(self.0.lock().unwrap().clone())
        }
    }

    fn fake_run(sink: Sink) -> (Fake, Inputs) {
        let fake = Fake(Arc::new(Mutex::new(vec![LOW, HIGH, LOW])));
        let inputs = run(fake.clone(), watch(), sink).unwrap();
        (fake, inputs)
    }

    #[test]
    fn the_watching_thread_reports_changes_and_stops_when_dropped() {
        let (tx, rx) = mpsc::channel();
        let (fake, inputs) = fake_run(Box::new(move |e| tx.send(e).is_ok()));
        // The initial state is there before `run` returns.
        assert_eq!(rx.try_recv(), Ok(InputEvent::Door(DoorContact::Closed)));
        assert_eq!(rx.try_recv(), Ok(InputEvent::Fire(false)));
        fake.0.lock().unwrap()[0] = HIGH;
        assert_eq!(
            rx.recv_timeout(Duration::from_secs(5)),
            Ok(InputEvent::Door(DoorContact::Open))
        );
        assert!(inputs.is_running());
        let t = Instant::now();
        drop(inputs);
        assert!(t.elapsed() < Duration::from_secs(1));
        assert!(rx.recv_timeout(Duration::from_millis(50)).is_err());
    }

    #[test]
    fn the_watching_thread_stops_when_the_sink_refuses_an_event() {
        let (fake, inputs) = fake_run(Box::new(|e| !matches!(e, InputEvent::ExitRequest)));
        assert!(inputs.is_running());
        fake.0.lock().unwrap()[1] = LOW;
        let t = Instant::now();
        while inputs.is_running() {
            assert!(t.elapsed() < Duration::from_secs(5), "still running");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn gpio_errors_tell_the_operator_what_to_do() {
        use rppal::gpio::Error;
        let msg = |e| map_error(Role::Exit, 23, e).to_string();
        assert!(msg(Error::UnknownModel).contains("backend = \"sim\""));
        let denied = msg(Error::PermissionDenied("/dev/gpiomem".into()));
        assert!(
            denied.contains("`gpio` group") && denied.contains("/dev/gpiomem"),
            "{denied}"
        );
        let missing = msg(Error::PinNotAvailable(40));
        assert!(
            missing.contains("BCM numbering") && missing.contains("inputs.exit.bcm_pin"),
            "{missing}"
        );
        assert!(msg(Error::PinUsed(23)).contains("relay.bcm_pin"));
    }

    #[test]
    fn starting_gpio_inputs_off_a_pi_fails_with_a_clear_message() {
        let model = std::fs::read_to_string("/proc/device-tree/model").unwrap_or_default();
        if model.contains("Raspberry Pi") {
            return; // Never touch a real pin from the unit tests.
        }
        let door = pin(22, ContactKind::NormallyClosed, 50);
        let err = start(&[(Role::Door, &door)], Box::new(|_| true)).unwrap_err();
        assert!(
            matches!(
                err,
                InputError::NotAPi | InputError::PermissionDenied { .. }
            ),
            "{err}"
        );
    }
}
