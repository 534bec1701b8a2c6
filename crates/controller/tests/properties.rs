//! Property tests of the tuners, the exit rule and replay.

mod common;

use apparate_controller::synthetic::SyntheticSpec;
use apparate_controller::tuner::{ErrorLimits, error_allowance, tune_greedy, tune_search};
use apparate_controller::window::TuningWindow;
use apparate_controller::{LatencyProfile, Policy, ReplayConfig, replay};
use common::{profile, raw_requests, records};
use proptest::prelude::*;

fn window_and_limits(
    raw: &[common::RawRequest],
    m: usize,
    recent_share: f64,
    budget: f64,
    statistical: bool,
) -> (TuningWindow, Option<ErrorLimits>) {
    let recs = records(raw);
    let split = ((recs.len() as f64) * (1.0 - recent_share)) as usize;
    let ids: Vec<u32> = (0..m as u32).collect();
    let (older, recent) = recs.split_at(split);
    let window = TuningWindow::build_parts(older, recent, &ids, &profile(m as u32));
    let confidence = statistical.then_some(0.8);
    let limits = error_allowance(window.len(), budget, confidence).map(|w| ErrorLimits {
        window: w,
        recent: error_allowance(window.recent_len(), budget, None).unwrap_or(0),
    });
    (window, limits)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// Both tuners return thresholds in [0, 1], one per ramp, and the returned
    /// configuration respects the window's and the latest chunk's error limits.
    #[test]
    fn tuned_configs_stay_in_range_and_within_budget(
        m in 1usize..=8,
        raw in raw_requests(8, 300),
        recent_share in 0.0f64..0.5,
        budget in 0.005f64..0.1,
        statistical in any::<bool>(),
    ) {
        let raw: Vec<_> = raw.into_iter().map(|(b, o)| (b, o[..m].to_vec())).collect();
        let (window, limits) = window_and_limits(&raw, m, recent_share, budget, statistical);
        let Some(limits) = limits else { return Ok(()) };
        for out in [tune_search(&window, limits), tune_greedy(&window, limits)] {
            prop_assert_eq!(out.thresholds.len(), m);
            prop_assert!(out.thresholds.iter().all(|t| (0.0..=1.0).contains(t)));
            let eval = window.evaluate(&out.thresholds);
            prop_assert_eq!(&eval, &out.evaluation);
            prop_assert!(limits.admits(eval.errors, eval.recent_errors),
                "errors {} / {} over limits {:?}", eval.errors, eval.recent_errors, limits);
        }
    }

    /// Raising ramp i's threshold moves every request's exit to the same or a deeper ramp
    /// (or to no exit): exits before i are untouched, ramp i's exit count cannot grow,
    /// and no later ramp's exit count can shrink.
    #[test]
    fn raising_a_threshold_only_pushes_exits_deeper(
        m in 1usize..=6,
        raw in raw_requests(6, 200),
        thresholds in prop::collection::vec(0.0f32..=1.0, 6),
        ramp in 0usize..6,
        raise in 0.0f32..=1.0,
    ) {
        let ramp = ramp % m;
        let raw: Vec<_> = raw.into_iter().map(|(b, o)| (b, o[..m].to_vec())).collect();
        let (window, _) = window_and_limits(&raw, m, 0.0, 0.01, false);
        let before_thr = thresholds[..m].to_vec();
        let mut after_thr = before_thr.clone();
        after_thr[ramp] = (after_thr[ramp] + raise).min(1.0);
        for i in 0..window.len() {
            let before = window.exit_from(&before_thr, i, 0).unwrap_or(usize::MAX);
            let after = window.exit_from(&after_thr, i, 0).unwrap_or(usize::MAX);
            prop_assert!(after >= before);
            if before < ramp {
                prop_assert_eq!(after, before);
            }
        }
        let (b, a) = (window.evaluate(&before_thr).exits, window.evaluate(&after_thr).exits);
        prop_assert!(a[ramp] <= b[ramp]);
        for j in 0..m {
            if j < ramp { prop_assert_eq!(a[j], b[j]); }
            if j > ramp { prop_assert!(a[j] >= b[j]); }
        }
    }

    /// The statistical allowance is never looser than the point estimate.
    #[test]
    fn statistical_allowance_never_exceeds_point(n in 1usize..5000, budget in 0.001f64..0.2, level in 0.51f64..0.99) {
        let point = error_allowance(n, budget, None).unwrap();
        if let Some(s) = error_allowance(n, budget, Some(level)) {
            prop_assert!(s <= point);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(12))]

    /// Replaying the same trace twice gives identical rows and summary for every policy.
    #[test]
    fn replay_is_deterministic(seed in any::<u64>(), chunks in 2usize..6) {
        let trace = SyntheticSpec::drifting(seed, 6, chunks).generate();
        let profile = LatencyProfile::synthetic(6, 10.0, 0.004);
        let cfg = ReplayConfig::default();
        for policy in Policy::ALL {
            let a = replay(&trace, &profile, policy, &cfg).unwrap();
            let b = replay(&trace, &profile, policy, &cfg).unwrap();
            prop_assert_eq!(&a.rows, &b.rows);
            prop_assert_eq!(&a.summary, &b.summary);
        }
    }

    /// JSON Lines round-trips a trace exactly.
    #[test]
    fn trace_jsonl_round_trips(seed in any::<u64>()) {
        let trace = SyntheticSpec::drifting(seed, 4, 1).generate();
        let text = trace.to_jsonl_string().unwrap();
        let back = apparate_controller::Trace::from_jsonl_str(&text).unwrap();
        prop_assert_eq!(back, trace);
    }
}
