//! The command line: `run` (the live loop) and `replay` (a policy over a recorded trace).
//! [`SidecarArgs`] is a `clap::Args`, so `apparate sidecar ...` can embed it unchanged.
//!
//! Precedence for `run`: flag > `APPARATE_SIDECAR_*` environment variable > YAML file >
//! built-in default. Bad configuration exits with status 64 (`EX_USAGE`).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use apparate_controller::{LatencyProfile, Policy, ReplayConfig, Trace, replay};
use apparate_telemetry::LogFormat;
use clap::{Args, Subcommand, ValueEnum};

use crate::config::SidecarConfig;
use crate::error::SidecarError;
use crate::replay_table;

/// Exit status for bad configuration (BSD `EX_USAGE`).
pub const EXIT_CONFIG: u8 = 64;

/// `apparate-sidecar`: tunes a model server's early exits live, or replays a trace.
#[derive(Debug, Args)]
pub struct SidecarArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: SidecarCommand,
}

/// Sidecar subcommands.
#[derive(Debug, Subcommand)]
pub enum SidecarCommand {
    /// Connect to a server's Control service and tune its exits until stopped (ctrl-c).
    Run(RunArgs),
    /// Replay a policy over a recorded trace (no server) and print the per-chunk table.
    Replay(ReplayArgs),
}

/// Flags of `run`; each overrides the YAML file.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Sidecar YAML (see configs/sidecar.yaml); built-in defaults when absent.
    #[arg(long, short, env = "APPARATE_SIDECAR_CONFIG")]
    pub config: Option<PathBuf>,
    /// Server endpoint, e.g. http://127.0.0.1:50051 (`server.endpoint`).
    #[arg(long, env = "APPARATE_SIDECAR_SERVER")]
    pub server: Option<String>,
    /// Lease of pushed configs in ms, 0 = none (`lease_ms`).
    #[arg(long, env = "APPARATE_SIDECAR_LEASE_MS")]
    pub lease_ms: Option<u32>,
    /// Allowed accuracy loss versus the original model, e.g. 0.01 (`controller.accuracy_budget`).
    #[arg(long, env = "APPARATE_SIDECAR_ACCURACY_BUDGET")]
    pub accuracy_budget: Option<f64>,
    /// Requests per chunk (`controller.chunk_size`).
    #[arg(long, env = "APPARATE_SIDECAR_CHUNK_SIZE")]
    pub chunk_size: Option<usize>,
    /// OTLP/gRPC collector, e.g. http://127.0.0.1:4317 (`telemetry.otlp_endpoint`);
    /// OTEL_EXPORTER_OTLP_ENDPOINT is used when neither is set.
    #[arg(long, env = "APPARATE_SIDECAR_OTLP_ENDPOINT")]
    pub otlp_endpoint: Option<String>,
    /// `human` or `json` logs (`telemetry.log_format`).
    #[arg(long, env = "APPARATE_SIDECAR_LOG_FORMAT")]
    pub log_format: Option<String>,
    /// Log filter such as `info` (`telemetry.log_filter`); RUST_LOG wins.
    #[arg(long, env = "APPARATE_SIDECAR_LOG_FILTER")]
    pub log_filter: Option<String>,
}

/// Policies `replay` can run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PolicyArg {
    /// Every request runs the whole model.
    NoExits,
    /// One threshold shared by the initial ramps, tuned once on the first chunks.
    StaticShared,
    /// One threshold per initial ramp, tuned once on the first chunks.
    StaticPerRamp,
    /// The live loop with Apparate's greedy tuner.
    Greedy,
    /// The live loop with our tuner.
    Ours,
    /// Earliest agreeing ramp for every request: an upper bound.
    Oracle,
}

/// Flags of `replay`.
#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// Recorded trace, JSON Lines (docs/trace-format.md).
    #[arg(long)]
    pub trace: PathBuf,
    /// Latency profile YAML of the model the trace was recorded on.
    #[arg(long)]
    pub profile: PathBuf,
    /// Policy to replay.
    #[arg(long, value_enum, default_value_t = PolicyArg::Ours)]
    pub policy: PolicyArg,
    /// With `ours`: keep a one-sided confidence bound on accuracy within budget.
    #[arg(long)]
    pub statistical: bool,
    /// Sidecar YAML whose `controller` section sets the budget, chunk size, ...
    #[arg(long, short, env = "APPARATE_SIDECAR_CONFIG")]
    pub config: Option<PathBuf>,
}

impl RunArgs {
    /// The file (or defaults) with every given flag applied, validated.
    pub fn load(&self) -> Result<SidecarConfig, SidecarError> {
        let mut cfg = match &self.config {
            Some(path) => SidecarConfig::from_file(path)?,
            None => SidecarConfig::default(),
        };
        if let Some(v) = &self.server {
            cfg.server.endpoint = v.clone();
        }
        if let Some(v) = self.lease_ms {
            cfg.lease_ms = v;
        }
        if let Some(v) = self.accuracy_budget {
            cfg.controller.accuracy_budget = v;
        }
        if let Some(v) = self.chunk_size {
            cfg.controller.chunk_size = v;
        }
        if let Some(v) = &self.otlp_endpoint {
            cfg.telemetry.otlp_endpoint = Some(v.clone());
        }
        if let Some(v) = &self.log_format {
            cfg.telemetry.log_format = v.parse::<LogFormat>().map_err(|_| {
                SidecarError::config("telemetry.log_format", v, "must be `human` or `json`")
            })?;
        }
        if let Some(v) = &self.log_filter {
            cfg.telemetry.log_filter = v.clone();
        }
        cfg.validate()?;
        Ok(cfg)
    }
}

/// Runs a parsed command line; builds its own Tokio runtime for `run`.
pub fn run_cli(args: SidecarArgs) -> ExitCode {
    let result = match args.command {
        SidecarCommand::Run(a) => run_live(&a),
        SidecarCommand::Replay(a) => run_replay(&a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("apparate-sidecar: {e}");
            if e.is_config() {
                ExitCode::from(EXIT_CONFIG)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

fn run_live(args: &RunArgs) -> Result<(), SidecarError> {
    let cfg = args.load()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|source| SidecarError::Io {
            path: PathBuf::from("<tokio runtime>"),
            source,
        })?;
    runtime.block_on(async {
        let telemetry = apparate_telemetry::init(&cfg.telemetry)?;
        let stats = crate::live::run(cfg, shutdown_signal()).await;
        telemetry.shutdown();
        stats.map(|_| ())
    })
}

/// Completes on ctrl-c or, on Unix, SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
    tracing::info!("shutdown requested");
}

fn read(path: &Path) -> Result<String, SidecarError> {
    std::fs::read_to_string(path).map_err(|source| SidecarError::Io {
        path: path.to_owned(),
        source,
    })
}

fn run_replay(args: &ReplayArgs) -> Result<(), SidecarError> {
    let controller = match &args.config {
        Some(path) => {
            let cfg = SidecarConfig::from_file(path)?;
            cfg.validate()?;
            cfg.controller
        }
        None => Default::default(),
    };
    let policy = match (args.policy, args.statistical) {
        (PolicyArg::Ours, statistical) => Policy::Ours { statistical },
        (_, true) => {
            return Err(SidecarError::config(
                "--statistical",
                "true",
                "only applies to --policy ours",
            ));
        }
        (PolicyArg::NoExits, _) => Policy::NoExits,
        (PolicyArg::StaticShared, _) => Policy::StaticShared,
        (PolicyArg::StaticPerRamp, _) => Policy::StaticPerRamp,
        (PolicyArg::Greedy, _) => Policy::Greedy,
        (PolicyArg::Oracle, _) => Policy::Oracle,
    };
    let with_path = |path: &Path| {
        let path = path.to_owned();
        move |e: apparate_controller::ControllerError| SidecarError::Yaml {
            path,
            message: e.to_string(),
        }
    };
    let trace = Trace::from_jsonl_str(&read(&args.trace)?).map_err(with_path(&args.trace))?;
    let profile =
        LatencyProfile::from_yaml_str(&read(&args.profile)?).map_err(with_path(&args.profile))?;
    let cfg = ReplayConfig {
        controller,
        ..ReplayConfig::default()
    };
    let report = replay(&trace, &profile, policy, &cfg)?;
    let p50 = replay_table::chunk_p50_savings(&report, &trace, &profile, cfg.controller.chunk_size);
    print!("{}", replay_table::render(&report, &p50));
    Ok(())
}
