//! `apparate-sidecar replay`: run a policy over a recorded trace (no server) and print one
//! row per chunk plus the summary — the fastest way to try a policy on your own data.

use std::fmt::Write as _;

use apparate_controller::exit_config::exits;
use apparate_controller::replay::oracle_exit;
use apparate_controller::{LatencyProfile, Policy, ReplayReport, Trace};

/// Median per-request saving of each chunk (the report's rows carry the aggregate).
/// Uses the same exit rule and latency model as the replay.
pub fn chunk_p50_savings(
    report: &ReplayReport,
    trace: &Trace,
    profile: &LatencyProfile,
    chunk_size: usize,
) -> Vec<f64> {
    let oracle = report.policy == Policy::Oracle.name();
    report
        .rows
        .iter()
        .zip(trace.requests.chunks(chunk_size))
        .map(|(row, reqs)| {
            let mut savings: Vec<f64> = reqs
                .iter()
                .map(|req| {
                    let full = profile.full_ms(req.batch_size);
                    let latency = if oracle {
                        oracle_exit(req, profile).1
                    } else {
                        let costs = profile.path_costs(&row.active_ramps, req.batch_size);
                        row.active_ramps
                            .iter()
                            .zip(&row.thresholds)
                            .position(|(&id, &t)| exits(req.ramps[id as usize].confidence, t))
                            .map_or(costs.no_exit_ms, |k| costs.exit_ms[k])
                    };
                    1.0 - latency / full
                })
                .collect();
            savings.sort_unstable_by(f64::total_cmp);
            savings
                .get(savings.len().saturating_sub(1) / 2)
                .copied()
                .unwrap_or(0.0)
        })
        .collect()
}

/// The per-chunk table and the summary, as printed by `replay`.
pub fn render(report: &ReplayReport, p50: &[f64]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:>5}  {:>7}  {:>8}  {:>9}  {:>10}  {:>4}  {:<12}  thresholds",
        "chunk", "version", "accuracy", "exit_rate", "p50_saving", "over", "ramps"
    );
    for (row, p) in report.rows.iter().zip(p50) {
        let ramps = row
            .active_ramps
            .iter()
            .map(u32::to_string)
            .collect::<Vec<_>>()
            .join(",");
        let thresholds = row
            .thresholds
            .iter()
            .map(|&t| apparate_controller::format_threshold(t))
            .collect::<Vec<_>>()
            .join(",");
        let _ = writeln!(
            out,
            "{:>5}  {:>7}  {:>8.4}  {:>9.4}  {:>10.4}  {:>4}  {:<12}  {}",
            row.chunk,
            row.config_version,
            row.accuracy,
            row.exit_rate,
            p,
            if row.over_budget { "yes" } else { "" },
            ramps,
            if thresholds.is_empty() {
                "-"
            } else {
                &thresholds
            }
        );
    }
    let s = &report.summary;
    let _ = writeln!(
        out,
        "\npolicy {}: {} requests in {} chunks; accuracy {:.4} (worst chunk {:.4}); \
         {:.1}% of chunks over budget",
        report.policy,
        s.requests,
        s.chunks,
        s.accuracy,
        s.worst_chunk_accuracy,
        100.0 * s.share_over_budget
    );
    let _ = writeln!(
        out,
        "saving: mean {:.4}, p25 {:.4}, p50 {:.4}, p95 {:.4}; {} configs emitted; \
         tuning {} runs in {} µs",
        s.saving_mean,
        s.saving_p25,
        s.saving_p50,
        s.saving_p95,
        s.configs_emitted,
        report.timing.tune_runs,
        report.timing.tuning_time_us
    );
    out
}
