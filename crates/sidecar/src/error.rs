//! The crate's error type.

use std::path::PathBuf;

use thiserror::Error;

/// Everything that stops the sidecar. Configuration problems map to exit status 64.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum SidecarError {
    /// A setting holds a bad value.
    #[error("invalid sidecar config: `{field}` = {value}: {reason}")]
    Config {
        /// Dotted path of the field, e.g. `reconnect.max_ms`.
        field: String,
        /// The rejected value.
        value: String,
        /// What the value must satisfy.
        reason: String,
    },
    /// A file could not be read.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A YAML file does not parse (unknown keys included).
    #[error("{}: {message}", path.display())]
    Yaml {
        /// The file.
        path: PathBuf,
        /// The parser's message, with line and column.
        message: String,
    },
    /// The controller rejected its inputs (trace, profile, settings).
    #[error(transparent)]
    Controller(#[from] apparate_controller::ControllerError),
    /// Telemetry could not be set up.
    #[error(transparent)]
    Telemetry(#[from] apparate_telemetry::TelemetryError),
}

impl SidecarError {
    /// True for mistakes in the user's configuration (exit status 64).
    pub fn is_config(&self) -> bool {
        match self {
            Self::Config { .. } | Self::Io { .. } | Self::Yaml { .. } => true,
            Self::Controller(e) => matches!(
                e,
                apparate_controller::ControllerError::InvalidConfig { .. }
            ),
            Self::Telemetry(e) => {
                matches!(e, apparate_telemetry::TelemetryError::InvalidConfig { .. })
            }
        }
    }

    pub(crate) fn config(field: &str, value: impl ToString, reason: &str) -> Self {
        Self::Config {
            field: field.to_owned(),
            value: value.to_string(),
            reason: reason.to_owned(),
        }
    }
}
