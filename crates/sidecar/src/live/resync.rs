//! Resynchronising with the server: `Describe`, then decide which config to push.

use apparate_controller::planner::initial_ramps;
use apparate_controller::{Controller, ExitConfig};
use apparate_proto::v1 as pb;
use apparate_proto::v1::control_client::ControlClient;
use apparate_telemetry::names::attr;
use tonic::transport::Channel;
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use super::{Cause, SessionError, State, rpc};
use crate::convert;

impl State {
    /// `Describe`, then make the controller's config the one to push: on first connect
    /// (or a changed profile) build the controller; after a NACK adopt the server's
    /// config; otherwise keep ours. The version is raised above everything involved
    /// unless the server already runs exactly our config. Returns it and the lease.
    pub(super) async fn resync(
        &mut self,
        client: &mut ControlClient<Channel>,
        cause: Cause,
        seen_version: Option<u64>,
    ) -> Result<(ExitConfig, u32), SessionError> {
        let span = tracing::info_span!("control.resync", apparate.resync.cause = cause.as_str());
        let d = client
            .describe(pb::DescribeRequest {})
            .instrument(span.clone())
            .await
            .map_err(rpc("Describe"))?
            .into_inner();
        let active = match &d.active_config {
            Some(c) => convert::exit_config(c, "DescribeReply.active_config")?,
            None => ExitConfig::default(),
        };
        let limits = d.limits.unwrap_or_default();
        let lease_ms = match limits.max_lease_ms {
            0 => self.cfg.lease_ms,
            max if self.cfg.lease_ms == 0 || self.cfg.lease_ms > max => {
                tracing::warn!(
                    lease_ms = self.cfg.lease_ms,
                    max_lease_ms = max,
                    "the server allows shorter leases; using its maximum"
                );
                max
            }
            _ => self.cfg.lease_ms,
        };
        // A renewal must repeat the lease too, so a different lease needs a new version.
        let same_lease = d.active_config.as_ref().map_or(0, |c| c.lease_ms) == lease_ms;
        let profile = convert::latency_profile(&d)?;
        let rebuild = self
            .controller
            .as_ref()
            .is_none_or(|c| c.profile() != &profile);
        if rebuild {
            let mut settings = self.cfg.controller.clone();
            if limits.max_active_ramps > 0 {
                settings.max_active_ramps = settings
                    .max_active_ramps
                    .min(limits.max_active_ramps as usize);
            }
            // Adopt a config another sidecar left running; else start closed.
            let adopted = if d.active_is_fallback {
                None
            } else {
                Controller::new(settings.clone(), profile.clone(), active.clone()).ok()
            };
            let controller = match adopted {
                Some(mut c) if !same_lease => {
                    c.resync(ExitConfig {
                        version: active.version + 1,
                        ramps: active.ramps.clone(),
                    })?;
                    c
                }
                Some(c) => c,
                None => {
                    // Above every version the server ever applied: it says so, or
                    // (a server that doesn't) the clock stands in.
                    let floor = active
                        .version
                        .max(d.highest_version.unwrap_or(self.epoch_ms))
                        .max(seen_version.unwrap_or(0));
                    let ids = initial_ramps(&profile, &settings);
                    let start = ExitConfig::never_exit(floor + 1, &ids)?;
                    Controller::new(settings, profile, start)?
                }
            };
            self.controller = Some(controller);
        } else {
            let controller = self.controller.as_mut().expect("checked above");
            let ours = controller.config().clone();
            let ramps = if cause == Cause::Nack {
                active.ramps.clone()
            } else {
                ours.ramps.clone()
            };
            let running = !d.active_is_fallback
                && same_lease
                && active.version == ours.version
                && active.ramps == ramps;
            if !running {
                let version = ours
                    .version
                    .max(active.version)
                    .max(d.highest_version.unwrap_or(0))
                    .max(seen_version.unwrap_or(0))
                    + 1;
                controller.resync(ExitConfig { version, ramps })?;
            }
        }
        let config = self.controller().config().clone();
        span.set_attribute(attr::CONFIG_VERSION, config.version as i64);
        span.set_attribute(attr::THRESHOLDS, config.describe());
        tracing::info!(parent: &span, cause = cause.as_str(), server_version = active.version, fallback = d.active_is_fallback, version = config.version, "resynchronised with the server");
        self.metrics.record_config(&config);
        Ok((config, lease_ms))
    }
}
