//! The live control loop. [`run`] connects, learns the server from `Describe`, and runs
//! one *session* until a stream or call fails, then reconnects with backoff; the
//! controller (and so the tuning window and the config version) survives reconnects.
//!
//! Versions: a config carries a version above everything the server has seen:
//! `DescribeReply.highest_version`. A server that does not report it may have let an
//! earlier sidecar's lease expire at a version we cannot learn, so a fresh sidecar then
//! starts from the current Unix time in ms: monotonic across restarts, no state on disk.
//!
//! Session events:
//! * feedback → controller → `chunk` span (+ decision spans) → push when the config changed;
//! * ACK → next push if the controller moved on meanwhile;
//! * NACK → warn with field and reason, count, `Describe`, adopt the server's config
//!   (new version) and push it, so the lease is ours again;
//! * `LeaseExpired` → warn, count, `Describe`, re-push our config under a new version;
//! * renewal timer → re-send the config in force (same version, new nonce);
//! * no answer within `ack_timeout_ms`, or any stream error → reconnect.

use std::future::Future;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use apparate_controller::{Controller, ControllerError, ExitConfig};
use apparate_proto::v1 as pb;
use apparate_proto::v1::control_client::ControlClient;
use apparate_telemetry::names::attr;
use opentelemetry::KeyValue;
use thiserror::Error;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Channel, Endpoint};
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::backoff::Backoff;
use crate::config::SidecarConfig;
use crate::convert::{self, ConvertError};

mod resync;
use crate::error::SidecarError;
use crate::observe::{Metrics, observe_chunk};
use crate::push::{Nonces, Pusher};

/// NACKs in a row (without an ACK between) after which the session is restarted.
const MAX_NACKS_IN_A_ROW: u32 = 3;

/// What a run did, returned after shutdown.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunStats {
    /// Sessions that got as far as streaming.
    pub sessions: u64,
    /// Feedback records received.
    pub records: u64,
    /// Chunks closed.
    pub chunks: u64,
    /// Pushes ACKed (renewals included).
    pub acks: u64,
    /// Pushes NACKed.
    pub nacks: u64,
    /// Lease-expired notices received.
    pub lease_expired: u64,
    /// The config the controller wanted last.
    pub last_config: Option<ExitConfig>,
}

/// Why a session ended (the loop reconnects after each).
#[derive(Debug, Error)]
enum SessionError {
    #[error("connecting to {endpoint}: {reason}")]
    Connect { endpoint: String, reason: String },
    #[error("{call}: {status}")]
    Rpc {
        call: &'static str,
        status: tonic::Status,
    },
    #[error("the server closed {0}")]
    Closed(&'static str),
    #[error("no answer to config push {nonce} within {ms} ms")]
    AckTimeout { nonce: String, ms: u64 },
    #[error("{0} NACKs in a row")]
    TooManyNacks(u32),
    #[error("protocol: {0}")]
    Protocol(&'static str),
    #[error(transparent)]
    Convert(#[from] ConvertError),
    #[error("controller: {0}")]
    Controller(#[from] ControllerError),
}

/// `e` and its sources, joined: tonic's transport errors hide the cause in `source()`.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut next = e.source();
    while let Some(cause) = next {
        out.push_str(": ");
        out.push_str(&cause.to_string());
        next = cause.source();
    }
    out
}

fn rpc(call: &'static str) -> impl Fn(tonic::Status) -> SessionError {
    move |status| SessionError::Rpc { call, status }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cause {
    Connect,
    Nack,
    LeaseExpired,
}

impl Cause {
    fn as_str(self) -> &'static str {
        match self {
            Self::Connect => "connect",
            Self::Nack => "nack",
            Self::LeaseExpired => "lease_expired",
        }
    }
}

/// Runs the control loop until `shutdown` completes. Validates `cfg` first (an invalid
/// config is the only error); connection problems are logged and retried forever.
/// Telemetry must already be initialised by the caller (see `apparate_telemetry::init`).
pub async fn run(
    cfg: SidecarConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<RunStats, SidecarError> {
    cfg.validate()?;
    let seed = unix_ms() ^ u64::from(std::process::id()).rotate_left(32);
    let mut backoff = Backoff::new(
        Duration::from_millis(cfg.reconnect.initial_ms),
        Duration::from_millis(cfg.reconnect.max_ms),
        seed,
    );
    let mut state = State {
        metrics: Metrics::new(&apparate_telemetry::meter()),
        nonces: Nonces::new(seed),
        epoch_ms: unix_ms(),
        started: Instant::now(),
        controller: None,
        stats: RunStats::default(),
        pending_parent: None,
        nacks_in_a_row: 0,
        cfg,
    };
    tokio::pin!(shutdown);
    tracing::info!(endpoint = %state.cfg.server.endpoint, "sidecar starting");
    loop {
        let sessions = state.stats.sessions;
        let result = state.session(&mut shutdown).await;
        match result {
            Ok(()) => break,
            Err(e) => {
                if state.stats.sessions > sessions {
                    backoff.reset();
                }
                let delay = backoff.next_delay();
                tracing::warn!(error = %e, retry_in_ms = delay.as_millis() as u64, "session ended; reconnecting");
                tokio::select! {
                    () = &mut shutdown => break,
                    () = tokio::time::sleep(delay) => {}
                }
                state.metrics.reconnects.add(1, &[]);
            }
        }
    }
    tracing::info!(
        chunks = state.stats.chunks,
        acks = state.stats.acks,
        nacks = state.stats.nacks,
        "sidecar stopped"
    );
    state.stats.last_config = state.controller.as_ref().map(|c| c.config().clone());
    Ok(state.stats)
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

struct State {
    cfg: SidecarConfig,
    metrics: Metrics,
    nonces: Nonces,
    epoch_ms: u64,
    started: Instant,
    controller: Option<Controller>,
    stats: RunStats,
    /// Parent span for the next non-renewal push (the chunk's emit decision).
    pending_parent: Option<Span>,
    nacks_in_a_row: u32,
}

impl State {
    async fn session<F: Future<Output = ()>>(
        &mut self,
        shutdown: &mut std::pin::Pin<&mut F>,
    ) -> Result<(), SessionError> {
        let endpoint = self.cfg.server.endpoint.clone();
        let connect = async {
            Endpoint::from_shared(endpoint.clone())
                .map_err(|e| SessionError::Connect {
                    endpoint: endpoint.clone(),
                    reason: error_chain(&e),
                })?
                .connect_timeout(Duration::from_millis(self.cfg.server.connect_timeout_ms))
                .connect()
                .await
                .map_err(|e| SessionError::Connect {
                    endpoint: endpoint.clone(),
                    reason: error_chain(&e),
                })
        };
        let channel = tokio::select! {
            () = &mut *shutdown => return Ok(()),
            c = connect => c?,
        };
        let mut client = ControlClient::new(channel);
        let (first, lease_ms) = self.resync(&mut client, Cause::Connect, None).await?;

        let (tx, rx) = mpsc::channel(4);
        let mut responses = client
            .stream_config(ReceiverStream::new(rx))
            .await
            .map_err(rpc("StreamConfig"))?
            .into_inner();
        let mut feedback = client
            .stream_feedback(pb::FeedbackRequest {
                subscriber: self.cfg.feedback.subscriber.clone(),
                buffer_records: self.cfg.feedback.buffer_records,
            })
            .await
            .map_err(rpc("StreamFeedback"))?
            .into_inner();
        self.stats.sessions += 1;
        tracing::info!(%endpoint, version = first.version, "connected");

        let ack_timeout = Duration::from_millis(self.cfg.ack_timeout_ms);
        let mut pusher = Pusher::new(tx, lease_ms, ack_timeout);
        let parent = self.pending_parent.take().unwrap_or_else(Span::none);
        self.push(&mut pusher, &first, &parent, false).await?;
        let mut renew = self
            .cfg
            .renew_every()
            .filter(|_| lease_ms > 0)
            .map(|p| tokio::time::interval_at(Instant::now() + p, p));
        let mut dropped_seen = 0u64;

        loop {
            let deadline = pusher.deadline();
            tokio::select! {
                () = &mut *shutdown => return Ok(()),
                msg = responses.message() => {
                    let resp = msg.map_err(rpc("StreamConfig"))?.ok_or(SessionError::Closed("StreamConfig"))?;
                    self.on_response(resp, &mut client, &mut pusher).await?;
                }
                msg = feedback.message() => {
                    let batch = msg.map_err(rpc("StreamFeedback"))?.ok_or(SessionError::Closed("StreamFeedback"))?;
                    if batch.dropped_total > dropped_seen {
                        let lost = batch.dropped_total - dropped_seen;
                        tracing::warn!(lost, dropped_total = batch.dropped_total, "the server dropped feedback for this sidecar");
                        self.metrics.dropped.add(lost, &[]);
                        dropped_seen = batch.dropped_total;
                    }
                    self.on_feedback(&batch);
                    self.push_if_changed(&mut pusher).await?;
                }
                () = tick(renew.as_mut()) => {
                    if pusher.idle() {
                        let current = self.controller().config().clone();
                        let renewal = pusher.acked.as_ref() == Some(&current);
                        self.push(&mut pusher, &current, &Span::none(), renewal).await?;
                    }
                }
                () = sleep_until(deadline) => {
                    let nonce = pusher.in_flight.take().map(|f| f.nonce).unwrap_or_default();
                    return Err(SessionError::AckTimeout { nonce, ms: self.cfg.ack_timeout_ms });
                }
            }
        }
    }

    fn controller(&mut self) -> &mut Controller {
        self.controller
            .as_mut()
            .expect("resync builds the controller before any session event")
    }

    fn on_feedback(&mut self, batch: &pb::FeedbackBatch) {
        let n = batch.records.len() as u64;
        self.stats.records += n;
        self.metrics.records.add(n, &[]);
        for r in &batch.records {
            let record = convert::feedback_record(r);
            let now = self.started.elapsed();
            let controller = self.controller.as_mut().expect("built on connect");
            if let Some(outcome) = controller.on_record(record, now) {
                self.stats.chunks += 1;
                let parent = observe_chunk(&outcome, controller.config(), &self.metrics);
                if outcome.config.is_some() {
                    self.pending_parent = Some(parent);
                }
            }
        }
    }

    async fn push(
        &mut self,
        pusher: &mut Pusher,
        config: &ExitConfig,
        parent: &Span,
        renewal: bool,
    ) -> Result<(), SessionError> {
        if pusher.push(config, parent, renewal, &mut self.nonces).await {
            Ok(())
        } else {
            Err(SessionError::Closed("StreamConfig"))
        }
    }

    /// Pushes the controller's config when it differs from the last one ACKed.
    async fn push_if_changed(&mut self, pusher: &mut Pusher) -> Result<(), SessionError> {
        let current = self.controller().config().clone();
        if !pusher.idle() || pusher.acked.as_ref() == Some(&current) {
            return Ok(());
        }
        let parent = self.pending_parent.take().unwrap_or_else(Span::none);
        self.push(pusher, &current, &parent, false).await
    }

    async fn on_response(
        &mut self,
        resp: pb::ConfigResponse,
        client: &mut ControlClient<Channel>,
        pusher: &mut Pusher,
    ) -> Result<(), SessionError> {
        use pb::config_response::Result as R;
        match resp.result {
            Some(R::Ack(ack)) => {
                let Some(done) = pusher.answered(&resp.nonce) else {
                    tracing::warn!(nonce = %resp.nonce, "ACK for an unknown nonce; ignored");
                    return Ok(());
                };
                done.span.set_attribute(attr::CONFIG_RESULT, "ack");
                self.metrics
                    .pushes
                    .add(1, &[KeyValue::new(attr::RESULT, "ack")]);
                self.stats.acks += 1;
                self.nacks_in_a_row = 0;
                if !done.renewal {
                    tracing::info!(parent: &done.span, version = ack.version, lease_expires_unix_ms = ack.lease_expires_unix_ms, "config applied");
                }
                pusher.acked = Some(done.config);
                self.push_if_changed(pusher).await
            }
            Some(R::Nack(nack)) => {
                let done = pusher.answered(&resp.nonce);
                if let Some(done) = &done {
                    done.span.set_attribute(attr::CONFIG_RESULT, "nack");
                    done.span
                        .set_attribute(attr::NACK_FIELD, nack.field.clone());
                    done.span
                        .set_attribute(attr::NACK_REASON, nack.reason.clone());
                }
                tracing::warn!(version = nack.version, field = %nack.field, reason = %nack.reason, active_version = nack.active_version, "server rejected config; resynchronising");
                self.metrics
                    .pushes
                    .add(1, &[KeyValue::new(attr::RESULT, "nack")]);
                self.metrics.nacks.add(1, &[]);
                self.stats.nacks += 1;
                self.nacks_in_a_row += 1;
                if self.nacks_in_a_row >= MAX_NACKS_IN_A_ROW {
                    return Err(SessionError::TooManyNacks(self.nacks_in_a_row));
                }
                let (config, lease) = self.resync(client, Cause::Nack, Some(nack.version)).await?;
                pusher.set_lease_ms(lease);
                pusher.acked = None;
                if pusher.idle() {
                    let parent = done.map_or_else(Span::none, |d| d.span);
                    self.push(pusher, &config, &parent, false).await?;
                }
                Ok(())
            }
            Some(R::LeaseExpired(expired)) => {
                tracing::warn!(
                    expired_version = expired.expired_version,
                    "server reports our lease expired; re-pushing"
                );
                self.metrics.lease_expired.add(1, &[]);
                self.stats.lease_expired += 1;
                let (_, lease) = self
                    .resync(client, Cause::LeaseExpired, Some(expired.expired_version))
                    .await?;
                pusher.set_lease_ms(lease);
                pusher.acked = None;
                self.push_if_changed(pusher).await
            }
            None => Err(SessionError::Protocol("ConfigResponse without a result")),
        }
    }
}

async fn tick(interval: Option<&mut tokio::time::Interval>) {
    match interval {
        Some(i) => {
            i.tick().await;
        }
        None => std::future::pending().await,
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}
