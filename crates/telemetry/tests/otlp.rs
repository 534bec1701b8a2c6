//! `init` exports spans and metrics over OTLP/gRPC to a real collector, and a context
//! carried through a string map joins the remote span to the caller's trace.
//!
//! One test per file: `init` installs process-wide globals.

use std::collections::HashMap;
use std::time::Duration;

use apparate_telemetry::receiver::OtlpReceiver;
use apparate_telemetry::{TelemetryConfig, init, inject_context, meter, set_parent_from};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_and_metrics_reach_the_collector_with_propagated_parents() {
    let receiver = OtlpReceiver::start().await.unwrap();
    let guard = init(&TelemetryConfig {
        otlp_endpoint: Some(receiver.endpoint()),
        service_name: "telemetry-test".into(),
        ..TelemetryConfig::default()
    })
    .unwrap();
    assert_eq!(guard.endpoint(), Some(receiver.endpoint().as_str()));

    let carrier: HashMap<String, String>;
    {
        let push = tracing::info_span!("config.push", apparate.config.version = 7u64);
        carrier = inject_context(&push);
        let _entered = push.enter();
        tracing::info_span!("child.local").in_scope(|| {});
    }
    assert!(
        carrier
            .get("traceparent")
            .is_some_and(|t| t.starts_with("00-")),
        "{carrier:?}"
    );
    // The "server" side: a fresh root span adopting the pushed context.
    let apply = tracing::info_span!("config.apply");
    set_parent_from(&apply, &carrier);
    drop(apply);
    // A carrier without a traceparent leaves a root span alone.
    let lonely = tracing::info_span!("lonely");
    set_parent_from(&lonely, &HashMap::new());
    drop(lonely);

    meter()
        .u64_counter("apparate_test_events_total")
        .build()
        .add(3, &[]);
    guard.flush();

    let spans = receiver
        .wait_for(
            |s| {
                ["config.push", "child.local", "config.apply", "lonely"]
                    .iter()
                    .all(|n| s.iter().any(|x| x.name == *n))
            },
            Duration::from_secs(20),
        )
        .await
        .unwrap();
    let by_name = |n: &str| spans.iter().find(|s| s.name == n).unwrap();
    let (push, child, apply, lonely) = (
        by_name("config.push"),
        by_name("child.local"),
        by_name("config.apply"),
        by_name("lonely"),
    );
    assert_eq!(push.attr("apparate.config.version"), Some("7"));
    assert_eq!(push.service_name.as_deref(), Some("telemetry-test"));
    assert_eq!(push.parent_span_id, None);
    assert_eq!(child.parent_span_id.as_ref(), Some(&push.span_id));
    assert_eq!(apply.trace_id, push.trace_id);
    assert_eq!(apply.parent_span_id.as_ref(), Some(&push.span_id));
    assert_eq!(lonely.parent_span_id, None);
    assert_ne!(lonely.trace_id, push.trace_id);
    assert!(
        carrier["traceparent"].contains(&push.trace_id),
        "traceparent carries the push's trace id"
    );
    // No transport spans (h2, tonic, ...) leaked into the export.
    assert!(spans.iter().all(|s| !s.name.contains("h2")), "{spans:?}");

    let points = receiver
        .wait_for_points(
            |p| p.iter().any(|p| p.name == "apparate_test_events_total"),
            Duration::from_secs(20),
        )
        .await
        .expect("the counter is exported on flush");
    let point = points
        .iter()
        .find(|p| p.name == "apparate_test_events_total")
        .unwrap();
    assert_eq!(point.value, 3.0);
    guard.shutdown();
}
