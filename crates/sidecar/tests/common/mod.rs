//! A scripted `Control` server for the sidecar's tests: describes an 8-ramp synthetic
//! model, streams feedback from a synthetic trace under the config in force, ACKs every
//! update except a chosen one, and opens a `config.apply` span under each update's
//! trace context (as a real server does).
#![allow(dead_code)]

use std::sync::{Arc, Mutex};

use apparate_controller::synthetic::SyntheticSpec;
use apparate_controller::{LatencyProfile, Trace};
use apparate_proto::v1 as pb;
use apparate_proto::v1::control_server::{Control, ControlServer};
use apparate_telemetry::set_parent_from;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_stream::StreamExt as _;
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tonic::{Request, Response, Status, Streaming};

#[derive(Debug, Clone)]
pub struct Answered {
    pub config: pb::ExitConfig,
    pub nonce: String,
    pub acked: bool,
}

pub struct Script {
    pub profile: LatencyProfile,
    pub trace: Trace,
    pub active: Arc<Mutex<pb::ExitConfig>>,
    pub describes: Arc<Mutex<u32>>,
    pub applied: watch::Sender<u64>,
    pub events: mpsc::UnboundedSender<Answered>,
    /// 1-based index, per config stream, of the update to NACK.
    pub nack_update: Option<usize>,
    /// `true` fails every open stream with UNAVAILABLE, as a dying server would.
    pub killed: watch::Sender<bool>,
}

impl Script {
    /// A fallback server over an 8-ramp synthetic model, reporting answers on `events`.
    pub fn new(events: mpsc::UnboundedSender<Answered>, nack_update: Option<usize>) -> Self {
        Self {
            profile: LatencyProfile::synthetic(8, 10.0, 0.004),
            trace: SyntheticSpec::drifting(5, 8, 2).generate(),
            active: Arc::new(Mutex::new(pb::ExitConfig::default())),
            describes: Arc::new(Mutex::new(0)),
            applied: watch::channel(0).0,
            events,
            nack_update,
            killed: watch::channel(false).0,
        }
    }
}

/// Serves `script` on `listener` until `stop` fires or the task is aborted.
pub fn serve(
    script: Script,
    listener: tokio::net::TcpListener,
    stop: oneshot::Receiver<()>,
) -> tokio::task::JoinHandle<Result<(), tonic::transport::Error>> {
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(ControlServer::new(script))
            .serve_with_incoming_shutdown(TcpListenerStream::new(listener), async {
                let _ = stop.await;
            }),
    )
}

#[tonic::async_trait]
impl Control for Script {
    async fn describe(
        &self,
        _: Request<pb::DescribeRequest>,
    ) -> Result<Response<pb::DescribeReply>, Status> {
        *self.describes.lock().unwrap() += 1;
        let active = self.active.lock().unwrap().clone();
        let p = &self.profile;
        Ok(Response::new(pb::DescribeReply {
            candidates: p
                .ramps
                .iter()
                .map(|r| pb::CandidateRamp {
                    id: r.id,
                    name: r.name.clone(),
                    depth_fraction: 0.5,
                })
                .collect(),
            profile: Some(pb::LatencyProfile {
                batch_sizes: p.batch_sizes.clone(),
                full_model_ms: p.full_model_ms.clone(),
                ramps: p
                    .ramps
                    .iter()
                    .map(|r| pb::RampLatency {
                        ramp_id: r.id,
                        backbone_ms: r.backbone_ms.clone(),
                        ramp_ms: r.ramp_ms.clone(),
                    })
                    .collect(),
            }),
            active_is_fallback: active.version == 0,
            active_config: Some(active),
            limits: Some(pb::ServerLimits {
                max_active_ramps: 8,
                max_batch_size: 64,
                max_lease_ms: 0,
            }),
            ..Default::default()
        }))
    }

    type StreamFeedbackStream = ReceiverStream<Result<pb::FeedbackBatch, Status>>;

    async fn stream_feedback(
        &self,
        _: Request<pb::FeedbackRequest>,
    ) -> Result<Response<Self::StreamFeedbackStream>, Status> {
        let (tx, rx) = mpsc::channel(1);
        let (trace, active) = (self.trace.clone(), self.active.clone());
        let mut applied = self.applied.subscribe();
        let mut killed = self.killed.subscribe();
        tokio::spawn(async move {
            // Serve requests only once a pushed config is in force, then in batches of 16
            // under whatever config is in force when each batch "runs".
            let _ = applied.wait_for(|n| *n > 0).await;
            for batch in trace.requests.chunks(16) {
                let config = active.lock().unwrap().clone();
                let ids: Vec<u32> = config.ramps.iter().map(|r| r.ramp_id).collect();
                let records = batch
                    .iter()
                    .map(|req| pb::FeedbackRecord {
                        request_id: req.request_id,
                        config_version: config.version,
                        ramps: ids
                            .iter()
                            .map(|&id| {
                                let o = req.ramps[id as usize];
                                pb::RampOutput {
                                    ramp_id: id,
                                    label: o.label,
                                    confidence: o.confidence,
                                    entropy: o.entropy,
                                }
                            })
                            .collect(),
                        final_label: req.final_label,
                        batch_size: req.batch_size,
                        queue_us: 100,
                        exec_us: 4_000,
                        release_us: 4_000,
                        ..Default::default()
                    })
                    .collect();
                let msg = pb::FeedbackBatch {
                    records,
                    dropped_total: 0,
                };
                if tx.send(Ok(msg)).await.is_err() {
                    return;
                }
            }
            // A live server's stream stays open while no requests arrive.
            tokio::select! {
                () = tx.closed() => {}
                _ = async { killed.wait_for(|k| *k).await.map(|_| ()) } => {
                    let _ = tx.send(Err(Status::unavailable("server going away"))).await;
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    type StreamConfigStream = ReceiverStream<Result<pb::ConfigResponse, Status>>;

    async fn stream_config(
        &self,
        request: Request<Streaming<pb::ConfigUpdate>>,
    ) -> Result<Response<Self::StreamConfigStream>, Status> {
        let mut updates = request.into_inner();
        let (tx, rx) = mpsc::channel(4);
        let (active, applied, events) = (
            self.active.clone(),
            self.applied.clone(),
            self.events.clone(),
        );
        let nack_update = self.nack_update;
        let mut killed = self.killed.subscribe();
        tokio::spawn(async move {
            let mut seen = 0;
            loop {
                let update = tokio::select! {
                    u = updates.next() => match u {
                        Some(Ok(u)) => u,
                        _ => return,
                    },
                    _ = async { killed.wait_for(|k| *k).await.map(|_| ()) } => {
                        let _ = tx.send(Err(Status::unavailable("server going away"))).await;
                        return;
                    }
                };
                seen += 1;
                let config = update.config.clone().unwrap_or_default();
                let span =
                    tracing::info_span!("config.apply", apparate.config.version = config.version);
                set_parent_from(&span, &update.trace_context);
                let acked = Some(seen) != nack_update;
                let result = if acked {
                    *active.lock().unwrap() = config.clone();
                    applied.send_modify(|n| *n += 1);
                    pb::config_response::Result::Ack(pb::Ack {
                        version: config.version,
                        lease_expires_unix_ms: 0,
                    })
                } else {
                    pb::config_response::Result::Nack(pb::Nack {
                        version: config.version,
                        field: "config.ramps[0].threshold".into(),
                        reason: "scripted rejection".into(),
                        active_version: active.lock().unwrap().version,
                    })
                };
                drop(span);
                let _ = events.send(Answered {
                    config,
                    nonce: update.nonce.clone(),
                    acked,
                });
                let reply = pb::ConfigResponse {
                    nonce: update.nonce,
                    result: Some(result),
                };
                if tx.send(Ok(reply)).await.is_err() {
                    return;
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}
