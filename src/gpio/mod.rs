//! Buttons in, LEDs out. Three backends behind one trait: the kernel's GPIO character
//! device (`cdev`, through gpiocdev: Debian's and Raspberry Pi's kernels and other
//! boards alike), rppal (Raspberry Pi OS's /dev/gpiomem), and a simulator that takes
//! their place on boards without GPIO and in tests, so the same button and LED logic
//! runs and is tested on x86. The button arrives as edge events with kernel timestamps
//! (no polling); the LED states also appear in `/api/status`.

pub mod button;
mod cdev;
pub mod lines;
mod rppal_pins;
pub mod simulator;

use crate::admission::{Admission, Presenter};
use crate::config::{GpioBackend, GpioConfig};
use crate::control::{Command, Control};
use crate::supervisor::{CameraState, Pipeline};
use button::{Button, ButtonEvent};
use serde::Serialize;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};

pub use cdev::{ChipListing, list_chips};
pub use simulator::Simulator;

/// What the LEDs show, as `/api/status` reports it.
#[derive(Debug, Clone, Serialize)]
pub struct Leds {
    /// The backend: "gpiochip", "rppal", "simulator" (or "none" before it starts).
    pub gpio: &'static str,
    /// The chip(s) the lines are on, with the character device.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gpio_chip: Option<String>,
    pub status: LedMode,
    pub viewers: LedMode,
}

impl Default for Leds {
    fn default() -> Self {
        Self {
            gpio: "none",
            gpio_chip: None,
            status: LedMode::Off,
            viewers: LedMode::Off,
        }
    }
}

/// What the LEDs follow, and where their modes are shown.
pub struct LedInputs {
    pub admission: Arc<Admission>,
    pub camera: watch::Receiver<CameraState>,
    /// A rejected boot-partition settings file (known at start, kept until the next
    /// boot): the status LED blinks fast.
    pub config_error: bool,
    pub shown: watch::Sender<Leds>,
}

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
    /// How long a blinking LED stays lit, then dark (None: it does not blink).
    fn half_period_ms(self) -> Option<u64> {
        match self {
            Self::Off | Self::On => None,
            Self::SlowBlink => Some(500),
            Self::FastBlink => Some(100),
        }
    }

    /// Whether the LED is lit at `t` since an arbitrary epoch.
    pub fn lit(self, t: Duration) -> bool {
        match self.half_period_ms() {
            Some(half) => (t.as_millis() as u64 / half).is_multiple_of(2),
            None => self == Self::On,
        }
    }

    /// The next time after `t` that the LED changes, if it blinks.
    fn next_change(self, t: Duration) -> Option<Duration> {
        let half = self.half_period_ms()?;
        Some(Duration::from_millis(
            (t.as_millis() as u64 / half + 1) * half,
        ))
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

/// A change of the button's (logical) level, stamped on CLOCK_MONOTONIC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Edge {
    pub pressed: bool,
    pub at: Duration,
}

/// Where button edges go; bounded, so a chattering contact cannot grow memory (an edge
/// that finds it full is dropped: the next one carries the level again).
pub type EdgeSender = mpsc::Sender<Edge>;

/// Physical pins. A trait because there are three real implementations (cdev, rppal)
/// plus the simulator used on boards without GPIO and in tests.
pub trait Pins: Send + Sync {
    /// Whether the button is pressed now (logical, polarity already applied).
    fn button_pressed(&self) -> bool;
    /// Starts sending the button's edges to `edges` until it closes.
    fn watch_button(&self, edges: EdgeSender) -> Result<(), GpioError>;
    /// Lights or darkens an LED (logical; polarity applied by the implementation).
    fn set_led(&self, led: Led, lit: bool);
    /// Short name for status: "gpiochip", "rppal" or "simulator".
    fn name(&self) -> &'static str;
    /// The chip(s) the lines are on, for status (e.g. "/dev/gpiochip0 [pinctrl-bcm2711]").
    fn chip(&self) -> Option<String> {
        None
    }
}

/// Why GPIO could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum GpioError {
    #[error("GPIO (rppal): {0}")]
    Rppal(String),
    #[error("GPIO: {0}")]
    Lookup(#[from] lines::LookupError),
    #[error("GPIO: {path}: {detail}")]
    Chip { path: String, detail: String },
}

/// Now on CLOCK_MONOTONIC, the clock the kernel stamps GPIO edge events with.
pub fn monotonic_now() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec through a valid pointer; CLOCK_MONOTONIC
    // exists on every Linux, so it cannot fail.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// Opens the configured backend. `auto` takes rppal where it opens (Raspberry Pi OS:
/// /dev/gpiomem), else the GPIO character device where the pins can be placed on a
/// chip, else the simulator (saying why).
pub fn open(config: &GpioConfig) -> Result<Arc<dyn Pins>, GpioError> {
    match config.backend {
        GpioBackend::Simulator => Ok(Arc::new(Simulator::new())),
        GpioBackend::Rppal => {
            rppal_pins::RppalPins::open(config).map(|p| Arc::new(p) as Arc<dyn Pins>)
        }
        GpioBackend::Gpiochip => cdev::CdevPins::open(config).map(|p| Arc::new(p) as Arc<dyn Pins>),
        GpioBackend::Auto => {
            let gpiomem = ["/dev/gpiomem", "/dev/gpiomem0"]
                .iter()
                .any(|p| std::path::Path::new(p).exists());
            let mut why = vec![];
            for backend in auto_candidates(gpiomem) {
                let opened = match backend {
                    GpioBackend::Rppal => {
                        rppal_pins::RppalPins::open(config).map(|p| Arc::new(p) as Arc<dyn Pins>)
                    }
                    _ => cdev::CdevPins::open(config).map(|p| Arc::new(p) as Arc<dyn Pins>),
                };
                match opened {
                    Ok(pins) => return Ok(pins),
                    Err(e) => why.push(e.to_string()),
                }
            }
            let why = why.join("; ");
            if rppal::system::DeviceInfo::new().is_ok() {
                // The button and LEDs are dead: the operator must hear of it.
                tracing::warn!(
                    "this Raspberry Pi's GPIO cannot be opened ({why}): the button and LEDs \
                     are off (is the edgecam user in group gpio?)"
                );
            } else {
                tracing::info!("no usable GPIO ({why}); using the GPIO simulator");
            }
            Ok(Arc::new(Simulator::new()))
        }
    }
}

/// What `auto` tries, in order, before the simulator: rppal only where /dev/gpiomem is
/// (the Raspberry Pi kernel; it maps memory and needs no chip lookup there), and the
/// GPIO character device everywhere.
fn auto_candidates(gpiomem_present: bool) -> Vec<GpioBackend> {
    if gpiomem_present {
        vec![GpioBackend::Rppal, GpioBackend::Gpiochip]
    } else {
        vec![GpioBackend::Gpiochip]
    }
}

/// The LEDs are re-read from the daemon's state at least this often (its state has no
/// change notification); blinks are timed to their exact transitions in between.
const LED_REFRESH: Duration = Duration::from_millis(100);

/// Reads the button and drives the LEDs until the daemon stops (then turns them off).
pub async fn run(
    pins: Arc<dyn Pins>,
    config: GpioConfig,
    control: Arc<Control>,
    inputs: LedInputs,
    mut stop: watch::Receiver<bool>,
) {
    let (edge_tx, mut edges) = mpsc::channel::<Edge>(64);
    let mut button = Button::new(config.debounce, config.long_press, monotonic_now());
    if config.button.is_some() {
        button.sample(pins.button_pressed(), monotonic_now());
        if let Err(e) = pins.watch_button(edge_tx) {
            tracing::warn!("the button cannot be watched: {e}");
        }
    } else {
        drop(edge_tx);
    }
    let press = |event: Option<ButtonEvent>| match event {
        Some(ButtonEvent::Short) => {
            control.apply(Command::Toggle);
        }
        Some(ButtonEvent::Long) => {
            control.apply(Command::LongPress);
        }
        None => {}
    };
    // Due deadlines first, at their own time, so the result depends only on the edges'
    // timestamps and not on how late this task got to run.
    let catch_up = |button: &mut Button, until: Duration| {
        while let Some(d) = button.deadline().filter(|d| *d <= until) {
            let level = button.level();
            press(button.sample(level, d));
        }
    };
    let feed = |button: &mut Button, edge: Edge| {
        catch_up(button, edge.at);
        press(button.sample(edge.pressed, edge.at));
    };
    let mut shown: Option<(bool, bool)> = None;
    let mut reported: Option<(LedMode, LedMode)> = None;
    let mut edges_open = config.button.is_some();
    let LedInputs {
        admission,
        camera,
        config_error,
        shown: leds_shown,
    } = inputs;
    let show = |status: LedMode, viewers: LedMode| {
        leds_shown.send_replace(Leds {
            gpio: pins.name(),
            gpio_chip: pins.chip(),
            status,
            viewers,
        });
    };
    loop {
        let now = monotonic_now();
        let modes = (
            if config_error {
                LedMode::FastBlink
            } else {
                status_led(
                    admission.presenter(),
                    &camera.borrow().pipeline,
                    control.is_on(),
                )
            },
            viewers_led(admission.viewers()),
        );
        if reported != Some(modes) {
            show(modes.0, modes.1);
            reported = Some(modes);
        }
        let lit = (modes.0.lit(now), modes.1.lit(now));
        if shown != Some(lit) {
            if config.status_led.is_some() {
                pins.set_led(Led::Status, lit.0);
            }
            if config.viewers_led.is_some() {
                pins.set_led(Led::Viewers, lit.1);
            }
            shown = Some(lit);
        }
        let wake = [
            button.deadline(),
            modes.0.next_change(now),
            modes.1.next_change(now),
        ]
        .into_iter()
        .flatten()
        .fold(now + LED_REFRESH, Duration::min);
        tokio::select! {
            edge = edges.recv(), if edges_open => match edge {
                Some(edge) => feed(&mut button, edge),
                None => edges_open = false,
            },
            _ = tokio::time::sleep(wake.saturating_sub(now)) => {
                // Edges already queued come before a deadline that is now due.
                while let Ok(edge) = edges.try_recv() {
                    feed(&mut button, edge);
                }
                catch_up(&mut button, monotonic_now());
            }
            _ = stop.wait_for(|s| *s) => break,
        }
    }
    pins.set_led(Led::Status, false);
    pins.set_led(Led::Viewers, false);
    show(LedMode::Off, LedMode::Off);
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
    fn auto_tries_rppal_only_where_gpiomem_is_then_the_character_device() {
        assert_eq!(
            auto_candidates(true),
            vec![GpioBackend::Rppal, GpioBackend::Gpiochip]
        );
        // Debian's kernel on a Pi, QEMU's virt board, other boards: no /dev/gpiomem.
        assert_eq!(auto_candidates(false), vec![GpioBackend::Gpiochip]);
    }

    #[test]
    fn blinks_wake_the_loop_at_their_transitions() {
        let ms = Duration::from_millis;
        assert_eq!(LedMode::FastBlink.next_change(ms(1234)), Some(ms(1300)));
        assert_eq!(LedMode::SlowBlink.next_change(ms(1234)), Some(ms(1500)));
        assert_eq!(LedMode::On.next_change(ms(1234)), None);
        // At a transition the LED really changes.
        let t = ms(1300);
        assert_ne!(LedMode::FastBlink.lit(t), LedMode::FastBlink.lit(t - ms(1)));
    }

    #[test]
    fn blink_rates() {
        let ms = Duration::from_millis;
        assert!(LedMode::SlowBlink.lit(ms(100)) && !LedMode::SlowBlink.lit(ms(600)));
        assert!(LedMode::FastBlink.lit(ms(50)) && !LedMode::FastBlink.lit(ms(150)));
        assert!(LedMode::On.lit(ms(123)) && !LedMode::Off.lit(ms(123)));
    }
}
