//! GPIO through the kernel's GPIO character device (v2 uAPI, via gpiocdev): works on
//! Debian's kernel, Raspberry Pi's kernel and any other board with `/dev/gpiochip*`.
//! Every chip is scanned and the pins placed by `lines::find_line`; the button is an
//! edge-detecting input whose events carry kernel timestamps; LEDs are outputs, released
//! (back to the kernel) when the daemon exits and its line requests close.

use super::lines::{ChipInfo, LineAddr, find_line};
use super::{Edge, EdgeSender, GpioError, Led, Pins};
use crate::config::GpioConfig;
use gpiocdev::line::{Bias, EdgeDetection, EdgeKind, EventClock, Value};
use gpiocdev::request::Request;
use std::os::fd::{AsRawFd, RawFd};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

const CONSUMER: &str = "edgecam";

/// One chip for `edgecam devices`: what `find_line` sees, and who holds each line.
#[derive(Debug, Clone)]
pub struct ChipListing {
    pub chip: ChipInfo,
    /// Per line: the consumer holding it, or "" when free.
    pub consumers: Vec<String>,
}

/// Reads every `/dev/gpiochip*` (in number order). A chip that cannot be read is
/// left out with a log line: it cannot be used either.
pub fn list_chips() -> Vec<ChipListing> {
    let paths = match gpiocdev::chip::chips() {
        Ok(p) => p,
        // No /dev/gpiochip* at all (this x86 machine, a container).
        Err(_) => return vec![],
    };
    paths
        .iter()
        .filter_map(|path| match read_chip(path) {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::debug!("{}: {e}", path.display());
                None
            }
        })
        .collect()
}

fn read_chip(path: &Path) -> Result<ChipListing, gpiocdev::Error> {
    let chip = gpiocdev::chip::Chip::from_path(path)?;
    let info = chip.info()?;
    let mut lines = Vec::with_capacity(info.num_lines as usize);
    let mut consumers = Vec::with_capacity(info.num_lines as usize);
    for offset in 0..info.num_lines {
        let line = chip.line_info(offset)?;
        lines.push(line.name);
        consumers.push(if line.used {
            if line.consumer.is_empty() {
                "kernel".into()
            } else {
                line.consumer
            }
        } else {
            String::new()
        });
    }
    Ok(ChipListing {
        chip: ChipInfo {
            path: path.to_path_buf(),
            name: info.name,
            label: info.label,
            lines,
        },
        consumers,
    })
}

/// A line request's descriptor, shared by the pins (to read the level) and the task that
/// waits for its edges.
struct Line(Arc<Request>);

impl AsRawFd for Line {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }
}

pub struct CdevPins {
    button: Option<Arc<Request>>,
    status: Option<Request>,
    viewers: Option<Request>,
    /// For status: the chip(s) the lines are on.
    chips: String,
}

impl CdevPins {
    pub fn open(config: &GpioConfig) -> Result<Self, GpioError> {
        let listing = list_chips();
        let chips: Vec<ChipInfo> = listing.iter().map(|l| l.chip.clone()).collect();
        let wanted = (!config.chip.is_empty()).then_some(config.chip.as_str());
        let mut used: Vec<String> = vec![];
        let mut place = |pin: u8| -> Result<LineAddr, GpioError> {
            let addr = find_line(&chips, u32::from(pin), wanted)?;
            let name = format!("{} [{}]", addr.chip.display(), addr.chip_label);
            if !used.contains(&name) {
                used.push(name);
            }
            // Say who holds a busy line (e.g. gpio-keys on QEMU's power button) before
            // the kernel answers a bare "busy".
            let holder = listing
                .iter()
                .find(|l| l.chip.path == addr.chip)
                .and_then(|l| l.consumers.get(addr.offset as usize))
                .filter(|c| !c.is_empty());
            if let Some(holder) = holder {
                return Err(GpioError::Chip {
                    path: addr.chip.display().to_string(),
                    detail: format!("line {} (pin {pin}) is in use by {holder:?}", addr.offset),
                });
            }
            Ok(addr)
        };
        let button = match config.button {
            Some(b) => {
                let addr = place(b.pin)?;
                let mut req = Request::builder();
                req.on_chip(&addr.chip)
                    .with_consumer(CONSUMER)
                    .with_line(addr.offset)
                    .as_input()
                    .with_edge_detection(EdgeDetection::BothEdges)
                    .with_event_clock(EventClock::Monotonic);
                if b.pull_up {
                    req.with_bias(Bias::PullUp);
                }
                if b.active_low {
                    req.as_active_low();
                }
                Some(Arc::new(request(&mut req, &addr)?))
            }
            None => None,
        };
        let mut output = |led: Option<crate::config::LedPin>| -> Result<_, GpioError> {
            let Some(l) = led else { return Ok(None) };
            let addr = place(l.pin)?;
            let mut req = Request::builder();
            // Dark at first whatever the polarity: the kernel applies active-low.
            req.on_chip(&addr.chip)
                .with_consumer(CONSUMER)
                .with_line(addr.offset)
                .as_output(Value::Inactive);
            if !l.active_high {
                req.as_active_low();
            }
            Ok(Some(request(&mut req, &addr)?))
        };
        let status = output(config.status_led)?;
        let viewers = output(config.viewers_led)?;
        let chips = used.join(", ");
        tracing::info!("GPIO through the character device: {chips}");
        Ok(Self {
            button,
            status,
            viewers,
            chips,
        })
    }
}

fn request(
    builder: &mut gpiocdev::request::Builder,
    addr: &LineAddr,
) -> Result<Request, GpioError> {
    builder.request().map_err(|e| GpioError::Chip {
        path: addr.chip.display().to_string(),
        detail: format!("line {}: {e}", addr.offset),
    })
}

impl Pins for CdevPins {
    fn button_pressed(&self) -> bool {
        self.button
            .as_ref()
            .and_then(|r| r.lone_value().ok())
            .is_some_and(|v| v == Value::Active)
    }

    fn watch_button(&self, edges: EdgeSender) -> Result<(), GpioError> {
        let Some(req) = &self.button else {
            return Ok(());
        };
        let path = req.chip_path().display().to_string();
        // SAFETY: `Line` holds the request (and so its descriptor) for as long as the
        // AsyncFd lives; nothing else closes or replaces that descriptor.
        let fd = unsafe {
            tokio::io::unix::AsyncFd::register_with_interest(
                Line(req.clone()),
                tokio::io::Interest::READABLE,
            )
        }
        .map_err(|e| GpioError::Chip {
            path: path.clone(),
            detail: format!("cannot wait for the button's events: {e}"),
        })?;
        tokio::spawn(async move {
            loop {
                let mut ready = tokio::select! {
                    _ = edges.closed() => return,
                    r = fd.readable() => match r {
                        Ok(guard) => guard,
                        Err(e) => {
                            tracing::warn!("{path}: the button's events stopped: {e}");
                            return;
                        }
                    },
                };
                let req = &fd.get_ref().0;
                loop {
                    match req.has_edge_event() {
                        Ok(true) => match req.read_edge_event() {
                            Ok(ev) => {
                                let _ = edges.try_send(Edge {
                                    pressed: ev.kind == EdgeKind::Rising,
                                    at: Duration::from_nanos(ev.timestamp_ns),
                                });
                            }
                            Err(e) => {
                                tracing::warn!("{path}: the button's events stopped: {e}");
                                return;
                            }
                        },
                        Ok(false) => {
                            ready.clear_ready();
                            break;
                        }
                        Err(e) => {
                            tracing::warn!("{path}: the button's events stopped: {e}");
                            return;
                        }
                    }
                }
            }
        });
        Ok(())
    }

    fn set_led(&self, led: Led, lit: bool) {
        let line = match led {
            Led::Status => &self.status,
            Led::Viewers => &self.viewers,
        };
        if let Some(req) = line {
            let value = if lit { Value::Active } else { Value::Inactive };
            if let Err(e) = req.set_lone_value(value) {
                tracing::debug!("{led:?} LED: {e}");
            }
        }
    }

    fn name(&self) -> &'static str {
        "gpiochip"
    }

    fn chip(&self) -> Option<String> {
        Some(self.chips.clone())
    }
}
