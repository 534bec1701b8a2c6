//! End to end over loopback: the real server (real bundle, real images), the real
//! sidecar, and a real OTLP receiver. One trace shows chunk → decision → push → the
//! server's apply span; the sidecar can die and come back without losing a request.

mod support;

use std::{collections::HashMap, sync::Arc, time::Duration};

use apparate_controller::rng::SplitMix64;
use apparate_proto::v1;
use apparate_server::loadgen::{self, LoadSpec};
use apparate_sidecar::SidecarConfig;
use apparate_telemetry::{
    TelemetryConfig,
    receiver::{OtlpReceiver, ReceivedSpan},
};
use support::*;
use tokio::sync::oneshot;

const WAIT: Duration = Duration::from_secs(120);

/// `clean` test images, then the first `drifted` of them again as noisy negatives (the
/// quick bundle's ramps are confidently wrong on many of those).
fn drifting_requests(clean: usize, drifted: usize) -> Arc<Vec<v1::InferRequest>> {
    let clean = image_requests(clean);
    let mut rng = SplitMix64::new(9);
    let mut all: Vec<v1::InferRequest> = clean.iter().cloned().collect();
    for r in clean.iter().take(drifted) {
        let mut r = r.clone();
        if let Some(v1::infer_request::Input::Tensor(t)) = &mut r.input {
            for v in &mut t.values {
                let noise = (rng.unit() as f32 - 0.5) * 0.4;
                *v = (1.0 - *v + noise).clamp(0.0, 1.0);
            }
        }
        all.push(r);
    }
    Arc::new(all)
}

fn sidecar_config(endpoint: String, lease_ms: u32) -> SidecarConfig {
    let mut cfg = SidecarConfig::default();
    cfg.server.endpoint = endpoint;
    cfg.lease_ms = lease_ms;
    cfg.reconnect.initial_ms = 20;
    cfg.reconnect.max_ms = 500;
    cfg
}

/// Drives `requests` in order at a steady open-loop rate; every request must be answered.
async fn drive(
    server: &apparate_server::RunningServer,
    requests: Arc<Vec<v1::InferRequest>>,
) -> Vec<v1::InferReply> {
    let client = loadgen::connect(&server.endpoint()).await.unwrap();
    let spec = LoadSpec {
        rate_per_s: 400.0,
        duration: Duration::from_secs_f64(requests.len() as f64 / 400.0),
        poisson: false,
        seed: 3,
        max_in_flight: 100_000,
    };
    let report = loadgen::run(client, requests, &spec, |_| {}).await;
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert_eq!(
        report.samples.len() as u64,
        report.sent,
        "every request answered"
    );
    let mut replies: Vec<_> = report.samples.into_iter().map(|s| s.reply).collect();
    replies.sort_by_key(|r| r.request_id);
    replies
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_trace_shows_chunk_decision_push_and_the_servers_apply() {
    let receiver = OtlpReceiver::start().await.unwrap();
    let telemetry = apparate_telemetry::init(&TelemetryConfig {
        otlp_endpoint: Some(receiver.endpoint()),
        service_name: "e2e".into(),
        ..TelemetryConfig::default()
    })
    .unwrap();
    let server = start(test_config(quick_bundle())).await;
    let (stop, stopped) = oneshot::channel::<()>();
    let sidecar = tokio::spawn(apparate_sidecar::run(
        sidecar_config(server.endpoint(), 30_000),
        async {
            let _ = stopped.await;
        },
    ));

    // 28 chunks clean (the first exits need about 20 chunks of evidence at the default
    // target), then 12 chunks drifted.
    let n = 1792;
    let replies = drive(&server, drifting_requests(n, 768)).await;
    let _ = stop.send(());
    let stats = sidecar.await.unwrap().unwrap();
    assert!(stats.chunks >= 36 && stats.acks >= 2, "{stats:?}");

    // Thresholds move after the drift: a new version decides requests soon after it.
    let drift_at = replies[n].request_id;
    let version_at_drift = replies[n].config_version;
    let later = replies
        .iter()
        .filter(|r| r.request_id >= drift_at + 8 * 64)
        .map(|r| r.config_version)
        .max()
        .unwrap();
    assert!(
        later > version_at_drift,
        "no new config within 8 chunks of the drift (v{version_at_drift})"
    );
    let early = replies.iter().filter(|r| r.ramp_id.is_some()).count();
    assert!(early > 0, "the sidecar opened some exits");

    telemetry.flush();
    let want = |spans: &[ReceivedSpan]| {
        let count = |n: &str| spans.iter().filter(|s| s.name == n).count();
        count("chunk") as u64 >= stats.chunks
            && count("retune") >= 1
            && count("config.push") >= 2
            && count("config.apply") >= 2
            && count("batch") >= 1
    };
    let spans = receiver.wait_for(want, WAIT).await.unwrap();
    // Accuracy against the final layer stays within budget on at least 95 % of chunks,
    // drift included.
    let chunks: Vec<&ReceivedSpan> = spans.iter().filter(|s| s.name == "chunk").collect();
    let over = chunks
        .iter()
        .filter(|s| s.attr("apparate.chunk.over_budget") == Some("true"))
        .count();
    assert!(
        over * 20 <= chunks.len(),
        "{over} of {} chunks over budget",
        chunks.len()
    );
    let by_id: HashMap<&str, &ReceivedSpan> =
        spans.iter().map(|s| (s.span_id.as_str(), s)).collect();
    let parent = |s: &ReceivedSpan| {
        s.parent_span_id
            .as_deref()
            .and_then(|p| by_id.get(p).copied())
    };
    // Every applied config's span is a child of the sidecar's push span, in its trace,
    // and the push hangs under a chunk.
    let applies: Vec<&ReceivedSpan> = spans.iter().filter(|s| s.name == "config.apply").collect();
    for apply in &applies {
        let push = parent(apply).unwrap_or_else(|| panic!("apply without parent: {apply:?}"));
        assert_eq!(push.name, "config.push");
        assert_eq!(push.trace_id, apply.trace_id);
        let mut up = parent(push);
        while let Some(s) = up {
            if s.name == "chunk" {
                break;
            }
            up = parent(s);
        }
        if let Some(chunk) = up {
            assert_eq!(
                chunk.trace_id, apply.trace_id,
                "one trace from chunk to apply"
            );
            assert!(chunk.attr("apparate.chunk.accuracy").is_some());
        }
        assert!(
            matches!(apply.attr("outcome"), Some("applied" | "renewed")),
            "{apply:?}"
        );
    }
    assert!(
        applies.iter().any(|a| {
            let mut up = parent(a);
            while let Some(s) = up {
                if s.name == "chunk" {
                    return true;
                }
                up = parent(s);
            }
            false
        }),
        "at least one applied config traces back to the chunk that decided it"
    );
    let batch = spans.iter().find(|s| s.name == "batch").unwrap();
    assert!(batch.attr("config.version").is_some() && batch.attr("exits_by_ramp").is_some());
    server.shutdown().await.unwrap();
    telemetry.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_sidecar_loses_no_requests_and_its_lease_runs_out() {
    let server = start(test_config(quick_bundle())).await;
    let (_, mut control) = clients(&server).await;
    // An observer on the config stream: the server tells every open stream when a lease ends.
    let mut observer = ConfigStream::open(&mut control).await;

    let first = tokio::spawn(apparate_sidecar::run(
        sidecar_config(server.endpoint(), 1_500),
        std::future::pending(),
    ));
    let replies = drive(&server, image_requests(640)).await;
    let tuned = control
        .describe(v1::DescribeRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(
        !tuned.active_is_fallback,
        "the sidecar's config is in force"
    );
    let tuned_version = tuned.active_config.unwrap().version;
    assert!(replies.last().unwrap().config_version > 0);

    // The sidecar dies without a word: the server keeps serving its last config...
    first.abort();
    let _ = first.await;
    let still = drive(&server, image_requests(64)).await;
    assert!(
        still
            .iter()
            .all(|r| r.config_version == tuned_version || r.config_version == 0)
    );

    // ... until the lease runs out, and it falls back to the safe config.
    let notice = tokio::time::timeout(WAIT, observer.rx.message())
        .await
        .expect("lease expiry")
        .unwrap()
        .unwrap();
    let Some(v1::config_response::Result::LeaseExpired(expired)) = notice.result else {
        panic!("{notice:?}")
    };
    assert_eq!(expired.expired_version, tuned_version);
    let fallback = drive(&server, image_requests(64)).await;
    assert!(
        fallback
            .iter()
            .all(|r| r.config_version == 0 && r.ramp_id.is_none())
    );

    // A new sidecar takes over with a higher version; nothing was lost throughout.
    let (stop, stopped) = oneshot::channel::<()>();
    let second = tokio::spawn(apparate_sidecar::run(
        sidecar_config(server.endpoint(), 1_500),
        async {
            let _ = stopped.await;
        },
    ));
    let resumed = drive(&server, image_requests(256)).await;
    let resumed_version = resumed.last().unwrap().config_version;
    assert!(
        resumed_version > tuned_version && resumed_version < tuned_version + 100,
        "the new sidecar continues above the expired version {tuned_version}: {resumed_version}"
    );
    let _ = stop.send(());
    second.await.unwrap().unwrap();
    server.shutdown().await.unwrap();
}
