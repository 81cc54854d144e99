//! Raspberry Pi GPIO through rppal (every model rppal supports, Pi 5 included).

use super::{GpioError, Led, Pins};
use crate::config::GpioConfig;
use rppal::gpio::{Gpio, InputPin, OutputPin};
use std::sync::Mutex;

pub struct RppalPins {
    button: Option<(InputPin, bool)>,
    status: Option<(Mutex<OutputPin>, bool)>,
    viewers: Option<(Mutex<OutputPin>, bool)>,
}

impl RppalPins {
    pub fn open(config: &GpioConfig) -> Result<Self, GpioError> {
        let gpio = Gpio::new().map_err(|e| GpioError::Rppal(e.to_string()))?;
        let pin = |n: u8| {
            gpio.get(n)
                .map_err(|e| GpioError::Rppal(format!("pin {n}: {e}")))
        };
        let button = match config.button {
            Some(b) => {
                let p = pin(b.pin)?;
                let input = if b.pull_up {
                    p.into_input_pullup()
                } else {
                    p.into_input()
                };
                Some((input, b.active_low))
            }
            None => None,
        };
        let output = |led: Option<crate::config::LedPin>| -> Result<_, GpioError> {
            Ok(match led {
                Some(l) => {
                    // Start dark whatever the polarity.
                    let out = if l.active_high {
                        pin(l.pin)?.into_output_low()
                    } else {
                        pin(l.pin)?.into_output_high()
                    };
                    Some((Mutex::new(out), l.active_high))
                }
                None => None,
            })
        };
        Ok(Self {
            button,
            status: output(config.status_led)?,
            viewers: output(config.viewers_led)?,
        })
    }
}

impl Pins for RppalPins {
    fn button_pressed(&self) -> bool {
        match &self.button {
            Some((pin, active_low)) => pin.is_low() == *active_low,
            None => false,
        }
    }

    fn set_led(&self, led: Led, lit: bool) {
        let slot = match led {
            Led::Status => &self.status,
            Led::Viewers => &self.viewers,
        };
        if let Some((pin, active_high)) = slot {
            let mut pin = pin.lock().unwrap_or_else(|p| p.into_inner());
            if lit == *active_high {
                pin.set_high()
            } else {
                pin.set_low()
            }
        }
    }

    fn name(&self) -> &'static str {
        "rppal"
    }
}
