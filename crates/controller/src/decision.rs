//! Explanations: every decision the policy loop takes comes with what it did, why, and the
//! numbers it looked at, as flat key/value attributes that map one-to-one onto span
//! attributes.

use std::fmt;
use std::time::Duration;

/// Attribute keys, in one place so dashboards and tests agree on them.
pub mod keys {
    /// Chunk that triggered the decision.
    pub const CHUNK_ID: &str = "apparate.chunk_id";
    /// Reason, as [`super::Reason::as_str`].
    pub const REASON: &str = "apparate.reason";
    /// Tuner that ran.
    pub const TUNER: &str = "apparate.tuner";
    /// Requests in the tuning window.
    pub const WINDOW_REQUESTS: &str = "apparate.window.requests";
    /// Disagreement rate the tuner aims at (see `ControllerConfig::target_error_rate`).
    pub const TARGET_ERROR_RATE: &str = "apparate.window.target_error_rate";
    /// Chunks since the last one over budget: only their records count as evidence that
    /// a ramp may exit.
    pub const CALM_CHUNKS: &str = "apparate.window.calm_chunks";
    /// Disagreeing exits the window may hold; -1 when no exits are allowed.
    pub const ERROR_ALLOWANCE: &str = "apparate.window.error_allowance";
    /// Requests in the latest chunk, held to its own limit.
    pub const RECENT_REQUESTS: &str = "apparate.recent.requests";
    /// Disagreeing exits the latest chunk may hold.
    pub const RECENT_ALLOWANCE: &str = "apparate.recent.error_allowance";
    /// Disagreeing exits of the chosen thresholds on the latest chunk.
    pub const RECENT_ERRORS: &str = "apparate.recent.errors";
    /// Disagreeing exits of the chosen thresholds on the window.
    pub const WINDOW_ERRORS: &str = "apparate.window.errors";
    /// Accuracy of the chosen thresholds on the window.
    pub const WINDOW_ACCURACY: &str = "apparate.window.accuracy";
    /// Saving of the previous thresholds on the window.
    pub const SAVING_BEFORE: &str = "apparate.window.saving_before";
    /// Saving of the chosen thresholds on the window.
    pub const SAVING_AFTER: &str = "apparate.window.saving_after";
    /// `id:threshold` pairs of the previous config.
    pub const THRESHOLDS_BEFORE: &str = "apparate.thresholds_before";
    /// `id:threshold` pairs of the new config.
    pub const THRESHOLDS_AFTER: &str = "apparate.thresholds_after";
    /// Candidate configurations evaluated or moves considered.
    pub const TUNER_STEPS: &str = "apparate.tuner.steps";
    /// Ramp a ramp decision is about.
    pub const RAMP_ID: &str = "apparate.ramp.id";
    /// Ramp utility in ms saved per request (negative: costs more than it saves).
    pub const RAMP_UTILITY_MS: &str = "apparate.ramp.utility_ms";
    /// Active ramp ids after the decision, comma-separated.
    pub const ACTIVE_RAMPS: &str = "apparate.ramps.active";
    /// Share of the full model's latency the active ramps cost after the decision.
    pub const RAMP_COST_SHARE: &str = "apparate.ramps.cost_share";
    /// The activation that was wanted but did not fit, as a reason name.
    pub const WANTED: &str = "apparate.ramps.wanted";
    /// Chunk accuracy that triggered the decision.
    pub const CHUNK_ACCURACY: &str = "apparate.chunk.accuracy";
    /// Version of a newly emitted config.
    pub const CONFIG_VERSION: &str = "apparate.config.version";
}

/// What the policy loop did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecisionKind {
    /// Thresholds re-tuned on the window.
    Retune,
    /// Tuning was due but the window had no usable records.
    RetuneSkipped,
    /// A ramp was deactivated.
    RemoveRamp,
    /// A ramp was activated in the never-exit state.
    ActivateRamp,
    /// Adjustment wanted a ramp but none fitted the budget.
    ActivationSkipped,
    /// A new config version was emitted.
    EmitConfig,
}

impl DecisionKind {
    /// snake_case name, used as the span name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Retune => "retune",
            Self::RetuneSkipped => "retune_skipped",
            Self::RemoveRamp => "remove_ramp",
            Self::ActivateRamp => "activate_ramp",
            Self::ActivationSkipped => "activation_skipped",
            Self::EmitConfig => "emit_config",
        }
    }
}

/// Why it did it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// First chunk of feedback.
    FirstChunk,
    /// The chunk's accuracy fell below `1 - accuracy_budget`.
    OverBudget,
    /// Ramps were removed; remaining thresholds must be re-balanced.
    RampsChanged,
    /// A newly activated ramp has a full chunk of feedback.
    RampWarmedUp,
    /// `retune_every_chunks` elapsed.
    Periodic,
    /// Utility over recent chunks was negative.
    NegativeUtility,
    /// Ramps were removed: try a deeper position.
    ExploreDeeper,
    /// Every ramp is useful: try an earlier position.
    ExploreEarlier,
    /// No ramp is active: start from the middle.
    NoActiveRamps,
    /// Ramp cost or count budget is exhausted.
    BudgetExhausted,
    /// Ramps or thresholds differ from the last emitted config.
    ConfigChanged,
}

impl Reason {
    /// snake_case name, used as an attribute value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::FirstChunk => "first_chunk",
            Self::OverBudget => "over_budget",
            Self::RampsChanged => "ramps_changed",
            Self::RampWarmedUp => "ramp_warmed_up",
            Self::Periodic => "periodic",
            Self::NegativeUtility => "negative_utility",
            Self::ExploreDeeper => "explore_deeper",
            Self::ExploreEarlier => "explore_earlier",
            Self::NoActiveRamps => "no_active_ramps",
            Self::BudgetExhausted => "budget_exhausted",
            Self::ConfigChanged => "config_changed",
        }
    }
}

/// An attribute value; the variants are OpenTelemetry's scalar types.
#[derive(Debug, Clone, PartialEq)]
pub enum AttrValue {
    /// Boolean.
    Bool(bool),
    /// Signed integer.
    I64(i64),
    /// Float.
    F64(f64),
    /// String.
    Str(String),
}

impl fmt::Display for AttrValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Bool(v) => write!(f, "{v}"),
            Self::I64(v) => write!(f, "{v}"),
            Self::F64(v) => write!(f, "{v:.6}"),
            Self::Str(v) => f.write_str(v),
        }
    }
}

impl From<bool> for AttrValue {
    fn from(v: bool) -> Self {
        Self::Bool(v)
    }
}
impl From<i64> for AttrValue {
    fn from(v: i64) -> Self {
        Self::I64(v)
    }
}
impl From<u64> for AttrValue {
    fn from(v: u64) -> Self {
        Self::I64(i64::try_from(v).unwrap_or(i64::MAX))
    }
}
impl From<u32> for AttrValue {
    fn from(v: u32) -> Self {
        Self::I64(i64::from(v))
    }
}
impl From<usize> for AttrValue {
    fn from(v: usize) -> Self {
        Self::I64(i64::try_from(v).unwrap_or(i64::MAX))
    }
}
impl From<f64> for AttrValue {
    fn from(v: f64) -> Self {
        Self::F64(v)
    }
}
impl From<String> for AttrValue {
    fn from(v: String) -> Self {
        Self::Str(v)
    }
}
impl From<&str> for AttrValue {
    fn from(v: &str) -> Self {
        Self::Str(v.to_owned())
    }
}

/// One decision with its explanation.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// What was done.
    pub kind: DecisionKind,
    /// Why.
    pub reason: Reason,
    /// Chunk that triggered it.
    pub chunk_id: u64,
    /// Caller-supplied time of that chunk.
    pub at: Duration,
    /// Inputs and results, keyed by [`keys`].
    pub attributes: Vec<(&'static str, AttrValue)>,
}

impl Decision {
    /// A decision with the chunk id and reason already recorded as attributes.
    pub fn new(kind: DecisionKind, reason: Reason, chunk_id: u64, at: Duration) -> Self {
        Self {
            kind,
            reason,
            chunk_id,
            at,
            attributes: vec![
                (keys::CHUNK_ID, chunk_id.into()),
                (keys::REASON, reason.as_str().into()),
            ],
        }
    }

    /// Adds an attribute (builder style).
    pub fn with(mut self, key: &'static str, value: impl Into<AttrValue>) -> Self {
        self.attributes.push((key, value.into()));
        self
    }

    /// Looks up an attribute.
    pub fn attribute(&self, key: &str) -> Option<&AttrValue> {
        self.attributes
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v)
    }
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.kind.as_str())?;
        for (k, v) in &self.attributes {
            write!(f, " {k}={v}")?;
        }
        Ok(())
    }
}
