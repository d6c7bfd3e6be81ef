//! The door relay: the [`Relay`] seam speaks Locked/Unlocked, never pin levels. Adapters:
//! [`gpio`] (a relay on a Raspberry Pi pin) and [`sim`] (a log file, for the demo and tests).
//!
//! Every adapter writes Locked when it is opened and again when dropped; the service also
//! writes Locked explicitly on every exit path, and `lock-daemon secure` ([`crate::secure`]) covers
//! the paths where the process cannot (SIGKILL, panic=abort, power loss of the Pi).

pub mod gpio;
pub mod sim;

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{Read as _, Write as _};
use std::os::unix::fs::OpenOptionsExt as _;
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
    /// Another process holds this relay's lock file: a second daemon on the same relay.
    #[error(
        "another lock-daemon{} already drives this relay (lock file {}); two daemons would \
         overwrite each other's door state. Stop the other one first (`systemctl stop \
         lock-daemon`, or `fuser {}` to find it)",
        pid.map(|p| format!(" (pid {p})")).unwrap_or_default(),
        path.display(),
        path.display()
    )]
    InUse { path: PathBuf, pid: Option<u32> },
    /// The relay's lock file cannot be created.
    #[error(
        "cannot create the relay lock file {path}: {source}; under systemd the unit's \
         RuntimeDirectory=facelock creates its directory, elsewhere create it writable by the \
         service user"
    )]
    LockFile {
        path: PathBuf,
        source: std::io::Error,
    },
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
        } => Box::new(GpioRelay::open(*bcm_pin, *active_low, settings.lock_type)?),
        RelayBackend::Sim { log } => Box::new(SimRelay::open(log)?),
    })
}

/// Where the daemon's exclusive claim on a relay lives: next to the simulated relay's log,
/// or in the runtime directory for a GPIO pin.
pub fn lock_file(settings: &RelaySettings) -> PathBuf {
    match &settings.backend {
        RelayBackend::Gpio { bcm_pin, .. } => {
            PathBuf::from(format!("{RUNTIME_DIR}/relay-gpio{bcm_pin}.lock"))
        }
        RelayBackend::Sim { log } => {
            let mut name = log.clone().into_os_string();
            name.push(".lock");
            PathBuf::from(name)
        }
    }
}

/// The daemon's runtime directory (the unit's `RuntimeDirectory=facelock`).
pub const RUNTIME_DIR: &str = "/run/facelock";

/// A running daemon's exclusive claim on its relay: an advisory lock on [`lock_file`],
/// released by the kernel when the process ends however it ends. `lock-daemon secure` takes
/// no claim, so it can always lock the door.
#[derive(Debug)]
pub struct Claim {
    _file: File,
}

/// Claims the configured relay for this process, then opens it (writing Locked). A second
/// daemon on the same relay is refused with [`RelayError::InUse`].
pub fn claim(settings: &RelaySettings) -> Result<(Box<dyn Relay>, Claim), RelayError> {
    let path = lock_file(settings);
    let fail = |source| RelayError::LockFile {
        path: path.clone(),
        source,
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(fail)?;
    }
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o644)
        .open(&path)
        .map_err(fail)?;
    use rustix::fs::{flock, FlockOperation};
    match flock(&file, FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => {}
        Err(rustix::io::Errno::WOULDBLOCK) => {
            let mut text = String::new();
            let _ = file.read_to_string(&mut text);
            return Err(RelayError::InUse {
                pid: text.trim().parse().ok(),
                path,
            });
        }
        Err(e) => return Err(fail(e.into())),
    }
    // Our pid, for the message a second instance prints.
    file.set_len(0).map_err(fail)?;
    writeln!(file, "{}", std::process::id()).map_err(fail)?;
    let relay = open(settings)?;
    Ok((relay, Claim { _file: file }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sim(dir: &std::path::Path) -> RelaySettings {
        RelaySettings {
            backend: RelayBackend::Sim {
                log: dir.join("relay.log"),
            },
            lock_type: Default::default(),
        }
    }

    #[test]
    fn a_second_claim_on_the_same_relay_is_refused_naming_the_holder() {
        let dir = tempfile::tempdir().unwrap();
        let (_relay, claim) = super::claim(&sim(dir.path())).unwrap();
        // flock is per open file description: a second open in this process conflicts
        // exactly like a second process would.
        let err = super::claim(&sim(dir.path())).unwrap_err();
        assert!(matches!(err, RelayError::InUse { .. }), "{err}");
        let msg = err.to_string();
        assert!(
            msg.contains(&format!("pid {}", std::process::id())),
            "{msg}"
        );
        assert!(msg.contains("systemctl stop lock-daemon"), "{msg}");
        drop(claim);
        super::claim(&sim(dir.path())).expect("free again once released");
    }

    #[test]
    fn gpio_relays_are_claimed_per_pin_in_the_runtime_directory() {
        let gpio = |pin| RelaySettings {
            backend: RelayBackend::Gpio {
                bcm_pin: pin,
                active_low: false,
            },
            lock_type: Default::default(),
        };
        assert_eq!(
            lock_file(&gpio(17)),
            PathBuf::from("/run/facelock/relay-gpio17.lock")
        );
        assert_ne!(lock_file(&gpio(17)), lock_file(&gpio(27)));
    }
}
