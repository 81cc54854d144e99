//! The camera supervisor's rules, free of I/O and of the clock: when the camera presents,
//! when its pipeline is (re)started, how long it waits after a failure. `app` drives it:
//! it turns channels, timers and pipeline runs into [`Event`]s and carries out the
//! [`Action`]s, so every transition is unit-tested here without GStreamer or sleeps.
//!
//! ```text
//!   Off ──on──► Claiming ──claimed──► Running ◄──────────────┐
//!    ▲             │ ▲                 │  │ restart asked     │ backoff over,
//!    │        taken│ │free             │  └──► Running        │ device back
//!    │             ▼ │                 │ failed               │
//!    ├──off── WaitingForPresenter      └──────► Backoff ──────┘
//!    └──────────────────── off (releases the presenter) ──┘
//! ```

use crate::backoff::Backoff;
use crate::encode::RunStats;
use serde::Serialize;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// The camera pipeline's condition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase", tag = "state", content = "detail")]
pub enum Pipeline {
    Starting,
    Running,
    /// Failed; being restarted after the backoff shown.
    Error(String),
    Stopped,
}

/// The camera as its supervisor last reported it (read by the status page, the LEDs and
/// the watchdog).
#[derive(Debug, Clone)]
pub struct CameraState {
    pub pipeline: Pipeline,
    /// Seconds of the current pause after a failure (0 otherwise).
    pub backoff_s: u64,
    /// Pipeline restarts since the daemon started.
    pub restarts: u64,
    /// What the current (or last) run captures from and encodes with.
    pub source: String,
    pub encoder: String,
    /// The current (or last) run's counters.
    pub run: Arc<RunStats>,
    /// Its VP8 branch's counters, when it has one.
    pub vp8_run: Option<Arc<RunStats>>,
    /// The sub-stream branch's counters, when the run has one.
    pub sub_run: Option<Arc<RunStats>>,
}

impl Default for CameraState {
    fn default() -> Self {
        Self {
            pipeline: Pipeline::Stopped,
            backoff_s: 0,
            restarts: 0,
            source: String::new(),
            encoder: String::new(),
            run: Arc::default(),
            vp8_run: None,
            sub_run: None,
        }
    }
}

/// A run that lasted this long resets the backoff.
pub const HEALTHY_RUN: Duration = Duration::from_secs(30);
pub const FIRST_BACKOFF: Duration = Duration::from_secs(1);
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    /// The camera is switched off.
    Off,
    /// Switched on; asking for the presenter slot.
    Claiming,
    /// Switched on while someone else presents: waiting for the slot to be free.
    WaitingForPresenter,
    /// Presenting; a pipeline is starting or running.
    Running,
    /// Presenting; the pipeline failed and is restarted after a pause, or as soon as the
    /// camera it waits for is back.
    Backoff { waiting_for: Option<PathBuf> },
    /// The daemon is stopping.
    Done,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The on/off switch (button, API) says this now.
    Switched(bool),
    /// The presenter slot was seen free.
    PresenterFree,
    /// How the claim asked for by [`Action::Claim`] went.
    Claimed(bool),
    /// The pipeline run started by [`Action::StartPipeline`] ended.
    RunEnded { outcome: Outcome, ran_for: Duration },
    /// The pause of [`Action::Sleep`] is over.
    BackoffOver,
    /// The camera the failed run waited for can be opened again.
    DeviceBack,
    /// The daemon is stopping.
    Stop,
}

/// Why a pipeline run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Ended on purpose with the camera still on: a restart was asked for (long press) or
    /// a camera appeared while `auto` showed the test pattern. Reopened at once.
    Restart,
    /// The camera was switched off.
    SwitchedOff,
    /// The pipeline failed; `waiting_for` names a configured camera that is absent.
    Failed {
        reason: String,
        waiting_for: Option<PathBuf>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Try to become the presenter; answer with [`Event::Claimed`].
    Claim,
    /// Give the presenter slot back (viewers are told).
    Release,
    /// Resolve the source and run a pipeline; answer with [`Event::RunEnded`].
    StartPipeline,
    /// Show the pipeline's state (with the backoff in seconds when failed).
    Report(Pipeline, u64),
    /// Count one more pipeline restart.
    CountRestart,
    /// Pause, then answer with [`Event::BackoffOver`].
    Sleep(Duration),
}

#[derive(Debug)]
pub struct Supervisor {
    state: State,
    /// The pause after the next failure: doubles up to MAX_BACKOFF, back to the first
    /// after a healthy run or a camera coming back.
    backoff: Backoff,
}

impl Default for Supervisor {
    fn default() -> Self {
        Self::new()
    }
}

impl Supervisor {
    pub fn new() -> Self {
        Self {
            state: State::Off,
            backoff: Backoff::new(FIRST_BACKOFF, MAX_BACKOFF),
        }
    }

    pub fn state(&self) -> &State {
        &self.state
    }

    fn presenting(&self) -> bool {
        matches!(self.state, State::Running | State::Backoff { .. })
    }

    fn start(&mut self) -> Vec<Action> {
        self.state = State::Running;
        vec![Action::Report(Pipeline::Starting, 0), Action::StartPipeline]
    }

    fn off(&mut self, release: bool) -> Vec<Action> {
        self.state = State::Off;
        let mut out = vec![];
        if release {
            out.push(Action::Release);
        }
        out.push(Action::Report(Pipeline::Stopped, 0));
        out
    }

    /// The next state and what to do for `event`. Events that do not apply to the
    /// current state change nothing.
    pub fn handle(&mut self, event: Event) -> Vec<Action> {
        use State as S;
        match (&self.state, event) {
            (S::Done, _) => vec![],
            (_, Event::Stop) => {
                let release = self.presenting();
                let out = self.off(release);
                self.state = S::Done;
                out
            }
            (S::Off, Event::Switched(true)) => {
                self.state = S::Claiming;
                vec![Action::Claim]
            }
            (S::Claiming, Event::Claimed(true)) => self.start(),
            (S::Claiming, Event::Claimed(false)) => {
                self.state = S::WaitingForPresenter;
                vec![]
            }
            (S::WaitingForPresenter, Event::PresenterFree) => {
                self.state = S::Claiming;
                vec![Action::Claim]
            }
            (S::WaitingForPresenter | S::Claiming, Event::Switched(false)) => self.off(false),
            (S::Running, Event::RunEnded { outcome, ran_for }) => match outcome {
                Outcome::SwitchedOff => self.off(true),
                Outcome::Restart => {
                    let mut out = vec![Action::CountRestart];
                    out.extend(self.start());
                    out
                }
                Outcome::Failed {
                    reason,
                    waiting_for,
                } => {
                    if ran_for >= HEALTHY_RUN {
                        self.backoff.reset();
                    }
                    let pause = self.backoff.next_pause();
                    self.state = S::Backoff { waiting_for };
                    vec![
                        Action::CountRestart,
                        Action::Report(Pipeline::Error(reason), pause.as_secs()),
                        Action::Sleep(pause),
                    ]
                }
            },
            (S::Backoff { .. }, Event::BackoffOver) => self.start(),
            (
                S::Backoff {
                    waiting_for: Some(_),
                },
                Event::DeviceBack,
            ) => {
                self.backoff.reset();
                self.start()
            }
            (S::Backoff { .. }, Event::Switched(false)) => self.off(true),
            _ => vec![],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failed(reason: &str) -> Event {
        Event::RunEnded {
            outcome: Outcome::Failed {
                reason: reason.into(),
                waiting_for: None,
            },
            ran_for: Duration::from_secs(2),
        }
    }

    fn running() -> Supervisor {
        let mut s = Supervisor::new();
        assert_eq!(s.handle(Event::Switched(true)), vec![Action::Claim]);
        assert_eq!(
            s.handle(Event::Claimed(true)),
            vec![Action::Report(Pipeline::Starting, 0), Action::StartPipeline]
        );
        assert_eq!(s.state(), &State::Running);
        s
    }

    #[test]
    fn switched_on_it_claims_and_starts() {
        running();
    }

    #[test]
    fn another_presenter_is_waited_for_and_its_leaving_wakes_the_camera() {
        let mut s = Supervisor::new();
        s.handle(Event::Switched(true));
        assert_eq!(s.handle(Event::Claimed(false)), vec![]);
        assert_eq!(s.state(), &State::WaitingForPresenter);
        assert_eq!(s.handle(Event::PresenterFree), vec![Action::Claim]);
        assert_eq!(s.state(), &State::Claiming);
        // Someone else got there first again: back to waiting, never to Off.
        s.handle(Event::Claimed(false));
        assert_eq!(s.state(), &State::WaitingForPresenter);
        s.handle(Event::PresenterFree);
        s.handle(Event::Claimed(true));
        assert_eq!(s.state(), &State::Running);
    }

    #[test]
    fn switched_off_while_waiting_or_presenting() {
        let mut s = Supervisor::new();
        s.handle(Event::Switched(true));
        s.handle(Event::Claimed(false));
        assert_eq!(
            s.handle(Event::Switched(false)),
            vec![Action::Report(Pipeline::Stopped, 0)]
        );
        assert_eq!(s.state(), &State::Off);
        let mut s = running();
        let off = Event::RunEnded {
            outcome: Outcome::SwitchedOff,
            ran_for: Duration::from_secs(100),
        };
        assert_eq!(
            s.handle(off),
            vec![Action::Release, Action::Report(Pipeline::Stopped, 0)]
        );
        assert_eq!(s.state(), &State::Off);
        // And on again.
        assert_eq!(s.handle(Event::Switched(true)), vec![Action::Claim]);
    }

    #[test]
    fn a_requested_restart_reopens_at_once() {
        let mut s = running();
        let restart = Event::RunEnded {
            outcome: Outcome::Restart,
            ran_for: Duration::from_secs(1),
        };
        assert_eq!(
            s.handle(restart),
            vec![
                Action::CountRestart,
                Action::Report(Pipeline::Starting, 0),
                Action::StartPipeline
            ]
        );
    }

    #[test]
    fn failures_back_off_doubling_to_the_cap_and_a_healthy_run_resets() {
        let mut s = running();
        let mut pauses = vec![];
        for _ in 0..7 {
            let out = s.handle(failed("gone"));
            assert_eq!(out[0], Action::CountRestart);
            assert_eq!(
                out[1],
                Action::Report(
                    Pipeline::Error("gone".into()),
                    match out[2] {
                        Action::Sleep(d) => d.as_secs(),
                        _ => panic!("{out:?}"),
                    }
                )
            );
            if let Action::Sleep(d) = out[2] {
                pauses.push(d.as_secs());
            }
            assert!(matches!(s.state(), State::Backoff { .. }));
            assert_eq!(
                s.handle(Event::BackoffOver).last(),
                Some(&Action::StartPipeline)
            );
        }
        assert_eq!(pauses, vec![1, 2, 4, 8, 16, 30, 30]);
        // A run that lasted is healthy: the next pause is the first again.
        let out = s.handle(Event::RunEnded {
            outcome: Outcome::Failed {
                reason: "x".into(),
                waiting_for: None,
            },
            ran_for: HEALTHY_RUN,
        });
        assert_eq!(out[2], Action::Sleep(FIRST_BACKOFF));
    }

    #[test]
    fn an_absent_camera_is_started_the_moment_it_is_back() {
        let mut s = running();
        for _ in 0..3 {
            s.handle(failed("x"));
            s.handle(Event::BackoffOver);
        }
        let waiting = Event::RunEnded {
            outcome: Outcome::Failed {
                reason: "waiting for /dev/v4l/by-id/cam".into(),
                waiting_for: Some("/dev/v4l/by-id/cam".into()),
            },
            ran_for: Duration::from_millis(10),
        };
        assert_eq!(
            s.handle(waiting.clone())[2],
            Action::Sleep(Duration::from_secs(8))
        );
        assert_eq!(
            s.handle(Event::DeviceBack),
            vec![Action::Report(Pipeline::Starting, 0), Action::StartPipeline]
        );
        // ...and the backoff starts over.
        assert_eq!(s.handle(waiting)[2], Action::Sleep(FIRST_BACKOFF));
        // Without a camera to wait for, a device event changes nothing.
        let mut s = running();
        s.handle(failed("x"));
        assert_eq!(s.handle(Event::DeviceBack), vec![]);
    }

    #[test]
    fn switched_off_during_the_backoff_releases() {
        let mut s = running();
        s.handle(failed("x"));
        assert_eq!(
            s.handle(Event::Switched(false)),
            vec![Action::Release, Action::Report(Pipeline::Stopped, 0)]
        );
        assert_eq!(
            s.handle(Event::BackoffOver),
            vec![],
            "a stale timer does nothing"
        );
    }

    #[test]
    fn stop_releases_only_a_held_presenter_and_ends_everything() {
        let mut s = running();
        assert_eq!(
            s.handle(Event::Stop),
            vec![Action::Release, Action::Report(Pipeline::Stopped, 0)]
        );
        assert_eq!(s.state(), &State::Done);
        assert_eq!(s.handle(Event::Switched(true)), vec![]);
        let mut s = Supervisor::new();
        s.handle(Event::Switched(true));
        s.handle(Event::Claimed(false));
        assert_eq!(
            s.handle(Event::Stop),
            vec![Action::Report(Pipeline::Stopped, 0)]
        );
    }
}
