//! What the sidecar tells the world: a `chunk` span per closed chunk, a child span per
//! controller decision (exported under the decision kind's name, carrying its reasons and
//! numbers), a `config.push` span per pushed config, and OpenTelemetry metrics.
//! Names and keys come from [`apparate_telemetry::names`] and the controller's
//! `decision::keys`.

use apparate_controller::{AttrValue, ChunkOutcome, DecisionKind, ExitConfig};
use apparate_telemetry::names::{attr, sidecar as m, span as span_names};
use opentelemetry::metrics::{Counter, Gauge, Meter};
use opentelemetry::{KeyValue, Value};
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The sidecar's instruments.
#[derive(Debug, Clone)]
pub struct Metrics {
    chunks: Counter<u64>,
    over_budget: Counter<u64>,
    accuracy: Gauge<f64>,
    saving: Gauge<f64>,
    threshold: Gauge<f64>,
    active_ramps: Gauge<u64>,
    pub(crate) pushes: Counter<u64>,
    pub(crate) nacks: Counter<u64>,
    pub(crate) lease_expired: Counter<u64>,
    pub(crate) records: Counter<u64>,
    pub(crate) dropped: Counter<u64>,
    pub(crate) reconnects: Counter<u64>,
}

impl Metrics {
    /// Creates every instrument on `meter` (normally [`apparate_telemetry::meter`]).
    pub fn new(meter: &Meter) -> Self {
        Self {
            chunks: meter.u64_counter(m::CHUNKS_TOTAL).build(),
            over_budget: meter.u64_counter(m::CHUNKS_OVER_BUDGET_TOTAL).build(),
            accuracy: meter.f64_gauge(m::CHUNK_ACCURACY_RATIO).build(),
            saving: meter.f64_gauge(m::CHUNK_SAVING_RATIO).build(),
            threshold: meter.f64_gauge(m::RAMP_THRESHOLD).build(),
            active_ramps: meter.u64_gauge(m::ACTIVE_RAMPS).build(),
            pushes: meter.u64_counter(m::CONFIG_PUSHES_TOTAL).build(),
            nacks: meter.u64_counter(m::CONFIG_NACKS_TOTAL).build(),
            lease_expired: meter.u64_counter(m::LEASE_EXPIRED_TOTAL).build(),
            records: meter.u64_counter(m::FEEDBACK_RECORDS_TOTAL).build(),
            dropped: meter.u64_counter(m::FEEDBACK_DROPPED_TOTAL).build(),
            reconnects: meter.u64_counter(m::RECONNECTS_TOTAL).build(),
        }
    }

    /// Records the thresholds and ramp count of the config now wanted.
    pub fn record_config(&self, config: &ExitConfig) {
        self.active_ramps.record(config.ramps.len() as u64, &[]);
        for r in &config.ramps {
            self.threshold.record(
                f64::from(r.threshold),
                &[KeyValue::new(attr::RAMP_ID, i64::from(r.ramp_id))],
            );
        }
    }
}

fn otel_value(v: &AttrValue) -> Value {
    match v {
        AttrValue::Bool(b) => Value::Bool(*b),
        AttrValue::I64(i) => Value::I64(*i),
        AttrValue::F64(f) => Value::F64(*f),
        AttrValue::Str(s) => Value::String(s.clone().into()),
    }
}

/// Emits the spans, logs and metrics of one chunk. `config` is the config the controller
/// wants after the chunk. Returns the span a resulting push should be a child of: the
/// `emit_config` decision when there is one, else the chunk span (both already closed
/// for timing purposes; a child may outlive its parent).
pub fn observe_chunk(outcome: &ChunkOutcome, config: &ExitConfig, metrics: &Metrics) -> Span {
    let r = &outcome.report;
    // `chunk` is `names::span::CHUNK`; tracing needs the literal.
    let chunk = tracing::info_span!("chunk", apparate.chunk_id = r.chunk_id);
    chunk.set_attribute(attr::CHUNK_REQUESTS, i64::from(r.requests));
    chunk.set_attribute(attr::CHUNK_ERRORS, i64::from(r.errors));
    chunk.set_attribute(attr::CHUNK_ACCURACY, r.accuracy);
    chunk.set_attribute(attr::CHUNK_EXIT_RATE, r.exit_rate());
    for e in &r.exits {
        chunk.set_attribute(
            format!("{}{}", attr::CHUNK_EXIT_RATE_RAMP_PREFIX, e.ramp_id),
            r.exit_rate_of(e.ramp_id),
        );
    }
    chunk.set_attribute(attr::CHUNK_SAVING, r.saving);
    chunk.set_attribute(
        attr::CHUNK_LATENCY_P50_US,
        i64::try_from(r.observed_quantile_us(0.5)).unwrap_or(i64::MAX),
    );
    chunk.set_attribute(attr::CHUNK_OVER_BUDGET, r.over_budget);
    chunk.set_attribute(attr::CONFIG_VERSION, r.config_version as i64);
    chunk.set_attribute(attr::ACTIVE_RAMPS, join_ids(config));
    chunk.set_attribute(attr::THRESHOLDS, config.describe());
    let level_msg = "chunk closed";
    if r.over_budget {
        tracing::warn!(parent: &chunk, chunk = r.chunk_id, accuracy = r.accuracy, saving = r.saving, exit_rate = r.exit_rate(), "{level_msg} over budget");
    } else {
        tracing::info!(parent: &chunk, chunk = r.chunk_id, accuracy = r.accuracy, saving = r.saving, exit_rate = r.exit_rate(), "{level_msg}");
    }

    let mut push_parent = chunk.clone();
    for d in &outcome.decisions {
        let span = tracing::info_span!(parent: &chunk, "decision", otel.name = d.kind.as_str());
        span.set_attribute(attr::DECISION_KIND, d.kind.as_str());
        for (k, v) in &d.attributes {
            span.set_attribute(*k, otel_value(v));
        }
        tracing::info!(parent: &span, decision = %d, "decision");
        if d.kind == DecisionKind::EmitConfig {
            push_parent = span;
        }
    }

    metrics.chunks.add(1, &[]);
    if r.over_budget {
        metrics.over_budget.add(1, &[]);
    }
    metrics.accuracy.record(r.accuracy, &[]);
    metrics.saving.record(r.saving, &[]);
    metrics.record_config(config);
    push_parent
}

/// The span of one config push, child of `parent`. Renewals are `debug` spans, so the
/// default `info` filter keeps the periodic lease traffic out of the traces.
pub fn push_span(
    parent: &Span,
    config: &ExitConfig,
    nonce: &str,
    lease_ms: u32,
    renewal: bool,
) -> Span {
    let span = if renewal {
        tracing::debug_span!(parent: parent, "config.push", otel.name = span_names::CONFIG_PUSH)
    } else {
        tracing::info_span!(parent: parent, "config.push", otel.name = span_names::CONFIG_PUSH)
    };
    span.set_attribute(attr::CONFIG_VERSION, config.version as i64);
    span.set_attribute(attr::CONFIG_NONCE, nonce.to_owned());
    span.set_attribute(attr::CONFIG_LEASE_MS, i64::from(lease_ms));
    span.set_attribute(attr::CONFIG_RENEWAL, renewal);
    span.set_attribute(attr::ACTIVE_RAMPS, join_ids(config));
    span.set_attribute(attr::THRESHOLDS, config.describe());
    span
}

fn join_ids(config: &ExitConfig) -> String {
    config
        .ramp_ids()
        .iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(",")
}
