//! The camera's microphone: captured once and encoded once to Opus (20 ms packets, 48
//! kHz), published on the main hub's audio channel, where every WebRTC viewer whose offer
//! has audio and both RTSP mounts take it.
//!
//! It runs apart from the video: a microphone that is missing, fails or is unplugged is
//! retried with backoff (1 s doubling to 10 s) and never stops or delays a picture. While
//! no microphone delivers, the channel carries Opus silence every 20 ms, so RTSP clients
//! and viewers keep a live audio stream (an RTSP media cannot even be described without
//! its audio flowing) and RTP timestamps keep counting across the gap.
//!
//! The pure parts (finding the device, the pipeline description, the timestamps) are
//! separate from [`run`], which owns the GStreamer pipeline and the clock.

use crate::backoff::Backoff;
use crate::config::{AudioConfig, AudioSource};
use crate::fanout::Hub;
use crate::media::{AudioPacket, EncodedFrame};
use bytes::Bytes;
use serde::Serialize;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// Opus samples per second, and per 20 ms packet.
pub const RATE: u32 = 48_000;
pub const SAMPLES_PER_PACKET: u32 = 960;
const PACKET: Duration = Duration::from_millis(20);
/// A microphone silent this long (no packet) has stalled: restart it.
const STALL: Duration = Duration::from_secs(3);
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// One 20 ms Opus frame of silence (TOC 0xF8: CELT-only, fullband, 20 ms, mono), as
/// every Opus decoder reads it.
pub const SILENCE: [u8; 3] = [0xF8, 0xFF, 0xFE];

/// What `/api/status` shows of the microphone.
#[derive(Debug, Clone, Default, Serialize)]
pub struct AudioState {
    /// The configured source (`none`, `auto`, `test`, `alsa:…`).
    pub source: String,
    /// `off`, `starting`, `running`, `waiting` (no microphone yet) or `error`.
    pub state: &'static str,
    /// The ALSA device (or test source) in use or last tried.
    pub device: Option<String>,
    /// Why it is not running, when it is not.
    pub error: Option<String>,
    pub restarts: u64,
    /// Opus packets from the microphone since start (silence not counted).
    #[serde(skip)]
    pub packets: Arc<AtomicU64>,
}

impl AudioState {
    pub fn packets(&self) -> u64 {
        self.packets.load(Ordering::Relaxed)
    }
}

/// Why no microphone can be opened now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Absent(pub String);

/// The GStreamer source element for `source`, given the kernel's list of PCM devices
/// (`/proc/asound/pcm`: lines such as `01-00: USB Audio : USB Audio : capture 1`).
pub fn source_element(source: &AudioSource, pcm: &str) -> Result<(String, String), Absent> {
    match source {
        AudioSource::None => Err(Absent("audio is off".into())),
        AudioSource::Test => Ok((
            "audiotestsrc is-live=true wave=sine freq=440 volume=0.2 samplesperbuffer=960".into(),
            "test".into(),
        )),
        AudioSource::TestEnding(n) => Ok((
            format!(
                "audiotestsrc is-live=true wave=sine freq=440 volume=0.2 samplesperbuffer=960 \
                 num-buffers={n}"
            ),
            "test".into(),
        )),
        AudioSource::Alsa(device) => {
            if let Some(card) = card_of(device)
                && !card_present(&card, pcm)
            {
                return Err(Absent(format!("waiting for ALSA card {card} ({device})")));
            }
            Ok((format!("alsasrc device={device}"), device.clone()))
        }
        AudioSource::Auto => first_capture(pcm)
            .map(|d| (format!("alsasrc device={d}"), d))
            .ok_or_else(|| Absent("no microphone (no ALSA capture device)".into())),
    }
}

/// `plughw:CARD,DEV` for the first capture device in `pcm` (plughw converts the rate
/// and format the encoder wants).
fn first_capture(pcm: &str) -> Option<String> {
    pcm.lines().find_map(|line| {
        if !line.contains("capture") {
            return None;
        }
        let (card, dev) = line.split(':').next()?.trim().split_once('-')?;
        let (card, dev): (u32, u32) = (card.parse().ok()?, dev.parse().ok()?);
        Some(format!("plughw:{card},{dev}"))
    })
}

/// The card an ALSA device name refers to by number (`hw:1,0`, `plughw:1`,
/// `plughw:CARD=1`), if it names one that way; named cards are left to ALSA.
fn card_of(device: &str) -> Option<u32> {
    let rest = device.split_once(':')?.1;
    let first = rest.split(',').next()?;
    first.strip_prefix("CARD=").unwrap_or(first).parse().ok()
}

fn card_present(card: &u32, pcm: &str) -> bool {
    pcm.lines().any(|l| {
        l.split('-')
            .next()
            .and_then(|c| c.trim().parse::<u32>().ok())
            == Some(*card)
            && l.contains("capture")
    })
}

/// The pipeline: the source, mono at 48 kHz, Opus in 20 ms packets, into the appsink
/// the runner reads. A short leaky queue keeps a stalled encoder from building delay.
pub fn pipeline(element: &str, bitrate_kbps: u32) -> String {
    format!(
        "{element} ! queue max-size-time=200000000 max-size-buffers=0 max-size-bytes=0 \
         leaky=downstream ! audioconvert ! audioresample ! audio/x-raw,rate={RATE},channels=1 \
         ! opusenc bitrate={} frame-size=20 ! appsink name=sink sync=false max-buffers=50 \
         drop=true",
        bitrate_kbps * 1000
    )
}

/// RTP timestamps (48 kHz) that keep counting across pipeline runs and silence: each
/// run's packets keep their own spacing, and a run starts one packet after whatever
/// came last.
#[derive(Debug, Default, Clone)]
pub struct AudioClock {
    last: Option<u32>,
    /// For the current run: the timestamp its first packet got, and that packet's pts.
    run: Option<(u32, Duration)>,
}

impl AudioClock {
    /// A new pipeline run begins (its pts start again).
    pub fn new_run(&mut self) {
        self.run = None;
    }

    /// The timestamp of a pipeline packet at `pts`, and whether it starts a talkspurt
    /// (the RTP marker: the first after a gap).
    pub fn stamp(&mut self, pts: Duration) -> (u32, bool) {
        let (base, first_pts) = *self.run.get_or_insert_with(|| {
            (
                self.last.map_or(0, |l| l.wrapping_add(SAMPLES_PER_PACKET)),
                pts,
            )
        });
        let offset = pts.saturating_sub(first_pts).as_nanos() * u128::from(RATE) / 1_000_000_000;
        let ts = base.wrapping_add(offset as u32);
        let marker = self.last.is_none() || offset == 0;
        self.last = Some(ts);
        (ts, marker)
    }

    /// The timestamp of a silence packet, 20 ms after the last one.
    pub fn silence(&mut self) -> u32 {
        let ts = self.last.map_or(0, |l| l.wrapping_add(SAMPLES_PER_PACKET));
        self.last = Some(ts);
        self.run = None;
        ts
    }
}

/// Captures `config.source` into `hub.audio` until `stop`, reporting into `state`.
/// Packets go out only while `on_air()` (the camera is the presenter: a browser
/// presenter's own audio is not mixed with it). Returns at once when audio is off.
pub async fn run(
    mut settings: watch::Receiver<crate::config::Config>,
    hub: Arc<Hub>,
    on_air: Arc<dyn Fn() -> bool + Send + Sync>,
    state: watch::Sender<AudioState>,
    mut stop: watch::Receiver<bool>,
) {
    let mut config: AudioConfig = settings.borrow_and_update().audio.clone();
    let packets = state.borrow().packets.clone();
    let clock = Arc::new(std::sync::Mutex::new(AudioClock::default()));
    let mut backoff = Backoff::new(FIRST_BACKOFF, MAX_BACKOFF);
    let publish = {
        let hub = hub.clone();
        move |payload: Bytes, timestamp: u32, marker: bool| {
            if !on_air() {
                return;
            }
            // No receiver (no viewer, no RTSP client) is fine.
            let _ = hub.audio.send(Arc::new(AudioPacket {
                payload,
                timestamp,
                marker,
            }));
        }
    };
    loop {
        if *stop.borrow() {
            return;
        }
        if config.source == AudioSource::None {
            // Off until the settings turn it on.
            state.send_modify(|s| {
                s.state = "off";
                s.source = config.source.to_string();
                s.device = None;
                s.error = None;
            });
            tokio::select! {
                _ = stop.changed() => return,
                changed = settings.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    config = settings.borrow_and_update().audio.clone();
                    continue;
                }
            }
        }
        state.send_modify(|s| s.source = config.source.to_string());
        let pcm = std::fs::read_to_string("/proc/asound/pcm").unwrap_or_default();
        let outcome = match source_element(&config.source, &pcm) {
            Err(Absent(why)) => {
                state.send_modify(|s| {
                    s.state = "waiting";
                    s.error = Some(why);
                });
                None
            }
            Ok((element, device)) => {
                state.send_modify(|s| {
                    s.state = "starting";
                    s.device = Some(device);
                    s.error = None;
                });
                lock(&clock).new_run();
                let sink: Arc<dyn Fn(EncodedFrame) + Send + Sync> = {
                    let (clock, publish, packets, state) = (
                        clock.clone(),
                        publish.clone(),
                        packets.clone(),
                        state.clone(),
                    );
                    Arc::new(move |frame: EncodedFrame| {
                        let (ts, marker) = lock(&clock).stamp(frame.pts);
                        if packets.fetch_add(1, Ordering::Relaxed) == 0 || marker {
                            state.send_if_modified(|s| {
                                let changed = s.state != "running";
                                s.state = "running";
                                changed
                            });
                        }
                        publish(frame.data, ts, marker);
                    })
                };
                // Audio takes no keyframe requests.
                let (_keep, mut keyframes) = mpsc::channel::<()>(1);
                let stats = Arc::new(crate::encode::runner::RunStats::default());
                let mut stopped = stop.clone();
                let mut retuned = settings.clone();
                let before = config.clone();
                let description = pipeline(&element, config.bitrate_kbps);
                let running = crate::encode::runner::run(
                    &description,
                    sink,
                    &mut keyframes,
                    stats.clone(),
                    STALL,
                    // Ends on stop, or when the microphone's settings change.
                    async move {
                        tokio::select! {
                            _ = stopped.wait_for(|s| *s) => {}
                            _ = retuned.wait_for(|c| c.audio != before) => {}
                        }
                    },
                    Vec::new(),
                    None,
                );
                // Silence fills in until the microphone's first packet.
                let result = tokio::select! {
                    r = running => r,
                    never = fill_silence(&clock, &publish, &stats) => match never {},
                };
                if stats.frames.load(Ordering::Relaxed) > 0 {
                    backoff.reset();
                }
                Some(result)
            }
        };
        if *stop.borrow() {
            return;
        }
        let new = settings.borrow_and_update().audio.clone();
        if new != config {
            tracing::info!(source = %new.source, "microphone settings changed");
            config = new;
            backoff.reset();
            continue;
        }
        if let Some(Err(e)) = &outcome {
            tracing::warn!(source = %config.source, error = %e, "microphone failed; video goes on");
            state.send_modify(|s| {
                s.state = "error";
                s.error = Some(e.to_string());
            });
        } else if let Some(Ok(())) = outcome {
            // The pipeline ended without being asked: treat like a failure.
            state.send_modify(|s| s.state = "error");
        }
        let pause = backoff.next_pause();
        state.send_modify(|s| s.restarts += u64::from(outcome.is_some()));
        // While waiting: silence, so listeners keep a live stream.
        let wait = tokio::time::sleep(pause);
        tokio::pin!(wait);
        let mut tick = tokio::time::interval(PACKET);
        loop {
            tokio::select! {
                () = &mut wait => break,
                _ = stop.changed() => return,
                Ok(()) = settings.changed() => {
                    config = settings.borrow_and_update().audio.clone();
                    backoff.reset();
                    break;
                }
                _ = tick.tick() => {
                    let ts = lock(&clock).silence();
                    publish(Bytes::from_static(&SILENCE), ts, false);
                }
            }
        }
    }
}

/// Sends silence every 20 ms until the pipeline's first packet; then waits forever.
async fn fill_silence(
    clock: &std::sync::Mutex<AudioClock>,
    publish: &(impl Fn(Bytes, u32, bool) + Send + Sync),
    stats: &crate::encode::runner::RunStats,
) -> std::convert::Infallible {
    let mut tick = tokio::time::interval(PACKET);
    while stats.frames.load(Ordering::Relaxed) == 0 {
        tick.tick().await;
        if stats.frames.load(Ordering::Relaxed) == 0 {
            let ts = lock(clock).silence();
            publish(Bytes::from_static(&SILENCE), ts, false);
        }
    }
    std::future::pending().await
}

fn lock(m: &std::sync::Mutex<AudioClock>) -> std::sync::MutexGuard<'_, AudioClock> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    const PCM: &str = "00-00: bcm2835 HDMI 1 : bcm2835 HDMI 1 : playback 8\n\
                       01-00: USB Audio : USB Audio : playback 1 : capture 1\n";

    #[test]
    fn sources_become_elements_or_say_what_is_missing() {
        let (e, d) = source_element(&AudioSource::Auto, PCM).unwrap();
        assert_eq!(
            (e.as_str(), d.as_str()),
            ("alsasrc device=plughw:1,0", "plughw:1,0")
        );
        assert_eq!(
            source_element(&AudioSource::Auto, "00-00: HDMI : HDMI : playback 8\n"),
            Err(Absent("no microphone (no ALSA capture device)".into()))
        );
        assert_eq!(
            source_element(&AudioSource::Auto, ""),
            source_element(&AudioSource::Auto, "junk")
        );
        let alsa = |d: &str| source_element(&AudioSource::Alsa(d.into()), PCM);
        assert!(alsa("plughw:1,0").is_ok());
        assert!(alsa("hw:CARD=1,DEV=0").is_ok());
        assert_eq!(
            alsa("plughw:2,0"),
            Err(Absent("waiting for ALSA card 2 (plughw:2,0)".into()))
        );
        // Named cards and `default` are ALSA's to resolve.
        assert!(alsa("plughw:CARD=Device").is_ok() && alsa("default").is_ok());
        assert!(
            source_element(&AudioSource::TestEnding(5), "")
                .unwrap()
                .0
                .contains("num-buffers=5")
        );
        assert!(source_element(&AudioSource::None, PCM).is_err());
    }

    #[test]
    fn the_pipeline_encodes_mono_opus_in_20_ms() {
        let p = pipeline("audiotestsrc", 32);
        assert!(p.starts_with("audiotestsrc ! queue"));
        assert!(
            p.contains("rate=48000,channels=1")
                && p.contains("opusenc bitrate=32000 frame-size=20")
        );
        assert!(p.ends_with("drop=true") && p.contains("appsink name=sink"));
    }

    #[test]
    fn timestamps_count_on_across_runs_and_silence() {
        let mut c = AudioClock::default();
        c.new_run();
        let ms = Duration::from_millis;
        assert_eq!(c.stamp(ms(500)), (0, true));
        assert_eq!(c.stamp(ms(520)), (960, false));
        assert_eq!(
            c.stamp(ms(560)),
            (2880, false),
            "a lost packet keeps its gap"
        );
        assert_eq!(c.silence(), 3840);
        assert_eq!(c.silence(), 4800);
        // A new run (its pts from zero again) starts one packet on, marked.
        c.new_run();
        assert_eq!(c.stamp(ms(0)), (5760, true));
        assert_eq!(c.stamp(ms(20)), (6720, false));
    }

    #[test]
    fn sources_are_parsed_and_checked() {
        assert_eq!("none".parse::<AudioSource>(), Ok(AudioSource::None));
        assert_eq!(
            "alsa:plughw:1,0".parse::<AudioSource>(),
            Ok(AudioSource::Alsa("plughw:1,0".into()))
        );
        assert_eq!(
            "test:packets=50".parse::<AudioSource>(),
            Ok(AudioSource::TestEnding(50))
        );
        for bad in [
            "alsa:",
            "alsa:hw:0 ! filesink location=/etc/x",
            "mic",
            "test:packets=0",
            "alsa:\"x\"",
        ] {
            assert!(bad.parse::<AudioSource>().is_err(), "{bad}");
        }
        assert_eq!(AudioSource::Alsa("hw:1".into()).to_string(), "alsa:hw:1");
    }
}
