//! The server goes away and comes back (a restart: fallback config, fresh state): the
//! sidecar reconnects with backoff, re-reads `Describe`, and re-pushes its current config
//! under a higher version, keeping what it had learned.

mod common;

use std::time::Duration;

use apparate_sidecar::SidecarConfig;
use common::{Script, serve};
use tokio::sync::{mpsc, oneshot};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_server_gets_the_sidecars_config_again() {
    let timeout = Duration::from_secs(30);
    let (events_tx, mut events) = mpsc::unbounded_channel();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let script = Script::new(events_tx, None);
    let kill = script.killed.clone();
    let (stop_first, first_stopped) = oneshot::channel::<()>();
    let first = serve(script, listener, first_stopped);

    let mut cfg = SidecarConfig::default();
    cfg.server.endpoint = format!("http://{addr}");
    // A loose budget without a chunk-coverage aim: the first chunk may open exits.
    cfg.controller.accuracy_budget = 0.05;
    cfg.controller.chunk_coverage = 0.0;
    cfg.lease_ms = 0;
    cfg.reconnect.initial_ms = 20;
    cfg.reconnect.max_ms = 200;
    let (stop_sidecar, sidecar_stopped) = oneshot::channel::<()>();
    let sidecar = tokio::spawn(apparate_sidecar::run(cfg, async {
        let _ = sidecar_stopped.await;
    }));

    // Wait until the sidecar has tuned something: an ACKed push with an open threshold.
    let before = loop {
        let a = tokio::time::timeout(timeout, events.recv())
            .await
            .expect("pushes")
            .unwrap();
        if a.acked && a.config.ramps.iter().any(|r| r.threshold < 1.0) {
            break a;
        }
    };

    // The server dies: its streams fail, it stops; a fresh one starts on the same port.
    kill.send_replace(true);
    let _ = stop_first.send(());
    first.await.unwrap().unwrap();
    let mut last_seen = before.clone();
    while let Ok(a) = events.try_recv() {
        last_seen = a;
    }
    let (events_tx, mut events) = mpsc::unbounded_channel();
    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    let (stop_second, second_stopped) = oneshot::channel::<()>();
    let second = serve(Script::new(events_tx, None), listener, second_stopped);

    let after = tokio::time::timeout(timeout, events.recv())
        .await
        .expect("the sidecar reconnects and pushes")
        .unwrap();
    stop_sidecar.send(()).unwrap();
    let stats = sidecar.await.unwrap().unwrap();
    let _ = stop_second.send(());
    second.await.unwrap().unwrap();

    assert!(after.acked);
    assert!(
        after.config.version > last_seen.config.version,
        "{last_seen:?} {after:?}"
    );
    assert!(
        after.config.ramps.iter().any(|r| r.threshold < 1.0),
        "the re-pushed config keeps the tuned thresholds: {after:?}"
    );
    assert!(stats.sessions >= 2, "{stats:?}");
}
