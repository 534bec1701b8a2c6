//! Replay as other tools use it: a JSON Lines trace and a YAML profile in, a report out.

use apparate_controller::synthetic::SyntheticSpec;
use apparate_controller::{ControllerError, LatencyProfile, Policy, ReplayConfig, Trace, replay};

fn inputs() -> (Trace, LatencyProfile) {
    let trace = SyntheticSpec::drifting(5, 8, 6).generate();
    let text = trace.to_jsonl_string().unwrap();
    let profile_yaml = LatencyProfile::synthetic(8, 10.0, 0.004)
        .to_yaml_string()
        .unwrap();
    (
        Trace::from_jsonl_str(&text).unwrap(),
        LatencyProfile::from_yaml_str(&profile_yaml).unwrap(),
    )
}

#[test]
fn every_policy_reports_one_row_per_chunk_and_the_oracle_bounds_them() {
    let (trace, profile) = inputs();
    // 18 chunks: a 5 % budget without a coverage aim, so exits open from the first chunk.
    let mut cfg = ReplayConfig::default();
    cfg.controller.accuracy_budget = 0.05;
    cfg.controller.chunk_coverage = 0.0;
    let reports: Vec<_> = Policy::ALL
        .iter()
        .map(|&p| replay(&trace, &profile, p, &cfg).unwrap())
        .collect();
    let oracle = reports.iter().find(|r| r.policy == "oracle").unwrap();
    for r in &reports {
        assert_eq!(r.rows.len(), trace.len().div_ceil(64));
        assert_eq!(r.summary.requests, trace.len() as u64);
        assert!(r.summary.saving_p25 <= r.summary.saving_p50);
        assert!(r.summary.saving_p50 <= r.summary.saving_p95);
        assert!(r.summary.worst_chunk_accuracy <= r.summary.accuracy);
    }
    let none = &reports[0];
    assert_eq!(
        (none.summary.accuracy, none.summary.saving_mean),
        (1.0, 0.0)
    );
    assert_eq!(oracle.summary.accuracy, 1.0);
    let ours = reports.iter().find(|r| r.policy == "ours").unwrap();
    assert!(ours.summary.saving_mean > 0.1, "{:?}", ours.summary);
    assert!(ours.summary.saving_mean < oracle.summary.saving_mean);
    assert!(ours.timing.tune_runs > 0);
    assert!(ours.summary.configs_emitted > 0);
    // Rows carry what was active when each chunk was served.
    assert!(
        ours.rows[0].thresholds.iter().all(|&t| t == 1.0),
        "starts closed"
    );
    assert!(ours.rows[1].exit_rate > 0.0);
    // The report serialises for other tools.
    let json = serde_json::to_string(ours).unwrap();
    assert!(json.contains("\"saving_p50\""));
}

#[test]
fn a_trace_that_does_not_match_the_profile_is_rejected() {
    let (trace, _) = inputs();
    let small = LatencyProfile::synthetic(4, 10.0, 0.004);
    let err = replay(&trace, &small, Policy::Greedy, &ReplayConfig::default()).unwrap_err();
    assert!(matches!(err, ControllerError::TraceMismatch(_)), "{err}");
}
