//! Replays every policy over a synthetic easy → hard → easy trace and prints a table.
//!
//! `cargo run --release -p apparate-controller --example compare_policies`

use apparate_controller::synthetic::SyntheticSpec;
use apparate_controller::{LatencyProfile, Policy, ReplayConfig, replay};

fn main() -> Result<(), apparate_controller::ControllerError> {
    let trace = SyntheticSpec::drifting(42, 8, 20).generate();
    let profile = LatencyProfile::synthetic(8, 10.0, 0.004);
    let cfg = ReplayConfig::default();
    println!(
        "{:17} {:>8} {:>8} {:>6} {:>7} {:>7} {:>7} {:>7} {:>10}",
        "policy", "accuracy", "worst", "over", "mean", "p25", "p50", "p95", "tuning_us"
    );
    for policy in Policy::ALL {
        let r = replay(&trace, &profile, policy, &cfg)?;
        let s = &r.summary;
        println!(
            "{:17} {:8.4} {:8.4} {:6.3} {:7.3} {:7.3} {:7.3} {:7.3} {:10}",
            r.policy,
            s.accuracy,
            s.worst_chunk_accuracy,
            s.share_over_budget,
            s.saving_mean,
            s.saving_p25,
            s.saving_p50,
            s.saving_p95,
            r.timing.tuning_time_us
        );
    }
    Ok(())
}
