//! The apparate model server: serves a prepared bundle over `apparate.v1` (see
//! docs/protocol.md) with dynamic batching and early release, publishes a feedback
//! record for every request, and takes live exit configs from a controller.
//!
//! Shape of the process:
//! - tonic services on the async runtime validate requests and hand them to
//! - one inference worker thread ([`worker`]) through a bounded queue (full queue =
//!   `RESOURCE_EXHAUSTED` at once). The worker batches, runs the backbone, releases each
//!   reply at its first confident active ramp, runs every input to the final layer and
//!   publishes feedback records to
//! - the feedback hub ([`feedback`]): per-subscriber bounded, drop-oldest buffers, so a
//!   slow subscriber never slows serving;
//! - the config state ([`state`]): NACK rules, atomic switch between batches, leases
//!   with a fallback to the safe static config, watched by a small timer task.
//!
//! [`start`] runs it all in-process (tests, benches, the demo); [`cli`] is `apparate serve`.

pub mod cli;
pub mod config;
pub mod feedback;
pub mod loadgen;
mod metrics;
mod service;
pub mod state;
mod worker;

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use apparate_engine::device::DeviceChoice;
use apparate_proto::v1::{control_server::ControlServer, inference_server::InferenceServer};
pub use config::ServerConfig;
use tokio::{net::TcpListener, sync::watch, task::JoinHandle};
use tokio_stream::wrappers::TcpListenerStream;

use crate::{
    feedback::FeedbackHub,
    service::{ControlService, InferenceService, Shared},
    state::ConfigState,
    worker::WorkerSettings,
};

/// Why the server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("configuration: {0}")]
    Config(#[from] config::ConfigError),
    #[error(transparent)]
    Bundle(#[from] apparate_engine::EngineError),
    #[error("safe_config: {field}: {reason}")]
    SafeConfig { field: String, reason: String },
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error("gRPC transport: {0}")]
    Transport(#[from] tonic::transport::Error),
    #[error("reflection service: {0}")]
    Reflection(String),
    #[error("telemetry: {0}")]
    Telemetry(String),
    #[error("the inference worker died while loading the bundle")]
    WorkerDied,
}

/// A server running in this process.
#[derive(Debug)]
pub struct RunningServer {
    addr: SocketAddr,
    device: String,
    stop: watch::Sender<bool>,
    task: JoinHandle<Result<(), ServeError>>,
}

impl RunningServer {
    /// The address it listens on (the real port when the config said port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://ADDR`, for clients.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The serving device, in words.
    pub fn device(&self) -> &str {
        &self.device
    }

    /// Stops accepting requests, answers every accepted one, ends the streams, and
    /// waits for the worker to drain.
    pub async fn shutdown(self) -> Result<(), ServeError> {
        let _ = self.stop.send(true);
        self.task.await.unwrap_or(Err(ServeError::WorkerDied))
    }
}

/// Loads the bundle, binds the socket and starts serving; returns once both are ready.
/// Telemetry is the caller's (see [`cli`]).
pub async fn start(cfg: ServerConfig) -> Result<RunningServer, ServeError> {
    cfg.validate()?;
    let bundle = cfg.bundle.clone().expect("validated");
    let device = DeviceChoice::parse(&cfg.device).expect("validated");
    let hub = Arc::new(FeedbackHub::default());
    let settings = WorkerSettings {
        bundle,
        device,
        threads: cfg.threads,
        max_batch: cfg.batching.max_batch_size as usize,
        max_wait: Duration::from_millis(u64::from(cfg.batching.max_wait_ms)),
        queue: cfg.batching.queue_capacity as usize,
    };

    let listener = TcpListener::bind(cfg.listen)
        .await
        .map_err(|source| ServeError::Bind {
            addr: cfg.listen,
            source,
        })?;
    let addr = listener.local_addr()?;

    let safe = cfg.safe_exit_config();
    let limits = cfg.limits.clone();
    let (jobs, worker, loaded) = tokio::task::spawn_blocking({
        let hub = Arc::clone(&hub);
        move || {
            worker::spawn(settings, hub, move |manifest| {
                let candidates = u32::try_from(manifest.candidates.len()).unwrap_or(u32::MAX);
                ConfigState::new(
                    safe,
                    candidates,
                    limits.max_active_ramps,
                    limits.max_lease_ms,
                )
                .map(Arc::new)
                .map_err(|r| ServeError::SafeConfig {
                    field: r.field,
                    reason: r.reason,
                })
            })
        }
    })
    .await
    .map_err(|_| ServeError::WorkerDied)??;
    let state = Arc::clone(&loaded.state);
    let candidates = loaded.manifest.candidates.len();
    tracing::info!(
        bundle = %loaded.manifest.name,
        candidates,
        device = %loaded.device,
        %addr,
        "serving"
    );

    let (stop, shutdown) = watch::channel(false);
    let loaded_device = loaded.device.clone();
    let shared = Arc::new(Shared {
        family: loaded.manifest.architecture.family().as_str().to_owned(),
        manifest: loaded.manifest,
        profile: loaded.profile,
        limits: cfg.limits.clone(),
        max_batch: cfg.batching.max_batch_size,
        default_buffer: cfg.feedback_buffer_records,
        jobs,
        next_id: AtomicU64::new(1),
        state: Arc::clone(&state),
        hub: Arc::clone(&hub),
        stopping: AtomicBool::new(false),
        shutdown: shutdown.clone(),
    });

    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_serving::<InferenceServer<InferenceService>>()
        .await;
    health.set_serving::<ControlServer<ControlService>>().await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(apparate_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .map_err(|e| ServeError::Reflection(e.to_string()))?;

    tokio::spawn(watch_leases(Arc::clone(&state), shutdown.clone()));

    let router = tonic::transport::Server::builder()
        .add_service(health_service)
        .add_service(reflection)
        .add_service(InferenceServer::new(InferenceService(Arc::clone(&shared))))
        .add_service(ControlServer::new(ControlService(Arc::clone(&shared))));
    let mut stop_rx = shutdown;
    let task = tokio::spawn(async move {
        let signal = {
            let shared = Arc::clone(&shared);
            async move {
                let _ = stop_rx.wait_for(|s| *s).await;
                tracing::info!("shutting down: finishing accepted requests");
                shared.stopping.store(true, Ordering::Release);
                shared.hub.close_all();
                health
                    .set_not_serving::<InferenceServer<InferenceService>>()
                    .await;
            }
        };
        let served = router
            .serve_with_incoming_shutdown(TcpListenerStream::new(listener), signal)
            .await;
        // The services (and with them every job sender) are gone: the worker drains
        // its queue and stops.
        drop(shared);
        tokio::task::spawn_blocking(move || worker.join())
            .await
            .ok();
        tracing::info!("server stopped");
        served.map_err(ServeError::from)
    });
    Ok(RunningServer {
        addr,
        device: loaded_device,
        stop,
        task,
    })
}

/// Expires leases on time even when no batch runs.
async fn watch_leases(state: Arc<ConfigState>, mut shutdown: watch::Receiver<bool>) {
    loop {
        let deadline = state.lease_deadline();
        tokio::select! {
            _ = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d.into()).await,
                    None => std::future::pending().await,
                }
            } => {
                state.expire_if_due(std::time::Instant::now());
            }
            _ = state.lease_changed.notified() => {}
            _ = shutdown.changed() => return,
        }
    }
}
