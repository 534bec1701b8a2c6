//! The live loop against a scripted `Control` server over loopback, with telemetry going
//! to a real OTLP collector: the sidecar learns the server from `Describe`, pushes its
//! initial config, tunes on feedback, survives a NACK by resynchronising, and explains it
//! all in spans — chunk → decision → push → the server's apply span, one trace.
//!
//! The scripted server (not the real one, which has its own end-to-end test) NACKs the
//! second update and ACKs the rest. One test per file: telemetry is process-global.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use apparate_sidecar::SidecarConfig;
use apparate_telemetry::TelemetryConfig;
use apparate_telemetry::receiver::OtlpReceiver;
use common::{Script, serve};
use tokio::sync::{mpsc, oneshot};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_loop_tunes_survives_a_nack_and_traces_chunk_decision_push_apply() {
    let receiver = OtlpReceiver::start().await.unwrap();
    let telemetry = apparate_telemetry::init(&TelemetryConfig {
        otlp_endpoint: Some(receiver.endpoint()),
        service_name: "sidecar-test".into(),
        ..TelemetryConfig::default()
    })
    .unwrap();

    let (events_tx, mut events) = mpsc::unbounded_channel();
    let script = Script::new(events_tx, Some(2));
    let describes = script.describes.clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop_server, server_stopped) = oneshot::channel::<()>();
    let server = serve(script, listener, server_stopped);

    let mut cfg = SidecarConfig::default();
    cfg.server.endpoint = format!("http://{addr}");
    // A loose budget without a chunk-coverage aim: the first chunk may open exits.
    cfg.controller.accuracy_budget = 0.05;
    cfg.controller.chunk_coverage = 0.0;
    // Renewals every 100 ms: one push at a time, so a 4th update proves the sidecar has
    // processed the 3rd one's ACK.
    cfg.lease_ms = 200;
    let (stop_sidecar, sidecar_stopped) = oneshot::channel::<()>();
    let sidecar = tokio::spawn(apparate_sidecar::run(cfg, async {
        let _ = sidecar_stopped.await;
    }));

    let mut answered = Vec::new();
    let timeout = Duration::from_secs(30);
    loop {
        let a = tokio::time::timeout(timeout, events.recv())
            .await
            .expect("the sidecar keeps pushing")
            .unwrap();
        answered.push(a);
        if answered.len() >= 4 {
            break;
        }
    }
    stop_sidecar.send(()).unwrap();
    let stats = sidecar.await.unwrap().unwrap();
    let _ = stop_server.send(());
    server.await.unwrap().unwrap();

    let (first, nacked, repushed) = (&answered[0], &answered[1], &answered[2]);
    assert!(first.acked && !nacked.acked && repushed.acked);
    assert!(answered.iter().all(|a| a.config.lease_ms == 200));
    // Fresh sidecar, fallback server: versions start above the Unix time in ms.
    assert!(first.config.version > 1_600_000_000_000, "{first:?}");
    assert!(
        first.config.ramps.iter().all(|r| r.threshold == 1.0),
        "starts closed"
    );
    assert!(
        nacked.config.ramps.iter().any(|r| r.threshold < 1.0),
        "the first chunk opened ramps: {nacked:?}"
    );
    assert!(nacked.config.version > first.config.version);
    // After the NACK: Describe again, adopt the server's config, push it under a new version.
    assert_eq!(*describes.lock().unwrap(), 2);
    assert_eq!(repushed.config.ramps, first.config.ramps);
    assert!(repushed.config.version > nacked.config.version);
    assert_ne!(first.nonce, repushed.nonce);
    assert_eq!(stats.nacks, 1);
    assert!(
        stats.acks >= 2 && stats.chunks >= 1 && stats.sessions == 1,
        "{stats:?}"
    );

    telemetry.flush();
    let want = |spans: &[apparate_telemetry::receiver::ReceivedSpan]| {
        let count = |n: &str| spans.iter().filter(|s| s.name == n).count();
        count("chunk") >= 1
            && count("retune") >= 1
            && count("emit_config") >= 1
            && count("config.push") >= 3
            && count("config.apply") >= 3
            && count("control.resync") >= 2
    };
    let spans = receiver.wait_for(want, timeout).await.unwrap();
    let by_id: HashMap<&str, _> = spans.iter().map(|s| (s.span_id.as_str(), s)).collect();
    let parent_of = |s: &apparate_telemetry::receiver::ReceivedSpan| {
        s.parent_span_id
            .as_deref()
            .and_then(|p| by_id.get(p))
            .copied()
    };

    let chunk0 = spans
        .iter()
        .find(|s| s.name == "chunk" && s.attr("apparate.chunk_id") == Some("0"))
        .expect("chunk 0 span");
    assert_eq!(chunk0.service_name.as_deref(), Some("sidecar-test"));
    assert_eq!(chunk0.attr("apparate.chunk.requests"), Some("64"));
    for key in [
        "apparate.chunk.accuracy",
        "apparate.chunk.saving",
        "apparate.chunk.exit_rate",
        "apparate.chunk.over_budget",
        "apparate.thresholds",
    ] {
        assert!(
            chunk0.attr(key).is_some(),
            "chunk span lacks {key}: {chunk0:?}"
        );
    }
    assert!(
        chunk0
            .attributes
            .keys()
            .any(|k| k.starts_with("apparate.chunk.exit_rate.ramp.")),
        "{chunk0:?}"
    );
    let retune = spans
        .iter()
        .find(|s| {
            s.name == "retune" && parent_of(s).map(|p| p.span_id.as_str()) == Some(&chunk0.span_id)
        })
        .expect("a retune span under chunk 0");
    assert_eq!(retune.attr("apparate.reason"), Some("first_chunk"));
    assert_eq!(retune.attr("apparate.decision.kind"), Some("retune"));
    assert!(retune.attr("apparate.thresholds_after").is_some());

    // The NACKed push: child of a chunk's emit_config decision (which chunk depends on
    // when the first ACK arrived), and the server's apply span continues its trace.
    let push = spans
        .iter()
        .find(|s| s.name == "config.push" && s.attr("apparate.config.nonce") == Some(&nacked.nonce))
        .expect("the NACKed push span");
    assert_eq!(push.attr("apparate.config.result"), Some("nack"));
    assert_eq!(
        push.attr("apparate.nack.field"),
        Some("config.ramps[0].threshold")
    );
    let emit = parent_of(push).expect("push has a parent");
    assert_eq!(emit.name, "emit_config");
    let chunk = parent_of(emit).expect("emit_config has a parent");
    assert_eq!(chunk.name, "chunk");
    assert_eq!(
        emit.attr("apparate.config.version"),
        Some(nacked.config.version.to_string().as_str())
    );
    let apply = spans
        .iter()
        .find(|s| {
            s.name == "config.apply"
                && s.attr("apparate.config.version") == Some(&nacked.config.version.to_string())
        })
        .expect("apply span of the NACKed version");
    assert_eq!(apply.trace_id, chunk.trace_id);
    assert_eq!(apply.parent_span_id.as_deref(), Some(push.span_id.as_str()));

    // The re-push after the NACK is ACKed and follows from the rejected push.
    let again = spans
        .iter()
        .find(|s| {
            s.name == "config.push" && s.attr("apparate.config.nonce") == Some(&repushed.nonce)
        })
        .expect("re-push span");
    assert_eq!(again.attr("apparate.config.result"), Some("ack"));
    assert_eq!(again.trace_id, push.trace_id);

    // Metrics reach the collector too (exported on flush).
    use apparate_telemetry::names::sidecar::{
        ACTIVE_RAMPS, CHUNKS_TOTAL, CONFIG_NACKS_TOTAL, RAMP_THRESHOLD,
    };
    let points = receiver
        .wait_for_points(
            |p| {
                [
                    CHUNKS_TOTAL,
                    CONFIG_NACKS_TOTAL,
                    RAMP_THRESHOLD,
                    ACTIVE_RAMPS,
                ]
                .iter()
                .all(|n| p.iter().any(|x| x.name == *n))
            },
            timeout,
        )
        .await
        .expect("sidecar metrics");
    let latest = |name: &str| points.iter().rev().find(|p| p.name == name).unwrap();
    assert_eq!(latest(CONFIG_NACKS_TOTAL).value, 1.0);
    assert!(latest(CHUNKS_TOTAL).value >= 1.0);
    assert!(
        points
            .iter()
            .any(|p| p.name == RAMP_THRESHOLD && p.attributes.contains_key("ramp_id"))
    );
    telemetry.shutdown();
}
