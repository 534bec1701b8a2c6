//! One config push at a time on the `StreamConfig` stream: a fresh nonce per update, the
//! push span's context in `trace_context`, and the update kept until its answer arrives.

use std::time::Duration;

use apparate_controller::ExitConfig;
use apparate_proto::v1 as pb;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::Span;

use crate::convert::exit_config_pb;
use crate::observe::push_span;

/// A sent update waiting for its ACK or NACK.
#[derive(Debug)]
pub(crate) struct InFlight {
    pub nonce: String,
    pub config: ExitConfig,
    pub span: Span,
    pub renewal: bool,
    pub deadline: Instant,
}

/// Nonces unique per process run: a per-process prefix and a counter.
#[derive(Debug)]
pub(crate) struct Nonces {
    prefix: String,
    next: u64,
}

impl Nonces {
    pub fn new(seed: u64) -> Self {
        Self {
            prefix: format!("{seed:016x}"),
            next: 0,
        }
    }

    pub fn fresh(&mut self) -> String {
        self.next += 1;
        format!("{}-{}", self.prefix, self.next)
    }
}

/// The sending half of one config stream.
#[derive(Debug)]
pub(crate) struct Pusher {
    tx: mpsc::Sender<pb::ConfigUpdate>,
    lease_ms: u32,
    ack_timeout: Duration,
    pub in_flight: Option<InFlight>,
    /// The config the server last ACKed on this stream.
    pub acked: Option<ExitConfig>,
}

impl Pusher {
    pub fn new(tx: mpsc::Sender<pb::ConfigUpdate>, lease_ms: u32, ack_timeout: Duration) -> Self {
        Self {
            tx,
            lease_ms,
            ack_timeout,
            in_flight: None,
            acked: None,
        }
    }

    pub fn set_lease_ms(&mut self, lease_ms: u32) {
        self.lease_ms = lease_ms;
    }

    pub fn idle(&self) -> bool {
        self.in_flight.is_none()
    }

    pub fn deadline(&self) -> Option<Instant> {
        self.in_flight.as_ref().map(|f| f.deadline)
    }

    /// Sends `config`; the caller must check [`Pusher::idle`] first. `false` when the
    /// stream is closed.
    pub async fn push(
        &mut self,
        config: &ExitConfig,
        parent: &Span,
        renewal: bool,
        nonces: &mut Nonces,
    ) -> bool {
        debug_assert!(self.idle(), "one push at a time");
        let nonce = nonces.fresh();
        let span = push_span(parent, config, &nonce, self.lease_ms, renewal);
        let update = pb::ConfigUpdate {
            config: Some(exit_config_pb(config, self.lease_ms)),
            nonce: nonce.clone(),
            trace_context: apparate_telemetry::inject_context(&span),
        };
        if renewal {
            tracing::debug!(parent: &span, version = config.version, %nonce, "renewing lease");
        } else {
            tracing::info!(parent: &span, version = config.version, thresholds = %config.describe(), %nonce, "pushing config");
        }
        if self.tx.send(update).await.is_err() {
            return false;
        }
        self.in_flight = Some(InFlight {
            nonce,
            config: config.clone(),
            span,
            renewal,
            deadline: Instant::now() + self.ack_timeout,
        });
        true
    }

    /// The in-flight push this response answers, if the nonce matches.
    pub fn answered(&mut self, nonce: &str) -> Option<InFlight> {
        match &self.in_flight {
            Some(f) if f.nonce == nonce => self.in_flight.take(),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn pushes_carry_fresh_nonces_and_the_lease_and_wait_for_their_answer() {
        let (tx, mut rx) = mpsc::channel(4);
        let mut p = Pusher::new(tx, 3_000, Duration::from_secs(1));
        let mut nonces = Nonces::new(0xab);
        let cfg = ExitConfig::never_exit(5, &[1, 2]).unwrap();
        assert!(p.push(&cfg, &Span::none(), false, &mut nonces).await);
        let sent = rx.recv().await.unwrap();
        assert_eq!(sent.nonce, "00000000000000ab-1");
        let wire = sent.config.unwrap();
        assert_eq!(
            (wire.version, wire.lease_ms, wire.ramps.len()),
            (5, 3_000, 2)
        );
        assert!(!p.idle());
        assert!(p.answered("00000000000000ab-2").is_none(), "wrong nonce");
        let done = p.answered("00000000000000ab-1").unwrap();
        assert_eq!(done.config, cfg);
        assert!(p.idle());
        assert!(p.push(&cfg, &Span::none(), true, &mut nonces).await);
        assert_eq!(rx.recv().await.unwrap().nonce, "00000000000000ab-2");
        drop(rx);
        p.in_flight = None;
        assert!(
            !p.push(&cfg, &Span::none(), true, &mut nonces).await,
            "closed stream"
        );
    }
}
