//! The LED and the buzzer on Raspberry Pi GPIO pins (BCM numbering): the only indicator
//! module that imports `rppal`.
//!
//! On is a high pin, or a low one when `active_low` is set. Each pin is switched to output
//! already at the off level, so opening never flashes or beeps. On drop both are written
//! off and left driven (rppal's reset-on-drop, which would turn them back into floating
//! inputs that a transistor driver might read as on, is disabled).

use rppal::gpio::{Gpio, Level};

use super::{IndicatorError, Levels, Output, OutputPin, Outputs};

/// The pin level (high = true) for an output that should be `on`.
pub fn level_for(on: bool, active_low: bool) -> bool {
    on != active_low
}

/// One claimed output pin.
#[derive(Debug)]
struct Pin {
    pin: rppal::gpio::OutputPin,
    active_low: bool,
}

impl Pin {
    fn open(output: Output, config: OutputPin) -> Result<Pin, IndicatorError> {
        let pin = Gpio::new()
            .and_then(|gpio| gpio.get(config.bcm_pin))
            .map_err(|e| map_error(output, config.bcm_pin, e))?;
        let mut pin = if level_for(false, config.active_low) {
            pin.into_output_high()
        } else {
            pin.into_output_low()
        };
        pin.set_reset_on_drop(false);
        log::info!(
            "indicator: {} on BCM GPIO {} ({}), off",
            output.name(),
            config.bcm_pin,
            if config.active_low {
                "active low"
            } else {
                "active high"
            }
        );
        Ok(Pin {
            pin,
            active_low: config.active_low,
        })
    }

    fn set(&mut self, on: bool) {
        // Memory-mapped register write: cannot fail once the pin is claimed.
        self.pin.write(Level::from(level_for(on, self.active_low)));
    }
}

/// The LED and the buzzer, either of them optional.
#[derive(Debug)]
pub struct GpioOutputs {
    led: Option<Pin>,
    buzzer: Option<Pin>,
}

impl GpioOutputs {
    /// Claims the configured pins as outputs, off.
    pub fn open(
        led: Option<OutputPin>,
        buzzer: Option<OutputPin>,
    ) -> Result<GpioOutputs, IndicatorError> {
        let led = led.map(|p| Pin::open(Output::Led, p)).transpose()?;
        let buzzer = buzzer.map(|p| Pin::open(Output::Buzzer, p)).transpose()?;
        Ok(GpioOutputs { led, buzzer })
    }
}

impl Outputs for GpioOutputs {
    fn set(&mut self, levels: Levels) -> Result<(), IndicatorError> {
        if let Some(led) = &mut self.led {
            led.set(levels.led);
        }
        if let Some(buzzer) = &mut self.buzzer {
            buzzer.set(levels.buzzer);
        }
        Ok(())
    }
}

impl Drop for GpioOutputs {
    fn drop(&mut self) {
        let _ = self.set(Levels::OFF);
    }
}

fn map_error(output: Output, pin: u8, e: rppal::gpio::Error) -> IndicatorError {
    use rppal::gpio::Error;
    match e {
        Error::UnknownModel => IndicatorError::NotAPi,
        Error::PermissionDenied(path) => IndicatorError::PermissionDenied { path },
        Error::PinNotAvailable(pin) => IndicatorError::PinNotAvailable { output, pin },
        Error::PinUsed(pin) => IndicatorError::PinInUse { output, pin },
        Error::Io(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            IndicatorError::PermissionDenied {
                path: "/dev/gpiomem".into(),
            }
        }
        other => IndicatorError::Gpio {
            output,
            pin,
            reason: other.to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn on_is_high_unless_active_low() {
        // (on, active_low) -> pin high?
        let table = [
            (false, false, false),
            (true, false, true),
            (false, true, true),
            (true, true, false),
        ];
        for (on, active_low, high) in table {
            assert_eq!(
                level_for(on, active_low),
                high,
                "on={on} active_low={active_low}"
            );
        }
    }

    #[test]
    fn gpio_errors_tell_the_operator_what_to_do() {
        use rppal::gpio::Error;
        let msg = |e| map_error(Output::Buzzer, 22, e).to_string();
        assert!(msg(Error::UnknownModel).contains("backend = \"sim\""));
        let denied = msg(Error::PermissionDenied("/dev/gpiomem".into()));
        assert!(
            denied.contains("`gpio` group") && denied.contains("/dev/gpiomem"),
            "{denied}"
        );
        let missing = msg(Error::PinNotAvailable(40));
        assert!(
            missing.contains("BCM numbering") && missing.contains("outputs.buzzer_pin"),
            "{missing}"
        );
        let used = msg(Error::PinUsed(22));
        assert!(used.contains("already in use"), "{used}");
    }

    #[test]
    fn opening_off_a_pi_fails_with_a_clear_message() {
        let model = std::fs::read_to_string("/proc/device-tree/model").unwrap_or_default();
        if model.contains("Raspberry Pi") {
            return; // Never touch a real pin from the unit tests.
        }
        let pin = |bcm_pin| {
            Some(OutputPin {
                bcm_pin,
                active_low: false,
            })
        };
        let err = GpioOutputs::open(pin(5), pin(6)).unwrap_err();
        assert!(
            matches!(
                err,
                IndicatorError::NotAPi | IndicatorError::PermissionDenied { .. }
            ),
            "{err}"
        );
        // Through `start`, as the service calls it.
        let err = super::super::start(&super::super::IndicatorSettings {
            backend: super::super::IndicatorBackend::Gpio {
                led: None,
                buzzer: pin(6),
            },
        })
        .unwrap_err();
        assert!(
            err.to_string().contains("Raspberry Pi") || err.to_string().contains("gpio"),
            "{err}"
        );
        // Nothing configured: nothing claimed, nothing to fail.
        GpioOutputs::open(None, None).expect("no pins, no GPIO access");
    }
}
