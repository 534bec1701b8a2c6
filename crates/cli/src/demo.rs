//! `apparate demo`: the main job, end to end on this machine.
//!
//! 1. Makes sure a bundle exists (prepares a fast ResNet bundle on first use, cached).
//! 2. Starts `apparate serve` as a real process on a free loopback port.
//! 3. Phase *no exits*: drives the drifting workload through `Infer` with open-loop
//!    arrivals while the server runs its safe config (the original model).
//! 4. Starts `apparate sidecar run` as a real process beside it.
//! 5. Phase *apparate*: the same workload at the same rate while the sidecar tunes the
//!    exits live.
//! 6. Prints a live per-chunk table from the server's feedback stream, then a summary,
//!    and writes plots and a JSON summary. Ctrl-C stops everything cleanly.

use std::{
    collections::HashMap,
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use anyhow::{Context, Result, bail};
use apparate_proto::v1::{self, control_client::ControlClient};
use apparate_server::loadgen::{self, LoadReport, LoadSpec};
use serde::Serialize;
use tokio::sync::{mpsc, watch};

use crate::svg::{Chart, PALETTE, Series, stack};

/// Arguments of `apparate demo`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Serving device: auto, cpu, cuda or cuda:N.
    #[arg(long, env = "APPARATE_DEVICE", default_value = "auto")]
    pub device: String,
    /// libtorch threads of the server's inference worker (0 = one per core).
    #[arg(long, env = "APPARATE_THREADS", default_value_t = 0)]
    pub threads: usize,
    /// Bundle to serve; prepared on first use when it does not exist yet.
    #[arg(long, env = "APPARATE_DEMO_BUNDLE")]
    pub bundle: Option<PathBuf>,
    /// Backbone training epochs when the demo prepares its bundle (fast default).
    #[arg(long, default_value_t = 2)]
    pub epochs: u32,
    /// The drifting workload (configs/workloads/*.yaml).
    #[arg(long, default_value = "configs/workloads/fmnist-day-night.yaml")]
    pub workload: PathBuf,
    /// Open-loop arrival rate, requests per second, in both phases.
    #[arg(long, default_value_t = 150.0)]
    pub rate: f64,
    /// Send only the first N requests of the workload (0 = all).
    #[arg(long, default_value_t = 0)]
    pub requests: usize,
    /// Allowed accuracy loss against the original model.
    #[arg(long, default_value_t = 0.01)]
    pub accuracy_budget: f64,
    /// Where logs, plots and the summary go.
    #[arg(long, default_value = "target/apparate/demo")]
    pub out: PathBuf,
    /// OTLP/gRPC collector for the server's and sidecar's traces (e.g. http://127.0.0.1:4317).
    #[arg(long, env = "OTEL_EXPORTER_OTLP_ENDPOINT")]
    pub otlp_endpoint: Option<String>,
}

const CHUNK: usize = 64;

/// A child process that is stopped (SIGTERM, then SIGKILL) when dropped.
struct Managed {
    name: &'static str,
    child: Child,
}

impl Managed {
    fn stop(&mut self) {
        if matches!(self.child.try_wait(), Ok(Some(_))) {
            return;
        }
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        for _ in 0..100 {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        eprintln!("{} did not stop within 10 s: killing it", self.name);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Managed {
    fn drop(&mut self) {
        self.stop();
    }
}

fn spawn(name: &'static str, args: &[String], log: &Path) -> Result<Managed> {
    let exe = std::env::current_exe().context("locating the apparate binary")?;
    let log_file =
        std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
    let child = Command::new(exe)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log_file)
        .spawn()
        .with_context(|| format!("starting {name}"))?;
    Ok(Managed { name, child })
}

fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

/// One chunk of the table.
#[derive(Debug, Clone, Serialize)]
struct ChunkRow {
    index: usize,
    phase: &'static str,
    records: usize,
    accuracy: f64,
    exit_rate: f64,
    /// 1 − p50(arrival → release) / p50(arrival → final layer), measured by the server.
    p50_saving: f64,
    version: u64,
    thresholds: Vec<(u32, f32)>,
}

fn median(mut v: Vec<u64>) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_unstable();
    v[v.len() / 2] as f64
}

fn chunk_row(
    index: usize,
    phase: &'static str,
    records: &[v1::FeedbackRecord],
    configs: &HashMap<u64, v1::ExitConfig>,
) -> ChunkRow {
    let n = records.len().max(1) as f64;
    let answered = |r: &v1::FeedbackRecord| {
        r.exited_ramp
            .and_then(|e| r.ramps.iter().find(|o| o.ramp_id == e))
            .map_or(r.final_label, |o| o.label)
    };
    let correct = records
        .iter()
        .filter(|r| answered(r) == r.final_label)
        .count();
    let exits = records.iter().filter(|r| r.exited_ramp.is_some()).count();
    let released = median(records.iter().map(|r| r.queue_us + r.release_us).collect());
    let full = median(records.iter().map(|r| r.queue_us + r.exec_us).collect());
    let version = records.last().map_or(0, |r| r.config_version);
    ChunkRow {
        index,
        phase,
        records: records.len(),
        accuracy: correct as f64 / n,
        exit_rate: exits as f64 / n,
        p50_saving: if full > 0.0 {
            1.0 - released / full
        } else {
            0.0
        },
        version,
        thresholds: configs
            .get(&version)
            .map(|c| c.ramps.iter().map(|r| (r.ramp_id, r.threshold)).collect())
            .unwrap_or_default(),
    }
}

fn print_header() {
    println!(
        "{:>5}  {:<9} {:>8} {:>6} {:>8} {:>4}  thresholds (ramp:threshold)",
        "chunk", "phase", "accuracy", "exits", "p50 save", "ver"
    );
}

fn print_row(r: &ChunkRow, budget: f64) {
    let flag = if r.accuracy < 1.0 - budget { " !" } else { "" };
    let thresholds = r
        .thresholds
        .iter()
        .map(|(id, t)| format!("{id}:{}", apparate_controller::format_threshold(*t)))
        .collect::<Vec<_>>()
        .join(" ");
    println!(
        "{:>5}  {:<9} {:>7.1}%{flag:<2}{:>5.1}% {:>7.1}% {:>4}  {}",
        r.index,
        r.phase,
        100.0 * r.accuracy,
        100.0 * r.exit_rate,
        100.0 * r.p50_saving,
        r.version,
        if thresholds.is_empty() {
            "-".into()
        } else {
            thresholds
        }
    );
}

/// Reads the feedback stream, cuts it into chunks per phase, prints each row as it
/// completes, and returns every row at the end. Records with a request id above
/// `boundary` belong to the second phase.
async fn watch_chunks(
    mut control: ControlClient<tonic::transport::Channel>,
    boundary: Arc<AtomicU64>,
    budget: f64,
    mut stop: watch::Receiver<bool>,
) -> Result<Vec<ChunkRow>> {
    let mut feedback = control
        .stream_feedback(v1::FeedbackRequest {
            subscriber: "demo".into(),
            buffer_records: 1 << 16,
        })
        .await?
        .into_inner();
    let mut configs: HashMap<u64, v1::ExitConfig> = HashMap::new();
    let mut rows = Vec::new();
    let mut pending: Vec<v1::FeedbackRecord> = Vec::new();
    let mut phase = "no exits";
    print_header();
    loop {
        let batch = tokio::select! {
            m = feedback.message() => m?,
            _ = stop.changed() => None,
        };
        let Some(batch) = batch else { break };
        for record in batch.records {
            let record_phase = if record.request_id > boundary.load(Ordering::Acquire) {
                "apparate"
            } else {
                "no exits"
            };
            if record_phase != phase && !pending.is_empty() {
                let row = chunk_row(rows.len(), phase, &pending, &configs);
                print_row(&row, budget);
                rows.push(row);
                pending.clear();
            }
            phase = record_phase;
            if let std::collections::hash_map::Entry::Vacant(e) =
                configs.entry(record.config_version)
            {
                let active = control
                    .describe(v1::DescribeRequest {})
                    .await?
                    .into_inner()
                    .active_config
                    .unwrap_or_default();
                // The config may already have moved on: remember what was asked for.
                if active.version == record.config_version {
                    e.insert(active);
                }
            }
            pending.push(record);
            if pending.len() == CHUNK {
                let row = chunk_row(rows.len(), phase, &pending, &configs);
                print_row(&row, budget);
                rows.push(row);
                pending.clear();
            }
        }
    }
    if !pending.is_empty() {
        rows.push(chunk_row(rows.len(), phase, &pending, &configs));
    }
    Ok(rows)
}

/// What the demo measured, also written as JSON.
#[derive(Debug, Serialize)]
struct Summary {
    workload: String,
    rate_per_s: f64,
    requests_per_phase: usize,
    baseline_p50_ms: f64,
    baseline_p95_ms: f64,
    apparate_p50_ms: f64,
    apparate_p95_ms: f64,
    p50_ratio: f64,
    apparate_exit_rate: f64,
    apparate_accuracy: f64,
    chunks_within_budget: f64,
    chunks: Vec<ChunkRow>,
}

/// Prepares the demo's bundle if it is not there yet.
fn ensure_bundle(args: &Args) -> Result<PathBuf> {
    let dir = match &args.bundle {
        Some(dir) => dir.clone(),
        None => std::env::var_os("APPARATE_CACHE")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/apparate")))
            .unwrap_or_else(|| PathBuf::from("."))
            .join("bundles/demo-resnet"),
    };
    if dir.join("manifest.yaml").is_file() {
        println!("bundle: {} (cached)", dir.display());
        return Ok(dir);
    }
    println!(
        "bundle: preparing a ResNet on Fashion-MNIST into {} ({} epochs; a few minutes on 2 cores, once)",
        dir.display(),
        args.epochs
    );
    let defaults = crate::prepare::defaults();
    crate::prepare::run(&crate::prepare::Args {
        model: crate::prepare::ModelArg::Resnet,
        out: dir.clone(),
        quick: false,
        epochs: Some(args.epochs),
        bootstrap_share: defaults.bootstrap_share,
        ramp_augment_copies: defaults.ramp_augment_copies,
        deep_supervision: defaults.deep_supervision,
        device: crate::doctor::parse_device(&args.device).map_err(anyhow::Error::msg)?,
        threads: args.threads,
        seed: defaults.seed,
    })?;
    Ok(dir)
}

/// Runs the demo.
pub fn run(args: &Args) -> Result<()> {
    anyhow::ensure!(
        args.rate > 0.0 && args.rate.is_finite(),
        "--rate must be a positive number, got {}",
        args.rate
    );
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let bundle = ensure_bundle(args)?;
    let mut requests = crate::loadgen::workload_requests(&args.workload)?;
    if args.requests > 0 {
        requests.truncate(args.requests);
    }
    let requests = Arc::new(requests);
    let n = requests.len();
    let workload_name = args
        .workload
        .file_stem()
        .map_or_else(|| "workload".into(), |s| s.to_string_lossy().into_owned());

    let mut common = Vec::new();
    if let Some(e) = &args.otlp_endpoint {
        common.extend(["--otlp-endpoint".to_owned(), e.clone()]);
    }
    let server_log = args.out.join("server.log");
    let mut server = spawn(
        "apparate serve",
        &[
            vec![
                "serve".into(),
                "--bundle".into(),
                bundle.display().to_string(),
                "--listen".into(),
                "127.0.0.1:0".into(),
                "--device".into(),
                args.device.clone(),
                "--threads".into(),
                args.threads.to_string(),
            ],
            common.clone(),
        ]
        .concat(),
        &server_log,
    )?;
    let endpoint = {
        let stdout = server.child.stdout.take().context("server stdout")?;
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line)?;
        match line.trim().strip_prefix("apparate-server listening on ") {
            Some(url) => url.to_owned(),
            None => bail!(
                "the server did not start; {}:\n{}",
                server_log.display(),
                tail(&server_log)
            ),
        }
    };
    println!("server: {endpoint} (log: {})", server_log.display());
    let duration = Duration::from_secs_f64(n as f64 / args.rate);
    println!(
        "workload: {workload_name}, {n} requests at {} req/s (open loop, Poisson): {:.0} s per phase\n",
        args.rate,
        duration.as_secs_f64()
    );

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let sidecar_log = args.out.join("sidecar.log");
    let result = runtime.block_on(async {
        let channel = tonic::transport::Channel::from_shared(endpoint.clone())?
            .connect()
            .await?;
        let client = loadgen::connect(&endpoint)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let boundary = Arc::new(AtomicU64::new(u64::MAX));
        let (stop_tx, stop_rx) = watch::channel(false);
        let watcher = tokio::spawn(watch_chunks(
            ControlClient::new(channel.clone()),
            Arc::clone(&boundary),
            args.accuracy_budget,
            stop_rx,
        ));
        let spec = |seed| LoadSpec {
            rate_per_s: args.rate,
            duration,
            poisson: true,
            seed,
            ..LoadSpec::default()
        };
        let (interrupted_tx, mut interrupted) = mpsc::channel::<()>(1);
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                let _ = interrupted_tx.send(()).await;
            }
        });

        let (spec_a, spec_b) = (spec(1), spec(2));
        let baseline = tokio::select! {
            r = loadgen::run(client.clone(), Arc::clone(&requests), &spec_a, |_| {}) => r,
            _ = interrupted.recv() => bail!("interrupted"),
        };
        let last_id = baseline
            .samples
            .iter()
            .map(|s| s.reply.request_id)
            .max()
            .unwrap_or(0);
        boundary.store(last_id, Ordering::Release);

        let mut sidecar_args = vec![
            "sidecar".to_owned(),
            "run".into(),
            "--server".into(),
            endpoint.clone(),
            "--accuracy-budget".into(),
            args.accuracy_budget.to_string(),
        ];
        sidecar_args.extend(common.iter().cloned());
        let sidecar = spawn("apparate sidecar", &sidecar_args, &sidecar_log)?;
        let apparate = tokio::select! {
            r = loadgen::run(client.clone(), Arc::clone(&requests), &spec_b, |_| {}) => r,
            _ = interrupted.recv() => bail!("interrupted"),
        };
        // Let the last feedback arrive, then stop the table.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let _ = stop_tx.send(true);
        let rows = watcher.await??;
        Ok((baseline, apparate, rows, sidecar))
    });
    let (baseline, apparate, rows, mut sidecar) = match result {
        Ok(r) => r,
        Err(e) => {
            server.stop();
            return Err(e);
        }
    };
    sidecar.stop();
    server.stop();
    println!(
        "\nstopped the sidecar and the server (logs: {}, {})",
        sidecar_log.display(),
        server_log.display()
    );
    summarize(args, &workload_name, n, &baseline, &apparate, rows)
}

fn summarize(
    args: &Args,
    workload: &str,
    n: usize,
    baseline: &LoadReport,
    apparate: &LoadReport,
    rows: Vec<ChunkRow>,
) -> Result<()> {
    let ours: Vec<&ChunkRow> = rows.iter().filter(|r| r.phase == "apparate").collect();
    let records: usize = ours.iter().map(|r| r.records).sum();
    let accuracy = ours
        .iter()
        .map(|r| r.accuracy * r.records as f64)
        .sum::<f64>()
        / records.max(1) as f64;
    let full: Vec<&&ChunkRow> = ours.iter().filter(|r| r.records == CHUNK).collect();
    let within = full
        .iter()
        .filter(|r| r.accuracy >= 1.0 - args.accuracy_budget)
        .count() as f64
        / full.len().max(1) as f64;
    let summary = Summary {
        workload: workload.into(),
        rate_per_s: args.rate,
        requests_per_phase: n,
        baseline_p50_ms: baseline.latency_ms(0.5),
        baseline_p95_ms: baseline.latency_ms(0.95),
        apparate_p50_ms: apparate.latency_ms(0.5),
        apparate_p95_ms: apparate.latency_ms(0.95),
        p50_ratio: apparate.latency_ms(0.5) / baseline.latency_ms(0.5).max(1e-9),
        apparate_exit_rate: apparate.exit_rate(),
        apparate_accuracy: accuracy,
        chunks_within_budget: within,
        chunks: rows,
    };
    println!(
        "\nsummary ({workload}, {} req/s, {n} requests per phase expected)",
        args.rate
    );
    println!("  phase      answered  p50 ms  p95 ms  released early");
    for (name, r) in [("no exits", baseline), ("apparate", apparate)] {
        println!(
            "  {name:<9} {:>9} {:>7.2} {:>7.2} {:>14.1}%",
            r.samples.len(),
            r.latency_ms(0.5),
            r.latency_ms(0.95),
            100.0 * r.exit_rate()
        );
    }
    println!(
        "  p50 latency with exits / without: {:.2}x; accuracy vs the original model {:.2} %; \
         {:.0} % of full chunks within the {:.0} % budget",
        summary.p50_ratio,
        100.0 * accuracy,
        100.0 * within,
        100.0 * args.accuracy_budget
    );
    let json = args.out.join("summary.json");
    std::fs::write(&json, serde_json::to_string_pretty(&summary)?)?;
    let svg = args.out.join("demo.svg");
    std::fs::write(
        &svg,
        plots(&summary, baseline, apparate, args.accuracy_budget),
    )?;
    println!("  wrote {} and {}", svg.display(), json.display());
    Ok(())
}

fn cdf(report: &LoadReport) -> Vec<(f64, f64)> {
    let mut ms: Vec<f64> = report
        .samples
        .iter()
        .map(|s| s.latency_us as f64 / 1000.0)
        .collect();
    ms.sort_by(f64::total_cmp);
    let n = ms.len().max(1) as f64;
    let step = (ms.len() / 400).max(1);
    ms.iter()
        .enumerate()
        .step_by(step)
        .map(|(i, &x)| (x, (i + 1) as f64 / n))
        .collect()
}

fn series(name: &str, color: usize, points: Vec<(f64, f64)>) -> Series {
    Series {
        name: name.into(),
        color: PALETTE[color % PALETTE.len()].into(),
        points,
        dashed: false,
        step: false,
    }
}

fn plots(s: &Summary, baseline: &LoadReport, apparate: &LoadReport, budget: f64) -> String {
    let x_max = s.chunks.len().max(1) as f64;
    let boundary = s
        .chunks
        .iter()
        .position(|r| r.phase == "apparate")
        .unwrap_or(s.chunks.len()) as f64;
    let vlines = vec![(boundary, "sidecar starts".to_owned())];
    let at = |f: fn(&ChunkRow) -> f64| -> Vec<(f64, f64)> {
        s.chunks.iter().map(|r| (r.index as f64, f(r))).collect()
    };
    let min_acc = s
        .chunks
        .iter()
        .map(|r| r.accuracy)
        .fold(1.0_f64, f64::min)
        .min(1.0 - 2.0 * budget);
    let accuracy = Chart {
        title: "Accuracy per chunk vs the original model".into(),
        x_label: "chunk (64 requests)".into(),
        y_label: "accuracy".into(),
        x_range: (0.0, x_max),
        y_range: ((min_acc - 0.01).max(0.0), 1.0),
        series: vec![series("accuracy", 0, at(|r| r.accuracy))],
        vlines: vlines.clone(),
        hlines: vec![(1.0 - budget, "budget".into())],
        y_percent: true,
        ..Chart::default()
    };
    let mut ramp_ids: Vec<u32> = s
        .chunks
        .iter()
        .flat_map(|r| r.thresholds.iter().map(|t| t.0))
        .collect();
    ramp_ids.sort_unstable();
    ramp_ids.dedup();
    let thresholds = Chart {
        title: "Thresholds per active ramp (gaps: inactive)".into(),
        x_label: "chunk".into(),
        y_label: "threshold".into(),
        x_range: (0.0, x_max),
        y_range: (0.0, 1.0),
        series: ramp_ids
            .iter()
            .enumerate()
            .map(|(i, &id)| Series {
                step: true,
                ..series(
                    &format!("ramp {id}"),
                    i,
                    s.chunks
                        .iter()
                        .map(|r| {
                            let t = r.thresholds.iter().find(|t| t.0 == id);
                            (r.index as f64, t.map_or(f64::NAN, |t| f64::from(t.1)))
                        })
                        .collect(),
                )
            })
            .collect(),
        vlines: vlines.clone(),
        ..Chart::default()
    };
    let savings = Chart {
        title: "Exit rate and measured p50 latency saving per chunk".into(),
        x_label: "chunk".into(),
        y_label: "share".into(),
        x_range: (0.0, x_max),
        y_range: (0.0, 1.0),
        series: vec![
            series("exit rate", 1, at(|r| r.exit_rate)),
            series("p50 saving", 2, at(|r| r.p50_saving)),
        ],
        vlines,
        y_percent: true,
        ..Chart::default()
    };
    let (a, b) = (cdf(baseline), cdf(apparate));
    let x_hi = a.iter().chain(&b).map(|p| p.0).fold(1.0_f64, f64::max);
    let latency = Chart {
        title: "Client latency CDF, same arrival rate".into(),
        x_label: "latency (ms)".into(),
        y_label: "share of requests".into(),
        x_range: (0.0, x_hi),
        y_range: (0.0, 1.0),
        series: vec![series("no exits", 6, a), series("apparate", 0, b)],
        y_percent: true,
        ..Chart::default()
    };
    stack(&[accuracy, thresholds, savings, latency], 1000.0, 320.0)
}
