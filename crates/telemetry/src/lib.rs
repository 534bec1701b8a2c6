//! # apparate-telemetry
//!
//! One place for observability setup, shared by the server and the sidecar: `tracing` logs
//! (human or JSON, to stderr), OpenTelemetry spans and metrics exported over OTLP/gRPC, and
//! W3C trace-context propagation across process boundaries.
//!
//! * [`init`] installs the global `tracing` subscriber and, when an OTLP endpoint is
//!   configured ([`TelemetryConfig::otlp_endpoint`], else the standard
//!   `OTEL_EXPORTER_OTLP_ENDPOINT`), a batch span exporter and a periodic metrics reader.
//!   With no endpoint nothing is exported and [`meter`] hands out no-op instruments.
//! * [`inject_context`] / [`set_parent_from`] carry a span's context in a string map (gRPC
//!   metadata, `ConfigUpdate.trace_context`), so one trace spans sidecar and server.
//! * [`names`] holds every metric name and span attribute key, so dashboards, tests and
//!   both processes agree on them.
//! * With the `test-support` feature, `receiver::OtlpReceiver` is a real OTLP collector on
//!   `127.0.0.1:0` that records what it receives.
//!
//! ## Runtime requirements
//!
//! The OTLP exporter talks gRPC through tonic, whose channel lives on the Tokio runtime
//! that is current when [`init`] runs. So: call [`init`] **inside a multi-threaded Tokio
//! runtime** (e.g. within `Runtime::block_on` or `#[tokio::main]`), keep that runtime alive
//! until [`TelemetryGuard::shutdown`] returns, and shut down *before* dropping the runtime.
//! Spans are exported from a background thread, so exporting never blocks async tasks.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod config;
mod context;
mod init;
pub mod names;
#[cfg(feature = "test-support")]
pub mod receiver;

pub use config::{LogFormat, TelemetryConfig};
pub use context::{inject_context, set_parent_from};
pub use init::{TelemetryError, TelemetryGuard, init, meter};
