//! Scenario tests: synthetic drifting workloads described in `tests/scenarios/*.yaml`
//! (workload, profile, controller overrides, and expected ranges per policy), in the
//! manner of vector's adaptive-concurrency scenario files.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use apparate_controller::accounting::account_chunk;
use apparate_controller::planner::initial_ramps;
use apparate_controller::replay::{ReplayReport, Trace};
use apparate_controller::synthetic::SyntheticSpec;
use apparate_controller::tuner::{ErrorLimits, error_allowance, tune_greedy, tune_search};
use apparate_controller::window::TuningWindow;
use apparate_controller::{
    Controller, ControllerConfig, DecisionKind, ExitConfig, LatencyProfile, Policy, Reason,
    ReplayConfig, TunerKind, replay,
};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Scenario {
    description: String,
    workload: SyntheticSpec,
    profile: ProfileSpec,
    #[serde(default)]
    controller: ControllerConfig,
    expect: Expect,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProfileSpec {
    full_model_ms: f64,
    ramp_share: f64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Expect {
    recovery_chunks: usize,
    #[serde(default)]
    policies: BTreeMap<String, Metrics>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Metrics {
    accuracy: Option<Range>,
    worst_chunk_accuracy: Option<Range>,
    share_over_budget: Option<Range>,
    saving_mean: Option<Range>,
    saving_p50: Option<Range>,
    /// Mean chunk saving over the last `recovery_chunks` chunks.
    final_saving: Option<Range>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
struct Range {
    min: Option<f64>,
    max: Option<f64>,
}

struct Loaded {
    name: String,
    scenario: Scenario,
    trace: Trace,
    profile: LatencyProfile,
}

fn scenarios() -> Vec<Loaded> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/scenarios");
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("scenario directory")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    paths.sort();
    assert!(!paths.is_empty(), "no scenarios in {}", dir.display());
    paths
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(&path).expect("readable scenario");
            let scenario: Scenario =
                serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            scenario
                .controller
                .validate()
                .expect("valid controller overrides");
            let profile = LatencyProfile::synthetic(
                scenario.workload.candidate_ramps,
                scenario.profile.full_model_ms,
                scenario.profile.ramp_share,
            );
            Loaded {
                name: path.file_stem().unwrap().to_string_lossy().into_owned(),
                trace: scenario.workload.generate(),
                scenario,
                profile,
            }
        })
        .collect()
}

fn replay_config(s: &Loaded) -> ReplayConfig {
    ReplayConfig {
        controller: s.scenario.controller.clone(),
        ..ReplayConfig::default()
    }
}

fn metric(report: &ReplayReport, name: &str, recovery: usize) -> f64 {
    let s = &report.summary;
    match name {
        "accuracy" => s.accuracy,
        "worst_chunk_accuracy" => s.worst_chunk_accuracy,
        "share_over_budget" => s.share_over_budget,
        "saving_mean" => s.saving_mean,
        "saving_p50" => s.saving_p50,
        "final_saving" => {
            let tail = &report.rows[report.rows.len().saturating_sub(recovery)..];
            tail.iter().map(|r| r.saving).sum::<f64>() / tail.len().max(1) as f64
        }
        other => panic!("unknown metric {other}"),
    }
}

#[test]
fn scenario_expectations_hold() {
    let mut failures = Vec::new();
    for s in scenarios() {
        println!("scenario {}: {}", s.name, s.scenario.description);
        let cfg = replay_config(&s);
        for policy in Policy::ALL {
            let report = replay(&s.trace, &s.profile, policy, &cfg).expect("replay");
            let r = &report.summary;
            println!(
                "  {:17} acc {:.4} worst {:.4} over {:.3} saving mean {:.3} p25 {:.3} p50 {:.3} p95 {:.3} final {:.3}",
                report.policy,
                r.accuracy,
                r.worst_chunk_accuracy,
                r.share_over_budget,
                r.saving_mean,
                r.saving_p25,
                r.saving_p50,
                r.saving_p95,
                metric(&report, "final_saving", s.scenario.expect.recovery_chunks),
            );
            let Some(want) = s.scenario.expect.policies.get(policy.name()) else {
                continue;
            };
            let checks = [
                ("accuracy", want.accuracy),
                ("worst_chunk_accuracy", want.worst_chunk_accuracy),
                ("share_over_budget", want.share_over_budget),
                ("saving_mean", want.saving_mean),
                ("saving_p50", want.saving_p50),
                ("final_saving", want.final_saving),
            ];
            for (name, range) in checks {
                let Some(range) = range else { continue };
                let got = metric(&report, name, s.scenario.expect.recovery_chunks);
                let low = range.min.is_some_and(|m| got < m - 1e-9);
                let high = range.max.is_some_and(|m| got > m + 1e-9);
                if low || high {
                    failures.push(format!(
                        "{} / {}: {name} = {got:.4}, expected {range:?}",
                        s.name,
                        policy.name()
                    ));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Runs the policy loop over a trace as a server would, calling `check` after each chunk.
fn drive(
    s: &Loaded,
    settings: ControllerConfig,
    mut check: impl FnMut(
        &[apparate_controller::FeedbackRecord],
        &ExitConfig,
        &apparate_controller::ChunkOutcome,
    ),
) {
    let ids = initial_ramps(&s.profile, &settings);
    let start = ExitConfig::never_exit(0, &ids).unwrap();
    let mut ctrl = Controller::new(settings.clone(), s.profile.clone(), start).unwrap();
    for (c, reqs) in s.trace.requests.chunks(settings.chunk_size).enumerate() {
        let serving = ctrl.config().clone();
        let active = serving.ramp_ids();
        let records: Vec<_> = reqs.iter().map(|r| r.feedback(&active, 0, 0)).collect();
        let outcome = ctrl.on_chunk(&records, Duration::from_millis(c as u64 * 100));
        check(&records, &serving, &outcome);
    }
}

#[test]
fn controller_tightens_within_one_chunk_after_a_violation() {
    let mut total_violations = 0;
    for s in scenarios() {
        for (tuner, statistical) in [
            (TunerKind::Ours, false),
            (TunerKind::Ours, true),
            (TunerKind::Greedy, false),
        ] {
            let settings = ControllerConfig {
                tuner,
                statistical,
                ..s.scenario.controller.clone()
            };
            let budget = settings.accuracy_budget;
            let mut violations = 0;
            drive(&s, settings, |records, serving, outcome| {
                if !outcome.report.over_budget {
                    return;
                }
                violations += 1;
                let id = outcome.report.chunk_id;
                assert!(
                    outcome
                        .decisions
                        .iter()
                        .any(|d| d.kind == DecisionKind::Retune && d.reason == Reason::OverBudget),
                    "{}: chunk {id} over budget without a re-tune",
                    s.name
                );
                let next = outcome.config.as_ref().unwrap_or_else(|| {
                    panic!("{}: chunk {id} over budget but no new config", s.name)
                });
                assert!(next.version > serving.version);
                let again = account_chunk(records, next, &s.profile, id, Duration::ZERO, budget);
                assert!(
                    !again.over_budget,
                    "{}: new config still over budget on chunk {id}: {}",
                    s.name, again.accuracy
                );
            });
            println!(
                "{} {tuner:?} statistical={statistical}: {violations} violations, each answered within one chunk",
                s.name
            );
            total_violations += violations;
        }
    }
    assert!(
        total_violations > 0,
        "no scenario ever went over budget: the test checked nothing"
    );
}

#[test]
fn statistical_mode_violates_the_budget_less_often() {
    for s in scenarios() {
        let cfg = replay_config(&s);
        let point = replay(
            &s.trace,
            &s.profile,
            Policy::Ours { statistical: false },
            &cfg,
        )
        .unwrap();
        let stat = replay(
            &s.trace,
            &s.profile,
            Policy::Ours { statistical: true },
            &cfg,
        )
        .unwrap();
        println!(
            "{}: over budget {:.3} (point) vs {:.3} (statistical)",
            s.name, point.summary.share_over_budget, stat.summary.share_over_budget
        );
        assert!(
            stat.summary.share_over_budget <= point.summary.share_over_budget,
            "{}: statistical {} > point {}",
            s.name,
            stat.summary.share_over_budget,
            point.summary.share_over_budget
        );
        assert!(stat.summary.accuracy >= point.summary.accuracy);
    }
}

#[test]
fn ours_is_at_least_as_good_as_greedy_on_every_scenario() {
    for s in scenarios() {
        let cfg = &s.scenario.controller;
        let ids = initial_ramps(&s.profile, cfg);
        let chunk = cfg.chunk_size;
        let span = 4 * chunk;
        let (mut ours_total, mut greedy_total) = (0.0, 0.0);
        let (mut better, mut equal, mut worse, mut worst) = (0, 0, 0, 0.0f64);
        for start in (0..s.trace.len().saturating_sub(span) + 1).step_by(chunk) {
            let records: Vec<_> = s.trace.requests[start..start + span]
                .iter()
                .map(|r| r.feedback(&ids, 0, 0))
                .collect();
            let (older, recent) = records.split_at(span - chunk);
            let window = TuningWindow::build_parts(older, recent, &ids, &s.profile);
            let limits = ErrorLimits {
                window: error_allowance(window.len(), cfg.accuracy_budget, None).unwrap(),
                recent: error_allowance(window.recent_len(), cfg.accuracy_budget, None).unwrap(),
            };
            let ours = tune_search(&window, limits).evaluation;
            let greedy = tune_greedy(&window, limits).evaluation;
            for e in [&ours, &greedy] {
                assert!(
                    limits.admits(e.errors, e.recent_errors),
                    "{}: over budget",
                    s.name
                );
                assert!(e.accuracy() >= 1.0 - cfg.accuracy_budget - 1e-12);
            }
            let (a, b) = (ours.saving(), greedy.saving());
            ours_total += a;
            greedy_total += b;
            if a > b + 1e-9 {
                better += 1;
            } else if a < b - 1e-9 {
                worse += 1;
                worst = worst.max(b - a);
            } else {
                equal += 1;
            }
        }
        let n = (better + equal + worse) as f64;
        println!(
            "{}: windows better {better} equal {equal} worse {worse} (worst -{worst:.4}); mean saving ours {:.4} greedy {:.4}",
            s.name,
            ours_total / n,
            greedy_total / n
        );
        assert!(
            ours_total >= greedy_total,
            "{}: ours saves less than greedy overall",
            s.name
        );
        // Both are heuristics for a combinatorial problem: on a rare window greedy's grid
        // lands on a slightly better point. Never by more than 0.1 % of the model's latency.
        assert!(
            worst <= 0.001,
            "{}: ours trails greedy by {worst:.4} on a window",
            s.name
        );
    }
}
