//! Replay: run any policy over a recorded trace as if live, and report what users would
//! have seen.
//!
//! Each chunk is served by the config in force when it began: the policy sees only the
//! active ramps' outputs (as a server would report them), and a config it emits after a
//! chunk takes effect from the next chunk. Latency comes from the profile. Controllers
//! start with the initial ramps in the never-exit state, as a live deployment would. The
//! static baselines are tuned once on the first `static_slice_chunks` chunks and then
//! fixed. Wall time ([`std::time::Instant`]) is read here only, to report tuning cost; it
//! never influences a decision.

mod baselines;
mod report;
mod trace;

use std::time::{Duration, Instant};

pub use baselines::{oracle_exit, tune_shared};
pub use report::{ChunkRow, ReplayReport, ReplaySummary, ReplayTiming};
pub use trace::{Trace, TraceRequest};

use crate::config::{ControllerConfig, TunerKind};
use crate::controller::Controller;
use crate::decision::DecisionKind;
use crate::error::{ControllerError, Result};
use crate::exit_config::{ExitConfig, RampThreshold, exits};
use crate::planner::initial_ramps;
use crate::profile::{LatencyProfile, PathCosts};
use crate::tuner::{ErrorLimits, error_allowance, tune};
use crate::window::{TuningWindow, saving};
use report::quantile;

/// A policy to replay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// Every request runs the original model; no ramps.
    NoExits,
    /// One threshold shared by the initial ramps, tuned once on the initial slice.
    StaticShared,
    /// One threshold per initial ramp, tuned once on the initial slice.
    StaticPerRamp,
    /// The policy loop with Apparate's greedy tuner.
    Greedy,
    /// The policy loop with our tuner, optionally with the statistical bound.
    Ours {
        /// Keep a one-sided confidence bound within budget.
        statistical: bool,
    },
    /// Earliest agreeing candidate ramp, paying only it: an unreachable upper bound.
    Oracle,
}

impl Policy {
    /// Every policy, in report order.
    pub const ALL: [Policy; 7] = [
        Policy::NoExits,
        Policy::StaticShared,
        Policy::StaticPerRamp,
        Policy::Greedy,
        Policy::Ours { statistical: false },
        Policy::Ours { statistical: true },
        Policy::Oracle,
    ];

    /// Short snake_case name.
    pub fn name(self) -> &'static str {
        match self {
            Self::NoExits => "no_exits",
            Self::StaticShared => "static_shared",
            Self::StaticPerRamp => "static_per_ramp",
            Self::Greedy => "greedy",
            Self::Ours { statistical: false } => "ours",
            Self::Ours { statistical: true } => "ours_statistical",
            Self::Oracle => "oracle",
        }
    }
}

/// Replay settings shared by every policy.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplayConfig {
    /// Controller settings (the tuner and statistical fields are set by the policy).
    pub controller: ControllerConfig,
    /// Initial active ramps; `None` = [`initial_ramps`] for the profile and settings.
    pub initial_ramps: Option<Vec<u32>>,
    /// Chunks the static baselines are tuned on.
    pub static_slice_chunks: usize,
}

impl Default for ReplayConfig {
    fn default() -> Self {
        Self {
            controller: ControllerConfig::default(),
            initial_ramps: None,
            static_slice_chunks: 8,
        }
    }
}

enum Driver {
    Fixed(ExitConfig),
    Live(Box<Controller>),
    Oracle,
}

/// Replays `trace` under `policy`. Deterministic except for [`ReplayReport::timing`].
pub fn replay(
    trace: &Trace,
    profile: &LatencyProfile,
    policy: Policy,
    cfg: &ReplayConfig,
) -> Result<ReplayReport> {
    cfg.controller.validate()?;
    profile.validate()?;
    if trace.candidate_count() != profile.ramps.len() {
        return Err(ControllerError::TraceMismatch(format!(
            "trace has {} candidate ramps, profile has {}",
            trace.candidate_count(),
            profile.ramps.len()
        )));
    }
    let chunk_size = cfg.controller.chunk_size;
    let initial = match &cfg.initial_ramps {
        Some(ids) => ids.clone(),
        None => initial_ramps(profile, &cfg.controller),
    };
    profile.check_ramps(&initial)?;
    let mut timing = ReplayTiming::default();
    let mut driver = match policy {
        Policy::NoExits => Driver::Fixed(ExitConfig::default()),
        Policy::Oracle => Driver::Oracle,
        Policy::StaticShared | Policy::StaticPerRamp => {
            let slice = &trace.requests[..trace.len().min(cfg.static_slice_chunks * chunk_size)];
            let records: Vec<_> = slice.iter().map(|r| r.feedback(&initial, 0, 0)).collect();
            let started = Instant::now();
            let window = TuningWindow::build(&records, &initial, profile);
            let limits = error_allowance(window.len(), cfg.controller.target_error_rate(), None)
                .map(ErrorLimits::window_only);
            let tuned = match policy {
                Policy::StaticShared => tune_shared(&window, limits),
                _ => tune(TunerKind::Ours, &window, limits),
            };
            timing.tuning_time_us += started.elapsed().as_micros() as u64;
            timing.tune_runs += 1;
            let ramps = initial
                .iter()
                .zip(&tuned.thresholds)
                .map(|(&ramp_id, &threshold)| RampThreshold { ramp_id, threshold })
                .collect();
            Driver::Fixed(ExitConfig::new(0, ramps)?)
        }
        Policy::Greedy | Policy::Ours { .. } => {
            let mut settings = cfg.controller.clone();
            settings.tuner = if policy == Policy::Greedy {
                TunerKind::Greedy
            } else {
                TunerKind::Ours
            };
            settings.statistical = policy == (Policy::Ours { statistical: true });
            let start = ExitConfig::never_exit(0, &initial)?;
            Driver::Live(Box::new(Controller::new(settings, profile.clone(), start)?))
        }
    };

    let all_ids: Vec<u32> = (0..profile.candidate_count()).collect();
    let mut rows = Vec::new();
    let mut savings = Vec::with_capacity(trace.len());
    let (mut total_lat, mut total_full, mut errors) = (0.0f64, 0.0f64, 0u64);
    let mut now = Duration::ZERO;
    let budget = cfg.controller.accuracy_budget;
    for (c, reqs) in trace.requests.chunks(chunk_size).enumerate() {
        let config = match &driver {
            Driver::Fixed(cfg) => cfg.clone(),
            Driver::Live(ctrl) => ctrl.config().clone(),
            Driver::Oracle => ExitConfig::default(),
        };
        let ids = config.ramp_ids();
        let mut costs: Vec<(u32, PathCosts)> = Vec::new();
        let mut records = Vec::new();
        let (mut chunk_lat, mut chunk_full, mut chunk_err, mut chunk_exits) =
            (0.0, 0.0, 0u32, 0u32);
        for req in reqs {
            let b = req.batch_size;
            let (lat, full, wrong, exited) = if let Driver::Oracle = driver {
                let (exit, lat) = oracle_exit(req, profile);
                (lat, profile.full_ms(b), false, exit.is_some())
            } else {
                let slot = match costs.iter().position(|(bs, _)| *bs == b) {
                    Some(slot) => slot,
                    None => {
                        costs.push((b, profile.path_costs(&ids, b)));
                        costs.len() - 1
                    }
                };
                let pc = &costs[slot].1;
                let exit = config
                    .ramps
                    .iter()
                    .position(|r| exits(req.ramps[r.ramp_id as usize].confidence, r.threshold));
                match exit {
                    Some(k) => {
                        let out = &req.ramps[ids[k] as usize];
                        (
                            pc.exit_ms[k],
                            pc.full_ms,
                            out.label != req.final_label,
                            true,
                        )
                    }
                    None => (pc.no_exit_ms, pc.full_ms, false, false),
                }
            };
            if let Driver::Live(_) = driver {
                records.push(req.feedback(&ids, 0, (lat * 1000.0).round() as u64));
            }
            chunk_lat += lat;
            chunk_full += full;
            chunk_err += u32::from(wrong);
            chunk_exits += u32::from(exited);
            savings.push(saving(lat, full));
            now += Duration::from_secs_f64(lat / 1000.0);
        }
        let n = reqs.len() as u32;
        let accuracy = 1.0 - f64::from(chunk_err) / f64::from(n.max(1));
        rows.push(ChunkRow {
            chunk: c as u64,
            config_version: config.version,
            requests: n,
            accuracy,
            exit_rate: f64::from(chunk_exits) / f64::from(n.max(1)),
            saving: saving(chunk_lat, chunk_full),
            over_budget: accuracy < 1.0 - budget - 1e-12,
            active_ramps: if let Driver::Oracle = driver {
                all_ids.clone()
            } else {
                ids
            },
            thresholds: config.thresholds(),
        });
        total_lat += chunk_lat;
        total_full += chunk_full;
        errors += u64::from(chunk_err);
        if let Driver::Live(ctrl) = &mut driver {
            let started = Instant::now();
            let outcome = ctrl.on_chunk_owned(records, now);
            timing.tuning_time_us += started.elapsed().as_micros() as u64;
            timing.tune_runs += outcome
                .decisions
                .iter()
                .filter(|d| d.kind == DecisionKind::Retune)
                .count() as u64;
        }
    }

    savings.sort_unstable_by(f64::total_cmp);
    let chunks = rows.len() as u64;
    let summary = ReplaySummary {
        requests: trace.len() as u64,
        chunks,
        accuracy: 1.0 - errors as f64 / (trace.len().max(1)) as f64,
        worst_chunk_accuracy: rows.iter().map(|r| r.accuracy).fold(1.0, f64::min),
        share_over_budget: rows.iter().filter(|r| r.over_budget).count() as f64
            / chunks.max(1) as f64,
        saving_mean: saving(total_lat, total_full),
        saving_p25: quantile(&savings, 0.25),
        saving_p50: quantile(&savings, 0.50),
        saving_p95: quantile(&savings, 0.95),
        configs_emitted: match &driver {
            Driver::Live(ctrl) => ctrl.config().version,
            _ => 0,
        },
    };
    Ok(ReplayReport {
        policy: policy.name().to_owned(),
        rows,
        summary,
        timing,
    })
}
