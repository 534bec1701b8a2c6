//! Metric names, span names and span attribute keys shared by the server and the sidecar.
//!
//! Metric names follow `<namespace>_<name>_<unit>[_total]`; attribute keys are dotted and
//! start with `apparate.`. The controller's decision attributes live in
//! `apparate_controller::decision::keys` and use the same scheme.

/// Span names.
pub mod span {
    /// One closed chunk of feedback (sidecar).
    pub const CHUNK: &str = "chunk";
    /// One controller decision (sidecar); its exported name is the decision kind
    /// (`retune`, `remove_ramp`, ...), set through `otel.name`.
    pub const DECISION: &str = "decision";
    /// One config update sent on `StreamConfig`, until its ACK or NACK (sidecar).
    pub const CONFIG_PUSH: &str = "config.push";
    /// A (re)synchronisation with the server's `Describe` (sidecar).
    pub const RESYNC: &str = "control.resync";
    /// The server applying or rejecting a pushed config (server; child of `config.push`).
    pub const CONFIG_APPLY: &str = "config.apply";
}

/// Span attribute keys (beyond the controller's decision keys).
pub mod attr {
    /// Chunk sequence number (same key as the controller's decisions).
    pub const CHUNK_ID: &str = "apparate.chunk_id";
    /// Requests in the chunk.
    pub const CHUNK_REQUESTS: &str = "apparate.chunk.requests";
    /// Exits that disagreed with the final layer.
    pub const CHUNK_ERRORS: &str = "apparate.chunk.errors";
    /// Agreement with the final layer.
    pub const CHUNK_ACCURACY: &str = "apparate.chunk.accuracy";
    /// Share of requests released early by any ramp.
    pub const CHUNK_EXIT_RATE: &str = "apparate.chunk.exit_rate";
    /// Prefix of the per-ramp exit rate keys: `apparate.chunk.exit_rate.ramp.<id>`.
    pub const CHUNK_EXIT_RATE_RAMP_PREFIX: &str = "apparate.chunk.exit_rate.ramp.";
    /// Profile-based latency saving of the chunk, `1 - Σlatency / Σfull`.
    pub const CHUNK_SAVING: &str = "apparate.chunk.saving";
    /// Observed median queue + execution latency, in µs.
    pub const CHUNK_LATENCY_P50_US: &str = "apparate.chunk.latency_p50_us";
    /// Chunk accuracy below `1 - accuracy_budget`.
    pub const CHUNK_OVER_BUDGET: &str = "apparate.chunk.over_budget";
    /// Config version (served the chunk, or pushed).
    pub const CONFIG_VERSION: &str = "apparate.config.version";
    /// `id:threshold` pairs of a config.
    pub const THRESHOLDS: &str = "apparate.thresholds";
    /// Active ramp ids, comma-separated.
    pub const ACTIVE_RAMPS: &str = "apparate.ramps.active";
    /// Nonce of a config update.
    pub const CONFIG_NONCE: &str = "apparate.config.nonce";
    /// Lease of a pushed config, in ms.
    pub const CONFIG_LEASE_MS: &str = "apparate.config.lease_ms";
    /// True when the push only renews the lease of the config in force.
    pub const CONFIG_RENEWAL: &str = "apparate.config.renewal";
    /// `ack` or `nack`.
    pub const CONFIG_RESULT: &str = "apparate.config.result";
    /// The field a NACK names, e.g. `config.ramps[2].threshold`.
    pub const NACK_FIELD: &str = "apparate.nack.field";
    /// The reason a NACK gives.
    pub const NACK_REASON: &str = "apparate.nack.reason";
    /// The decision kind of a decision span (`retune`, `activate_ramp`, ...).
    pub const DECISION_KIND: &str = "apparate.decision.kind";
    /// Why the sidecar resynchronised: `connect`, `nack`, `lease_expired`.
    pub const RESYNC_CAUSE: &str = "apparate.resync.cause";
    /// Metric attribute: ramp id.
    pub const RAMP_ID: &str = "ramp_id";
    /// Metric attribute: push result.
    pub const RESULT: &str = "result";
}

/// Sidecar metrics.
pub mod sidecar {
    /// Counter: chunks closed.
    pub const CHUNKS_TOTAL: &str = "apparate_sidecar_chunks_total";
    /// Counter: chunks whose accuracy was below budget.
    pub const CHUNKS_OVER_BUDGET_TOTAL: &str = "apparate_sidecar_chunks_over_budget_total";
    /// Gauge: accuracy of the latest chunk versus the final layer.
    pub const CHUNK_ACCURACY_RATIO: &str = "apparate_sidecar_chunk_accuracy_ratio";
    /// Gauge: profile-based latency saving of the latest chunk.
    pub const CHUNK_SAVING_RATIO: &str = "apparate_sidecar_chunk_saving_ratio";
    /// Gauge: threshold per active ramp (attribute `ramp_id`).
    pub const RAMP_THRESHOLD: &str = "apparate_sidecar_ramp_threshold";
    /// Gauge: number of active ramps.
    pub const ACTIVE_RAMPS: &str = "apparate_sidecar_active_ramps";
    /// Counter: config updates answered (attribute `result`: `ack` | `nack`).
    pub const CONFIG_PUSHES_TOTAL: &str = "apparate_sidecar_config_pushes_total";
    /// Counter: config updates NACKed.
    pub const CONFIG_NACKS_TOTAL: &str = "apparate_sidecar_config_nacks_total";
    /// Counter: lease-expired notices received.
    pub const LEASE_EXPIRED_TOTAL: &str = "apparate_sidecar_lease_expired_total";
    /// Counter: feedback records received.
    pub const FEEDBACK_RECORDS_TOTAL: &str = "apparate_sidecar_feedback_records_total";
    /// Counter: feedback records the server dropped for this sidecar.
    pub const FEEDBACK_DROPPED_TOTAL: &str = "apparate_sidecar_feedback_dropped_total";
    /// Counter: reconnections to the server.
    pub const RECONNECTS_TOTAL: &str = "apparate_sidecar_reconnects_total";
}
