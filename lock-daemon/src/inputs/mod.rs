//! Door inputs: the door contact, the request-to-exit (exit button or PIR) and the optional
//! emergency/fire-release input. The seam speaks [`InputEvent`]s — door open or closed, an
//! exit request, fire asserted or not — never pin levels. Backends: [`gpio`] (contacts on
//! Raspberry Pi pins, the only module that imports `rppal` for them) and [`sim`] (a script
//! of timed events, for the demo and tests).
//!
//! # Wiring and meaning
//!
//! Every input is a contact (a switch, or a sensor's relay output) between a GPIO pin and
//! ground or 3.3 V. Its settings say how the contact is wired ([`Pull`]) and what its
//! circuit does when the input is *asserted* ([`ContactKind`]):
//!
//! | input | asserted means     | usual contact                                        |
//! |-------|--------------------|------------------------------------------------------|
//! | door  | the door is OPEN   | reed switch closed while the door is closed: **NC**  |
//! | exit  | exit requested     | push button or PIR relay closing on request: **NO**  |
//! | fire  | release the door   | fire panel relay opening on alarm: **NC**            |
//!
//! - **NO** (normally open): asserted while the circuit is *closed*.
//! - **NC** (normally closed): asserted while the circuit is *open*. A cut wire then reads
//!   as asserted: a cut door-contact wire says "door open", which is the safe reading; a
//!   cut fire wire releases the door, which is what fire codes usually require.
//! - **pull = up** (the usual wiring): the contact switches the pin to ground; the
//!   internal pull-up holds it high otherwise. Closed reads low.
//! - **pull = down**: the contact switches the pin to 3.3 V; closed reads high. Also the
//!   setting for a sensor that drives the pin itself, high when active (with NO).
//! - **pull = off**: no internal resistor; the board has an external pull-up and the
//!   contact switches to ground, so closed reads low (as with pull = up).
//!
//! [`asserted`] is that mapping; its table test lists every combination.
//!
//! # Events
//!
//! Levels are debounced ([`debounce`]): a change counts only after the level has been stable
//! for the input's debounce time. [`start`] reports the initial state of the door and fire
//! inputs before it returns, then every debounced change: `Door(Open|Closed)` and
//! `Fire(bool)` on each change, `ExitRequest` once per press (on the asserting edge; never
//! on release, never for a button already held at start). A read failure is
//! `InputEvent::Error`: the service must treat the door state as unknown until the next
//! `Door(..)`, never as closed.

pub mod debounce;
pub mod gpio;
pub mod sim;

use std::fmt;
use std::path::PathBuf;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How a contact behaves when its input is asserted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContactKind {
    /// Normally open (`"no"`): the circuit closes when the input is asserted.
    NormallyOpen,
    /// Normally closed (`"nc"`): the circuit opens when the input is asserted.
    NormallyClosed,
}

impl fmt::Display for ContactKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ContactKind::NormallyOpen => "normally open",
            ContactKind::NormallyClosed => "normally closed",
        })
    }
}

/// The pin's internal resistor, which says how the contact is wired.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pull {
    /// Internal pull-up; the contact switches the pin to ground (closed = low).
    Up,
    /// Internal pull-down; the contact switches the pin to 3.3 V (closed = high).
    Down,
    /// No internal resistor; an external pull-up, the contact to ground (closed = low).
    Off,
}

impl fmt::Display for Pull {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Pull::Up => "pull-up",
            Pull::Down => "pull-down",
            Pull::Off => "no pull",
        })
    }
}

/// One wired input's settings (validated by config.rs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputPin {
    /// BCM GPIO number (not the header pin number).
    pub bcm_pin: u8,
    /// What the circuit does when the input is asserted (see the module documentation:
    /// for the door, asserted = door open).
    pub contact: ContactKind,
    /// How the contact is wired.
    pub pull: Pull,
    /// How long a new level must hold before it counts.
    pub debounce: Duration,
}

/// The door inputs' settings.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct InputsSettings {
    pub backend: InputsBackend,
}

/// Where the door inputs come from.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum InputsBackend {
    /// Contacts on Raspberry Pi GPIO pins; each input is optional.
    Gpio {
        door: Option<InputPin>,
        exit: Option<InputPin>,
        fire: Option<InputPin>,
    },
    /// A script of timed events (a file, or a FIFO read as lines arrive); see [`sim`].
    Sim { script: PathBuf },
    /// No door inputs: nothing is ever reported.
    #[default]
    None,
}

/// The door contact's reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DoorContact {
    Open,
    Closed,
}

/// What an input reports, already debounced and mapped through NO/NC.
#[derive(Debug, Clone, PartialEq)]
pub enum InputEvent {
    /// The door contact's state: at start, then on every change.
    Door(DoorContact),
    /// The exit button was pressed (or the PIR saw someone leaving): once per press.
    ExitRequest,
    /// The fire/emergency-release input: `true` while asserted. At start, then on every
    /// change.
    Fire(bool),
    /// An input cannot be read: the door state is unknown until the next `Door(..)`.
    Error(String),
}

impl fmt::Display for InputEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InputEvent::Door(DoorContact::Open) => f.write_str("door open"),
            InputEvent::Door(DoorContact::Closed) => f.write_str("door closed"),
            InputEvent::ExitRequest => f.write_str("exit request"),
            InputEvent::Fire(true) => f.write_str("fire release on"),
            InputEvent::Fire(false) => f.write_str("fire release off"),
            InputEvent::Error(reason) => write!(f, "door input error: {reason}"),
        }
    }
}

/// Where every event goes. Returning `false` (the receiver has gone) stops the inputs.
pub type Sink = Box<dyn FnMut(InputEvent) -> bool + Send>;

/// Door input failures at start, each with what the operator can do about it.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    /// The GPIO backend runs on a machine that is not a (recognised) Raspberry Pi.
    #[error(
        "inputs.backend = \"gpio\" needs a Raspberry Pi, and this machine is not one rppal \
         recognises; use backend = \"sim\" or \"none\" on other machines"
    )]
    NotAPi,
    /// The service user may not open the GPIO device.
    #[error(
        "permission denied on {path}: add the service user to the `gpio` group \
         (`usermod -aG gpio facelock`) and allow /dev/gpiomem (/dev/gpiomem0 on a Pi 5) and \
         /dev/gpiochip* in the unit's DeviceAllow"
    )]
    PermissionDenied { path: String },
    /// The configured pin does not exist on this board.
    #[error(
        "BCM GPIO {pin} does not exist on this board; check inputs.{input}.bcm_pin (BCM \
         numbering, not the header pin number)"
    )]
    PinNotAvailable { input: &'static str, pin: u8 },
    /// The pin is already claimed elsewhere in this process.
    #[error(
        "GPIO {pin} (inputs.{input}.bcm_pin) is already in use by this process: it is also \
         relay.bcm_pin or another input's pin; give every input and the relay a pin of \
         its own"
    )]
    PinInUse { input: &'static str, pin: u8 },
    /// Any other GPIO failure.
    #[error("GPIO {pin} (inputs.{input}.bcm_pin): {reason}")]
    Gpio {
        input: &'static str,
        pin: u8,
        reason: String,
    },
    /// The simulated inputs' script cannot be read, or a line of it is malformed.
    #[error("simulated inputs script {path}: {reason}")]
    Script { path: PathBuf, reason: String },
    /// The inputs' thread cannot be started.
    #[error(
        "cannot start the door inputs thread: {0}; the system is out of memory or of \
         threads (check TasksMax in the unit)"
    )]
    Thread(std::io::Error),
}

/// Whether the contact's circuit is closed at this pin level.
pub fn circuit_closed(pull: Pull, high: bool) -> bool {
    match pull {
        // The contact pulls the pin to ground against a pull-up (internal or external).
        Pull::Up | Pull::Off => !high,
        // The contact pulls the pin to 3.3 V against the pull-down.
        Pull::Down => high,
    }
}

/// Whether an input is asserted at this pin level: NO = asserted while the circuit is
/// closed, NC = while it is open. For the door, asserted means the door is open.
pub fn asserted(contact: ContactKind, pull: Pull, high: bool) -> bool {
    let closed = circuit_closed(pull, high);
    match contact {
        ContactKind::NormallyOpen => closed,
        ContactKind::NormallyClosed => !closed,
    }
}

/// Which input a pin is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Door,
    Exit,
    Fire,
}

impl Role {
    /// The input's name in the configuration (`inputs.<name>`) and in the sim script.
    pub fn name(self) -> &'static str {
        match self {
            Role::Door => "door",
            Role::Exit => "exit",
            Role::Fire => "fire",
        }
    }

    /// The event for this input's (debounced) state: the state itself for the door and
    /// fire inputs; for the exit input, a request only when it becomes asserted.
    pub fn event(self, asserted: bool) -> Option<InputEvent> {
        match self {
            Role::Door => Some(InputEvent::Door(if asserted {
                DoorContact::Open
            } else {
                DoorContact::Closed
            })),
            Role::Exit => asserted.then_some(InputEvent::ExitRequest),
            Role::Fire => Some(InputEvent::Fire(asserted)),
        }
    }

    /// Whether this input's state is reported at start (and after a read error).
    pub fn reports_state(self) -> bool {
        self != Role::Exit
    }
}

/// The running inputs. Dropping the handle stops them (and waits for their thread).
#[derive(Debug)]
pub struct Inputs {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Inputs {
    /// A handle with nothing running (backend `none`, or a sink that refused the initial
    /// state).
    fn idle() -> Inputs {
        Inputs {
            stop: None,
            thread: None,
        }
    }

    /// Runs `body` on a thread of its own, with the [`Stop`] that dropping the handle
    /// triggers.
    fn spawn(name: &str, body: impl FnOnce(Stop) + Send + 'static) -> Result<Inputs, InputError> {
        let (tx, rx) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || body(Stop(rx)))
            .map_err(InputError::Thread)?;
        Ok(Inputs {
            stop: Some(tx),
            thread: Some(thread),
        })
    }

    /// Whether the inputs still deliver events: false once stopped, once the sink has
    /// returned false, or once a script has been played to its end.
    pub fn is_running(&self) -> bool {
        self.thread.as_ref().is_some_and(|t| !t.is_finished())
    }
}

impl Drop for Inputs {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The stop signal of an inputs thread: the handle dropping its sender.
#[derive(Debug)]
struct Stop(mpsc::Receiver<()>);

impl Stop {
    /// Sleeps up to `timeout`; true when the inputs are to stop.
    fn wait(&self, timeout: Duration) -> bool {
        !matches!(
            self.0.recv_timeout(timeout),
            Err(mpsc::RecvTimeoutError::Timeout)
        )
    }

    /// Sleeps until `at` after `t0` (forever when that is past the clock's range); true
    /// when the inputs are to stop.
    fn until(&self, t0: Instant, at: Duration) -> bool {
        match t0.checked_add(at) {
            Some(deadline) => self.wait(deadline.saturating_duration_since(Instant::now())),
            None => self.wait(Duration::MAX),
        }
    }
}

/// Starts the configured inputs on their own thread; every event goes to `sink`.
///
/// The initial state of the door contact and of the fire input (when configured; always
/// with `sim`) is delivered to `sink` before this returns, door first, so the service
/// knows whether the door is open at start. Then each debounced change follows, from the
/// inputs' thread. Returns a handle that stops the inputs when dropped. Backend `none`
/// reports nothing.
pub fn start(settings: &InputsSettings, sink: Sink) -> Result<Inputs, InputError> {
    match &settings.backend {
        InputsBackend::Gpio { door, exit, fire } => {
            let pins: Vec<(Role, &InputPin)> =
                [(Role::Door, door), (Role::Exit, exit), (Role::Fire, fire)]
                    .into_iter()
                    .filter_map(|(role, pin)| pin.as_ref().map(|p| (role, p)))
                    .collect();
            gpio::start(&pins, sink)
        }
        InputsBackend::Sim { script } => sim::start(script, sink),
        InputsBackend::None => Ok(Inputs::idle()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_wiring_maps_the_pin_level_to_the_right_meaning() {
        use ContactKind::{NormallyClosed as NC, NormallyOpen as NO};
        // (contact, pull, pin high?) -> asserted?
        let table = [
            // Pull-up: closed contact to ground reads low.
            (NO, Pull::Up, false, true),
            (NO, Pull::Up, true, false),
            (NC, Pull::Up, false, false),
            (NC, Pull::Up, true, true),
            // Pull-down: closed contact to 3.3 V reads high.
            (NO, Pull::Down, false, false),
            (NO, Pull::Down, true, true),
            (NC, Pull::Down, false, true),
            (NC, Pull::Down, true, false),
            // No internal pull: external pull-up, contact to ground, as with pull-up.
            (NO, Pull::Off, false, true),
            (NO, Pull::Off, true, false),
            (NC, Pull::Off, false, false),
            (NC, Pull::Off, true, true),
        ];
        for (contact, pull, high, expected) in table {
            assert_eq!(
                asserted(contact, pull, high),
                expected,
                "{contact}, {pull}, pin {}",
                if high { "high" } else { "low" }
            );
        }
    }

    #[test]
    fn a_reed_switch_on_a_closed_door_reads_closed_and_opening_it_reads_open() {
        // The usual door wiring: NC reed switch (closed while the magnet is near) to
        // ground, internal pull-up.
        let door = |high| Role::Door.event(asserted(ContactKind::NormallyClosed, Pull::Up, high));
        assert_eq!(door(false), Some(InputEvent::Door(DoorContact::Closed)));
        // Door opened, or the wire cut: the pull-up wins.
        assert_eq!(door(true), Some(InputEvent::Door(DoorContact::Open)));
    }

    #[test]
    fn the_exit_input_requests_only_when_it_becomes_asserted() {
        assert_eq!(Role::Exit.event(true), Some(InputEvent::ExitRequest));
        assert_eq!(Role::Exit.event(false), None);
        assert_eq!(Role::Fire.event(false), Some(InputEvent::Fire(false)));
        assert!(!Role::Exit.reports_state());
    }

    #[test]
    fn backend_none_reports_nothing() {
        let (tx, rx) = mpsc::channel();
        let inputs = start(
            &InputsSettings::default(),
            Box::new(move |e| tx.send(e).is_ok()),
        )
        .unwrap();
        assert!(!inputs.is_running());
        drop(inputs);
        assert!(rx.try_recv().is_err());
    }

    #[test]
    fn events_read_like_log_lines() {
        assert_eq!(InputEvent::Door(DoorContact::Open).to_string(), "door open");
        assert_eq!(
            InputEvent::Error("wire cut".into()).to_string(),
            "door input error: wire cut"
        );
    }
}
