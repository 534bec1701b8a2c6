//! The crate's one error type.

use thiserror::Error;

/// Everything that can go wrong while building a controller or reading and
/// replaying traces. Messages name the offending field or line so a user can act.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ControllerError {
    /// A configuration field holds a value outside its allowed range.
    #[error("invalid config: `{field}` = {value}: {reason}")]
    InvalidConfig {
        /// The snake_case key of the field.
        field: &'static str,
        /// The rejected value, rendered for humans.
        value: String,
        /// What the value must satisfy.
        reason: &'static str,
    },
    /// The latency profile is malformed.
    #[error("invalid latency profile: {0}")]
    InvalidProfile(String),
    /// An exit configuration refers to ramps the profile does not know, or is unordered.
    #[error("invalid exit config: {0}")]
    InvalidExitConfig(String),
    /// A trace line could not be parsed or is inconsistent with the others.
    #[error("trace line {line}: {message}")]
    Trace {
        /// 1-based line number in the JSON Lines input.
        line: usize,
        /// What is wrong with it.
        message: String,
    },
    /// A trace does not fit the profile it is replayed against.
    #[error("trace does not match profile: {0}")]
    TraceMismatch(String),
    /// YAML (de)serialisation failed.
    #[error("yaml: {0}")]
    Yaml(String),
    /// JSON (de)serialisation failed.
    #[error("json: {0}")]
    Json(#[from] serde_json::Error),
    /// Reading or writing a trace failed.
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
}

/// Shorthand used throughout the crate.
pub type Result<T, E = ControllerError> = std::result::Result<T, E>;
