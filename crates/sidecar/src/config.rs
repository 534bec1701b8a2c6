//! `configs/sidecar.yaml`: every setting of the sidecar, defaulted in one place
//! ([`SidecarConfig::default`]) and validated before anything connects. Flags and
//! `APPARATE_SIDECAR_*` environment variables override the file (see [`crate::cli`]).

use std::path::Path;

use apparate_controller::ControllerConfig;
use apparate_telemetry::TelemetryConfig;
use serde::Deserialize;

use crate::error::SidecarError;

/// Where the model server's `Control` service listens.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// `http://host:port` of the server's gRPC endpoint.
    pub endpoint: String,
    /// Give up a connection attempt after this long, in ms.
    pub connect_timeout_ms: u64,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            endpoint: "http://127.0.0.1:50051".to_owned(),
            connect_timeout_ms: 5_000,
        }
    }
}

/// Reconnect backoff: doubling from `initial_ms` up to `max_ms`, with jitter.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReconnectConfig {
    /// First delay after a failure, in ms.
    pub initial_ms: u64,
    /// Largest delay, in ms.
    pub max_ms: u64,
}

impl Default for ReconnectConfig {
    fn default() -> Self {
        Self {
            initial_ms: 100,
            max_ms: 10_000,
        }
    }
}

/// The `StreamFeedback` subscription.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FeedbackConfig {
    /// Subscriber name in the server's logs and metrics.
    pub subscriber: String,
    /// Records the server buffers for us before dropping the oldest; 0 = server default.
    pub buffer_records: u32,
}

impl Default for FeedbackConfig {
    fn default() -> Self {
        Self {
            subscriber: "apparate-sidecar".to_owned(),
            buffer_records: 4_096,
        }
    }
}

/// The whole sidecar configuration. Missing keys take the defaults.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SidecarConfig {
    /// The server to control.
    pub server: ServerConfig,
    /// The policy loop's settings (same keys as `configs/controller.yaml`).
    pub controller: ControllerConfig,
    /// Lease of every pushed config, in ms; 0 = no lease (a dead sidecar's config stays).
    pub lease_ms: u32,
    /// Renew the lease after this fraction of it has passed, in (0, 1).
    pub renew_fraction: f64,
    /// A push not answered within this many ms counts as a broken connection.
    pub ack_timeout_ms: u64,
    /// Reconnect backoff.
    pub reconnect: ReconnectConfig,
    /// Feedback subscription.
    pub feedback: FeedbackConfig,
    /// Logs, traces and metrics.
    pub telemetry: TelemetryConfig,
}

impl Default for SidecarConfig {
    fn default() -> Self {
        Self {
            server: ServerConfig::default(),
            controller: ControllerConfig::default(),
            lease_ms: 30_000,
            renew_fraction: 0.5,
            ack_timeout_ms: 5_000,
            reconnect: ReconnectConfig::default(),
            feedback: FeedbackConfig::default(),
            telemetry: TelemetryConfig {
                service_name: "apparate-sidecar".to_owned(),
                ..TelemetryConfig::default()
            },
        }
    }
}

impl SidecarConfig {
    /// Parses YAML (unknown keys are errors) without validating.
    pub fn from_yaml_str(yaml: &str, origin: &Path) -> Result<Self, SidecarError> {
        serde_saphyr::from_str(yaml).map_err(|e| SidecarError::Yaml {
            path: origin.to_owned(),
            message: e.to_string(),
        })
    }

    /// Reads and parses a file without validating.
    pub fn from_file(path: &Path) -> Result<Self, SidecarError> {
        let text = std::fs::read_to_string(path).map_err(|source| SidecarError::Io {
            path: path.to_owned(),
            source,
        })?;
        Self::from_yaml_str(&text, path)
    }

    /// The period between lease renewals; `None` without a lease.
    pub fn renew_every(&self) -> Option<std::time::Duration> {
        (self.lease_ms > 0).then(|| {
            std::time::Duration::from_secs_f64(f64::from(self.lease_ms) * self.renew_fraction / 1e3)
        })
    }

    /// Rejects values the sidecar cannot run with, naming the field and the value.
    pub fn validate(&self) -> Result<(), SidecarError> {
        let bad = |field: &str, value: &dyn ToString, reason: &str| {
            Err(SidecarError::config(field, value.to_string(), reason))
        };
        let e = &self.server.endpoint;
        if !(e.starts_with("http://") || e.starts_with("https://")) || e.len() <= "http://".len() {
            return bad("server.endpoint", e, "must be an http:// or https:// URL");
        }
        if !(1..=600_000).contains(&self.server.connect_timeout_ms) {
            return bad(
                "server.connect_timeout_ms",
                &self.server.connect_timeout_ms,
                "must be in 1..=600000",
            );
        }
        self.controller.validate().map_err(|err| match err {
            apparate_controller::ControllerError::InvalidConfig {
                field,
                value,
                reason,
            } => SidecarError::config(&format!("controller.{field}"), value, reason),
            other => SidecarError::Controller(other),
        })?;
        if self.lease_ms > 0 && self.lease_ms < 100 {
            return bad(
                "lease_ms",
                &self.lease_ms,
                "must be 0 (no lease) or at least 100",
            );
        }
        if !(self.renew_fraction > 0.0 && self.renew_fraction < 1.0) {
            return bad("renew_fraction", &self.renew_fraction, "must be in (0, 1)");
        }
        if !(1..=600_000).contains(&self.ack_timeout_ms) {
            return bad(
                "ack_timeout_ms",
                &self.ack_timeout_ms,
                "must be in 1..=600000",
            );
        }
        let r = &self.reconnect;
        if r.initial_ms == 0 {
            return bad("reconnect.initial_ms", &r.initial_ms, "must be at least 1");
        }
        if r.max_ms < r.initial_ms || r.max_ms > 3_600_000 {
            return bad(
                "reconnect.max_ms",
                &r.max_ms,
                "must be in reconnect.initial_ms..=3600000",
            );
        }
        if self.feedback.subscriber.trim().is_empty() {
            return bad(
                "feedback.subscriber",
                &format!("{:?}", self.feedback.subscriber),
                "must not be empty",
            );
        }
        self.telemetry.validate()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> Result<SidecarConfig, SidecarError> {
        let cfg = SidecarConfig::from_yaml_str(yaml, Path::new("test.yaml"))?;
        cfg.validate()?;
        Ok(cfg)
    }

    #[test]
    fn partial_yaml_takes_defaults() {
        let cfg = parse("lease_ms: 5000\ncontroller:\n  chunk_size: 32\n").unwrap();
        assert_eq!(cfg.lease_ms, 5000);
        assert_eq!(cfg.controller.chunk_size, 32);
        assert_eq!(cfg.controller.accuracy_budget, 0.01);
        assert_eq!(cfg.server, ServerConfig::default());
        assert_eq!(
            cfg.renew_every(),
            Some(std::time::Duration::from_millis(2500))
        );
    }

    #[test]
    fn every_bad_value_names_its_field_and_value() {
        for (yaml, field, value) in [
            (
                "server: {endpoint: 127.0.0.1:1}",
                "server.endpoint",
                "127.0.0.1:1",
            ),
            ("renew_fraction: 1.5", "renew_fraction", "1.5"),
            ("lease_ms: 5", "lease_ms", "5"),
            (
                "reconnect: {initial_ms: 500, max_ms: 10}",
                "reconnect.max_ms",
                "10",
            ),
            (
                "controller: {accuracy_budget: 2.0}",
                "controller.accuracy_budget",
                "2",
            ),
            (
                "feedback: {subscriber: ' '}",
                "feedback.subscriber",
                "\" \"",
            ),
            ("ack_timeout_ms: 0", "ack_timeout_ms", "0"),
            (
                "telemetry: {metrics_interval_ms: 0}",
                "telemetry.metrics_interval_ms",
                "0",
            ),
        ] {
            let err = parse(yaml).unwrap_err();
            assert!(err.is_config(), "{yaml}: {err}");
            let msg = err.to_string();
            assert!(msg.contains(field) && msg.contains(value), "{yaml}: {msg}");
        }
    }

    #[test]
    fn unknown_keys_are_rejected_with_the_file_name() {
        let err = parse("lease_msec: 10\n").unwrap_err();
        assert!(err.is_config());
        let msg = err.to_string();
        assert!(
            msg.contains("test.yaml") && msg.contains("lease_msec"),
            "{msg}"
        );
    }
}
