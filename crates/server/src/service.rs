//! The tonic services: `apparate.v1.Inference` and `apparate.v1.Control`.

use std::{
    collections::HashMap,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Instant,
};

use apparate_engine::{InputSpec, Manifest};
use apparate_proto::v1::{self, control_server::Control, inference_server::Inference};
use crossbeam::channel::{Sender, TrySendError};
use tokio::sync::{mpsc, oneshot, watch};
use tokio_stream::{Stream, wrappers::ReceiverStream};
use tonic::{Request, Response, Status, Streaming, metadata::MetadataMap};

use crate::{
    config::Limits,
    feedback::FeedbackHub,
    state::{Applied, ConfigState, unix_ms},
    worker::{Job, Payload, shape_len},
};

/// Largest per-subscriber feedback buffer a client may ask for.
const MAX_SUBSCRIBER_BUFFER: u32 = 1 << 20;

/// State shared by both services.
#[derive(Debug)]
pub(crate) struct Shared {
    pub manifest: Manifest,
    pub profile: apparate_controller::LatencyProfile,
    pub family: String,
    pub limits: Limits,
    pub max_batch: u32,
    pub default_buffer: u32,
    pub jobs: Sender<Job>,
    pub next_id: AtomicU64,
    pub state: Arc<ConfigState>,
    pub hub: Arc<FeedbackHub>,
    pub stopping: AtomicBool,
    pub shutdown: watch::Receiver<bool>,
}

/// `apparate.v1.Inference`.
#[derive(Debug, Clone)]
pub(crate) struct InferenceService(pub Arc<Shared>);

/// `apparate.v1.Control`.
#[derive(Debug, Clone)]
pub(crate) struct ControlService(pub Arc<Shared>);

fn invalid(msg: String) -> Status {
    crate::metrics::rejected(tonic::Code::InvalidArgument);
    Status::invalid_argument(msg)
}

/// Checks one request against the manifest's input spec.
fn payload(spec: &InputSpec, input: Option<v1::infer_request::Input>) -> Result<Payload, Status> {
    use v1::infer_request::Input;
    match (spec, input) {
        (_, None) => Err(invalid(match spec {
            InputSpec::Tensor { .. } => "input: missing; this model takes `tensor`".into(),
            InputSpec::Text { .. } => "input: missing; this model takes `text`".into(),
        })),
        (InputSpec::Tensor { shape }, Some(Input::Tensor(t))) => {
            if t.shape != *shape {
                return Err(invalid(format!(
                    "tensor.shape: {:?}, this model takes {shape:?}",
                    t.shape
                )));
            }
            let want = shape_len(shape);
            if t.values.len() != want {
                return Err(invalid(format!(
                    "tensor.values: {} values, shape {shape:?} needs {want}",
                    t.values.len()
                )));
            }
            if let Some(i) = t.values.iter().position(|v| !v.is_finite()) {
                return Err(invalid(format!(
                    "tensor.values[{i}]: {} is not a finite number",
                    t.values[i]
                )));
            }
            Ok(Payload::Tensor(t.values))
        }
        (InputSpec::Text { max_bytes }, Some(Input::Text(text))) => {
            if text.trim().is_empty() {
                return Err(invalid("text: empty".into()));
            }
            if text.len() > *max_bytes as usize {
                return Err(invalid(format!(
                    "text: {} bytes, this model takes at most {max_bytes}",
                    text.len()
                )));
            }
            Ok(Payload::Text(text))
        }
        (InputSpec::Tensor { .. }, Some(Input::Text(_))) => Err(invalid(
            "text: this model takes `tensor` inputs, not text".into(),
        )),
        (InputSpec::Text { .. }, Some(Input::Tensor(_))) => Err(invalid(
            "tensor: this model takes `text` inputs, not tensors".into(),
        )),
    }
}

#[tonic::async_trait]
impl Inference for InferenceService {
    async fn infer(
        &self,
        request: Request<v1::InferRequest>,
    ) -> Result<Response<v1::InferReply>, Status> {
        let shared = &self.0;
        if shared.stopping.load(Ordering::Acquire) {
            crate::metrics::rejected(tonic::Code::Unavailable);
            return Err(Status::unavailable("the server is shutting down"));
        }
        let arrived = Instant::now();
        let request = request.into_inner();
        let payload = payload(&shared.manifest.input, request.input)?;
        let (reply, answer) = oneshot::channel();
        let job = Job {
            id: shared.next_id.fetch_add(1, Ordering::Relaxed),
            payload,
            arrived,
            reply,
        };
        match shared.jobs.try_send(job) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                crate::metrics::rejected(tonic::Code::ResourceExhausted);
                return Err(Status::resource_exhausted(format!(
                    "the queue is full ({} requests waiting): retry with backoff",
                    shared.jobs.capacity().unwrap_or(0)
                )));
            }
            Err(TrySendError::Disconnected(_)) => {
                return Err(Status::unavailable("the inference worker has stopped"));
            }
        }
        match answer.await {
            Ok(Ok(reply)) => Ok(Response::new(reply)),
            Ok(Err(status)) => Err(status),
            Err(_) => Err(Status::internal("the inference worker stopped mid-batch")),
        }
    }
}

impl Shared {
    fn describe(&self) -> v1::DescribeReply {
        let m = &self.manifest;
        let (active, is_fallback) = self.state.active();
        v1::DescribeReply {
            model: Some(v1::ModelInfo {
                name: m.name.clone(),
                family: self.family.clone(),
                classes: m.classes.clone(),
                input: Some(match &m.input {
                    InputSpec::Tensor { shape } => v1::InputSpec {
                        kind: v1::input_spec::Kind::Tensor.into(),
                        shape: shape.clone(),
                        max_text_bytes: 0,
                    },
                    InputSpec::Text { max_bytes } => v1::InputSpec {
                        kind: v1::input_spec::Kind::Text.into(),
                        shape: Vec::new(),
                        max_text_bytes: *max_bytes,
                    },
                }),
            }),
            candidates: m
                .candidates
                .iter()
                .map(|c| v1::CandidateRamp {
                    id: c.id,
                    name: c.name.clone(),
                    depth_fraction: c.depth_fraction,
                })
                .collect(),
            profile: Some(v1::LatencyProfile {
                batch_sizes: self.profile.batch_sizes.clone(),
                full_model_ms: self.profile.full_model_ms.clone(),
                ramps: self
                    .profile
                    .ramps
                    .iter()
                    .map(|r| v1::RampLatency {
                        ramp_id: r.id,
                        backbone_ms: r.backbone_ms.clone(),
                        ramp_ms: r.ramp_ms.clone(),
                    })
                    .collect(),
            }),
            active_config: Some(active),
            active_is_fallback: is_fallback,
            limits: Some(v1::ServerLimits {
                max_active_ramps: self.limits.max_active_ramps,
                max_batch_size: self.max_batch,
                max_lease_ms: self.limits.max_lease_ms,
            }),
            feedback_dropped_total: self.hub.dropped_total(),
            highest_version: Some(self.state.highest_version()),
        }
    }

    /// Applies one update inside a span that continues the pusher's trace.
    fn handle_update(
        &self,
        update: v1::ConfigUpdate,
        stream_context: &HashMap<String, String>,
    ) -> v1::ConfigResponse {
        use v1::config_response::Result as R;
        let version = update.config.as_ref().map_or(0, |c| c.version);
        let span = tracing::info_span!(
            "config.apply",
            config.version = version,
            config.nonce = %update.nonce,
            outcome = tracing::field::Empty,
            nack.field = tracing::field::Empty,
            nack.reason = tracing::field::Empty,
            config.ramps = tracing::field::Empty,
        );
        let parent = if update.trace_context.is_empty() {
            stream_context
        } else {
            &update.trace_context
        };
        apparate_telemetry::set_parent_from(&span, parent);
        let _enter = span.enter();
        let now = Instant::now();
        let result = match &update.config {
            None => Err(crate::state::Rejection {
                field: "config".into(),
                reason: "the update carries no config".into(),
            }),
            Some(config) => self.state.apply(config, now),
        };
        let result = match result {
            Ok(applied) => {
                let config = update.config.as_ref().expect("applied a config");
                let outcome = match applied {
                    Applied::New => "applied",
                    Applied::Renewed => "renewed",
                };
                span.record("outcome", outcome);
                span.record(
                    "config.ramps",
                    config
                        .ramps
                        .iter()
                        .map(|r| format!("{}:{}", r.ramp_id, r.threshold))
                        .collect::<Vec<_>>()
                        .join(","),
                );
                crate::metrics::config(outcome);
                if applied == Applied::New {
                    tracing::info!(version, ramps = config.ramps.len(), "config applied");
                }
                R::Ack(v1::Ack {
                    version,
                    lease_expires_unix_ms: self
                        .state
                        .lease_deadline()
                        .map_or(0, |d| unix_ms(d, now)),
                })
            }
            Err(rejection) => {
                span.record("outcome", "rejected");
                span.record("nack.field", rejection.field.as_str());
                span.record("nack.reason", rejection.reason.as_str());
                crate::metrics::config("rejected");
                tracing::warn!(
                    version,
                    field = %rejection.field,
                    reason = %rejection.reason,
                    "config rejected"
                );
                R::Nack(v1::Nack {
                    version,
                    field: rejection.field,
                    reason: rejection.reason,
                    active_version: self.state.active().0.version,
                })
            }
        };
        v1::ConfigResponse {
            nonce: update.nonce,
            result: Some(result),
        }
    }
}

/// W3C trace context from gRPC metadata.
fn metadata_context(metadata: &MetadataMap) -> HashMap<String, String> {
    ["traceparent", "tracestate"]
        .into_iter()
        .filter_map(|k| {
            let v = metadata.get(k)?.to_str().ok()?;
            Some((k.to_owned(), v.to_owned()))
        })
        .collect()
}

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl Control for ControlService {
    async fn describe(
        &self,
        _request: Request<v1::DescribeRequest>,
    ) -> Result<Response<v1::DescribeReply>, Status> {
        Ok(Response::new(self.0.describe()))
    }

    type StreamFeedbackStream = BoxStream<v1::FeedbackBatch>;

    async fn stream_feedback(
        &self,
        request: Request<v1::FeedbackRequest>,
    ) -> Result<Response<Self::StreamFeedbackStream>, Status> {
        let shared = Arc::clone(&self.0);
        let req = request.into_inner();
        if req.buffer_records > MAX_SUBSCRIBER_BUFFER {
            return Err(invalid(format!(
                "buffer_records: {} is more than {MAX_SUBSCRIBER_BUFFER}",
                req.buffer_records
            )));
        }
        let capacity = if req.buffer_records == 0 {
            shared.default_buffer
        } else {
            req.buffer_records
        };
        let name = if req.subscriber.is_empty() {
            "anonymous".to_owned()
        } else {
            req.subscriber
        };
        tracing::info!(subscriber = %name, capacity, "feedback subscriber joined");
        let sub = shared.hub.subscribe(name, capacity as usize);
        let (tx, rx) = mpsc::channel(4);
        let mut shutdown = shared.shutdown.clone();
        tokio::spawn(async move {
            while let Some(batch) = sub.next_batch().await {
                tokio::select! {
                    sent = tx.send(Ok(batch)) => if sent.is_err() { break },
                    _ = shutdown.changed() => break,
                }
            }
            shared.hub.unsubscribe(&sub);
            tracing::info!(
                subscriber = %sub.name,
                dropped = sub.dropped(),
                "feedback subscriber left"
            );
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    type StreamConfigStream = BoxStream<v1::ConfigResponse>;

    async fn stream_config(
        &self,
        request: Request<Streaming<v1::ConfigUpdate>>,
    ) -> Result<Response<Self::StreamConfigStream>, Status> {
        let shared = Arc::clone(&self.0);
        let stream_context = metadata_context(request.metadata());
        let mut inbound = request.into_inner();
        let (tx, rx) = mpsc::channel(16);
        let mut expired = shared.state.expired_tx.subscribe();
        let mut shutdown = shared.shutdown.clone();
        tokio::spawn(async move {
            loop {
                let response = tokio::select! {
                    message = inbound.message() => match message {
                        Ok(Some(update)) => shared.handle_update(update, &stream_context),
                        Ok(None) | Err(_) => break,
                    },
                    notice = expired.recv() => match notice {
                        Ok(e) => v1::ConfigResponse {
                            nonce: String::new(),
                            result: Some(v1::config_response::Result::LeaseExpired(
                                v1::LeaseExpired {
                                    expired_version: e.expired_version,
                                    fallback: Some(e.fallback),
                                },
                            )),
                        },
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
                    },
                    _ = shutdown.changed() => break,
                };
                if tx.send(Ok(response)).await.is_err() {
                    break;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malformed_inputs_are_named() {
        use v1::infer_request::Input;
        let spec = InputSpec::Tensor {
            shape: vec![1, 2, 2],
        };
        let tensor =
            |shape: Vec<u32>, values: Vec<f32>| Some(Input::Tensor(v1::Tensor { shape, values }));
        let msg = |r: Result<Payload, Status>| r.unwrap_err().message().to_owned();
        assert!(msg(payload(&spec, None)).starts_with("input"));
        assert!(msg(payload(&spec, tensor(vec![2, 2], vec![0.0; 4]))).starts_with("tensor.shape"));
        assert!(
            msg(payload(&spec, tensor(vec![1, 2, 2], vec![0.0; 3]))).starts_with("tensor.values")
        );
        assert!(
            msg(payload(
                &spec,
                tensor(vec![1, 2, 2], vec![0.0, f32::NAN, 0.0, 0.0])
            ))
            .starts_with("tensor.values[1]")
        );
        assert!(msg(payload(&spec, Some(Input::Text("hi".into())))).starts_with("text"));
        assert!(payload(&spec, tensor(vec![1, 2, 2], vec![0.5; 4])).is_ok());
        let text = InputSpec::Text { max_bytes: 4 };
        assert!(msg(payload(&text, Some(Input::Text("hello".into())))).contains("at most 4"));
        assert!(msg(payload(&text, Some(Input::Text(" ".into())))).contains("empty"));
        assert!(payload(&text, Some(Input::Text("hey".into()))).is_ok());
    }
}
