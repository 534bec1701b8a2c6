//! A tuning window: recent feedback laid out column-wise for one active ramp set, so that
//! evaluating a threshold vector is a tight loop over plain arrays.

use crate::exit_config::exits;
use crate::profile::{LatencyProfile, PathCosts};
use crate::record::FeedbackRecord;

/// Feedback of recent requests restricted to one set of active ramps.
///
/// Scores are sanitised on the way in: NaN and non-positive confidences become `-1`
/// (never exits) and values above 1 are clamped to 1, so every threshold in `[0, 1]`
/// behaves exactly as the exit rule says.
#[derive(Debug, Clone, Default)]
pub struct TuningWindow {
    ramp_ids: Vec<u32>,
    n: usize,
    score: Vec<f32>,
    wrong: Vec<bool>,
    exit_ms: Vec<f32>,
    ramp_ms: Vec<f32>,
    no_exit_ms: Vec<f32>,
    full_ms: Vec<f32>,
    total_full_ms: f64,
    partial: usize,
    recent_start: usize,
}

/// Accuracy and latency of one threshold vector on a window.
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluation {
    /// Requests evaluated.
    pub requests: u32,
    /// Exits whose label disagrees with the final prediction.
    pub errors: u32,
    /// Of those, errors among the recent requests (see [`TuningWindow::build_parts`]).
    pub recent_errors: u32,
    /// Exits per active ramp, in depth order.
    pub exits: Vec<u32>,
    /// Summed profile latency under the thresholds, in ms.
    pub latency_ms: f64,
    /// Summed latency of the original model (no ramps), in ms.
    pub full_ms: f64,
}

impl Evaluation {
    /// Agreement with the final prediction; non-exits count as correct.
    pub fn accuracy(&self) -> f64 {
        if self.requests == 0 {
            return 1.0;
        }
        1.0 - f64::from(self.errors) / f64::from(self.requests)
    }

    /// Share of the original model's latency saved, `1 - latency / full`.
    pub fn saving(&self) -> f64 {
        saving(self.latency_ms, self.full_ms)
    }
}

/// `1 - latency / full`, 0 for an empty denominator.
pub(crate) fn saving(latency_ms: f64, full_ms: f64) -> f64 {
    if full_ms > 0.0 {
        1.0 - latency_ms / full_ms
    } else {
        0.0
    }
}

impl TuningWindow {
    /// Lays out `records` for the active ramps `ramp_ids` (depth order). A record without an
    /// output for some ramp (served before that ramp was active) cannot exit there.
    pub fn build<'a>(
        records: impl IntoIterator<Item = &'a FeedbackRecord>,
        ramp_ids: &[u32],
        profile: &LatencyProfile,
    ) -> Self {
        Self::build_parts(records, [], ramp_ids, profile)
    }

    /// Like [`TuningWindow::build`], marking the `recent` records (normally the latest
    /// chunk) so tuners can hold them to their own error limit.
    pub fn build_parts<'a>(
        older: impl IntoIterator<Item = &'a FeedbackRecord>,
        recent: impl IntoIterator<Item = &'a FeedbackRecord>,
        ramp_ids: &[u32],
        profile: &LatencyProfile,
    ) -> Self {
        let m = ramp_ids.len();
        let mut costs: Vec<(u32, PathCosts)> = Vec::new();
        let mut rows: Vec<(usize, &FeedbackRecord)> = Vec::new();
        let mut partial = 0;
        let mut recent_start = None;
        let older = older.into_iter().map(|r| (false, r));
        for (is_recent, r) in older.chain(recent.into_iter().map(|r| (true, r))) {
            if is_recent && recent_start.is_none() {
                recent_start = Some(rows.len());
            }
            if !ramp_ids.iter().all(|&id| r.output(id).is_some()) {
                partial += 1;
            }
            let slot = match costs.iter().position(|(b, _)| *b == r.batch_size) {
                Some(slot) => slot,
                None => {
                    costs.push((r.batch_size, profile.path_costs(ramp_ids, r.batch_size)));
                    costs.len() - 1
                }
            };
            rows.push((slot, r));
        }
        let n = rows.len();
        let mut w = Self {
            ramp_ids: ramp_ids.to_vec(),
            n,
            score: vec![-1.0; n * m],
            wrong: vec![false; n * m],
            exit_ms: vec![0.0; n * m],
            ramp_ms: vec![0.0; n * m],
            no_exit_ms: Vec::with_capacity(n),
            full_ms: Vec::with_capacity(n),
            total_full_ms: 0.0,
            partial,
            recent_start: recent_start.unwrap_or(n),
        };
        for (i, (slot, r)) in rows.into_iter().enumerate() {
            let c = &costs[slot].1;
            for (k, &id) in ramp_ids.iter().enumerate() {
                if let Some(o) = r.output(id) {
                    w.score[k * n + i] = sanitise(o.confidence);
                    w.wrong[k * n + i] = o.label != r.final_label;
                }
                w.exit_ms[k * n + i] = c.exit_ms[k] as f32;
                w.ramp_ms[k * n + i] = c.ramp_ms[k] as f32;
            }
            w.no_exit_ms.push(c.no_exit_ms as f32);
            w.full_ms.push(c.full_ms as f32);
            w.total_full_ms += c.full_ms;
        }
        w
    }

    /// Requests in the window.
    pub fn len(&self) -> usize {
        self.n
    }

    /// True when no request qualified.
    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// Records that lacked some active ramp's output (sent before it was activated); that
    /// ramp cannot release them, exactly as when they were served.
    pub fn partial(&self) -> usize {
        self.partial
    }

    /// Index of the first recent request; recent requests run from here to the end.
    pub fn recent_start(&self) -> usize {
        self.recent_start
    }

    /// Number of recent requests.
    pub fn recent_len(&self) -> usize {
        self.n - self.recent_start
    }

    /// Whether request `i` is one of the recent ones.
    #[inline]
    pub fn is_recent(&self, i: usize) -> bool {
        i >= self.recent_start
    }

    /// Active ramp ids in depth order.
    pub fn ramp_ids(&self) -> &[u32] {
        &self.ramp_ids
    }

    /// Number of active ramps.
    pub fn ramp_count(&self) -> usize {
        self.ramp_ids.len()
    }

    /// Summed latency of the original model over the window, in ms.
    pub fn total_full_ms(&self) -> f64 {
        self.total_full_ms
    }

    /// Sanitised confidence of request `i` at active ramp `k`.
    #[inline]
    pub fn score(&self, k: usize, i: usize) -> f32 {
        self.score[k * self.n + i]
    }

    /// Whether ramp `k` disagrees with the final prediction on request `i`.
    #[inline]
    pub fn wrong(&self, k: usize, i: usize) -> bool {
        self.wrong[k * self.n + i]
    }

    /// Latency of request `i` if it exits at active ramp `k`, in ms.
    #[inline]
    pub fn exit_ms(&self, k: usize, i: usize) -> f32 {
        self.exit_ms[k * self.n + i]
    }

    /// Active ramp `k`'s own cost for request `i`'s batch size, in ms.
    #[inline]
    pub fn ramp_ms(&self, k: usize, i: usize) -> f32 {
        self.ramp_ms[k * self.n + i]
    }

    /// Latency of request `i` if it never exits, in ms.
    #[inline]
    pub fn no_exit_ms(&self, i: usize) -> f32 {
        self.no_exit_ms[i]
    }

    /// Latency of request `i` on the original model, in ms.
    #[inline]
    pub fn full_ms(&self, i: usize) -> f32 {
        self.full_ms[i]
    }

    /// Scores of active ramp `k` for every request.
    pub fn scores(&self, k: usize) -> &[f32] {
        &self.score[k * self.n..(k + 1) * self.n]
    }

    /// The active ramp (index) request `i` exits at under `thresholds`, from ramp `from` on.
    #[inline]
    pub fn exit_from(&self, thresholds: &[f32], i: usize, from: usize) -> Option<usize> {
        (from..thresholds.len()).find(|&k| exits(self.score(k, i), thresholds[k]))
    }

    /// Latency and error of request `i` when it exits at `exit` (or runs to the end).
    #[inline]
    pub fn outcome(&self, i: usize, exit: Option<usize>) -> (f32, bool) {
        match exit {
            Some(k) => (self.exit_ms(k, i), self.wrong(k, i)),
            None => (self.no_exit_ms(i), false),
        }
    }

    /// Applies the exit rule with `thresholds` (one per active ramp) to every request.
    pub fn evaluate(&self, thresholds: &[f32]) -> Evaluation {
        let m = self.ramp_count().min(thresholds.len());
        let mut exits_per_ramp = vec![0u32; self.ramp_count()];
        let (mut errors, mut recent_errors) = (0, 0);
        let mut latency = 0.0f64;
        for i in 0..self.n {
            let exit = self.exit_from(&thresholds[..m], i, 0);
            if let Some(k) = exit {
                exits_per_ramp[k] += 1;
            }
            let (lat, wrong) = self.outcome(i, exit);
            errors += u32::from(wrong);
            if self.is_recent(i) {
                recent_errors += u32::from(wrong);
            }
            latency += f64::from(lat);
        }
        Evaluation {
            requests: self.n as u32,
            errors,
            recent_errors,
            exits: exits_per_ramp,
            latency_ms: latency,
            full_ms: self.total_full_ms,
        }
    }
}

fn sanitise(confidence: f32) -> f32 {
    if confidence > 0.0 {
        confidence.min(1.0)
    } else {
        -1.0
    }
}
