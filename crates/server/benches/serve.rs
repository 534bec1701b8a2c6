//! Serving benchmark: the same bundle, the same load, in one run, with
//! (a) no ramps, (b) every candidate ramp (and a typical set of three) active but none
//! allowed to release (threshold 1: the pure cost of evaluating ramps), (c) three ramps
//! releasing.
//! Reports saturated throughput and open-loop latency percentiles, as ratios to (a).
//!
//! ```text
//! cargo bench -p apparate-server --bench serve                 # quick bundle, CPU
//! APPARATE_BENCH_BUNDLE=/path/to/bundle cargo bench -p apparate-server --bench serve
//! APPARATE_BENCH_SECONDS=20 ...                               # longer runs, steadier numbers
//! ```

use std::{path::PathBuf, sync::Arc, time::Duration};

use apparate_engine::{
    data::{Split, data_dir, load_fashion_mnist},
    model::Family,
    prepare::{PrepareOptions, prepare_cnn},
};
use apparate_proto::v1::{self, control_client::ControlClient};
use apparate_server::{
    ServerConfig,
    loadgen::{self, LoadReport, LoadSpec},
};

fn bundle() -> PathBuf {
    if let Some(dir) = std::env::var_os("APPARATE_BENCH_BUNDLE") {
        return dir.into();
    }
    let dir = std::env::temp_dir().join("apparate-bench-quick-resnet");
    if !dir.join("manifest.yaml").is_file() {
        eprintln!("preparing a quick ResNet bundle in {} ...", dir.display());
        let opts = PrepareOptions {
            quick: true,
            bootstrap_share: 0.25,
            seed: 5,
            ..PrepareOptions::new(Family::Resnet, tch::Device::Cpu)
        };
        prepare_cnn(&opts, &mut |_, _, _, _| {})
            .expect("quick prepare")
            .save(&dir)
            .expect("save");
    }
    dir
}

fn requests(n: i64) -> Arc<Vec<v1::InferRequest>> {
    let set = load_fashion_mnist(&data_dir().join("fashion-mnist"), Split::Test).expect("data");
    Arc::new(loadgen::tensor_requests(
        &set.images.narrow(0, 0, n),
        "bench",
    ))
}

async fn push(control: &mut ControlClient<tonic::transport::Channel>, config: v1::ExitConfig) {
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    let mut responses = control
        .stream_config(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    tx.send(v1::ConfigUpdate {
        config: Some(config),
        nonce: "bench".into(),
        trace_context: Default::default(),
    })
    .await
    .unwrap();
    let r = responses.message().await.unwrap().unwrap();
    assert!(
        matches!(r.result, Some(v1::config_response::Result::Ack(_))),
        "{r:?}"
    );
}

fn main() {
    let seconds: f64 = std::env::var("APPARATE_BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(8.0);
    let dir = bundle();
    let inputs = requests(2048);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let cfg = ServerConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            bundle: Some(dir),
            ..Default::default()
        };
        let server = apparate_server::start(cfg).await.expect("server");
        let channel = tonic::transport::Channel::from_shared(server.endpoint())
            .unwrap()
            .connect()
            .await
            .unwrap();
        let mut control = ControlClient::new(channel);
        let described = control.describe(v1::DescribeRequest {}).await.unwrap().into_inner();
        let n = u32::try_from(described.candidates.len()).unwrap();
        let client = loadgen::connect(&server.endpoint()).await.unwrap();
        println!("serving on {}; {n} candidate ramps; {seconds} s per run", server.device());

        let ramps = |ids: &[u32], t: f32| {
            ids.iter()
                .map(|&ramp_id| v1::RampThreshold { ramp_id, threshold: t })
                .collect::<Vec<_>>()
        };
        let all: Vec<u32> = (0..n).collect();
        let few: Vec<u32> = [n / 4, n / 2, 3 * n / 4].to_vec();
        let scenarios = [
            ("no ramps", Vec::new()),
            ("all ramps, no release", ramps(&all, 1.0)),
            ("3 ramps, no release", ramps(&few, 1.0)),
            ("3 ramps, threshold 0.9", ramps(&few, 0.9)),
        ];
        let saturate = LoadSpec {
            rate_per_s: 50_000.0,
            duration: Duration::from_secs_f64(seconds),
            poisson: false,
            seed: 1,
            max_in_flight: 256,
        };
        let mut rows: Vec<(&str, LoadReport, LoadReport)> = Vec::new();
        let mut open_rate = 0.0;
        for (version, (name, config)) in scenarios.into_iter().enumerate() {
            push(
                &mut control,
                v1::ExitConfig {
                    version: version as u64 + 1,
                    ramps: config,
                    lease_ms: 300_000,
                },
            )
            .await;
            let sat = loadgen::run(client.clone(), Arc::clone(&inputs), &saturate, |_| {}).await;
            if open_rate == 0.0 {
                // Open-loop latency at half the no-ramps capacity, the same for every row.
                open_rate = sat.throughput() / 2.0;
            }
            let open = LoadSpec {
                rate_per_s: open_rate,
                duration: Duration::from_secs_f64(seconds),
                poisson: true,
                seed: 2,
                max_in_flight: 4096,
            };
            let lat = loadgen::run(client.clone(), Arc::clone(&inputs), &open, |_| {}).await;
            rows.push((name, sat, lat));
        }
        println!(
            "\n{:<24} {:>10} {:>7} | open loop at {open_rate:.0} req/s: {:>8} {:>8} {:>8} {:>7} {:>6}",
            "config", "req/s", "ratio", "p50 ms", "p95 ms", "p99 ms", "p50 x", "exit %"
        );
        let (base_tp, base_p50) = (rows[0].1.throughput(), rows[0].2.latency_ms(0.5));
        for (name, sat, lat) in &rows {
            println!(
                "{name:<24} {:>10.0} {:>7.3} | {:>37.2} {:>8.2} {:>8.2} {:>7.3} {:>6.1}",
                sat.throughput(),
                sat.throughput() / base_tp,
                lat.latency_ms(0.5),
                lat.latency_ms(0.95),
                lat.latency_ms(0.99),
                lat.latency_ms(0.5) / base_p50,
                100.0 * lat.exit_rate(),
            );
        }
        server.shutdown().await.unwrap();
    });
}
