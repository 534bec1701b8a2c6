//! Fixed policies for comparison: thresholds tuned once on an initial slice, and the oracle.

use crate::exit_config::NEVER_EXIT;
use crate::profile::LatencyProfile;
use crate::tuner::{ErrorLimits, TuneOutcome};
use crate::window::TuningWindow;

use super::trace::TraceRequest;

const MAX_SHARED_CANDIDATES: usize = 512;

/// The best single threshold shared by all ramps (BranchyNet/DeeBERT style): tries the
/// window's confidence values (at most 512 evenly spaced ones) and keeps the one with the
/// largest saving within `limits` (`None`: no exits).
pub fn tune_shared(window: &TuningWindow, limits: Option<ErrorLimits>) -> TuneOutcome {
    let m = window.ramp_count();
    let mut best_thr = NEVER_EXIT;
    let mut best = window.evaluate(&vec![NEVER_EXIT; m]);
    let mut steps = 1;
    if let Some(limits) = limits {
        let mut values: Vec<f32> = (0..m)
            .flat_map(|k| window.scores(k).iter().copied())
            .filter(|&s| s > 0.0)
            .collect();
        values.sort_unstable_by(f32::total_cmp);
        values.dedup();
        let stride = values.len().div_ceil(MAX_SHARED_CANDIDATES).max(1);
        for &t in values.iter().step_by(stride) {
            steps += 1;
            let eval = window.evaluate(&vec![t; m]);
            if limits.admits(eval.errors, eval.recent_errors) && eval.latency_ms < best.latency_ms {
                best = eval;
                best_thr = t;
            }
        }
    }
    TuneOutcome {
        thresholds: vec![best_thr; m],
        evaluation: best,
        steps,
    }
}

/// The oracle's exit for a request: the earliest candidate ramp that agrees with the final
/// output, paying only the backbone to it and that one ramp; `None` runs the full model.
/// Returns the ramp and the latency in ms.
pub fn oracle_exit(req: &TraceRequest, profile: &LatencyProfile) -> (Option<u32>, f64) {
    let b = req.batch_size;
    match req.ramps.iter().position(|o| o.label == req.final_label) {
        Some(id) => {
            let id = id as u32;
            (
                Some(id),
                profile.backbone_ms(id, b) + profile.ramp_ms(id, b),
            )
        }
        None => (None, profile.full_ms(b)),
    }
}
