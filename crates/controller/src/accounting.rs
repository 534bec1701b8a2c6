//! Chunk accounting: accuracy, exits, profile-based saving and the observed latency
//! distribution of one chunk of feedback, under the config that was in force.

use std::time::Duration;

use hdrhistogram::Histogram;

use crate::exit_config::ExitConfig;
use crate::profile::{LatencyProfile, PathCosts};
use crate::record::FeedbackRecord;
use crate::window::saving;

/// Largest observed latency the histogram resolves (60 s); larger values saturate.
pub const MAX_OBSERVED_US: u64 = 60_000_000;
const SIGNIFICANT_DIGITS: u8 = 2;

/// Exits counted at one active ramp.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RampExits {
    /// Candidate ramp id.
    pub ramp_id: u32,
    /// Requests released there.
    pub count: u32,
}

/// What one chunk looked like under the config that served it.
#[derive(Debug, Clone)]
pub struct ChunkReport {
    /// 0-based chunk sequence number.
    pub chunk_id: u64,
    /// When the chunk was closed, as passed in by the caller.
    pub at: Duration,
    /// Version of the config the accounting assumed.
    pub config_version: u64,
    /// Requests in the chunk.
    pub requests: u32,
    /// Exits that disagreed with the final prediction.
    pub errors: u32,
    /// Agreement with the original model (non-exits count as correct).
    pub accuracy: f64,
    /// Exits per active ramp, in depth order.
    pub exits: Vec<RampExits>,
    /// Profile-based share of the original model's latency saved, `1 - Σlatency / Σfull`.
    pub saving: f64,
    /// True when `accuracy < 1 - accuracy_budget`.
    pub over_budget: bool,
    /// Observed queueing + execution latency, in µs.
    pub observed_latency_us: Histogram<u64>,
}

impl ChunkReport {
    /// Share of requests that exited at any ramp.
    pub fn exit_rate(&self) -> f64 {
        let exited: u32 = self.exits.iter().map(|e| e.count).sum();
        ratio(exited, self.requests)
    }

    /// Share of requests released by one ramp (0 if it was not active).
    pub fn exit_rate_of(&self, ramp_id: u32) -> f64 {
        let count = self
            .exits
            .iter()
            .find(|e| e.ramp_id == ramp_id)
            .map_or(0, |e| e.count);
        ratio(count, self.requests)
    }

    /// Observed latency at quantile `q` in [0, 1], in µs.
    pub fn observed_quantile_us(&self, q: f64) -> u64 {
        self.observed_latency_us.value_at_quantile(q)
    }
}

fn ratio(a: u32, b: u32) -> f64 {
    if b == 0 {
        0.0
    } else {
        f64::from(a) / f64::from(b)
    }
}

/// Accumulates records into a [`ChunkReport`] without allocating per record.
#[derive(Debug)]
pub struct ChunkAccumulator<'a> {
    config: &'a ExitConfig,
    profile: &'a LatencyProfile,
    ids: Vec<u32>,
    costs: Vec<(u32, PathCosts)>,
    requests: u32,
    errors: u32,
    exits: Vec<u32>,
    latency_ms: f64,
    full_ms: f64,
    observed: Histogram<u64>,
}

impl<'a> ChunkAccumulator<'a> {
    /// Starts a chunk served by `config`.
    pub fn new(config: &'a ExitConfig, profile: &'a LatencyProfile) -> Self {
        let observed = Histogram::new_with_bounds(1, MAX_OBSERVED_US, SIGNIFICANT_DIGITS)
            .expect("constant histogram bounds are valid");
        Self {
            config,
            profile,
            ids: config.ramp_ids(),
            costs: Vec::new(),
            requests: 0,
            errors: 0,
            exits: vec![0; config.ramps.len()],
            latency_ms: 0.0,
            full_ms: 0.0,
            observed,
        }
    }

    /// Adds one record.
    pub fn push(&mut self, record: &FeedbackRecord) {
        let slot = match self.costs.iter().position(|(b, _)| *b == record.batch_size) {
            Some(slot) => slot,
            None => {
                let c = self.profile.path_costs(&self.ids, record.batch_size);
                self.costs.push((record.batch_size, c));
                self.costs.len() - 1
            }
        };
        let costs = &self.costs[slot].1;
        self.requests += 1;
        self.full_ms += costs.full_ms;
        match self.config.first_exit(record) {
            Some(k) => {
                self.exits[k] += 1;
                self.latency_ms += costs.exit_ms[k];
                let wrong = record
                    .output(self.ids[k])
                    .is_some_and(|o| o.label != record.final_label);
                self.errors += u32::from(wrong);
            }
            None => self.latency_ms += costs.no_exit_ms,
        }
        self.observed
            .saturating_record(record.observed_us().clamp(1, MAX_OBSERVED_US));
    }

    /// Closes the chunk.
    pub fn finish(self, chunk_id: u64, at: Duration, accuracy_budget: f64) -> ChunkReport {
        let accuracy = 1.0 - ratio(self.errors, self.requests);
        ChunkReport {
            chunk_id,
            at,
            config_version: self.config.version,
            requests: self.requests,
            errors: self.errors,
            accuracy,
            exits: self
                .ids
                .iter()
                .zip(&self.exits)
                .map(|(&ramp_id, &count)| RampExits { ramp_id, count })
                .collect(),
            saving: saving(self.latency_ms, self.full_ms),
            over_budget: accuracy < 1.0 - accuracy_budget - 1e-12,
            observed_latency_us: self.observed,
        }
    }
}

/// Accounts a whole chunk at once.
pub fn account_chunk(
    records: &[FeedbackRecord],
    config: &ExitConfig,
    profile: &LatencyProfile,
    chunk_id: u64,
    at: Duration,
    accuracy_budget: f64,
) -> ChunkReport {
    let mut acc = ChunkAccumulator::new(config, profile);
    for r in records {
        acc.push(r);
    }
    acc.finish(chunk_id, at, accuracy_budget)
}
