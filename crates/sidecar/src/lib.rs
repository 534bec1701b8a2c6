//! # apparate-sidecar
//!
//! The process a platform team runs beside its model server. It speaks the `apparate.v1`
//! `Control` protocol as a client: learns the model and its latency profile from
//! `Describe`, watches every served request on `StreamFeedback`, runs the
//! [`apparate_controller::Controller`] over 64-request chunks, and pushes each new
//! `ExitConfig` on `StreamConfig`, one at a time, waiting for its ACK or NACK. It renews the
//! config's lease, reconnects with capped, jittered exponential backoff, and explains every
//! chunk and decision as OpenTelemetry spans and metrics. No libtorch: it can drive any
//! server that implements `docs/protocol.md`.
//!
//! * [`config`] — `configs/sidecar.yaml`: parsed, defaulted in one place, validated.
//! * [`cli`] — `apparate-sidecar run | replay` (also embeddable as `apparate sidecar`).
//! * [`live`] — the control loop: [`live::run`] with a shutdown future, for tests too.
//! * [`convert`] — protocol messages to and from controller types.
//! * [`observe`] — chunk and decision spans, the push span, metrics.
//! * [`backoff`] — reconnect delays.
//! * [`replay_table`] — the standalone replay over a recorded trace.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod backoff;
pub mod cli;
pub mod config;
pub mod convert;
mod error;
pub mod live;
pub mod observe;
mod push;
pub mod replay_table;

pub use cli::{SidecarArgs, run_cli};
pub use config::SidecarConfig;
pub use error::SidecarError;
pub use live::{RunStats, run};
