//! The early-exit inference engine on libtorch (`tch`).
//!
//! This crate owns everything that touches tensors: the serving device, the
//! data sets, and (as they land) the model families with their ramp cut points,
//! ramp training, latency profiling and bundles. The server and CLI build on it;
//! the controller and sidecar never do, so they stay free of libtorch.

pub mod data;
pub mod device;
mod error;

pub use error::{EngineError, Result};
