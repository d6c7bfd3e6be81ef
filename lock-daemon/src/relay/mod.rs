//! The door relay: the [`Relay`] seam speaks Locked/Unlocked, never pin levels. Adapters:
//! [`gpio`] (a relay on a Raspberry Pi pin) and [`sim`] (a log file, for the demo and tests).
//!
//! Every adapter writes Locked when it is opened and again when dropped; the service also
//! writes Locked explicitly on every exit path, and `lock-daemon secure` ([`secure`]) covers
//! the paths where the process cannot (SIGKILL, panic=abort, power loss of the Pi).

pub mod gpio;
pub mod sim;

use std::fmt;
use std::path::PathBuf;

use crate::config::{RelayBackend, RelaySettings};
pub use gpio::GpioRelay;
pub use sim::SimRelay;

/// What the door should be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockState {
    Locked,
    Unlocked,
}

impl fmt::Display for LockState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LockState::Locked => "LOCKED",
            LockState::Unlocked => "UNLOCKED",
        })
    }
}

/// Something that can lock and unlock the door.
pub trait Relay {
    /// Drives the lock to `state`. Idempotent.
    fn set(&mut self, state: LockState) -> Result<(), RelayError>;
}

impl<R: Relay + ?Sized> Relay for Box<R> {
    fn set(&mut self, state: LockState) -> Result<(), RelayError> {
        (**self).set(state)
    }
}

impl fmt::Debug for dyn Relay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("dyn Relay")
    }
}

/// Relay failures, each with what the operator can do about it.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    /// The GPIO backend runs on a machine that is not a (recognised) Raspberry Pi.
    #[error(
        "relay.backend = \"gpio\" needs a Raspberry Pi, and this machine is not one rppal \
         recognises; use backend = \"sim\" on other machines"
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
        "BCM GPIO {pin} does not exist on this board; check relay.bcm_pin (BCM numbering, not \
         the header pin number)"
    )]
    PinNotAvailable { pin: u8 },
    /// The pin is already claimed elsewhere in this process.
    #[error("GPIO {pin} is already in use by this process (is the relay opened twice?)")]
    PinInUse { pin: u8 },
    /// Any other GPIO failure.
    #[error("GPIO {pin}: {reason}")]
    Gpio { pin: u8, reason: String },
    /// The simulated relay's log cannot be written.
    #[error(
        "cannot write the simulated relay log {path}: {source}; check that its directory is \
         writable (ReadWritePaths in the unit)"
    )]
    SimLog {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Opens the configured relay; the relay is Locked when this returns.
pub fn open(settings: &RelaySettings) -> Result<Box<dyn Relay>, RelayError> {
    Ok(match &settings.backend {
        RelayBackend::Gpio {
            bcm_pin,
            active_low,
        } => Box::new(GpioRelay::open(*bcm_pin, *active_low)?),
        RelayBackend::Sim { log } => Box::new(SimRelay::open(log)?),
    })
}

/// `lock-daemon secure`: opens the configured relay, writes Locked and returns. Run by
/// systemd's `ExecStopPost`, so the door is locked however the daemon ended.
pub fn secure(settings: &RelaySettings) -> Result<(), RelayError> {
    let mut relay = open(settings)?;
    relay.set(LockState::Locked)
}
