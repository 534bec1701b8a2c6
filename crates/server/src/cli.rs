//! `apparate serve`: flags and environment variables over `server.yaml` over defaults.

use std::{net::SocketAddr, path::PathBuf, process::ExitCode};

use crate::{ServeError, ServerConfig, config::ConfigError};

/// Exit status for a bad configuration (sysexits' EX_USAGE).
pub const EXIT_BAD_CONFIG: u8 = 64;

/// Serve a prepared bundle over gRPC (apparate.v1), with early release and live exit configs.
///
/// Settings come from defaults, then `--config FILE`, then environment variables, then flags.
/// Ctrl-C or SIGTERM stops accepting requests, answers every accepted one, then exits.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ServeArgs {
    /// YAML configuration (see configs/server.yaml for every field).
    #[arg(long, env = "APPARATE_SERVER_CONFIG")]
    pub config: Option<PathBuf>,
    /// Bundle folder written by `apparate prepare`.
    #[arg(long, env = "APPARATE_SERVER_BUNDLE")]
    pub bundle: Option<PathBuf>,
    /// Address to listen on (default 127.0.0.1:50051; port 0 picks a free one).
    #[arg(long, env = "APPARATE_SERVER_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Serving device: auto, cpu, cuda or cuda:N.
    #[arg(long, env = "APPARATE_SERVER_DEVICE")]
    pub device: Option<String>,
    /// libtorch threads of the inference worker (0 = one per core).
    #[arg(long, env = "APPARATE_SERVER_THREADS")]
    pub threads: Option<usize>,
    /// Largest batch formed.
    #[arg(long, env = "APPARATE_SERVER_MAX_BATCH_SIZE")]
    pub max_batch_size: Option<u32>,
    /// Longest a request waits for others to join its batch (ms).
    #[arg(long, env = "APPARATE_SERVER_MAX_WAIT_MS")]
    pub max_wait_ms: Option<u32>,
    /// Requests queued before new ones get RESOURCE_EXHAUSTED.
    #[arg(long, env = "APPARATE_SERVER_QUEUE_CAPACITY")]
    pub queue_capacity: Option<u32>,
    /// Most ramps a pushed config may activate.
    #[arg(long, env = "APPARATE_SERVER_MAX_ACTIVE_RAMPS")]
    pub max_active_ramps: Option<u32>,
    /// Longest lease granted to a pushed config (ms, 0 = no limit).
    #[arg(long, env = "APPARATE_SERVER_MAX_LEASE_MS")]
    pub max_lease_ms: Option<u32>,
    /// OTLP/gRPC endpoint for traces and metrics (else OTEL_EXPORTER_OTLP_ENDPOINT; unset = none).
    #[arg(long)]
    pub otlp_endpoint: Option<String>,
    /// Log as JSON lines instead of human-readable text.
    #[arg(long)]
    pub json_logs: bool,
}

impl ServeArgs {
    /// The effective configuration: defaults, file, then these overrides.
    pub fn resolve(&self) -> Result<ServerConfig, ConfigError> {
        let mut cfg = match &self.config {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
                    field: "--config".into(),
                    reason: format!("{}: {e}", path.display()),
                })?;
                ServerConfig::from_yaml_str(&text).map_err(|e| ConfigError {
                    field: format!("{}: {}", path.display(), e.field),
                    reason: e.reason,
                })?
            }
            None => ServerConfig::default(),
        };
        macro_rules! set {
            ($flag:expr => $($field:ident).+) => {
                if let Some(v) = $flag.clone() {
                    cfg.$($field).+ = v;
                }
            };
        }
        set!(self.listen => listen);
        set!(self.device => device);
        set!(self.threads => threads);
        set!(self.max_batch_size => batching.max_batch_size);
        set!(self.max_wait_ms => batching.max_wait_ms);
        set!(self.queue_capacity => batching.queue_capacity);
        set!(self.max_active_ramps => limits.max_active_ramps);
        set!(self.max_lease_ms => limits.max_lease_ms);
        if self.bundle.is_some() {
            cfg.bundle.clone_from(&self.bundle);
        }
        if self.otlp_endpoint.is_some() {
            cfg.telemetry.otlp_endpoint.clone_from(&self.otlp_endpoint);
        }
        if self.json_logs {
            cfg.telemetry.log_format = apparate_telemetry::LogFormat::Json;
        }
        cfg.validate()?;
        cfg.check_bundle_folder()?;
        Ok(cfg)
    }
}

/// Runs `apparate serve` to completion: exit 0 after a clean shutdown, 64 on a bad
/// configuration, 1 on any other failure.
pub fn run_cli(args: &ServeArgs) -> ExitCode {
    let cfg = match args.resolve() {
        Ok(cfg) => cfg,
        Err(e) => {
            eprintln!("apparate serve: bad configuration: {e}");
            return ExitCode::from(EXIT_BAD_CONFIG);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("apparate serve: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve_until_signal(cfg)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e @ (ServeError::Config(_) | ServeError::SafeConfig { .. })) => {
            eprintln!("apparate serve: bad configuration: {e}");
            ExitCode::from(EXIT_BAD_CONFIG)
        }
        Err(e) => {
            eprintln!("apparate serve: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn serve_until_signal(cfg: ServerConfig) -> Result<(), ServeError> {
    let telemetry = apparate_telemetry::init(&cfg.telemetry)
        .map_err(|e| ServeError::Telemetry(e.to_string()))?;
    let server = crate::start(cfg).await?;
    // One line on stdout that scripts (and the demo) can wait for.
    println!("apparate-server listening on {}", server.endpoint());
    shutdown_signal().await;
    let result = server.shutdown().await;
    telemetry.shutdown();
    result
}

/// Ctrl-C, or SIGTERM on Unix.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}
