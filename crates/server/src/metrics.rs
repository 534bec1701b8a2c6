//! The server's OpenTelemetry metrics. Instruments are created on first use from the
//! global meter provider, so `apparate_telemetry::init` must run first (it does, in
//! [`crate::serve`]); without an OTLP endpoint they cost next to nothing.

use std::sync::OnceLock;

use opentelemetry::{
    KeyValue,
    metrics::{Counter, Histogram},
};

#[derive(Debug)]
struct Instruments {
    requests: Counter<u64>,
    rejected: Counter<u64>,
    exits: Counter<u64>,
    batch_size: Histogram<u64>,
    feedback_dropped: Counter<u64>,
    configs: Counter<u64>,
    lease_expired: Counter<u64>,
}

fn instruments() -> &'static Instruments {
    static CELL: OnceLock<Instruments> = OnceLock::new();
    CELL.get_or_init(|| {
        let m = opentelemetry::global::meter("apparate-server");
        Instruments {
            requests: m
                .u64_counter("apparate.server.requests")
                .with_description("Requests answered, by the head that answered")
                .build(),
            rejected: m
                .u64_counter("apparate.server.requests.rejected")
                .with_description("Requests refused, by gRPC code")
                .build(),
            exits: m
                .u64_counter("apparate.server.exits")
                .with_description("Answers released early, by ramp")
                .build(),
            batch_size: m
                .u64_histogram("apparate.server.batch_size")
                .with_description("Requests per inference batch")
                .build(),
            feedback_dropped: m
                .u64_counter("apparate.server.feedback.dropped")
                .with_description("Feedback records dropped for slow subscribers")
                .build(),
            configs: m
                .u64_counter("apparate.server.configs")
                .with_description("Config updates, by outcome (applied, renewed, rejected)")
                .build(),
            lease_expired: m
                .u64_counter("apparate.server.lease_expired")
                .with_description("Leases that ran out, falling back to the safe config")
                .build(),
        }
    })
}

pub(crate) fn batch(size: usize, exits_by_ramp: &[(u32, u64)]) {
    let i = instruments();
    i.batch_size.record(size as u64, &[]);
    let released: u64 = exits_by_ramp.iter().map(|e| e.1).sum();
    i.requests
        .add(size as u64 - released, &[KeyValue::new("head", "final")]);
    for &(ramp, n) in exits_by_ramp {
        i.requests.add(n, &[KeyValue::new("head", "ramp")]);
        i.exits.add(n, &[KeyValue::new("ramp_id", i64::from(ramp))]);
    }
}

pub(crate) fn rejected(code: tonic::Code) {
    instruments()
        .rejected
        .add(1, &[KeyValue::new("code", format!("{code:?}"))]);
}

pub(crate) fn feedback_dropped(n: u64, subscriber: &str) {
    instruments()
        .feedback_dropped
        .add(n, &[KeyValue::new("subscriber", subscriber.to_owned())]);
}

pub(crate) fn config(outcome: &'static str) {
    instruments()
        .configs
        .add(1, &[KeyValue::new("outcome", outcome)]);
}

pub(crate) fn lease_expired() {
    instruments().lease_expired.add(1, &[]);
}
