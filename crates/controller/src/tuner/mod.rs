//! Threshold tuning: choose one threshold per active ramp that maximises latency saving on
//! a window while its disagreeing exits stay within the error allowance.

mod bound;
mod greedy;
mod search;

pub use bound::{conformal_allowance, error_allowance};
pub use greedy::{INITIAL_STEP, MIN_STEP, tune_greedy};
pub use search::tune_search;

use crate::config::TunerKind;
use crate::exit_config::NEVER_EXIT;
use crate::window::{Evaluation, TuningWindow};

/// The thresholds a tuner chose and how they do on the window.
#[derive(Debug, Clone, PartialEq)]
pub struct TuneOutcome {
    /// One threshold per active ramp, in depth order, each in `[0, 1]`.
    pub thresholds: Vec<f32>,
    /// Accuracy and latency of those thresholds on the window.
    pub evaluation: Evaluation,
    /// Work done: configurations evaluated (greedy) or search moves made and tried (ours).
    pub steps: u32,
}

/// Disagreeing exits a tuned configuration may cause on its window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ErrorLimits {
    /// Over the whole window.
    pub window: u32,
    /// Among the window's recent requests (the latest chunk).
    pub recent: u32,
}

impl ErrorLimits {
    /// A limit on the whole window only.
    pub fn window_only(window: u32) -> Self {
        Self {
            window,
            recent: u32::MAX,
        }
    }

    /// True when both counts are within their limits.
    pub fn admits(&self, errors: u32, recent_errors: u32) -> bool {
        errors <= self.window && recent_errors <= self.recent
    }
}

/// Runs the chosen tuner. `limits = None` forbids exits altogether.
pub fn tune(kind: TunerKind, window: &TuningWindow, limits: Option<ErrorLimits>) -> TuneOutcome {
    match limits {
        None => no_exits(window),
        Some(limits) => match kind {
            TunerKind::Greedy => tune_greedy(window, limits),
            TunerKind::Ours => tune_search(window, limits),
        },
    }
}

/// Every active ramp in the never-exit state.
pub fn no_exits(window: &TuningWindow) -> TuneOutcome {
    let thresholds = vec![NEVER_EXIT; window.ramp_count()];
    let evaluation = window.evaluate(&thresholds);
    TuneOutcome {
        thresholds,
        evaluation,
        steps: 1,
    }
}
