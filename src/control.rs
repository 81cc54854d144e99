//! Commands that start and stop the stream. The button, the long press and the HTTP API
//! all go through here, so they behave the same; the choice survives a restart.

use crate::config::LongPressAction;
use std::path::PathBuf;
use tokio::sync::watch;

/// What the button or the API asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Start,
    Stop,
    Toggle,
    /// The button was held for the long-press time.
    LongPress,
}

/// Holds the camera's on/off switch and the pipeline restart counter.
pub struct Control {
    camera_on: watch::Sender<bool>,
    /// Bumped to make the camera pipeline close and reopen.
    restart: watch::Sender<u64>,
    long_press: LongPressAction,
    state_file: PathBuf,
    /// Where a reboot or power-off request is written for `edgecam-power.path` (systemd's
    /// `$RUNTIME_DIRECTORY`); None off systemd, where `systemctl` is asked directly.
    power_dir: Option<PathBuf>,
}

/// The request file `edgecam-power.path` watches, in the runtime directory.
pub const POWER_REQUEST: &str = "power-request";

/// The file in the state directory that remembers whether streaming is on.
pub const STATE_FILE: &str = "streaming";

impl Control {
    /// `autostart` applies only when no choice was remembered in `state_dir`.
    pub fn new(autostart: bool, state_dir: PathBuf, long_press: LongPressAction) -> Self {
        let state_file = state_dir.join(STATE_FILE);
        let on = match std::fs::read_to_string(&state_file) {
            Ok(s) if s.trim() == "on" => true,
            Ok(s) if s.trim() == "off" => false,
            Ok(other) => {
                tracing::warn!(
                    "{}: unexpected {other:?}; using camera.autostart",
                    state_file.display()
                );
                autostart
            }
            Err(_) => autostart,
        };
        Self {
            camera_on: watch::channel(on).0,
            restart: watch::channel(0).0,
            long_press,
            state_file,
            power_dir: std::env::var_os("RUNTIME_DIRECTORY").map(PathBuf::from),
        }
    }

    /// Power requests go to `dir` (tests; the service gets it from systemd).
    pub fn with_power_dir(mut self, dir: Option<PathBuf>) -> Self {
        self.power_dir = dir;
        self
    }

    pub fn camera_on(&self) -> watch::Receiver<bool> {
        self.camera_on.subscribe()
    }

    pub fn restarts(&self) -> watch::Receiver<u64> {
        self.restart.subscribe()
    }

    pub fn is_on(&self) -> bool {
        *self.camera_on.borrow()
    }

    /// Applies a command; returns whether streaming is on afterwards.
    pub fn apply(&self, cmd: Command) -> bool {
        let on = match cmd {
            Command::Start => true,
            Command::Stop => false,
            Command::Toggle => !self.is_on(),
            Command::LongPress => {
                self.long_press_action();
                return self.is_on();
            }
        };
        tracing::info!(command = ?cmd, streaming = on, "stream control");
        self.camera_on
            .send_if_modified(|cur| std::mem::replace(cur, on) != on);
        self.remember(on);
        on
    }

    /// Switches off without remembering it (daemon shutdown).
    pub fn shutdown(&self) {
        let _ = self.camera_on.send(false);
    }

    /// Written whole or not at all (a temporary file, then a rename): a power cut while
    /// the button is pressed must not leave an empty file behind.
    fn remember(&self, on: bool) {
        let text: &[u8] = if on { b"on\n" } else { b"off\n" };
        let written = crate::atomic_file::write(&self.state_file, text, 0o644);
        if let Err(e) = written {
            tracing::warn!(
                "cannot remember the stream state in {}: {e}",
                self.state_file.display()
            );
        }
    }

    fn long_press_action(&self) {
        tracing::info!(action = ?self.long_press, "long press");
        match self.long_press {
            LongPressAction::None => {}
            LongPressAction::Restart => {
                self.restart.send_modify(|n| *n += 1);
            }
            LongPressAction::Reboot | LongPressAction::Poweroff => {
                let verb = if self.long_press == LongPressAction::Reboot {
                    "reboot"
                } else {
                    "poweroff"
                };
                request_power(verb, self.power_dir.as_deref());
            }
        }
    }
}

/// Asks for a reboot or power-off. The service may not do it itself (unprivileged, no
/// new privileges): it writes the word for `edgecam-power.path`, whose root service acts
/// on it. Elsewhere `systemctl` is asked, and a refusal is logged rather than lost.
fn request_power(verb: &'static str, dir: Option<&std::path::Path>) {
    if let Some(dir) = dir {
        let path = dir.join(POWER_REQUEST);
        match std::fs::write(&path, verb) {
            Ok(()) => tracing::info!("{verb} requested ({})", path.display()),
            Err(e) => tracing::error!("cannot request {verb} in {}: {e}", path.display()),
        }
        return;
    }
    match std::process::Command::new("systemctl").arg(verb).spawn() {
        Ok(mut child) => {
            // Reaped off the async workers; its verdict is the only sign of a refusal.
            std::thread::spawn(move || match child.wait() {
                Ok(status) if status.success() => {}
                Ok(status) => tracing::error!("systemctl {verb} refused ({status})"),
                Err(e) => tracing::error!("systemctl {verb}: {e}"),
            });
        }
        Err(e) => tracing::error!("systemctl {verb}: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_toggle_and_the_choice_survives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let c = Control::new(true, dir.path().into(), LongPressAction::Restart);
        assert!(c.is_on(), "autostart with nothing remembered");
        assert!(!c.apply(Command::Toggle));
        assert!(!c.apply(Command::Stop));
        let again = Control::new(true, dir.path().into(), LongPressAction::Restart);
        assert!(!again.is_on(), "remembered off beats autostart");
        assert!(again.apply(Command::Start));
        assert!(Control::new(false, dir.path().into(), LongPressAction::None).is_on());
    }

    #[test]
    fn long_press_reboot_is_written_for_the_power_unit() {
        let state = tempfile::tempdir().unwrap();
        let run = tempfile::tempdir().unwrap();
        for (action, word) in [
            (LongPressAction::Reboot, "reboot"),
            (LongPressAction::Poweroff, "poweroff"),
        ] {
            let c = Control::new(true, state.path().into(), action)
                .with_power_dir(Some(run.path().into()));
            assert!(c.apply(Command::LongPress), "streaming is untouched");
            let written = std::fs::read_to_string(run.path().join(POWER_REQUEST)).unwrap();
            assert_eq!(written, word);
        }
    }

    #[test]
    fn long_press_restart_bumps_the_counter_and_keeps_streaming() {
        let dir = tempfile::tempdir().unwrap();
        let c = Control::new(true, dir.path().into(), LongPressAction::Restart);
        let r = c.restarts();
        assert!(c.apply(Command::LongPress));
        assert_eq!(*r.borrow(), 1);
    }

    #[test]
    fn an_unwritable_state_dir_is_not_fatal() {
        let c = Control::new(
            true,
            "/proc/edgecam-cannot-write-here".into(),
            LongPressAction::None,
        );
        assert!(!c.apply(Command::Stop));
    }
}
