//! Shared by the integration tests: a quick real bundle (Fashion-MNIST, libtorch),
//! a real server on a loopback port, and requests made from real test images.

#![allow(dead_code)]

use std::{path::PathBuf, sync::Arc};

use apparate_engine::{
    data::{Split, data_dir, load_fashion_mnist},
    device::set_threads,
    model::Family,
    prepare::{PrepareOptions, prepare},
};
use apparate_proto::v1::{self, control_client::ControlClient, inference_client::InferenceClient};
use apparate_server::{RunningServer, ServerConfig};
use tonic::transport::Channel;

/// A quick ResNet bundle (trained in seconds on real Fashion-MNIST), prepared once per
/// build of the test binary and shared by its tests through `CARGO_TARGET_TMPDIR`:
/// a fresh build (possibly a new bundle format) gets a fresh bundle.
pub fn quick_bundle() -> PathBuf {
    quick_bundle_of(Family::Resnet)
}

/// A quick bundle of `family` (MiniLM: the real encoder, a head trained on a slice of
/// the movie reviews), cached like [`quick_bundle`].
pub fn quick_bundle_of(family: Family) -> PathBuf {
    let exe = std::env::current_exe().expect("test binary");
    let stamp = std::fs::metadata(&exe)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos());
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("quick-{}-{stamp}", family.as_str()));
    if dir.join("manifest.yaml").is_file() {
        return dir;
    }
    set_threads(1);
    let opts = PrepareOptions {
        quick: true,
        bootstrap_share: 0.25,
        seed: 5,
        ..PrepareOptions::new(family, tch::Device::Cpu)
    };
    let bundle = prepare(&opts, &mut |_, _, _, _| {})
        .expect("quick prepare (needs `scripts/bootstrap.sh data`)");
    // Write aside, then rename: concurrent tests never see a half-written bundle.
    let tmp = dir.with_extension(format!("tmp-{}", std::process::id()));
    bundle.save(&tmp).expect("save bundle");
    if std::fs::rename(&tmp, &dir).is_err() {
        // Another test got there first; theirs is as good as ours.
        let _ = std::fs::remove_dir_all(&tmp);
    }
    dir
}

/// A server config for tests: loopback, free port, CPU, one libtorch thread.
pub fn test_config(bundle: PathBuf) -> ServerConfig {
    let mut cfg = ServerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        bundle: Some(bundle),
        device: "cpu".into(),
        threads: 1,
        ..Default::default()
    };
    cfg.limits.max_lease_ms = 60_000;
    cfg
}

pub async fn start(cfg: ServerConfig) -> RunningServer {
    apparate_server::start(cfg).await.expect("server starts")
}

pub async fn channel(server: &RunningServer) -> Channel {
    Channel::from_shared(server.endpoint())
        .unwrap()
        .connect()
        .await
        .expect("connect")
}

pub async fn clients(server: &RunningServer) -> (InferenceClient<Channel>, ControlClient<Channel>) {
    let ch = channel(server).await;
    (InferenceClient::new(ch.clone()), ControlClient::new(ch))
}

/// The first `n` Fashion-MNIST test images as requests.
pub fn image_requests(n: usize) -> Arc<Vec<v1::InferRequest>> {
    let set = load_fashion_mnist(&data_dir().join("fashion-mnist"), Split::Test).expect("data");
    let images = set.images.narrow(0, 0, i64::try_from(n).unwrap());
    Arc::new(apparate_server::loadgen::tensor_requests(&images, ""))
}

pub fn exit_config(version: u64, ramps: &[(u32, f32)], lease_ms: u32) -> v1::ExitConfig {
    v1::ExitConfig {
        version,
        ramps: ramps
            .iter()
            .map(|&(ramp_id, threshold)| v1::RampThreshold { ramp_id, threshold })
            .collect(),
        lease_ms,
    }
}

/// An open config stream: send updates, read responses.
pub struct ConfigStream {
    pub tx: tokio::sync::mpsc::Sender<v1::ConfigUpdate>,
    pub rx: tonic::Streaming<v1::ConfigResponse>,
    next_nonce: u64,
}

impl ConfigStream {
    pub async fn open(control: &mut ControlClient<Channel>) -> Self {
        let (tx, rx) = tokio::sync::mpsc::channel(8);
        let responses = control
            .stream_config(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await
            .expect("config stream")
            .into_inner();
        Self {
            tx,
            rx: responses,
            next_nonce: 0,
        }
    }

    /// Pushes `config` and returns the response carrying its nonce.
    pub async fn push(&mut self, config: v1::ExitConfig) -> v1::config_response::Result {
        self.next_nonce += 1;
        let nonce = format!("n{}", self.next_nonce);
        self.tx
            .send(v1::ConfigUpdate {
                config: Some(config),
                nonce: nonce.clone(),
                trace_context: Default::default(),
            })
            .await
            .unwrap();
        loop {
            let r = self.rx.message().await.unwrap().expect("response");
            if r.nonce == nonce {
                return r.result.expect("result");
            }
        }
    }
}
