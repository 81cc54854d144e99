//! Encode: build the GStreamer pipeline (pure, in `pipeline`) and run it (`runner`),
//! handing each H.264 access unit to a sink and forcing IDRs on request (`pacer`).

pub mod pacer;
pub mod pipeline;
pub mod runner;

pub use pipeline::{EncodeSettings, Encoder};
pub use runner::{BranchOutput, EncodeError, RunStats, has_element, run};
