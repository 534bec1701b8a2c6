//! A real OTLP/gRPC collector for tests (feature `test-support`): the standard
//! `TraceService` and `MetricsService` from `opentelemetry-proto`, served by tonic on
//! `127.0.0.1:0`, recording every span and metric data point it receives.
//!
//! ```no_run
//! # async fn demo() {
//! use std::time::Duration;
//! use apparate_telemetry::receiver::OtlpReceiver;
//!
//! let receiver = OtlpReceiver::start().await.unwrap();
//! // Point the exporter at `receiver.endpoint()`, emit spans, then:
//! let spans = receiver
//!     .wait_for(|spans| spans.iter().any(|s| s.name == "chunk"), Duration::from_secs(10))
//!     .await
//!     .unwrap();
//! # }
//! ```

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{metric, number_data_point};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::{Request, Response, Status};

/// One span as the collector received it. Ids are lower-case hex.
#[derive(Debug, Clone, PartialEq)]
pub struct ReceivedSpan {
    /// Span name.
    pub name: String,
    /// 32 hex digits.
    pub trace_id: String,
    /// 16 hex digits.
    pub span_id: String,
    /// The parent's span id; `None` for a root span.
    pub parent_span_id: Option<String>,
    /// `service.name` of the resource that sent it.
    pub service_name: Option<String>,
    /// Attributes, values rendered as strings (`true`, `42`, `0.5`, text).
    pub attributes: HashMap<String, String>,
}

impl ReceivedSpan {
    /// An attribute's value.
    pub fn attr(&self, key: &str) -> Option<&str> {
        self.attributes.get(key).map(String::as_str)
    }
}

/// One number data point of one metric.
#[derive(Debug, Clone, PartialEq)]
pub struct ReceivedPoint {
    /// Metric name.
    pub name: String,
    /// Point attributes, rendered as strings.
    pub attributes: HashMap<String, String>,
    /// The value (integers converted).
    pub value: f64,
}

/// [`OtlpReceiver::wait_for`] gave up; holds what had arrived.
#[derive(Debug, Clone)]
pub struct WaitTimeout {
    /// Spans received before the timeout.
    pub spans: Vec<ReceivedSpan>,
}

impl fmt::Display for WaitTimeout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.spans.iter().map(|s| s.name.as_str()).collect();
        write!(
            f,
            "timed out waiting for spans; received {}: {names:?}",
            names.len()
        )
    }
}

impl std::error::Error for WaitTimeout {}

#[derive(Debug, Default)]
struct Store {
    spans: Mutex<Vec<ReceivedSpan>>,
    points: Mutex<Vec<ReceivedPoint>>,
}

#[derive(Debug, Clone)]
struct Collector {
    store: Arc<Store>,
    changed: watch::Sender<u64>,
}

/// A running collector; stops when dropped.
#[derive(Debug)]
pub struct OtlpReceiver {
    addr: SocketAddr,
    collector: Collector,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl OtlpReceiver {
    /// Binds `127.0.0.1:0` and serves until dropped. Call inside a Tokio runtime.
    pub async fn start() -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let collector = Collector {
            store: Arc::default(),
            changed: watch::channel(0).0,
        };
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(collector.clone()))
            .add_service(MetricsServiceServer::new(collector.clone()))
            .serve_with_incoming_shutdown(TcpListenerStream::new(listener), async {
                let _ = stopped.await;
            });
        let task = tokio::spawn(async move {
            if let Err(e) = server.await {
                eprintln!("OTLP test receiver stopped: {e}");
            }
        });
        Ok(Self {
            addr,
            collector,
            stop: Some(stop),
            task: Some(task),
        })
    }

    /// `http://127.0.0.1:<port>`, for `TelemetryConfig::otlp_endpoint`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every span received so far, in arrival order.
    pub fn spans(&self) -> Vec<ReceivedSpan> {
        lock(&self.collector.store.spans).clone()
    }

    /// Every metric data point received so far, in arrival order.
    pub fn points(&self) -> Vec<ReceivedPoint> {
        lock(&self.collector.store.points).clone()
    }

    /// Waits until `pred` holds for the spans received, or `timeout` passes. Wakes on each
    /// export, never polls on a timer.
    pub async fn wait_for(
        &self,
        pred: impl Fn(&[ReceivedSpan]) -> bool,
        timeout: Duration,
    ) -> Result<Vec<ReceivedSpan>, WaitTimeout> {
        let mut changed = self.collector.changed.subscribe();
        let wait = async {
            loop {
                let spans = self.spans();
                if pred(&spans) {
                    return spans;
                }
                if changed.changed().await.is_err() {
                    return spans;
                }
            }
        };
        match tokio::time::timeout(timeout, wait).await {
            Ok(spans) if pred(&spans) => Ok(spans),
            _ => Err(WaitTimeout {
                spans: self.spans(),
            }),
        }
    }

    /// Waits until `pred` holds for the metric points received, or `timeout` passes.
    pub async fn wait_for_points(
        &self,
        pred: impl Fn(&[ReceivedPoint]) -> bool,
        timeout: Duration,
    ) -> Option<Vec<ReceivedPoint>> {
        let mut changed = self.collector.changed.subscribe();
        let wait = async {
            loop {
                let points = self.points();
                if pred(&points) {
                    return Some(points);
                }
                if changed.changed().await.is_err() {
                    return None;
                }
            }
        };
        tokio::time::timeout(timeout, wait).await.ok().flatten()
    }
}

impl Drop for OtlpReceiver {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        // The server stops at once on the signal; nothing to wait for in a sync drop.
        drop(self.task.take());
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn render(value: Option<&AnyValue>) -> String {
    match value.and_then(|v| v.value.as_ref()) {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        Some(any_value::Value::DoubleValue(d)) => d.to_string(),
        Some(other) => format!("{other:?}"),
        None => String::new(),
    }
}

fn attributes(kvs: &[KeyValue]) -> HashMap<String, String> {
    kvs.iter()
        .map(|kv| (kv.key.clone(), render(kv.value.as_ref())))
        .collect()
}

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: Request<ExportTraceServiceRequest>,
    ) -> Result<Response<ExportTraceServiceResponse>, Status> {
        let mut received = Vec::new();
        for rs in request.into_inner().resource_spans {
            let service_name = rs.resource.as_ref().and_then(|r| {
                r.attributes
                    .iter()
                    .find(|kv| kv.key == "service.name")
                    .map(|kv| render(kv.value.as_ref()))
            });
            for span in rs.scope_spans.into_iter().flat_map(|s| s.spans) {
                received.push(ReceivedSpan {
                    name: span.name,
                    trace_id: hex(&span.trace_id),
                    span_id: hex(&span.span_id),
                    parent_span_id: (!span.parent_span_id.is_empty())
                        .then(|| hex(&span.parent_span_id)),
                    service_name: service_name.clone(),
                    attributes: attributes(&span.attributes),
                });
            }
        }
        lock(&self.store.spans).extend(received);
        self.changed.send_modify(|n| *n += 1);
        Ok(Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

#[tonic::async_trait]
impl MetricsService for Collector {
    async fn export(
        &self,
        request: Request<ExportMetricsServiceRequest>,
    ) -> Result<Response<ExportMetricsServiceResponse>, Status> {
        let mut received = Vec::new();
        let metrics = request
            .into_inner()
            .resource_metrics
            .into_iter()
            .flat_map(|rm| rm.scope_metrics)
            .flat_map(|sm| sm.metrics);
        for m in metrics {
            let points = match m.data {
                Some(metric::Data::Gauge(g)) => g.data_points,
                Some(metric::Data::Sum(s)) => s.data_points,
                _ => Vec::new(),
            };
            for p in points {
                let value = match p.value {
                    Some(number_data_point::Value::AsDouble(d)) => d,
                    Some(number_data_point::Value::AsInt(i)) => i as f64,
                    None => continue,
                };
                received.push(ReceivedPoint {
                    name: m.name.clone(),
                    attributes: attributes(&p.attributes),
                    value,
                });
            }
        }
        lock(&self.store.points).extend(received);
        self.changed.send_modify(|n| *n += 1);
        Ok(Response::new(ExportMetricsServiceResponse {
            partial_success: None,
        }))
    }
}
