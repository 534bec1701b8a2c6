//! Telemetry settings, shared by the server's and the sidecar's YAML files.

use serde::Deserialize;

use crate::init::TelemetryError;

/// How log lines are written to stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// One readable line per event.
    #[default]
    Human,
    /// One JSON object per event (for log shippers).
    Json,
}

impl LogFormat {
    /// The YAML/flag spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Human => "human",
            Self::Json => "json",
        }
    }
}

impl std::str::FromStr for LogFormat {
    type Err = TelemetryError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "human" => Ok(Self::Human),
            "json" => Ok(Self::Json),
            other => Err(TelemetryError::InvalidConfig {
                field: "log_format",
                value: other.to_owned(),
                reason: "must be `human` or `json`",
            }),
        }
    }
}

/// Logging and OpenTelemetry export settings. Missing YAML keys take the defaults from
/// [`TelemetryConfig::default`].
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetryConfig {
    /// OTLP/gRPC collector endpoint, e.g. `http://127.0.0.1:4317`. `None`: use
    /// `OTEL_EXPORTER_OTLP_ENDPOINT` if set, else export nothing.
    pub otlp_endpoint: Option<String>,
    /// `service.name` of every exported span and metric.
    pub service_name: String,
    /// `human` or `json` logs on stderr.
    pub log_format: LogFormat,
    /// `tracing` filter directives, e.g. `info` or `info,apparate_sidecar=debug`.
    /// `RUST_LOG`, when set, wins.
    pub log_filter: String,
    /// How often metrics are exported, in milliseconds.
    pub metrics_interval_ms: u64,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        Self {
            otlp_endpoint: None,
            service_name: "apparate".to_owned(),
            log_format: LogFormat::Human,
            log_filter: "info".to_owned(),
            metrics_interval_ms: 10_000,
        }
    }
}

impl TelemetryConfig {
    /// Rejects values [`crate::init`] cannot work with, naming the field and value.
    pub fn validate(&self) -> Result<(), TelemetryError> {
        let bad = |field, value: String, reason| {
            Err(TelemetryError::InvalidConfig {
                field,
                value,
                reason,
            })
        };
        if let Some(endpoint) = &self.otlp_endpoint
            && !(endpoint.starts_with("http://") || endpoint.starts_with("https://"))
        {
            return bad(
                "telemetry.otlp_endpoint",
                endpoint.clone(),
                "must be an http:// or https:// URL",
            );
        }
        if self.service_name.trim().is_empty() {
            return bad(
                "telemetry.service_name",
                format!("{:?}", self.service_name),
                "must not be empty",
            );
        }
        if self.metrics_interval_ms == 0 || self.metrics_interval_ms > 3_600_000 {
            return bad(
                "telemetry.metrics_interval_ms",
                self.metrics_interval_ms.to_string(),
                "must be in 1..=3600000",
            );
        }
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&self.log_filter) {
            return Err(TelemetryError::InvalidConfig {
                field: "telemetry.log_filter",
                value: format!("{:?} ({e})", self.log_filter),
                reason: "must be tracing filter directives such as `info`",
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_bad_values_are_named() {
        assert!(TelemetryConfig::default().validate().is_ok());
        let cfg = TelemetryConfig {
            otlp_endpoint: Some("127.0.0.1:4317".into()),
            ..TelemetryConfig::default()
        };
        let err = cfg.validate().unwrap_err().to_string();
        assert!(
            err.contains("telemetry.otlp_endpoint") && err.contains("127.0.0.1:4317"),
            "{err}"
        );
        let cfg = TelemetryConfig {
            metrics_interval_ms: 0,
            ..TelemetryConfig::default()
        };
        let err = cfg.validate().unwrap_err().to_string();
        assert!(err.contains("metrics_interval_ms"), "{err}");
        assert_eq!("json".parse::<LogFormat>().unwrap(), LogFormat::Json);
        assert!("xml".parse::<LogFormat>().is_err());
    }
}
