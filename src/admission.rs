//! Who may present and who may watch, in one place every transport goes through (the
//! Kurento WebSocket, WHEP, WHIP, the camera itself): the one-presenter rule, the
//! presenter generation, `viewers.max`, and who reads the keyframe requests. A lease's
//! drop releases what it holds; a transport only maps a [`Refusal`] to its wire form.

use serde::Serialize;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use tokio::sync::watch;

/// Who is presenting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Presenter {
    /// Nobody: viewers are told `stopCommunication` and wait.
    None,
    /// The appliance's own camera pipeline.
    Camera,
    /// A browser (or other WebRTC client) relayed through the appliance.
    Browser,
}

/// Why a viewer or presenter was not let in.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("no active presenter")]
    NoPresenter,
    #[error("too many viewers: this camera serves at most {max} at once")]
    Full { max: usize },
    #[error("another presenter is active ({})", match .by {
        Presenter::Camera => "the camera is streaming",
        _ => "a browser is presenting",
    })]
    Taken { by: Presenter },
    #[error("the camera is shutting down")]
    Closing,
}

/// The admission service, shared by every transport.
#[derive(Debug)]
pub struct Admission {
    presenter: watch::Sender<Presenter>,
    /// How many presenters have stopped. A viewer remembers the count it joined under:
    /// once the count moves on, its presenter is gone, even when another has taken over
    /// before the viewer heard of the change.
    ended: AtomicU64,
    /// Viewers holding a lease (connected or connecting).
    viewers: watch::Sender<usize>,
    /// `viewers.max`; the settings page may change it (viewers already in stay).
    max: std::sync::atomic::AtomicUsize,
    /// Whether the current presenter sends audio (viewers then get an audio track).
    audio: AtomicBool,
    /// Set at shutdown: nobody presents any more.
    closed: AtomicBool,
}

impl Admission {
    pub fn new(viewers_max: usize) -> Arc<Self> {
        Arc::new(Self {
            presenter: watch::channel(Presenter::None).0,
            ended: AtomicU64::new(0),
            viewers: watch::channel(0).0,
            max: std::sync::atomic::AtomicUsize::new(viewers_max),
            audio: AtomicBool::new(false),
            closed: AtomicBool::new(false),
        })
    }

    /// A place among `viewers.max` under the current presenter.
    pub fn join_viewer(self: &Arc<Self>) -> Result<ViewerLease, Refusal> {
        // The generation is read before the presenter is checked: a presenter that ends
        // in between then counts as gone for this viewer.
        let generation = self.ended.load(Ordering::Acquire);
        if self.presenter() == Presenter::None {
            return Err(Refusal::NoPresenter);
        }
        let max = self.max.load(Ordering::Acquire);
        let mut full = false;
        self.viewers.send_if_modified(|n| {
            full = *n >= max;
            if !full {
                *n += 1;
            }
            !full
        });
        if full {
            return Err(Refusal::Full { max });
        }
        Ok(ViewerLease {
            admission: self.clone(),
            generation,
        })
    }

    /// Becomes the presenter if nobody is. `audio`: whether it sends audio.
    pub fn present(
        self: &Arc<Self>,
        who: Presenter,
        audio: bool,
    ) -> Result<PresenterLease, Refusal> {
        if self.closed.load(Ordering::Acquire) {
            return Err(Refusal::Closing);
        }
        let mut by = Presenter::None;
        let claimed = self.presenter.send_if_modified(|cur| {
            by = *cur;
            if *cur == Presenter::None {
                *cur = who;
                true
            } else {
                false
            }
        });
        if !claimed {
            return Err(Refusal::Taken { by });
        }
        self.audio.store(audio, Ordering::Release);
        Ok(PresenterLease {
            admission: self.clone(),
            who,
        })
    }

    /// The daemon is stopping: nobody presents from now on, and every viewer is told.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.presenter.send_if_modified(|cur| {
            let was = std::mem::replace(cur, Presenter::None);
            if was != Presenter::None {
                self.ended.fetch_add(1, Ordering::AcqRel);
            }
            was != Presenter::None
        });
        self.audio.store(false, Ordering::Release);
    }

    fn release(&self, who: Presenter) {
        let released = self.presenter.send_if_modified(|cur| {
            if *cur == who {
                *cur = Presenter::None;
                // Counted before viewers are woken, so each sees it.
                self.ended.fetch_add(1, Ordering::AcqRel);
                true
            } else {
                false
            }
        });
        if released {
            self.audio.store(false, Ordering::Release);
        }
    }

    pub fn presenter(&self) -> Presenter {
        *self.presenter.borrow()
    }

    /// Wakes on every change of presenter.
    pub fn watch_presenter(&self) -> watch::Receiver<Presenter> {
        self.presenter.subscribe()
    }

    pub fn viewers(&self) -> usize {
        *self.viewers.borrow()
    }

    /// Wakes on every change of the viewer count.
    pub fn watch_viewers(&self) -> watch::Receiver<usize> {
        self.viewers.subscribe()
    }

    /// A new `viewers.max`, for viewers joining from now on.
    pub fn set_viewers_max(&self, max: usize) {
        self.max.store(max, Ordering::Release);
    }

    pub fn viewers_max(&self) -> usize {
        self.max.load(Ordering::Acquire)
    }

    /// Whether the current presenter sends audio.
    pub fn presenter_audio(&self) -> bool {
        self.audio.load(Ordering::Acquire)
    }
}

/// A viewer's place; dropping it frees the place.
#[derive(Debug)]
pub struct ViewerLease {
    admission: Arc<Admission>,
    /// The presenter generation it joined under.
    generation: u64,
}

impl ViewerLease {
    /// Whether the presenter this viewer joined under has stopped since (even if another
    /// took over at once).
    pub fn presenter_gone(&self) -> bool {
        self.admission.ended.load(Ordering::Acquire) != self.generation
            || self.admission.presenter() == Presenter::None
    }
}

impl Drop for ViewerLease {
    fn drop(&mut self) {
        self.admission
            .viewers
            .send_modify(|n| *n = n.saturating_sub(1));
    }
}

/// The presenter slot; dropping it gives the slot back (viewers are then told).
#[derive(Debug)]
pub struct PresenterLease {
    admission: Arc<Admission>,
    who: Presenter,
}

impl Drop for PresenterLease {
    fn drop(&mut self) {
        self.admission.release(self.who);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admission(max: usize) -> Arc<Admission> {
        Admission::new(max)
    }

    #[test]
    fn exactly_one_presenter_at_a_time() {
        let a = admission(4);
        let browser = a.present(Presenter::Browser, true).unwrap();
        assert!(a.presenter_audio());
        assert_eq!(
            a.present(Presenter::Camera, false).err(),
            Some(Refusal::Taken {
                by: Presenter::Browser
            })
        );
        assert_eq!(a.presenter(), Presenter::Browser);
        drop(browser);
        assert_eq!(a.presenter(), Presenter::None);
        assert!(!a.presenter_audio());
        let _camera = a.present(Presenter::Camera, false).unwrap();
        assert_eq!(
            a.present(Presenter::Browser, false)
                .err()
                .unwrap()
                .to_string(),
            "another presenter is active (the camera is streaming)"
        );
    }

    #[test]
    fn a_viewer_needs_a_presenter_and_a_free_place() {
        let a = admission(2);
        assert_eq!(a.join_viewer().err(), Some(Refusal::NoPresenter));
        let _p = a.present(Presenter::Camera, false).unwrap();
        let v1 = a.join_viewer().unwrap();
        let _v2 = a.join_viewer().unwrap();
        assert_eq!(a.join_viewer().err(), Some(Refusal::Full { max: 2 }));
        assert_eq!(a.viewers(), 2);
        drop(v1);
        assert_eq!(a.viewers(), 1);
        assert!(a.join_viewer().is_ok(), "a freed place is taken again");
    }

    #[test]
    fn a_presenter_replaced_at_once_still_counts_as_gone() {
        let a = admission(4);
        let browser = a.present(Presenter::Browser, false).unwrap();
        let joined = a.join_viewer().unwrap();
        assert!(!joined.presenter_gone());
        // The browser leaves and the camera takes over before the viewer looks.
        drop(browser);
        let _camera = a.present(Presenter::Camera, false).unwrap();
        assert!(joined.presenter_gone(), "its presenter is gone");
        let rejoined = a.join_viewer().unwrap();
        assert!(!rejoined.presenter_gone());
        a.close();
        assert!(rejoined.presenter_gone(), "shutdown ends it too");
        assert_eq!(
            a.present(Presenter::Browser, false).err(),
            Some(Refusal::Closing)
        );
    }

    #[test]
    fn a_stale_lease_cannot_end_its_successor() {
        let a = admission(4);
        let camera = a.present(Presenter::Camera, false).unwrap();
        a.close();
        drop(camera);
        assert_eq!(a.presenter(), Presenter::None);
        let mut rx = a.watch_presenter();
        rx.borrow_and_update();
        assert!(!rx.has_changed().unwrap(), "no second change at the drop");
    }
}
