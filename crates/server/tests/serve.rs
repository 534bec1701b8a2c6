//! The server over a real loopback socket, with a real (quickly trained) bundle on
//! real Fashion-MNIST images.

mod support;

use apparate_engine::Bundle;
use apparate_proto::v1::{self, config_response::Result as R};
use support::*;
use tch::{Device, Tensor};
use tokio::task::JoinSet;

/// Ramp 0's confidences for `requests`, computed directly with the engine.
fn ramp0_confidences(
    bundle: &std::path::Path,
    requests: &[v1::InferRequest],
) -> (Vec<f32>, Vec<u32>) {
    let b = Bundle::load(bundle, Device::Cpu).unwrap();
    let flat: Vec<f32> = requests
        .iter()
        .flat_map(|r| match &r.input {
            Some(v1::infer_request::Input::Tensor(t)) => t.values.clone(),
            _ => unreachable!(),
        })
        .collect();
    let x = Tensor::from_slice(&flat).view([-1, 1, 28, 28]);
    let mut conf = Vec::new();
    let finals = b
        .model
        .forward_exits(&x, None, &[0], |_, out| conf = out.confidences);
    (conf, finals.labels)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn early_exits_are_released_before_the_batch_finishes() {
    let dir = quick_bundle();
    let requests = image_requests(16);
    let (conf, final_labels) = ramp0_confidences(&dir, &requests);
    let mut sorted = conf.clone();
    sorted.sort_by(f32::total_cmp);
    let median = sorted[8];

    let mut cfg = test_config(dir);
    cfg.batching.max_batch_size = 16;
    cfg.batching.max_wait_ms = 5_000; // the batch forms when all 16 are in
    let server = start(cfg).await;
    let (infer, mut control) = clients(&server).await;
    let mut feedback = control
        .stream_feedback(v1::FeedbackRequest {
            subscriber: "test".into(),
            buffer_records: 0,
        })
        .await
        .unwrap()
        .into_inner();
    let mut stream = ConfigStream::open(&mut control).await;
    let R::Ack(ack) = stream.push(exit_config(1, &[(0, median)], 60_000)).await else {
        panic!("config rejected")
    };
    assert_eq!(ack.version, 1);

    let mut tasks = JoinSet::new();
    for (i, req) in requests.iter().cloned().enumerate() {
        let mut infer = infer.clone();
        tasks.spawn(async move { (i, infer.infer(req).await.unwrap().into_inner()) });
    }
    let replies = tasks.join_all().await;

    // Release order, on the worker's clock: `exec_us` is when each reply was sent.
    let mut early_latest = 0;
    let mut final_earliest = u64::MAX;
    for (i, reply) in &replies {
        assert_eq!(reply.batch_size, 16, "one batch");
        assert_eq!(reply.config_version, 1);
        if conf[*i] > median {
            assert_eq!(reply.ramp_id, Some(0), "request {i} should exit at ramp 0");
            early_latest = early_latest.max(reply.exec_us);
        } else {
            assert_eq!(
                reply.ramp_id, None,
                "request {i} should reach the final layer"
            );
            assert_eq!(
                reply.label, final_labels[*i],
                "final answers equal the model's"
            );
            final_earliest = final_earliest.min(reply.exec_us);
        }
    }
    assert!(
        early_latest < final_earliest,
        "early replies ({early_latest} us) were released before the final layer ({final_earliest} us)"
    );

    let batch = feedback.message().await.unwrap().unwrap();
    assert_eq!(batch.records.len(), 16);
    for r in &batch.records {
        assert_eq!(r.ramps.len(), 1, "one active ramp");
        assert_eq!(r.config_version, 1);
        match r.exited_ramp {
            Some(0) => assert!(r.release_us < r.exec_us, "released before the final layer"),
            None => assert_eq!(r.release_us, r.exec_us),
            other => panic!("unexpected exit {other:?}"),
        }
    }
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_configs_are_nacked_and_the_old_one_keeps_serving() {
    let server = start(test_config(quick_bundle())).await;
    let (mut infer, mut control) = clients(&server).await;
    let mut stream = ConfigStream::open(&mut control).await;
    assert!(matches!(
        stream.push(exit_config(1, &[(1, 0.9)], 60_000)).await,
        R::Ack(_)
    ));
    let R::Nack(nack) = stream.push(exit_config(2, &[(99, 0.5)], 60_000)).await else {
        panic!("unknown ramp accepted")
    };
    assert_eq!(nack.field, "config.ramps[0].ramp_id");
    assert_eq!(nack.active_version, 1);
    assert!(nack.reason.contains("99"), "{}", nack.reason);
    let R::Nack(nack) = stream.push(exit_config(2, &[(1, 1.5)], 60_000)).await else {
        panic!("threshold 1.5 accepted")
    };
    assert_eq!(nack.field, "config.ramps[0].threshold");
    let R::Nack(nack) = stream.push(exit_config(1, &[(1, 0.5)], 60_000)).await else {
        panic!("changed content under the same version accepted")
    };
    assert_eq!(nack.field, "config.version");

    let described = control
        .describe(v1::DescribeRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        described.active_config.unwrap(),
        exit_config(1, &[(1, 0.9)], 60_000)
    );
    assert!(!described.active_is_fallback);
    assert_eq!(described.candidates.len(), 8);
    assert_eq!(described.model.unwrap().family, "resnet");
    let reply = infer
        .infer(image_requests(1)[0].clone())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(reply.config_version, 1);
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_lease_falls_back_to_the_safe_config() {
    let server = start(test_config(quick_bundle())).await;
    let (mut infer, mut control) = clients(&server).await;
    let mut stream = ConfigStream::open(&mut control).await;
    let R::Ack(ack) = stream.push(exit_config(7, &[(2, 0.0)], 300)).await else {
        panic!("rejected")
    };
    assert!(ack.lease_expires_unix_ms > 0);
    // The unsolicited notice arrives on the same stream when the lease runs out.
    let notice = stream.rx.message().await.unwrap().unwrap();
    let Some(R::LeaseExpired(expired)) = notice.result else {
        panic!("expected LeaseExpired, got {notice:?}")
    };
    assert_eq!(expired.expired_version, 7);
    assert_eq!(expired.fallback.unwrap().version, 0);
    let described = control
        .describe(v1::DescribeRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(described.active_is_fallback);
    assert_eq!(
        described.highest_version,
        Some(7),
        "the expired version is remembered"
    );
    let reply = infer
        .infer(image_requests(1)[0].clone())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (reply.config_version, reply.ramp_id),
        (0, None),
        "no exits on the safe config"
    );
    // Renewing the expired version is refused; a higher one is accepted.
    assert!(matches!(
        stream.push(exit_config(7, &[(2, 0.0)], 300)).await,
        R::Nack(_)
    ));
    assert!(
        matches!(stream.push(exit_config(8, &[(2, 0.0)], 0)).await, R::Nack(n) if n.field == "config.lease_ms")
    );
    assert!(matches!(
        stream.push(exit_config(8, &[(2, 0.0)], 60_000)).await,
        R::Ack(_)
    ));
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_subscriber_never_blocks_replies() {
    let server = start(test_config(quick_bundle())).await;
    let (infer, mut control) = clients(&server).await;
    // Subscribes with a tiny buffer and never reads (until the end).
    let mut stalled = control
        .stream_feedback(v1::FeedbackRequest {
            subscriber: "stalled".into(),
            buffer_records: 8,
        })
        .await
        .unwrap()
        .into_inner();
    let mut stream = ConfigStream::open(&mut control).await;
    let all: Vec<(u32, f32)> = (0..8).map(|r| (r, 1.0)).collect();
    assert!(matches!(
        stream.push(exit_config(1, &all, 60_000)).await,
        R::Ack(_)
    ));

    // ~2,000 records with 8 ramp outputs each: far more than HTTP/2 flow control,
    // the stream's queue and the 8-record buffer can hold.
    let requests = image_requests(250);
    let mut tasks = JoinSet::new();
    for round in 0..8 {
        for req in requests.iter().cloned() {
            let mut infer = infer.clone();
            tasks.spawn(async move { infer.infer(req).await.map(|r| r.into_inner()) });
        }
        // Keep the queue bounded: let each round finish before the next.
        while !tasks.is_empty() {
            let reply = tasks.join_next().await.unwrap().unwrap();
            assert!(reply.is_ok(), "round {round}: {reply:?}");
        }
    }
    let described = control
        .describe(v1::DescribeRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(
        described.feedback_dropped_total > 0,
        "the stalled subscriber lost records"
    );
    let first = stalled.message().await.unwrap().unwrap();
    assert!(!first.records.is_empty());
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_inputs_get_invalid_argument_and_do_not_disturb_others() {
    let server = start(test_config(quick_bundle())).await;
    let (infer, _) = clients(&server).await;
    let good = image_requests(4);
    let tensor = |shape: Vec<u32>, values: Vec<f32>| v1::InferRequest {
        client_tag: "bad".into(),
        input: Some(v1::infer_request::Input::Tensor(v1::Tensor {
            shape,
            values,
        })),
    };
    let bad = vec![
        (v1::InferRequest::default(), "input"),
        (tensor(vec![3, 28, 28], vec![0.0; 3 * 784]), "tensor.shape"),
        (tensor(vec![1, 28, 28], vec![0.0; 10]), "tensor.values"),
        (
            tensor(vec![1, 28, 28], vec![f32::INFINITY; 784]),
            "tensor.values[0]",
        ),
        (
            v1::InferRequest {
                client_tag: String::new(),
                input: Some(v1::infer_request::Input::Text("a movie".into())),
            },
            "text",
        ),
    ];
    let mut tasks = JoinSet::new();
    for (req, field) in bad {
        let mut infer = infer.clone();
        tasks.spawn(async move { (Some(field), infer.infer(req).await) });
    }
    for req in good.iter().cloned() {
        let mut infer = infer.clone();
        tasks.spawn(async move { (None, infer.infer(req).await) });
    }
    for (field, result) in tasks.join_all().await {
        match field {
            Some(field) => {
                let status = result.unwrap_err();
                assert_eq!(status.code(), tonic::Code::InvalidArgument);
                assert!(status.message().starts_with(field), "{}", status.message());
            }
            None => assert!(result.is_ok(), "{result:?}"),
        }
    }
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_reflection_answer_like_standard_tools_expect() {
    use tonic_health::pb::{
        HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
    };
    let server = start(test_config(quick_bundle())).await;
    let mut health = HealthClient::new(channel(&server).await);
    let status = health
        .check(HealthCheckRequest {
            service: "apparate.v1.Inference".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .status;
    assert_eq!(status, ServingStatus::Serving as i32);
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_is_tokenized_server_side_and_checked() {
    let server = start(test_config(quick_bundle_of(
        apparate_engine::model::Family::Minilm,
    )))
    .await;
    let (infer, mut control) = clients(&server).await;
    let described = control
        .describe(v1::DescribeRequest {})
        .await
        .unwrap()
        .into_inner();
    let input = described.model.unwrap().input.unwrap();
    assert_eq!(input.kind, v1::input_spec::Kind::Text as i32);
    let text = |t: &str| v1::InferRequest {
        client_tag: String::new(),
        input: Some(v1::infer_request::Input::Text(t.into())),
    };
    let mut tasks = JoinSet::new();
    for t in [
        "A gorgeous, witty, seductive movie.",
        "A tedious waste of two hours.",
        "Fine.",
    ] {
        let mut infer = infer.clone();
        let req = text(t);
        tasks.spawn(async move { infer.infer(req).await });
    }
    for reply in tasks.join_all().await {
        let reply = reply.unwrap().into_inner();
        assert!(reply.label < 2 && !reply.label_name.is_empty(), "{reply:?}");
    }
    let too_long = "x".repeat(input.max_text_bytes as usize + 1);
    let status = infer.clone().infer(text(&too_long)).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(status.message().starts_with("text"), "{}", status.message());
    let image = image_requests(1)[0].clone();
    let status = infer.clone().infer(image).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    server.shutdown().await.unwrap();
}
