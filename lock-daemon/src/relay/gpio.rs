//! A relay on a Raspberry Pi GPIO pin (BCM numbering): the only module that imports `rppal`.
//!
//! For an electric strike (`lock_type = "fail-secure"`) Unlocked energises the relay; for a
//! magnetic lock (`"fail-safe"`) Locked does, since a maglock holds only while powered. An
//! energised relay is a high pin, or a low one when `active_low` is set (most
//! opto-isolated relay boards switch on a low input). The pin is switched to output
//! already at the Locked level, so opening never glitches the door open. On drop the pin is
//! written Locked and left driven (rppal's reset-on-drop, which would turn it back into a
//! floating input, is disabled), so the level stays Locked after the process exits.

use rppal::gpio::{Gpio, Level, OutputPin};

use super::{LockState, Relay, RelayError};
use crate::config::LockType;

/// The pin level that puts the lock in `state`.
pub fn level_for(state: LockState, active_low: bool, lock_type: LockType) -> bool {
    let energised = match lock_type {
        LockType::FailSecure => state == LockState::Unlocked,
        LockType::FailSafe => state == LockState::Locked,
    };
    energised != active_low
}

/// A relay on a GPIO pin.
#[derive(Debug)]
pub struct GpioRelay {
    pin: OutputPin,
    active_low: bool,
    lock_type: LockType,
}

impl GpioRelay {
    /// Claims BCM pin `bcm_pin` as an output at the Locked level.
    pub fn open(
        bcm_pin: u8,
        active_low: bool,
        lock_type: LockType,
    ) -> Result<GpioRelay, RelayError> {
        let pin = Gpio::new()
            .and_then(|gpio| gpio.get(bcm_pin))
            .map_err(|e| map_error(bcm_pin, e))?;
        let mut pin = if level_for(LockState::Locked, active_low, lock_type) {
            pin.into_output_high()
        } else {
            pin.into_output_low()
        };
        pin.set_reset_on_drop(false);
        log::info!(
            "relay: BCM GPIO {bcm_pin} ({}, {} lock), locked",
            if active_low {
                "active low"
            } else {
                "active high"
            },
            lock_type.as_str()
        );
        Ok(GpioRelay {
            pin,
            active_low,
            lock_type,
        })
    }
}

impl Relay for GpioRelay {
    fn set(&mut self, state: LockState) -> Result<(), RelayError> {
        // Memory-mapped register write: cannot fail once the pin is claimed.
        self.pin.write(Level::from(level_for(
            state,
            self.active_low,
            self.lock_type,
        )));
        Ok(())
    }
}

impl Drop for GpioRelay {
    fn drop(&mut self) {
        let _ = self.set(LockState::Locked);
    }
}

fn map_error(pin: u8, e: rppal::gpio::Error) -> RelayError {
    use rppal::gpio::Error;
    match e {
        Error::UnknownModel => RelayError::NotAPi,
        Error::PermissionDenied(path) => RelayError::PermissionDenied { path },
        Error::PinNotAvailable(pin) => RelayError::PinNotAvailable { pin },
        Error::PinUsed(pin) => RelayError::PinInUse { pin },
        Error::Io(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            RelayError::PermissionDenied {
                path: "/dev/gpiomem".into(),
            }
        }
        other => RelayError::Gpio {
            pin,
            reason: other.to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unlocked_energises_the_relay_on_both_board_kinds() {
        // (state, active_low, lock type) -> pin high?
        use LockType::{FailSafe, FailSecure};
        let table = [
            (LockState::Locked, false, FailSecure, false),
            (LockState::Unlocked, false, FailSecure, true),
            (LockState::Locked, true, FailSecure, true),
            (LockState::Unlocked, true, FailSecure, false),
            // A maglock is energised to lock.
            (LockState::Locked, false, FailSafe, true),
            (LockState::Unlocked, false, FailSafe, false),
            (LockState::Locked, true, FailSafe, false),
            (LockState::Unlocked, true, FailSafe, true),
        ];
        for (state, active_low, lock_type, high) in table {
            assert_eq!(
                level_for(state, active_low, lock_type),
                high,
                "{state} active_low={active_low} {lock_type:?}"
            );
        }
    }

    #[test]
    fn gpio_errors_tell_the_operator_what_to_do() {
        use rppal::gpio::Error;
        let msg = |e| map_error(17, e).to_string();
        assert!(msg(Error::UnknownModel).contains("backend = \"sim\""));
        let denied = msg(Error::PermissionDenied("/dev/gpiomem".into()));
        assert!(
            denied.contains("`gpio` group") && denied.contains("/dev/gpiomem"),
            "{denied}"
        );
        assert!(msg(Error::PinNotAvailable(40)).contains("BCM numbering"));
    }

    #[test]
    fn opening_off_a_pi_fails_with_a_clear_message() {
        let model = std::fs::read_to_string("/proc/device-tree/model").unwrap_or_default();
        if model.contains("Raspberry Pi") {
            return; // Never touch a real pin from the unit tests.
        }
        let err = GpioRelay::open(17, false, LockType::FailSecure).unwrap_err();
        assert!(
            matches!(
                err,
                RelayError::NotAPi | RelayError::PermissionDenied { .. }
            ),
            "{err}"
        );
    }
}
