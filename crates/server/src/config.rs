//! `server.yaml`: every setting of the server, with its default, validated on start.
//! `apparate serve` flags and `APPARATE_SERVER_*` environment variables override it
//! (see [`crate::cli`]).

use std::{net::SocketAddr, path::PathBuf};

use apparate_proto::v1;
use serde::Deserialize;

/// The whole server configuration.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address to listen on. Loopback by default: expose it on purpose.
    pub listen: SocketAddr,
    /// Bundle folder written by `apparate prepare`.
    pub bundle: Option<PathBuf>,
    /// `auto`, `cpu`, `cuda` or `cuda:N`.
    pub device: String,
    /// libtorch intra-op threads of the inference worker (0 = one per core).
    pub threads: usize,
    pub batching: Batching,
    pub limits: Limits,
    /// Records buffered per feedback subscriber that asks for the default (`0`).
    pub feedback_buffer_records: u32,
    /// The safe static config (version 0): in force at start and after a lease ends.
    pub safe_config: SafeConfig,
    pub telemetry: apparate_telemetry::TelemetryConfig,
}

/// Dynamic batching.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Batching {
    /// Largest batch formed.
    pub max_batch_size: u32,
    /// Longest a request waits for others to join its batch, from its arrival.
    pub max_wait_ms: u32,
    /// Requests queued before new ones get `RESOURCE_EXHAUSTED`.
    pub queue_capacity: u32,
}

/// What the server accepts from the controller.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    pub max_active_ramps: u32,
    /// Longest lease granted (0 = no limit).
    pub max_lease_ms: u32,
}

/// The safe static config: active ramps and their thresholds (default: none, no exits).
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SafeConfig {
    pub ramps: Vec<SafeRamp>,
}

/// One ramp of the safe config.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SafeRamp {
    pub ramp_id: u32,
    pub threshold: f32,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 50051)),
            bundle: None,
            device: "auto".into(),
            threads: 0,
            batching: Batching::default(),
            limits: Limits::default(),
            feedback_buffer_records: 8192,
            safe_config: SafeConfig::default(),
            telemetry: apparate_telemetry::TelemetryConfig {
                service_name: "apparate-server".into(),
                ..Default::default()
            },
        }
    }
}

impl Default for Batching {
    fn default() -> Self {
        Self {
            max_batch_size: 64,
            max_wait_ms: 5,
            queue_capacity: 4096,
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_active_ramps: 8,
            max_lease_ms: 300_000,
        }
    }
}

/// A bad setting: the field and why.
#[derive(Debug, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct ConfigError {
    pub field: String,
    pub reason: String,
}

fn bad(field: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError {
        field: field.into(),
        reason: reason.into(),
    }
}

impl ServerConfig {
    /// Parses YAML (unknown fields are errors).
    pub fn from_yaml_str(text: &str) -> Result<Self, ConfigError> {
        serde_saphyr::from_str(text).map_err(|e| bad("server config", e.to_string()))
    }

    /// Checks every field that can be wrong on its own. The safe config is checked
    /// against the bundle when it is loaded ([`crate::state::validate_ramps`]).
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.bundle.is_none() {
            return Err(bad(
                "bundle",
                "missing: pass --bundle DIR (a folder written by `apparate prepare`)",
            ));
        }
        if apparate_engine::device::DeviceChoice::parse(&self.device).is_none() {
            return Err(bad(
                "device",
                format!("{:?} is not auto, cpu, cuda or cuda:N", self.device),
            ));
        }
        let b = &self.batching;
        if !(1..=4096).contains(&b.max_batch_size) {
            return Err(bad(
                "batching.max_batch_size",
                format!("{} is not in 1..=4096", b.max_batch_size),
            ));
        }
        if b.max_wait_ms > 10_000 {
            return Err(bad(
                "batching.max_wait_ms",
                format!("{} ms is longer than 10 s", b.max_wait_ms),
            ));
        }
        if b.queue_capacity < b.max_batch_size {
            return Err(bad(
                "batching.queue_capacity",
                format!(
                    "{} is smaller than max_batch_size {}",
                    b.queue_capacity, b.max_batch_size
                ),
            ));
        }
        self.telemetry
            .validate()
            .map_err(|e| bad("telemetry", e.to_string()))?;
        if self.feedback_buffer_records == 0 {
            return Err(bad("feedback_buffer_records", "must be at least 1"));
        }
        Ok(())
    }

    /// The `bundle` folder must hold a `manifest.yaml`: checked apart from
    /// [`ServerConfig::validate`], which never touches the disk, so that `apparate serve`
    /// reports a wrong path as a bad setting before it starts anything.
    pub fn check_bundle_folder(&self) -> Result<(), ConfigError> {
        let Some(dir) = &self.bundle else {
            return Ok(()); // `validate` reports a missing `bundle`
        };
        if dir.join("manifest.yaml").is_file() {
            return Ok(());
        }
        let what = if dir.is_dir() {
            "has no manifest.yaml"
        } else {
            "does not exist"
        };
        Err(bad(
            "bundle",
            format!(
                "{} {what}: pass a folder written by `apparate prepare`",
                dir.display()
            ),
        ))
    }

    /// The safe config as the version-0 `ExitConfig` (no lease).
    pub fn safe_exit_config(&self) -> v1::ExitConfig {
        v1::ExitConfig {
            version: 0,
            ramps: self
                .safe_config
                .ramps
                .iter()
                .map(|r| v1::RampThreshold {
                    ramp_id: r.ramp_id,
                    threshold: r.threshold,
                })
                .collect(),
            lease_ms: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_server_yaml_parses_and_validates_with_a_bundle() {
        let text = include_str!("../../../configs/server.yaml");
        let mut cfg = ServerConfig::from_yaml_str(text).unwrap();
        cfg.bundle.get_or_insert_with(|| "bundle".into());
        cfg.validate().unwrap();
        assert_eq!(
            cfg.listen.ip().to_string(),
            "127.0.0.1",
            "loopback by default"
        );
    }

    #[test]
    fn errors_name_the_field() {
        let err = ServerConfig::from_yaml_str("batching: {max_batch_sise: 3}").unwrap_err();
        assert!(err.to_string().contains("max_batch_sise"), "{err}");
        let cfg = ServerConfig {
            bundle: Some("b".into()),
            batching: Batching {
                max_batch_size: 0,
                ..Default::default()
            },
            ..Default::default()
        };
        let err = cfg.validate().unwrap_err();
        assert_eq!(err.field, "batching.max_batch_size");
        let cfg = ServerConfig {
            bundle: Some("b".into()),
            device: "tpu".into(),
            ..Default::default()
        };
        assert_eq!(cfg.validate().unwrap_err().field, "device");
        assert_eq!(
            ServerConfig::default().validate().unwrap_err().field,
            "bundle"
        );
    }

    #[test]
    fn a_bundle_folder_without_a_manifest_is_a_bad_setting() {
        let empty = std::env::temp_dir();
        let missing = empty.join("apparate-no-such-bundle");
        for (dir, says) in [
            (&empty, "has no manifest.yaml"),
            (&missing, "does not exist"),
        ] {
            let cfg = ServerConfig {
                bundle: Some(dir.clone()),
                ..Default::default()
            };
            let err = cfg.check_bundle_folder().unwrap_err();
            assert_eq!(err.field, "bundle");
            assert!(err.reason.contains(says), "{err}");
        }
    }
}
