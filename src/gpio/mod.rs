//! Buttons in, LEDs out. On a Raspberry Pi the pins are driven with rppal; elsewhere a
//! simulator takes their place, so the same button and LED logic runs and is tested on
//! x86. The LED states also appear in `/api/status`.

pub mod button;
mod rppal_pins;
pub mod simulator;

use crate::config::{GpioBackend, GpioConfig};
use crate::control::{Command, Control};
use crate::status::{Pipeline, Presenter, Status};
use button::{Button, ButtonEvent};
use serde::Serialize;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use simulator::Simulator;

/// The two LEDs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Led {
    Status,
    Viewers,
}

/// What an LED shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LedMode {
    Off,
    On,
    /// 1 Hz: starting.
    SlowBlink,
    /// 5 Hz: error.
    FastBlink,
}

impl LedMode {
    /// Whether the LED is lit at `t` since an arbitrary epoch.
    pub fn lit(self, t: Duration) -> bool {
        let ms = t.as_millis();
        match self {
            Self::Off => false,
            Self::On => true,
            Self::SlowBlink => ms % 1000 < 500,
            Self::FastBlink => ms % 200 < 100,
        }
    }
}

/// The status LED for a pipeline state: off = stopped, slow blink = starting,
/// on = streaming (camera running or a browser presenting), fast blink = error.
pub fn status_led(presenter: Presenter, pipeline: &Pipeline, camera_on: bool) -> LedMode {
    match (presenter, pipeline) {
        (Presenter::Browser, _) => LedMode::On,
        (_, Pipeline::Running) => LedMode::On,
        (_, Pipeline::Error(_)) => LedMode::FastBlink,
        (_, Pipeline::Starting) => LedMode::SlowBlink,
        (_, Pipeline::Stopped) if camera_on => LedMode::SlowBlink,
        (_, Pipeline::Stopped) => LedMode::Off,
    }
}

/// The viewers LED: on while anyone watches.
pub fn viewers_led(viewers: usize) -> LedMode {
    if viewers > 0 {
        LedMode::On
    } else {
        LedMode::Off
    }
}

/// Physical pins, for the one real implementation (rppal) and the simulator used on
/// boards without GPIO and in tests.
pub trait Pins: Send + Sync {
    /// Whether the button is pressed now (logical, polarity already applied).
    fn button_pressed(&self) -> bool;
    /// Lights or darkens an LED (logical; polarity applied by the implementation).
    fn set_led(&self, led: Led, lit: bool);
    /// Short name for status: "rppal" or "simulator".
    fn name(&self) -> &'static str;
}

/// Why GPIO could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum GpioError {
    #[error("GPIO: {0}")]
    Rppal(String),
}

/// Opens the configured backend. `auto` takes the simulator where rppal does not
/// recognise the board as a Raspberry Pi.
pub fn open(config: &GpioConfig) -> Result<Arc<dyn Pins>, GpioError> {
    match config.backend {
        GpioBackend::Simulator => Ok(Arc::new(Simulator::new())),
        GpioBackend::Rppal => {
            rppal_pins::RppalPins::open(config).map(|p| Arc::new(p) as Arc<dyn Pins>)
        }
        GpioBackend::Auto => match rppal_pins::RppalPins::open(config) {
            Ok(p) => Ok(Arc::new(p)),
            // On a board rppal recognises, failing to open GPIO is a fault the operator
            // must hear of: the button and LEDs are dead. rppal maps /dev/gpiomem, which
            // the Raspberry Pi kernel provides and a mainline one (Debian's) does not.
            Err(e) if rppal::system::DeviceInfo::new().is_ok() => {
                tracing::warn!(
                    "this Raspberry Pi's GPIO cannot be opened ({e}): the button and LEDs are \
                     off (is there a /dev/gpiomem, readable by group gpio?)"
                );
                Ok(Arc::new(Simulator::new()))
            }
            Err(e) => {
                tracing::info!("no Raspberry Pi GPIO ({e}); using the GPIO simulator");
                Ok(Arc::new(Simulator::new()))
            }
        },
    }
}

/// Polling period: fast enough for debouncing and a 5 Hz blink, cheap on a Pi Zero.
const TICK: Duration = Duration::from_millis(10);

/// Reads the button and drives the LEDs until the daemon stops (then turns them off).
pub async fn run(
    pins: Arc<dyn Pins>,
    config: GpioConfig,
    control: Arc<Control>,
    status: Arc<Status>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let epoch = Instant::now();
    let mut button = Button::new(config.debounce, config.long_press, epoch);
    let mut shown: Option<(bool, bool)> = None;
    let mut reported: Option<(LedMode, LedMode)> = None;
    // A rejected settings file is known at start and stays until the next boot.
    let config_error = status.config_error().is_some();
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.wait_for(|s| *s) => break,
        }
        let now = Instant::now();
        if config.button.is_some() {
            match button.sample(pins.button_pressed(), now) {
                Some(ButtonEvent::Short) => {
                    control.apply(Command::Toggle);
                }
                Some(ButtonEvent::Long) => {
                    control.apply(Command::LongPress);
                }
                None => {}
            }
        }
        let modes = (
            if config_error {
                LedMode::FastBlink
            } else {
                status_led(
                    *status.presenter.borrow(),
                    &status.pipeline(),
                    control.is_on(),
                )
            },
            viewers_led(status.viewers.load(std::sync::atomic::Ordering::Relaxed)),
        );
        if reported != Some(modes) {
            status.set_leds(modes.0, modes.1, pins.name());
            reported = Some(modes);
        }
        let lit = (modes.0.lit(now - epoch), modes.1.lit(now - epoch));
        if shown != Some(lit) {
            if config.status_led.is_some() {
                pins.set_led(Led::Status, lit.0);
            }
            if config.viewers_led.is_some() {
                pins.set_led(Led::Viewers, lit.1);
            }
            shown = Some(lit);
        }
    }
    pins.set_led(Led::Status, false);
    pins.set_led(Led::Viewers, false);
    status.set_leds(LedMode::Off, LedMode::Off, pins.name());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_led_follows_the_pipeline() {
        assert_eq!(
            status_led(Presenter::None, &Pipeline::Stopped, false),
            LedMode::Off
        );
        assert_eq!(
            status_led(Presenter::Camera, &Pipeline::Starting, true),
            LedMode::SlowBlink
        );
        assert_eq!(
            status_led(Presenter::Camera, &Pipeline::Running, true),
            LedMode::On
        );
        assert_eq!(
            status_led(Presenter::Camera, &Pipeline::Error("x".into()), true),
            LedMode::FastBlink
        );
        assert_eq!(
            status_led(Presenter::Browser, &Pipeline::Stopped, false),
            LedMode::On
        );
        assert_eq!(viewers_led(0), LedMode::Off);
        assert_eq!(viewers_led(3), LedMode::On);
    }

    #[test]
    fn blink_rates() {
        let ms = Duration::from_millis;
        assert!(LedMode::SlowBlink.lit(ms(100)) && !LedMode::SlowBlink.lit(ms(600)));
        assert!(LedMode::FastBlink.lit(ms(50)) && !LedMode::FastBlink.lit(ms(150)));
        assert!(LedMode::On.lit(ms(123)) && !LedMode::Off.lit(ms(123)));
    }
}
