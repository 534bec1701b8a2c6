//! The policy loop: account each chunk, re-tune thresholds when needed, adjust ramps every
//! few chunks, and emit a new versioned config only when something changed.
//!
//! * **Re-tune** after the first chunk, after any chunk over budget, after ramps were
//!   removed, once a new ramp has warmed up, and every `retune_every_chunks` chunks (so
//!   saving comes back after a drift passes). The tuner keeps the whole window within its
//!   error allowance *and* the latest chunk within budget on its own.
//! * **Evidence.** The window's error allowance is conformal: it may hold `e` disagreeing
//!   exits while `(e + 1) / (n + 1)` stays within the target rate
//!   ([`crate::tuner::conformal_allowance`]), so fewer than about 1 / rate requests support
//!   no exits at all (20 chunks at the defaults). A ramp exits only once the chunks *since
//!   the last chunk over budget* hold that many of its outputs: a chunk over budget is taken
//!   as a sign that the workload moved, so every exit shuts at once and reopens only on
//!   evidence from the new regime. (Evidence from before a drift is what let the errors
//!   through: a window of mostly old requests supports a threshold the new ones break.)
//! * **Warm-up.** A newly activated ramp starts at [`NEVER_EXIT`]: it runs and reports, but
//!   releases nothing, so it cannot hurt accuracy. Once the window holds a full chunk of
//!   records carrying its output, ramp adjustment may run again; the ramp itself is tuned
//!   only once it has the evidence above, and until then it stays shut and is not judged
//!   for removal. Nor is any ramp active for fewer than `adjust_every_chunks` chunks.
//! * **Time** is a caller-supplied `Duration` since any fixed origin; it only stamps reports
//!   and decisions. Nothing here reads a clock.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

use crate::accounting::{ChunkReport, account_chunk};
use crate::config::ControllerConfig;
use crate::decision::{Decision, DecisionKind, Reason, keys};
use crate::error::{ControllerError, Result};
use crate::exit_config::{ExitConfig, NEVER_EXIT, RampThreshold, describe_thresholds};
use crate::planner::{RampStatus, plan_ramps, ramp_utilities};
use crate::profile::LatencyProfile;
use crate::record::FeedbackRecord;
use crate::tuner::{ErrorLimits, conformal_allowance, error_allowance, tune};
use crate::window::TuningWindow;

/// Everything one chunk produced.
#[derive(Debug, Clone)]
pub struct ChunkOutcome {
    /// Accounting of the chunk under the config that served it.
    pub report: ChunkReport,
    /// Decisions taken, in order, with their explanations.
    pub decisions: Vec<Decision>,
    /// A new config to push, when ramps or thresholds changed.
    pub config: Option<ExitConfig>,
}

/// The early-exit policy loop. See the module docs for the rules.
#[derive(Debug, Clone)]
pub struct Controller {
    cfg: ControllerConfig,
    profile: LatencyProfile,
    emitted: ExitConfig,
    ramps: Vec<RampThreshold>,
    pending: Vec<FeedbackRecord>,
    window: VecDeque<Vec<FeedbackRecord>>,
    next_chunk: u64,
    activated_at: BTreeMap<u32, u64>,
    warming: BTreeSet<u32>,
    cooldown_until: BTreeMap<u32, u64>,
    since_retune: usize,
    /// Chunks processed since the last one over budget (that one excluded).
    calm_chunks: usize,
}

impl Controller {
    /// Validates everything up front; `initial` is the config the server starts with.
    pub fn new(
        cfg: ControllerConfig,
        profile: LatencyProfile,
        initial: ExitConfig,
    ) -> Result<Self> {
        cfg.validate()?;
        profile.validate()?;
        initial.validate()?;
        let ids = initial.ramp_ids();
        profile.check_ramps(&ids)?;
        if ids.len() > cfg.max_active_ramps {
            return Err(ControllerError::InvalidConfig {
                field: "max_active_ramps",
                value: cfg.max_active_ramps.to_string(),
                reason: "the initial exit config has more active ramps",
            });
        }
        let share = profile.ramp_cost_share(&ids);
        if share > cfg.ramp_budget_share + 1e-12 {
            return Err(ControllerError::InvalidConfig {
                field: "ramp_budget_share",
                value: cfg.ramp_budget_share.to_string(),
                reason: "the initial exit config's ramps cost more than this share",
            });
        }
        Ok(Self {
            activated_at: ids.iter().map(|&id| (id, 0)).collect(),
            ramps: initial.ramps.clone(),
            pending: Vec::with_capacity(cfg.chunk_size),
            window: VecDeque::with_capacity(cfg.tuning_window_chunks + 1),
            emitted: initial,
            cfg,
            profile,
            next_chunk: 0,
            warming: BTreeSet::new(),
            cooldown_until: BTreeMap::new(),
            since_retune: 0,
            calm_chunks: 0,
        })
    }

    /// The config currently in force (the last one emitted).
    pub fn config(&self) -> &ExitConfig {
        &self.emitted
    }

    /// The settings this controller runs with.
    pub fn settings(&self) -> &ControllerConfig {
        &self.cfg
    }

    /// The latency profile this controller plans with.
    pub fn profile(&self) -> &LatencyProfile {
        &self.profile
    }

    /// Chunks processed so far.
    pub fn chunks_seen(&self) -> u64 {
        self.next_chunk
    }

    /// Ramps still in warm-up (active, never exiting, waiting for a chunk of feedback).
    pub fn warming_ramps(&self) -> Vec<u32> {
        self.warming.iter().copied().collect()
    }

    /// Adopts `active` as the config in force, e.g. after a server rejected a push or a
    /// lease expired. Its ramps and thresholds become the current ones and the next emitted
    /// config has version `active.version + 1`. The tuning window is kept; ramps no longer
    /// active leave warm-up, and ramps new to this controller count as activated now.
    pub fn resync(&mut self, active: ExitConfig) -> Result<()> {
        active.validate()?;
        let ids = active.ramp_ids();
        self.profile.check_ramps(&ids)?;
        self.activated_at.retain(|id, _| ids.contains(id));
        for &id in &ids {
            self.activated_at.entry(id).or_insert(self.next_chunk);
        }
        self.warming.retain(|id| ids.contains(id));
        self.ramps = active.ramps.clone();
        self.emitted = active;
        Ok(())
    }

    /// Buffers one record; closes a chunk every `chunk_size` records.
    pub fn on_record(&mut self, record: FeedbackRecord, now: Duration) -> Option<ChunkOutcome> {
        self.pending.push(record);
        if self.pending.len() < self.cfg.chunk_size {
            return None;
        }
        let chunk = std::mem::replace(&mut self.pending, Vec::with_capacity(self.cfg.chunk_size));
        Some(self.process(chunk, now))
    }

    /// Closes a partial chunk, if any records are buffered.
    pub fn flush(&mut self, now: Duration) -> Option<ChunkOutcome> {
        if self.pending.is_empty() {
            return None;
        }
        let chunk = std::mem::take(&mut self.pending);
        Some(self.process(chunk, now))
    }

    /// Processes one chunk of feedback (normally `chunk_size` records).
    pub fn on_chunk(&mut self, chunk: &[FeedbackRecord], now: Duration) -> ChunkOutcome {
        self.process(chunk.to_vec(), now)
    }

    /// Like [`Controller::on_chunk`], taking the records by value (no copy).
    pub fn on_chunk_owned(&mut self, chunk: Vec<FeedbackRecord>, now: Duration) -> ChunkOutcome {
        self.process(chunk, now)
    }

    fn process(&mut self, chunk: Vec<FeedbackRecord>, now: Duration) -> ChunkOutcome {
        let chunk_id = self.next_chunk;
        self.next_chunk += 1;
        let report = account_chunk(
            &chunk,
            &self.emitted,
            &self.profile,
            chunk_id,
            now,
            self.cfg.accuracy_budget,
        );
        let mut decisions = Vec::new();
        self.calm_chunks = if report.over_budget {
            0
        } else {
            self.calm_chunks + 1
        };
        self.window.push_back(chunk);
        while self.window.len() > self.cfg.tuning_window_chunks {
            self.window.pop_front();
        }

        let warmed: Vec<u32> = self
            .warming
            .iter()
            .copied()
            .filter(|&id| {
                let seen = self
                    .window
                    .iter()
                    .flatten()
                    .filter(|r| r.output(id).is_some());
                seen.count() >= self.cfg.chunk_size
            })
            .collect();
        for id in &warmed {
            self.warming.remove(id);
        }

        self.since_retune += 1;
        let retune_reason = if chunk_id == 0 {
            Some(Reason::FirstChunk)
        } else if report.over_budget {
            Some(Reason::OverBudget)
        } else if !warmed.is_empty() {
            Some(Reason::RampWarmedUp)
        } else if self.cfg.retune_every_chunks > 0
            && self.since_retune >= self.cfg.retune_every_chunks
        {
            Some(Reason::Periodic)
        } else {
            None
        };
        if let Some(reason) = retune_reason {
            self.retune(reason, chunk_id, now, &mut decisions);
        }
        let every = self.cfg.adjust_every_chunks;
        if every > 0 && (chunk_id + 1).is_multiple_of(every as u64) && self.warming.is_empty() {
            self.adjust(chunk_id, now, &mut decisions);
        }

        let config = (self.ramps != self.emitted.ramps).then(|| {
            self.emitted = ExitConfig {
                version: self.emitted.version + 1,
                ramps: self.ramps.clone(),
            };
            decisions.push(
                Decision::new(
                    DecisionKind::EmitConfig,
                    Reason::ConfigChanged,
                    chunk_id,
                    now,
                )
                .with(keys::CONFIG_VERSION, self.emitted.version)
                .with(keys::THRESHOLDS_AFTER, self.emitted.describe())
                .with(keys::ACTIVE_RAMPS, join_ids(&self.emitted.ramp_ids())),
            );
            self.emitted.clone()
        });
        ChunkOutcome {
            report,
            decisions,
            config,
        }
    }

    /// The error allowance for `requests` at `rate`, in the configured mode.
    fn allowance(&self, requests: usize, rate: f64) -> Option<u32> {
        if self.cfg.statistical {
            error_allowance(requests, rate, Some(self.cfg.confidence_level))
        } else {
            conformal_allowance(requests, rate)
        }
    }

    /// True once the window's chunks since the last one over budget hold enough outputs of
    /// ramp `id` to support the current target rate: before that the ramp cannot be tuned
    /// (it stays shut) nor judged.
    fn has_evidence(&self, id: u32) -> bool {
        let seen = self
            .window
            .iter()
            .rev()
            .take(self.calm_chunks)
            .flatten()
            .filter(|r| r.output(id).is_some())
            .count();
        self.allowance(seen, self.cfg.target_error_rate()).is_some()
    }

    fn retune(&mut self, reason: Reason, chunk_id: u64, now: Duration, out: &mut Vec<Decision>) {
        self.since_retune = 0;
        let (tuned, unproven): (Vec<usize>, Vec<usize>) = (0..self.ramps.len())
            .filter(|&k| !self.warming.contains(&self.ramps[k].ramp_id))
            .partition(|&k| self.has_evidence(self.ramps[k].ramp_id));
        for &k in &unproven {
            self.ramps[k].threshold = NEVER_EXIT;
        }
        let ids: Vec<u32> = tuned.iter().map(|&k| self.ramps[k].ramp_id).collect();
        let older = self.window.len().saturating_sub(1);
        let window = TuningWindow::build_parts(
            self.window.iter().take(older).flatten(),
            self.window.iter().skip(older).flatten(),
            &ids,
            &self.profile,
        );
        if window.is_empty() {
            out.push(Decision::new(
                DecisionKind::RetuneSkipped,
                reason,
                chunk_id,
                now,
            ));
            return;
        }
        let target = self.cfg.target_error_rate();
        let allowance = self.allowance(window.len(), target);
        let recent =
            error_allowance(window.recent_len(), self.cfg.accuracy_budget, None).unwrap_or(0);
        let limits = allowance.map(|w| ErrorLimits { window: w, recent });
        let before_thr: Vec<f32> = tuned.iter().map(|&k| self.ramps[k].threshold).collect();
        let before = window.evaluate(&before_thr);
        let before_desc = describe_thresholds(&self.ramps);
        let result = tune(self.cfg.tuner, &window, limits);
        for (&k, &t) in tuned.iter().zip(&result.thresholds) {
            self.ramps[k].threshold = t;
        }
        out.push(
            Decision::new(DecisionKind::Retune, reason, chunk_id, now)
                .with(keys::TUNER, self.cfg.tuner.as_str())
                .with(keys::WINDOW_REQUESTS, window.len())
                .with(keys::TARGET_ERROR_RATE, target)
                .with(keys::CALM_CHUNKS, self.calm_chunks)
                .with(keys::ERROR_ALLOWANCE, allowance.map_or(-1, i64::from))
                .with(keys::WINDOW_ERRORS, result.evaluation.errors)
                .with(keys::RECENT_REQUESTS, window.recent_len())
                .with(keys::RECENT_ALLOWANCE, recent)
                .with(keys::RECENT_ERRORS, result.evaluation.recent_errors)
                .with(keys::WINDOW_ACCURACY, result.evaluation.accuracy())
                .with(keys::SAVING_BEFORE, before.saving())
                .with(keys::SAVING_AFTER, result.evaluation.saving())
                .with(keys::THRESHOLDS_BEFORE, before_desc)
                .with(keys::THRESHOLDS_AFTER, describe_thresholds(&self.ramps))
                .with(keys::TUNER_STEPS, result.steps),
        );
    }

    fn adjust(&mut self, chunk_id: u64, now: Duration, out: &mut Vec<Decision>) {
        let ids: Vec<u32> = self.ramps.iter().map(|r| r.ramp_id).collect();
        let window = TuningWindow::build(self.window.iter().flatten(), &ids, &self.profile);
        if window.is_empty() {
            return;
        }
        let thresholds: Vec<f32> = self.ramps.iter().map(|r| r.threshold).collect();
        let utilities = ramp_utilities(&window, &thresholds);
        let min_age = self.cfg.adjust_every_chunks as u64;
        let statuses: Vec<RampStatus> = ids
            .iter()
            .zip(&utilities)
            .map(|(&ramp_id, &utility_ms)| RampStatus {
                ramp_id,
                utility_ms,
                protected: !self.has_evidence(ramp_id)
                    || self
                        .activated_at
                        .get(&ramp_id)
                        .is_some_and(|&at| at > 0 && chunk_id < at + min_age),
            })
            .collect();
        let plan = plan_ramps(&statuses, &self.profile, &self.cfg, |id| {
            self.cooldown_until
                .get(&id)
                .is_some_and(|&until| chunk_id < until)
        });
        for &(id, utility) in &plan.remove {
            self.ramps.retain(|r| r.ramp_id != id);
            self.activated_at.remove(&id);
            self.cooldown_until
                .insert(id, chunk_id + self.cfg.ramp_cooldown_chunks as u64);
            out.push(
                self.ramp_decision(
                    DecisionKind::RemoveRamp,
                    Reason::NegativeUtility,
                    chunk_id,
                    now,
                    id,
                )
                .with(keys::RAMP_UTILITY_MS, utility),
            );
        }
        if let Some((id, reason)) = plan.activate {
            let pos = self.ramps.partition_point(|r| r.ramp_id < id);
            self.ramps.insert(
                pos,
                RampThreshold {
                    ramp_id: id,
                    threshold: NEVER_EXIT,
                },
            );
            self.warming.insert(id);
            self.activated_at.insert(id, chunk_id.max(1));
            out.push(self.ramp_decision(DecisionKind::ActivateRamp, reason, chunk_id, now, id));
        }
        if let Some(why) = plan.skipped {
            let ids = join_ids(&self.ramps.iter().map(|r| r.ramp_id).collect::<Vec<_>>());
            out.push(
                Decision::new(
                    DecisionKind::ActivationSkipped,
                    Reason::BudgetExhausted,
                    chunk_id,
                    now,
                )
                .with(keys::ACTIVE_RAMPS, ids)
                .with(keys::WANTED, why.as_str()),
            );
        }
        if !plan.remove.is_empty() {
            self.retune(Reason::RampsChanged, chunk_id, now, out);
        }
    }

    fn ramp_decision(
        &self,
        kind: DecisionKind,
        reason: Reason,
        chunk_id: u64,
        now: Duration,
        id: u32,
    ) -> Decision {
        let ids: Vec<u32> = self.ramps.iter().map(|r| r.ramp_id).collect();
        Decision::new(kind, reason, chunk_id, now)
            .with(keys::RAMP_ID, id)
            .with(keys::ACTIVE_RAMPS, join_ids(&ids))
            .with(keys::RAMP_COST_SHARE, self.profile.ramp_cost_share(&ids))
    }
}

fn join_ids(ids: &[u32]) -> String {
    ids.iter().map(u32::to_string).collect::<Vec<_>>().join(",")
}
