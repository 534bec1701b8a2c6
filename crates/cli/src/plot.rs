//! The evaluation's plots, one set per workload (SVG):
//!
//! * `<name>-config.svg`: our controller's thresholds per ramp over time, and which ramps
//!   are active (the paper's "changing optimal configuration" figure);
//! * `<name>-accuracy.svg`: accuracy per chunk with the budget line, per policy;
//! * `<name>-latency-cdf.svg`: per-request latency CDF without exits, with ours, and the oracle.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use apparate_controller::{
    ControllerConfig, LatencyProfile, ReplayReport, Trace, exit_config::exits, replay::oracle_exit,
};

use crate::svg::{Cell, Chart, PALETTE, Series, stack};

const WIDTH: f64 = 1000.0;
const HEIGHT: f64 = 330.0;

/// Writes the three plots for one workload and returns their paths.
pub fn write_plots(
    dir: &Path,
    name: &str,
    spans: &[(String, u64, u64)],
    trace: &Trace,
    profile: &LatencyProfile,
    reports: &[ReplayReport],
    cfg: &ControllerConfig,
) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let chunk = cfg.chunk_size as f64;
    let vlines: Vec<(f64, String)> = spans
        .iter()
        .map(|(n, start, _)| (*start as f64 / chunk, n.clone()))
        .collect();
    let find = |p: &str| reports.iter().find(|r| r.policy == p);
    let mut files = Vec::new();
    let mut write = |suffix: &str, svg: String| -> Result<()> {
        let path = dir.join(format!("{name}-{suffix}.svg"));
        std::fs::write(&path, svg).with_context(|| format!("writing {}", path.display()))?;
        files.push(path);
        Ok(())
    };
    if let Some(ours) = find("ours") {
        write(
            "config",
            stack(&config_charts(name, ours, profile, &vlines), WIDTH, HEIGHT),
        )?;
    }
    write(
        "accuracy",
        stack(
            &[accuracy_chart(name, reports, cfg, &vlines)],
            WIDTH,
            HEIGHT,
        ),
    )?;
    let mut curves = Vec::new();
    for policy in ["no_exits", "static_per_ramp", "greedy", "ours", "oracle"] {
        if let Some(r) = find(policy) {
            curves.push((policy, request_latencies(trace, profile, r, cfg.chunk_size)));
        }
    }
    write(
        "latency-cdf",
        stack(&[cdf_chart(name, &curves)], WIDTH, HEIGHT),
    )?;
    Ok(files)
}

/// Thresholds per candidate ramp (a gap where inactive) and the active-ramp map.
fn config_charts(
    name: &str,
    ours: &ReplayReport,
    profile: &LatencyProfile,
    vlines: &[(f64, String)],
) -> Vec<Chart> {
    let n = ours.rows.len() as f64;
    let ramp_names: Vec<String> = profile
        .ramps
        .iter()
        .map(|r| format!("{} {}", r.id, r.name))
        .collect();
    let mut series = Vec::new();
    let mut cells = Vec::new();
    for (k, _) in profile.ramps.iter().enumerate() {
        let points: Vec<(f64, f64)> = ours
            .rows
            .iter()
            .map(|row| {
                let t = row
                    .active_ramps
                    .iter()
                    .position(|&id| id as usize == k)
                    .map_or(f64::NAN, |i| f64::from(row.thresholds[i]));
                (row.chunk as f64, t)
            })
            .collect();
        for row in &ours.rows {
            if let Some(i) = row.active_ramps.iter().position(|&id| id as usize == k) {
                // Darker = lower threshold = more requests allowed to exit there.
                let t = f64::from(row.thresholds[i]).clamp(0.0, 1.0);
                cells.push(Cell {
                    x: row.chunk as f64,
                    y: k as f64 + 0.1,
                    w: 1.0,
                    h: 0.8,
                    color: PALETTE[k % PALETTE.len()].into(),
                    opacity: 0.25 + 0.75 * (1.0 - t),
                });
            }
        }
        if points.iter().any(|p| p.1.is_finite()) {
            series.push(Series {
                name: ramp_names[k].clone(),
                color: PALETTE[k % PALETTE.len()].into(),
                points,
                dashed: false,
                step: true,
            });
        }
    }
    let thresholds = Chart {
        title: format!("{name}: thresholds of our controller (1.0 = ramp active, never exits)"),
        x_label: "chunk".into(),
        y_label: "threshold".into(),
        x_range: (0.0, n),
        y_range: (0.0, 1.0),
        series,
        vlines: vlines.to_vec(),
        ..Chart::default()
    };
    let active = Chart {
        title: format!("{name}: active ramps per chunk (darker = lower threshold)"),
        x_label: "chunk".into(),
        y_label: "ramp".into(),
        x_range: (0.0, n),
        y_range: (0.0, profile.ramps.len() as f64),
        cells,
        vlines: vlines.to_vec(),
        y_names: Some(ramp_names),
        ..Chart::default()
    };
    vec![thresholds, active]
}

fn accuracy_chart(
    name: &str,
    reports: &[ReplayReport],
    cfg: &ControllerConfig,
    vlines: &[(f64, String)],
) -> Chart {
    let shown = [
        "static_shared",
        "static_per_ramp",
        "greedy",
        "ours",
        "ours_statistical",
    ];
    let mut lo: f64 = 1.0 - 3.0 * cfg.accuracy_budget;
    let series: Vec<Series> = shown
        .iter()
        .enumerate()
        .filter_map(|(i, p)| reports.iter().find(|r| r.policy == *p).map(|r| (i, r)))
        .map(|(i, r)| {
            for row in &r.rows {
                lo = lo.min(row.accuracy);
            }
            Series {
                name: r.policy.clone(),
                color: PALETTE[i].into(),
                points: r
                    .rows
                    .iter()
                    .map(|row| (row.chunk as f64, row.accuracy))
                    .collect(),
                dashed: r.policy.starts_with("static"),
                step: true,
            }
        })
        .collect();
    let n = reports.first().map_or(1, |r| r.rows.len()) as f64;
    Chart {
        title: format!(
            "{name}: accuracy vs the original model, per chunk of {}",
            cfg.chunk_size
        ),
        x_label: "chunk".into(),
        y_label: "accuracy".into(),
        x_range: (0.0, n),
        y_range: ((lo - 0.005).max(0.0), 1.002),
        series,
        vlines: vlines.to_vec(),
        hlines: vec![(
            1.0 - cfg.accuracy_budget,
            format!("budget: {:.1} % loss", 100.0 * cfg.accuracy_budget),
        )],
        y_percent: true,
        ..Chart::default()
    }
}

fn cdf_chart(name: &str, curves: &[(&str, Vec<f64>)]) -> Chart {
    let max = curves
        .iter()
        .flat_map(|(_, v)| v.iter().copied())
        .fold(0.0f64, f64::max);
    let series = curves
        .iter()
        .enumerate()
        .map(|(i, (policy, lat))| {
            let mut sorted = lat.clone();
            sorted.sort_unstable_by(f64::total_cmp);
            let n = sorted.len().max(1) as f64;
            // Latencies come from a profile, so they take few distinct values: one vertical
            // step per value draws the same curve as one point per request, in kilobytes.
            let mut points = vec![(0.0, 0.0)];
            let mut below = 0;
            while let Some(&x) = sorted.get(below) {
                let upto = below + sorted[below..].partition_point(|&y| y <= x);
                points.push((x, below as f64 / n));
                points.push((x, upto as f64 / n));
                below = upto;
            }
            Series {
                name: (*policy).to_owned(),
                color: PALETTE[i].into(),
                points,
                dashed: *policy == "oracle",
                step: false,
            }
        })
        .collect();
    Chart {
        title: format!("{name}: per-request latency CDF (profile-based, ms)"),
        x_label: "latency (ms)".into(),
        y_label: "share of requests".into(),
        x_range: (0.0, max * 1.05),
        y_range: (0.0, 1.0),
        series,
        y_percent: true,
        ..Chart::default()
    }
}

/// Per-request latency (ms) under the configs a replay reports per chunk, priced as the
/// replay prices them (docs/trace-format.md).
pub fn request_latencies(
    trace: &Trace,
    profile: &LatencyProfile,
    report: &ReplayReport,
    chunk_size: usize,
) -> Vec<f64> {
    let oracle = report.policy == "oracle";
    let mut out = Vec::with_capacity(trace.len());
    for (reqs, row) in trace.requests.chunks(chunk_size.max(1)).zip(&report.rows) {
        for req in reqs {
            if oracle {
                out.push(oracle_exit(req, profile).1);
                continue;
            }
            let costs = profile.path_costs(&row.active_ramps, req.batch_size);
            let exit = row
                .active_ramps
                .iter()
                .zip(&row.thresholds)
                .position(|(&id, &t)| exits(req.ramps[id as usize].confidence, t));
            out.push(exit.map_or(costs.no_exit_ms, |k| costs.exit_ms[k]));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use apparate_controller::synthetic::SyntheticSpec;

    use super::*;
    use crate::eval::evaluate;

    /// The per-request latencies behind the CDF price every request exactly as the replay
    /// did: they reproduce each policy's aggregate saving.
    #[test]
    fn latencies_reproduce_the_replayed_saving() {
        let trace = SyntheticSpec::drifting(3, 8, 4).generate();
        let profile = LatencyProfile::synthetic(8, 10.0, 0.004);
        let cfg = ControllerConfig::default();
        let reports = evaluate(&trace, &profile, &cfg).unwrap();
        let full: f64 = trace
            .requests
            .iter()
            .map(|r| profile.full_ms(r.batch_size))
            .sum();
        for r in &reports {
            let lat = request_latencies(&trace, &profile, r, cfg.chunk_size);
            assert_eq!(lat.len(), trace.len());
            let saving = 1.0 - lat.iter().sum::<f64>() / full;
            assert!(
                (saving - r.summary.saving_mean).abs() < 1e-9,
                "{}: {saving} vs {}",
                r.policy,
                r.summary.saving_mean
            );
        }
        let oracle = reports.iter().find(|r| r.policy == "oracle").unwrap();
        assert!(oracle.summary.saving_mean > 0.0);
    }

    #[test]
    fn the_cdf_has_one_step_per_distinct_latency() {
        let chart = cdf_chart("t", &[("ours", vec![2.0, 1.0, 2.0, 2.0])]);
        let points = &chart.series[0].points;
        assert_eq!(
            points,
            &[(0.0, 0.0), (1.0, 0.0), (1.0, 0.25), (2.0, 0.25), (2.0, 1.0)]
        );
    }

    #[test]
    fn writes_three_readable_plots() {
        let trace = SyntheticSpec::drifting(5, 8, 2).generate();
        let profile = LatencyProfile::synthetic(8, 10.0, 0.004);
        let cfg = ControllerConfig::default();
        let reports = evaluate(&trace, &profile, &cfg).unwrap();
        let dir = std::env::temp_dir().join(format!("apparate-plot-test-{}", std::process::id()));
        let spans = vec![("easy".to_owned(), 0, 128), ("hard".to_owned(), 128, 128)];
        let files = write_plots(&dir, "syn", &spans, &trace, &profile, &reports, &cfg).unwrap();
        assert_eq!(files.len(), 3);
        for f in &files {
            let svg = std::fs::read_to_string(f).unwrap();
            assert!(
                svg.starts_with("<svg") && svg.contains("<polyline"),
                "{}",
                f.display()
            );
        }
        let acc = std::fs::read_to_string(dir.join("syn-accuracy.svg")).unwrap();
        assert!(acc.contains("budget: 1.0 % loss") && acc.contains(">hard<"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
