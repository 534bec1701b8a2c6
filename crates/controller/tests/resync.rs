//! `Controller::resync`: adopting the server's config after a NACK or a lease expiry.

use std::time::Duration;

use apparate_controller::planner::initial_ramps;
use apparate_controller::synthetic::SyntheticSpec;
use apparate_controller::{Controller, ControllerConfig, ExitConfig, LatencyProfile, NEVER_EXIT};

#[test]
fn resync_adopts_the_active_config_and_versions_continue_above_it() {
    let profile = LatencyProfile::synthetic(8, 10.0, 0.004);
    // A loose budget without a coverage aim: one chunk is evidence enough to open exits.
    let cfg = ControllerConfig {
        accuracy_budget: 0.05,
        chunk_coverage: 0.0,
        ..ControllerConfig::default()
    };
    let start = ExitConfig::never_exit(0, &initial_ramps(&profile, &cfg)).unwrap();
    let mut controller = Controller::new(cfg, profile, start).unwrap();

    let fallback = ExitConfig::never_exit(41, &[5]).unwrap();
    controller.resync(fallback.clone()).unwrap();
    assert_eq!(controller.config(), &fallback);

    // The first chunk re-tunes ramp 5 and emits version 42, with ramp 5 and nothing else.
    let trace = SyntheticSpec::drifting(3, 8, 1).generate();
    let mut emitted = None;
    for (i, req) in trace.requests.iter().take(64).enumerate() {
        let record = req.feedback(&controller.config().ramp_ids(), 0, 1_000);
        if let Some(out) = controller.on_record(record, Duration::from_millis(i as u64)) {
            emitted = out.config;
        }
    }
    let emitted = emitted.expect("easy inputs open ramp 5");
    assert_eq!(emitted.version, 42);
    assert_eq!(emitted.ramp_ids(), vec![5]);
    assert!(emitted.ramps[0].threshold < NEVER_EXIT);
}

#[test]
fn resync_rejects_unknown_ramps_and_keeps_the_old_config() {
    let profile = LatencyProfile::synthetic(4, 10.0, 0.004);
    let start = ExitConfig::never_exit(3, &[1]).unwrap();
    let mut controller =
        Controller::new(ControllerConfig::default(), profile, start.clone()).unwrap();
    let err = controller
        .resync(ExitConfig::never_exit(9, &[7]).unwrap())
        .unwrap_err()
        .to_string();
    assert!(err.contains("ramp 7"), "{err}");
    assert_eq!(controller.config(), &start);
}
