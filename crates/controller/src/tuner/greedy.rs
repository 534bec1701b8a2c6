//! A faithful reproduction of Apparate's greedy threshold tuner (`threshold_tuner.py`,
//! `greedy_search_step`), the paper's baseline.
//!
//! Apparate works in "looseness" `l = 1 − threshold` (0 = never exit). Every ramp starts at
//! `l = 0` with step 0.01. Each round tries raising each ramp's `l` by its step, keeps the
//! moves whose accuracy stays within budget, and takes the one with the smallest
//! |accuracy change| per unit of latency change, then doubles that ramp's step. When every
//! allowed move leaves latency unchanged, the first such move is taken (so dead zones
//! between confidence values are crossed). When no move is allowed, every step above the
//! 0.001 minimum is halved; when none is left, the search stops. Ramps with `l > 1` are
//! done. Differences from the Python: accuracy budget is the caller's error allowance
//! rather than a hard-coded 1.5 %, and only the 0.01 starting step is run.

use super::{ErrorLimits, TuneOutcome};
use crate::window::TuningWindow;

/// Apparate's starting step.
pub const INITIAL_STEP: f64 = 0.01;
/// Steps at or below this are not halved further.
pub const MIN_STEP: f64 = 0.001;

const MAX_ROUNDS: u32 = 100_000;

/// Greedy hill climbing on a step grid; never exceeds `limits` on the window.
pub fn tune_greedy(window: &TuningWindow, limits: ErrorLimits) -> TuneOutcome {
    let m = window.ramp_count();
    let to_threshold = |l: f64| (1.0 - l).clamp(0.0, 1.0) as f32;
    let mut loose = vec![0.0f64; m];
    let mut steps = vec![INITIAL_STEP; m];
    let mut thresholds: Vec<f32> = loose.iter().map(|&l| to_threshold(l)).collect();
    let mut current = window.evaluate(&thresholds);
    let mut evaluations = 1u32;
    let mut trial = thresholds.clone();

    for _ in 0..MAX_ROUNDS {
        let mut best: Option<(usize, f64, crate::window::Evaluation)> = None;
        let mut neutral: Option<(usize, crate::window::Evaluation)> = None;
        for k in (0..m).filter(|&k| loose[k] <= 1.0) {
            trial.copy_from_slice(&thresholds);
            trial[k] = to_threshold(loose[k] + steps[k]);
            let eval = window.evaluate(&trial);
            evaluations += 1;
            if !limits.admits(eval.errors, eval.recent_errors) {
                continue;
            }
            let d_lat = (current.latency_ms - eval.latency_ms).abs();
            if d_lat > 1e-9 {
                let d_acc = f64::from(eval.errors.abs_diff(current.errors));
                let score = d_acc / d_lat;
                if best.as_ref().is_none_or(|(_, s, _)| score < *s) {
                    best = Some((k, score, eval));
                }
            } else if neutral.is_none() {
                neutral = Some((k, eval));
            }
        }
        match best.map(|(k, _, e)| (k, e)).or(neutral) {
            Some((k, eval)) => {
                loose[k] += steps[k];
                thresholds[k] = to_threshold(loose[k]);
                steps[k] *= 2.0;
                current = eval;
            }
            None => {
                let mut halved = false;
                for k in 0..m {
                    if steps[k] > MIN_STEP && loose[k] <= 1.0 {
                        steps[k] /= 2.0;
                        halved = true;
                    }
                }
                if !halved {
                    break;
                }
            }
        }
    }
    TuneOutcome {
        thresholds,
        evaluation: current,
        steps: evaluations,
    }
}
