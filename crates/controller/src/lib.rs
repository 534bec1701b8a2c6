//! # apparate-controller
//!
//! The brain of Apparate-rs, as pure synchronous Rust: given per-request feedback from an
//! early-exit model (each active ramp's prediction and confidence, plus the final
//! prediction that every request still computes), decide **which ramps are active and at
//! which confidence thresholds inputs exit**, so that accuracy versus the original model
//! stays within a budget while latency falls as far as possible.
//!
//! The one idea: *the final output is a free label*. Every chunk of feedback tells us
//! exactly what any threshold setting would have done, so tuning is an exact,
//! cheap optimisation over recent data rather than guesswork.
//!
//! * [`record`], [`profile`], [`exit_config`] — the data: feedback, latency profile, and the
//!   versioned config with the one exit rule (`confidence > threshold`; `1.0` = never exit).
//! * [`accounting`] — per-chunk accuracy, exit rates, profile-based saving, observed latency.
//! * [`window`], [`tuner`] — threshold tuning: Apparate's greedy reproduction and our exact
//!   search over confidence values, with an optional statistical (Clopper–Pearson) bound.
//! * [`planner`] — ramp utilities and ramp activation/removal within a cost budget.
//! * [`controller`] — the policy loop with explained [`decision`]s.
//! * [`replay`](mod@replay) — trace format, baselines, oracle, and offline evaluation of any policy.
//! * [`synthetic`] — deterministic drifting traces for tests, benches and demos.
//!
//! No I/O beyond (de)serialising traces from caller-supplied readers and writers, no
//! clocks (time is passed in), no globals.
//!
//! ```
//! use std::time::Duration;
//! use apparate_controller::{Controller, ControllerConfig, ExitConfig, LatencyProfile};
//! use apparate_controller::planner::initial_ramps;
//! use apparate_controller::synthetic::SyntheticSpec;
//!
//! let profile = LatencyProfile::synthetic(8, 10.0, 0.004);
//! let cfg = ControllerConfig::default();
//! // New ramps start closed (threshold 1.0 = never exit) until feedback arrives.
//! let start = ExitConfig::never_exit(0, &initial_ramps(&profile, &cfg))?;
//! let mut controller = Controller::new(cfg, profile, start)?;
//!
//! let trace = SyntheticSpec::drifting(1, 8, 2).generate();
//! for (i, request) in trace.requests.iter().enumerate() {
//!     // The server reports only the active ramps' outputs.
//!     let active = controller.config().ramp_ids();
//!     let record = request.feedback(&active, 150, 4_000);
//!     if let Some(outcome) = controller.on_record(record, Duration::from_millis(i as u64)) {
//!         for decision in &outcome.decisions {
//!             println!("{decision}"); // one span per decision in the sidecar
//!         }
//!         if let Some(config) = outcome.config {
//!             assert!(config.version > 0); // push it to the server
//!         }
//!     }
//! }
//! # Ok::<(), apparate_controller::ControllerError>(())
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod accounting;
pub mod config;
pub mod controller;
pub mod decision;
pub mod error;
pub mod exit_config;
pub mod planner;
pub mod profile;
pub mod record;
pub mod replay;
pub mod rng;
pub mod synthetic;
pub mod tuner;
pub mod window;

pub use accounting::{ChunkReport, RampExits};
pub use config::{ControllerConfig, TunerKind};
pub use controller::{ChunkOutcome, Controller};
pub use decision::{AttrValue, Decision, DecisionKind, Reason};
pub use error::{ControllerError, Result};
pub use exit_config::{ExitConfig, NEVER_EXIT, RampThreshold, format_threshold};
pub use profile::{LatencyProfile, RampProfile};
pub use record::{FeedbackRecord, RampObservation, RampOutput};
pub use replay::{Policy, ReplayConfig, ReplayReport, Trace, TraceRequest, replay};
