//! Raspberry Pi GPIO through rppal (every model rppal supports, Pi 5 included), on
//! Raspberry Pi OS where /dev/gpiomem exists. The button is watched with rppal's
//! interrupt thread (edges, not polling).

use super::{Edge, EdgeSender, GpioError, Led, Pins, monotonic_now};
use crate::config::GpioConfig;
use rppal::gpio::{Gpio, InputPin, OutputPin, Trigger};
use std::sync::Mutex;

pub struct RppalPins {
    /// Behind a lock because rppal's interrupt setup takes `&mut`.
    button: Option<(Mutex<InputPin>, bool)>,
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
                Some((Mutex::new(input), b.active_low))
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
            Some((pin, active_low)) => {
                pin.lock().unwrap_or_else(|p| p.into_inner()).is_low() == *active_low
            }
            None => false,
        }
    }

    fn watch_button(&self, edges: EdgeSender) -> Result<(), GpioError> {
        let Some((pin, active_low)) = &self.button else {
            return Ok(());
        };
        let active_low = *active_low;
        let mut pin = pin.lock().unwrap_or_else(|p| p.into_inner());
        // Stamped here rather than with rppal's own time base, so every backend's edges
        // share CLOCK_MONOTONIC.
        pin.set_async_interrupt(Trigger::Both, None, move |event| {
            let high = event.trigger == Trigger::RisingEdge;
            let _ = edges.try_send(Edge {
                pressed: high != active_low,
                at: monotonic_now(),
            });
        })
        .map_err(|e| GpioError::Rppal(format!("button interrupt: {e}")))
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
