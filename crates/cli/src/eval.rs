//! `apparate eval`: every policy on every workload's trace, one table.
//!
//! Traces are recorded on first use (through the workload's bundle) and cached under
//! `--cache-dir`, keyed by the workload file, the limit and the bundle's files, so a
//! second run only replays.

use std::{
    collections::hash_map::DefaultHasher,
    hash::{Hash, Hasher},
    path::{Path, PathBuf},
    time::Instant,
};

use anyhow::{Context, Result, bail};
use apparate_controller::{
    ControllerConfig, LatencyProfile, Policy, ReplayConfig, ReplayReport, Trace, replay,
};
use apparate_engine::{
    device::{DeviceChoice, set_threads},
    workload::Workload,
};
use serde::Serialize;

use crate::{
    doctor::parse_device,
    plot,
    record::{read_trace, record, write_trace},
};

/// Arguments of `apparate eval`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Workload files; default: every `*.yaml` in `--workload-dir`.
    pub workloads: Vec<PathBuf>,
    /// Where the shipped workloads live.
    #[arg(long, default_value = "configs/workloads")]
    pub workload_dir: PathBuf,
    /// Folder holding one bundle per workload's `bundle:` name (e.g. bundles/resnet).
    #[arg(long, env = "APPARATE_BUNDLE_DIR", default_value = "bundles")]
    pub bundle_dir: PathBuf,
    /// Recorded traces are cached here.
    #[arg(long, default_value = "target/apparate/traces")]
    pub cache_dir: PathBuf,
    /// Evaluate this recorded trace instead of workloads (needs --bundle for the profile).
    #[arg(long, requires = "bundle")]
    pub trace: Option<PathBuf>,
    /// The bundle of --trace (its profile.yaml prices every exit); with workloads, use it
    /// for every workload instead of `<bundle-dir>/<bundle>`.
    #[arg(long)]
    pub bundle: Option<PathBuf>,
    /// Use only the first N requests of each workload.
    #[arg(long)]
    pub limit: Option<u64>,
    /// Controller settings (YAML, like configs/controller.yaml); default: built-in defaults.
    #[arg(long)]
    pub controller: Option<PathBuf>,
    /// Also write the table as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Folder for the SVG plots.
    #[arg(long, default_value = "target/apparate/plots")]
    pub plots: PathBuf,
    /// Do not draw plots.
    #[arg(long)]
    pub no_plots: bool,
    /// Skip workloads whose bundle is missing instead of failing.
    #[arg(long)]
    pub skip_missing: bool,
    /// Device to record on: auto, cpu, cuda or cuda:N.
    #[arg(long, env = "APPARATE_DEVICE", default_value = "auto", value_parser = parse_device)]
    pub device: DeviceChoice,
    /// libtorch threads (0 = one per core).
    #[arg(long, env = "APPARATE_THREADS", default_value_t = 0)]
    pub threads: usize,
}

/// One line of the table.
#[derive(Debug, Clone, Serialize)]
pub struct EvalRow {
    pub workload: String,
    pub policy: String,
    pub requests: u64,
    pub chunks: u64,
    pub accuracy: f64,
    pub worst_chunk_accuracy: f64,
    pub share_over_budget: f64,
    pub saving_p25: f64,
    pub saving_p50: f64,
    pub saving_p95: f64,
    pub saving_mean: f64,
    /// `saving_mean` as a share of the oracle's on the same workload.
    pub share_of_oracle: f64,
    pub tuning_ms: f64,
    pub configs_emitted: u64,
}

/// The whole evaluation, as `--json` writes it.
#[derive(Debug, Clone, Serialize)]
pub struct EvalTable {
    pub accuracy_budget: f64,
    pub chunk_size: usize,
    pub rows: Vec<EvalRow>,
}

/// A trace ready to evaluate.
struct Case {
    name: String,
    trace: Trace,
    profile: LatencyProfile,
    /// Segment names, first request and length, when it came from a workload.
    spans: Vec<(String, u64, u64)>,
}

/// Runs `eval`.
pub fn run(args: &Args) -> Result<()> {
    set_threads(args.threads);
    let controller = match &args.controller {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            ControllerConfig::from_yaml_str(&text)
                .with_context(|| format!("parsing {}", path.display()))?
        }
        None => ControllerConfig::default(),
    };
    let cases = cases(args)?;
    let mut rows = Vec::new();
    for case in &cases {
        let reports = evaluate(&case.trace, &case.profile, &controller)
            .with_context(|| format!("replaying {}", case.name))?;
        let oracle = reports
            .iter()
            .find(|r| r.policy == Policy::Oracle.name())
            .map_or(0.0, |r| r.summary.saving_mean);
        rows.extend(reports.iter().map(|r| row(&case.name, r, oracle)));
        if !args.no_plots {
            let files = plot::write_plots(
                &args.plots,
                &case.name,
                &case.spans,
                &case.trace,
                &case.profile,
                &reports,
                &controller,
            )?;
            for f in files {
                eprintln!("plot: {}", f.display());
            }
        }
    }
    let table = EvalTable {
        accuracy_budget: controller.accuracy_budget,
        chunk_size: controller.chunk_size,
        rows,
    };
    print_table(&table);
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&table)?;
        std::fs::write(path, text + "\n").with_context(|| format!("writing {}", path.display()))?;
        eprintln!("table written to {}", path.display());
    }
    Ok(())
}

/// Replays every policy; the static baselines are tuned on the first 10 % of the chunks.
pub fn evaluate(
    trace: &Trace,
    profile: &LatencyProfile,
    controller: &ControllerConfig,
) -> Result<Vec<ReplayReport>> {
    let chunks = trace.len().div_ceil(controller.chunk_size.max(1));
    let cfg = ReplayConfig {
        controller: controller.clone(),
        initial_ramps: None,
        static_slice_chunks: chunks.div_ceil(10).max(1),
    };
    Policy::ALL
        .iter()
        .map(|&p| replay(trace, profile, p, &cfg).with_context(|| format!("policy {}", p.name())))
        .collect()
}

fn row(workload: &str, r: &ReplayReport, oracle_saving: f64) -> EvalRow {
    let s = &r.summary;
    EvalRow {
        workload: workload.to_owned(),
        policy: r.policy.clone(),
        requests: s.requests,
        chunks: s.chunks,
        accuracy: s.accuracy,
        worst_chunk_accuracy: s.worst_chunk_accuracy,
        share_over_budget: s.share_over_budget,
        saving_p25: s.saving_p25,
        saving_p50: s.saving_p50,
        saving_p95: s.saving_p95,
        saving_mean: s.saving_mean,
        share_of_oracle: if oracle_saving > 0.0 {
            s.saving_mean / oracle_saving
        } else {
            0.0
        },
        tuning_ms: r.timing.tuning_time_us as f64 / 1000.0,
        configs_emitted: s.configs_emitted,
    }
}

fn print_table(t: &EvalTable) {
    println!(
        "accuracy vs the original model; budget {:.1} %, chunks of {}; saving = 1 - latency / full model (profile)",
        100.0 * t.accuracy_budget,
        t.chunk_size
    );
    println!(
        "{:<22} {:<17} {:>8} {:>8} {:>8} {:>7} {:>7} {:>7} {:>7} {:>7} {:>10}",
        "workload",
        "policy",
        "acc %",
        "worst %",
        "over %",
        "p25 %",
        "p50 %",
        "p95 %",
        "mean %",
        "/oracle",
        "tuning ms"
    );
    for r in &t.rows {
        println!(
            "{:<22} {:<17} {:>8.2} {:>8.2} {:>8.1} {:>7.1} {:>7.1} {:>7.1} {:>7.1} {:>7.2} {:>10.1}",
            r.workload,
            r.policy,
            100.0 * r.accuracy,
            100.0 * r.worst_chunk_accuracy,
            100.0 * r.share_over_budget,
            100.0 * r.saving_p25,
            100.0 * r.saving_p50,
            100.0 * r.saving_p95,
            100.0 * r.saving_mean,
            r.share_of_oracle,
            r.tuning_ms
        );
    }
}

fn cases(args: &Args) -> Result<Vec<Case>> {
    if let Some(trace_path) = &args.trace {
        let bundle = args
            .bundle
            .as_ref()
            .expect("clap: --trace requires --bundle");
        let trace = read_trace(trace_path)?;
        let name = trace_path
            .file_stem()
            .map_or_else(|| "trace".to_owned(), |s| s.to_string_lossy().into_owned());
        let trace = match args.limit {
            Some(n) => Trace {
                requests: trace.requests.into_iter().take(n as usize).collect(),
            },
            None => trace,
        };
        return Ok(vec![Case {
            name,
            trace,
            profile: read_profile(bundle)?,
            spans: Vec::new(),
        }]);
    }
    let files = workload_files(args)?;
    let mut out = Vec::new();
    let mut missing = Vec::new();
    for file in files {
        let workload = Workload::from_yaml_file(&file)?;
        let workload = match args.limit {
            Some(n) => workload.truncated(n),
            None => workload,
        };
        let bundle = args
            .bundle
            .clone()
            .unwrap_or_else(|| args.bundle_dir.join(&workload.bundle));
        if !bundle.join("manifest.yaml").is_file() {
            missing.push(format!(
                "  {}: no bundle in {} — run `apparate prepare --model {} --out {}`",
                file.display(),
                bundle.display(),
                workload.bundle,
                bundle.display()
            ));
            continue;
        }
        let trace = cached_trace(args, &file, &workload, &bundle)?;
        out.push(Case {
            name: workload.name.clone(),
            trace,
            profile: read_profile(&bundle)?,
            spans: workload.segment_spans(),
        });
    }
    if !missing.is_empty() {
        let msg = format!("missing bundles:\n{}", missing.join("\n"));
        if args.skip_missing {
            eprintln!("apparate eval: skipping workloads with {msg}");
        } else {
            bail!("{msg}\n(or pass --skip-missing to evaluate the others)");
        }
    }
    if out.is_empty() {
        bail!("nothing to evaluate");
    }
    Ok(out)
}

fn workload_files(args: &Args) -> Result<Vec<PathBuf>> {
    if !args.workloads.is_empty() {
        return Ok(args.workloads.clone());
    }
    let dir = &args.workload_dir;
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| {
            format!(
                "reading the workload folder {} (run from the repository root, or pass workload files)",
                dir.display()
            )
        })?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .collect();
    files.sort();
    if files.is_empty() {
        bail!("{} holds no *.yaml workloads", dir.display());
    }
    Ok(files)
}

/// The bundle's latency profile.
pub fn read_profile(bundle: &Path) -> Result<LatencyProfile> {
    let path = bundle.join("profile.yaml");
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "reading {} (is {} a bundle written by `apparate prepare`?)",
            path.display(),
            bundle.display()
        )
    })?;
    LatencyProfile::from_yaml_str(&text).with_context(|| format!("parsing {}", path.display()))
}

/// The workload's trace from the cache, recorded first when absent or stale.
fn cached_trace(args: &Args, file: &Path, workload: &Workload, bundle: &Path) -> Result<Trace> {
    let key = cache_key(file, args.limit, bundle)?;
    let path = args
        .cache_dir
        .join(format!("{}-{key:016x}.jsonl", workload.name));
    if path.is_file() {
        eprintln!("trace: {} (cached)", path.display());
        return read_trace(&path);
    }
    eprintln!(
        "recording {} ({} requests) through {}",
        workload.name,
        workload.len(),
        bundle.display()
    );
    let started = Instant::now();
    let trace = record(bundle, workload, args.device, true)?;
    write_trace(&trace, &path)?;
    eprintln!(
        "trace: {} ({:.1} s)",
        path.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(trace)
}

/// Changes whenever the workload file, the limit or the bundle's files change.
fn cache_key(file: &Path, limit: Option<u64>, bundle: &Path) -> Result<u64> {
    let mut h = DefaultHasher::new();
    std::fs::read(file)
        .with_context(|| format!("reading {}", file.display()))?
        .hash(&mut h);
    limit.hash(&mut h);
    for name in ["manifest.yaml", "profile.yaml", "weights.safetensors"] {
        let path = bundle.join(name);
        let meta =
            std::fs::metadata(&path).with_context(|| format!("reading {}", path.display()))?;
        meta.len().hash(&mut h);
        meta.modified().ok().hash(&mut h);
    }
    Ok(h.finish())
}
