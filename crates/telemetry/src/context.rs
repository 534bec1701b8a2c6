//! W3C trace-context propagation through string maps (gRPC metadata, or the per-update
//! `ConfigUpdate.trace_context` of the control protocol).

use std::collections::HashMap;

use opentelemetry::global;
use opentelemetry::trace::TraceContextExt;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The span's W3C context (`traceparent`, and `tracestate` when non-empty) as a map.
/// Empty when the span is disabled or no OpenTelemetry layer is installed.
pub fn inject_context(span: &tracing::Span) -> HashMap<String, String> {
    let cx = span.context();
    let mut carrier = HashMap::new();
    if cx.span().span_context().is_valid() {
        global::get_text_map_propagator(|p| p.inject_context(&cx, &mut carrier));
    }
    carrier
}

/// Makes the context in `carrier` the parent of `span`, so the span joins the caller's
/// trace. Call it right after creating the span, before entering it or creating children.
/// A carrier without a valid `traceparent` leaves the span as it is.
pub fn set_parent_from(span: &tracing::Span, carrier: &HashMap<String, String>) {
    let cx = global::get_text_map_propagator(|p| p.extract(carrier));
    if !cx.span().span_context().is_valid() {
        return;
    }
    if let Err(e) = span.set_parent(cx) {
        tracing::debug!(error = %e, "could not set the remote parent of a span");
    }
}
