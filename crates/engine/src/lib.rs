//! The early-exit inference engine on libtorch (`tch`).
//!
//! This crate owns everything that touches tensors: the serving device, the
//! data sets, and (as they land) the model families with their ramp cut points,
//! ramp training, latency profiling and bundles. The server and CLI build on it;
//! the controller and sidecar never do, so they stay free of libtorch.

pub mod bundle;
pub mod data;
pub mod device;
mod early_exit;
mod error;
mod evaluate;
pub mod minilm;
pub mod model;
pub mod prepare;
pub mod profiler;
pub mod text;
pub mod train;
pub mod workload;

pub use bundle::{Bundle, InputSpec, Manifest};
pub use early_exit::{Architecture, EarlyExitModel};
pub use error::{EngineError, Result};
pub use evaluate::{AccuracyReport, RampReport, evaluate};
