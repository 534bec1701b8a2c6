//! What a replay reports: one row per chunk and a summary, comparable across policies.

use serde::Serialize;

/// One chunk of a replay, under the config that served it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChunkRow {
    /// 0-based chunk index.
    pub chunk: u64,
    /// Version of the config in force (0 for fixed policies).
    pub config_version: u64,
    /// Requests in the chunk.
    pub requests: u32,
    /// Agreement with the original model.
    pub accuracy: f64,
    /// Share of requests that exited early.
    pub exit_rate: f64,
    /// Profile-based saving, `1 - Σlatency / Σfull`.
    pub saving: f64,
    /// Accuracy below `1 - accuracy_budget`.
    pub over_budget: bool,
    /// Active ramp ids.
    pub active_ramps: Vec<u32>,
    /// Their thresholds (empty for the oracle).
    pub thresholds: Vec<f32>,
}

/// Whole-trace results.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReplaySummary {
    /// Requests replayed.
    pub requests: u64,
    /// Chunks replayed.
    pub chunks: u64,
    /// Overall agreement with the original model.
    pub accuracy: f64,
    /// Lowest chunk accuracy.
    pub worst_chunk_accuracy: f64,
    /// Share of chunks over budget.
    pub share_over_budget: f64,
    /// Aggregate saving, `1 - Σlatency / Σfull`.
    pub saving_mean: f64,
    /// 25th percentile of per-request saving (share of that request's full-model latency).
    pub saving_p25: f64,
    /// Median per-request saving.
    pub saving_p50: f64,
    /// 95th percentile of per-request saving.
    pub saving_p95: f64,
    /// Configs emitted by the policy after the initial one.
    pub configs_emitted: u64,
}

/// Wall-clock cost of the policy's decisions: the only non-deterministic part of a report.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize)]
pub struct ReplayTiming {
    /// Total time spent tuning and deciding, in µs.
    pub tuning_time_us: u64,
    /// Tuning runs performed.
    pub tune_runs: u64,
}

/// A policy's replay of a trace.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReplayReport {
    /// Policy name.
    pub policy: String,
    /// One row per chunk.
    pub rows: Vec<ChunkRow>,
    /// Summary over the trace.
    pub summary: ReplaySummary,
    /// Decision cost.
    pub timing: ReplayTiming,
}

/// Nearest-rank quantile of an ascending slice (0 when empty).
pub(crate) fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}
