//! Installing the subscriber and the OTLP providers, and shutting them down.

use std::time::Duration;

use opentelemetry::global;
use opentelemetry::metrics::Meter;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use thiserror::Error;
use tracing_subscriber::filter::{EnvFilter, filter_fn};
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{Layer as _, fmt};

use crate::config::{LogFormat, TelemetryConfig};

/// Name of the instrumentation scope of every span and metric this crate sets up.
const SCOPE: &str = "apparate";

/// Crates whose own spans must never reach the OTLP exporter: exporting them would create
/// more spans to export (the exporter's transport) or is noise.
const TRANSPORT_TARGETS: [&str; 6] = ["h2", "hyper", "tonic", "tower", "opentelemetry", "reqwest"];

/// What can go wrong setting telemetry up.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum TelemetryError {
    /// A setting holds a value outside its allowed range.
    #[error("invalid telemetry config: `{field}` = {value}: {reason}")]
    InvalidConfig {
        /// Dotted path of the field.
        field: &'static str,
        /// The rejected value, rendered for humans.
        value: String,
        /// What the value must satisfy.
        reason: &'static str,
    },
    /// Building an OTLP exporter failed.
    #[error("OTLP exporter for {endpoint}: {message}")]
    Exporter {
        /// The endpoint it was built for.
        endpoint: String,
        /// The exporter's error.
        message: String,
    },
    /// `init` needs a Tokio runtime for the OTLP exporter.
    #[error("an OTLP endpoint is set but init was called outside a Tokio runtime")]
    NoRuntime,
    /// A global `tracing` subscriber was already installed (e.g. `init` ran twice).
    #[error("a global tracing subscriber is already installed: {0}")]
    AlreadyInitialized(String),
}

/// Keeps the providers alive; flushes and shuts them down on [`TelemetryGuard::shutdown`]
/// or drop. Drop it (or call `shutdown`) while the Tokio runtime is still running.
#[derive(Debug)]
pub struct TelemetryGuard {
    tracer: Option<SdkTracerProvider>,
    meter: Option<SdkMeterProvider>,
    endpoint: Option<String>,
}

impl TelemetryGuard {
    /// The OTLP endpoint spans and metrics go to, if any.
    pub fn endpoint(&self) -> Option<&str> {
        self.endpoint.as_deref()
    }

    /// Exports every finished span and the current metrics now (blocking until done).
    pub fn flush(&self) {
        outside_async(|| {
            if let Some(t) = &self.tracer
                && let Err(e) = t.force_flush()
            {
                eprintln!("telemetry: span flush failed: {e}");
            }
            if let Some(m) = &self.meter
                && let Err(e) = m.force_flush()
            {
                eprintln!("telemetry: metrics flush failed: {e}");
            }
        });
    }

    /// Flushes and shuts the providers down. Spans ended afterwards are not exported.
    pub fn shutdown(mut self) {
        self.shutdown_providers();
    }

    fn shutdown_providers(&mut self) {
        let (tracer, meter) = (self.tracer.take(), self.meter.take());
        if tracer.is_none() && meter.is_none() {
            return;
        }
        outside_async(|| {
            // Metrics first: the tracer's exporter may still be needed for its final spans,
            // and neither depends on the other.
            if let Some(m) = meter
                && let Err(e) = m.shutdown()
            {
                eprintln!("telemetry: metrics shutdown failed: {e}");
            }
            if let Some(t) = tracer
                && let Err(e) = t.shutdown()
            {
                eprintln!("telemetry: span exporter shutdown failed: {e}");
            }
        });
    }
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        self.shutdown_providers();
    }
}

/// Flushing blocks until the exporter thread has sent everything; that export needs the
/// runtime's I/O, so on a runtime worker we tell Tokio to move other tasks elsewhere.
fn outside_async(f: impl FnOnce()) {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}

/// Installs logging and, when an endpoint is configured, OTLP span and metric export; sets
/// the W3C TraceContext propagator globally. See the crate docs for runtime requirements.
///
/// The endpoint is `cfg.otlp_endpoint`, else `OTEL_EXPORTER_OTLP_ENDPOINT`, else none
/// (logs only). `RUST_LOG`, when set, replaces `cfg.log_filter`.
pub fn init(cfg: &TelemetryConfig) -> Result<TelemetryGuard, TelemetryError> {
    cfg.validate()?;
    global::set_text_map_propagator(TraceContextPropagator::new());
    let endpoint = cfg.otlp_endpoint.clone().or_else(|| {
        std::env::var(opentelemetry_otlp::OTEL_EXPORTER_OTLP_ENDPOINT)
            .ok()
            .filter(|v| !v.trim().is_empty())
    });
    let filter = match std::env::var(EnvFilter::DEFAULT_ENV) {
        Ok(env) if !env.trim().is_empty() => {
            EnvFilter::try_new(&env).map_err(|e| TelemetryError::InvalidConfig {
                field: "RUST_LOG",
                value: format!("{env:?} ({e})"),
                reason: "must be tracing filter directives such as `info`",
            })?
        }
        _ => EnvFilter::try_new(&cfg.log_filter).map_err(|e| TelemetryError::InvalidConfig {
            field: "telemetry.log_filter",
            value: format!("{:?} ({e})", cfg.log_filter),
            reason: "must be tracing filter directives such as `info`",
        })?,
    };
    let fmt_layer = match cfg.log_format {
        LogFormat::Human => fmt::layer().with_writer(std::io::stderr).boxed(),
        LogFormat::Json => fmt::layer()
            .json()
            .with_current_span(true)
            .with_writer(std::io::stderr)
            .boxed(),
    };

    let (tracer, meter) = match &endpoint {
        Some(endpoint) => {
            if tokio::runtime::Handle::try_current().is_err() {
                return Err(TelemetryError::NoRuntime);
            }
            let (t, m) = otlp_providers(cfg, endpoint)?;
            (Some(t), Some(m))
        }
        None => (None, None),
    };
    let otel_layer = tracer.as_ref().map(|provider| {
        tracing_opentelemetry::layer()
            .with_tracer(provider.tracer(SCOPE))
            .with_filter(filter_fn(|meta| {
                !TRANSPORT_TARGETS
                    .iter()
                    .any(|t| meta.target().starts_with(t))
            }))
    });
    tracing_subscriber::registry()
        .with(filter)
        .with(fmt_layer)
        .with(otel_layer)
        .try_init()
        .map_err(|e| TelemetryError::AlreadyInitialized(e.to_string()))?;
    if let Some(m) = &meter {
        global::set_meter_provider(m.clone());
    }
    if let Some(t) = &tracer {
        global::set_tracer_provider(t.clone());
    }
    if let Some(endpoint) = &endpoint {
        tracing::info!(%endpoint, service = %cfg.service_name, "exporting OpenTelemetry spans and metrics");
    }
    Ok(TelemetryGuard {
        tracer,
        meter,
        endpoint,
    })
}

fn otlp_providers(
    cfg: &TelemetryConfig,
    endpoint: &str,
) -> Result<(SdkTracerProvider, SdkMeterProvider), TelemetryError> {
    let err = |e: &dyn std::fmt::Display| TelemetryError::Exporter {
        endpoint: endpoint.to_owned(),
        message: e.to_string(),
    };
    let resource = Resource::builder()
        .with_service_name(cfg.service_name.clone())
        .build();
    let spans = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(endpoint)
        .build()
        .map_err(|e| err(&e))?;
    let tracer = SdkTracerProvider::builder()
        .with_batch_exporter(spans)
        .with_resource(resource.clone())
        .build();
    let metrics = opentelemetry_otlp::MetricExporter::builder()
        .with_tonic()
        .with_endpoint(endpoint)
        .build()
        .map_err(|e| err(&e))?;
    let reader = PeriodicReader::builder(metrics)
        .with_interval(Duration::from_millis(cfg.metrics_interval_ms))
        .build();
    let meter = SdkMeterProvider::builder()
        .with_reader(reader)
        .with_resource(resource)
        .build();
    Ok((tracer, meter))
}

/// The meter every Apparate instrument is created from. Before [`init`] (or without an
/// endpoint) its instruments record nothing.
pub fn meter() -> Meter {
    global::meter(SCOPE)
}
