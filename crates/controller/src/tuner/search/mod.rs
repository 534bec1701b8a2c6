//! Our tuner: search over the window's actual confidence values instead of a fixed grid.
//!
//! Between two neighbouring confidence values of a ramp every threshold gives the same
//! exits, so the only thresholds worth trying are the values themselves (a threshold equal
//! to a value keeps that request, the most conservative choice that yields those exits).
//! With each ramp's requests pre-sorted by confidence, and each request's "could exit
//! here" ramps kept as a bit mask, one O(n) sweep scores every possible threshold of one
//! ramp with the others fixed.
//!
//! 1. **Free exits.** From "no exits", coordinate passes give each ramp the fastest
//!    threshold that adds no error.
//! 2. **Ratio ascent.** Repeatedly take the single-ramp move with the best trade-off: a
//!    free move with the largest saving, else the move with the largest saving per added
//!    error, among moves that keep the window within the limits. Every move jumps straight
//!    to a value that changes exits.
//! 3. **Coordinate polish.** For each ramp in turn, with the others fixed, take the
//!    threshold that minimises latency within the limits (it may rise as well as fall).
//! 4. **Exchange.** For each ramp that spends errors, raise it just enough to give one back
//!    (or two), let the other ramps re-polish with the freed budget, and keep the
//!    result if latency fell; and the mirror move, **spend**: lower one ramp past the limit
//!    at its best saving and let the others give errors back. Steps 3–4 repeat until
//!    nothing improves.
//!
//! Every sweep costs O(n) for n requests. A run makes at most n + m ascent moves (m
//! sweeps each) and at most 8 rounds of local moves (O(m²) sweeps each); in practice a few
//! dozen moves in all.

mod moves;

use super::{ErrorLimits, TuneOutcome};
use crate::exit_config::NEVER_EXIT;
use crate::window::TuningWindow;

const MAX_ROUNDS: u32 = 8;
const MAX_EXCHANGE_LEVELS: usize = 2;

/// Searches exact confidence values; never exceeds `limits` on the window.
pub fn tune_search(window: &TuningWindow, limits: ErrorLimits) -> TuneOutcome {
    let mut s = State::new(window, limits);
    let mut steps = 0u32;
    // Free exits first, by coordinate passes (cheap: one sweep per ramp per pass).
    let full = s.limits;
    s.limits = Totals {
        err: 0,
        rec: 0,
        lat: 0.0,
    };
    for _ in 0..MAX_ROUNDS {
        let mut changed = false;
        for k in 0..s.m {
            steps += 1;
            changed |= s.polish(k);
        }
        if !changed {
            break;
        }
    }
    s.limits = full;
    steps += s.ratio_ascent((window.len() + window.ramp_count() + 1) as u32);
    let mut saved = s.snapshot();
    for _ in 0..MAX_ROUNDS {
        let before = s.tot.lat;
        for k in 0..s.m {
            steps += 1;
            s.polish(k);
        }
        for a in 0..s.m {
            steps += 2;
            s.exchange(a, &mut saved);
            s.spend(a, &mut saved);
        }
        if s.tot.lat >= before - s.tol {
            break;
        }
    }
    let evaluation = window.evaluate(&s.thr);
    debug_assert_eq!(i64::from(evaluation.errors), s.tot.err);
    debug_assert_eq!(i64::from(evaluation.recent_errors), s.tot.rec);
    TuneOutcome {
        thresholds: s.thr,
        evaluation,
        steps,
    }
}

/// Errors, recent errors and latency of a whole configuration.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Totals {
    err: i64,
    rec: i64,
    lat: f64,
}

/// What the state can be rolled back to.
#[derive(Debug, Clone)]
struct Snapshot {
    thr: Vec<f32>,
    mask: Vec<u64>,
    lat: Vec<f32>,
    wrong: Vec<bool>,
    tot: Totals,
}

#[derive(Debug)]
struct State<'a> {
    w: &'a TuningWindow,
    m: usize,
    limits: Totals,
    tol: f64,
    thr: Vec<f32>,
    /// Bit k set: request i's confidence at ramp k clears its threshold.
    mask: Vec<u64>,
    /// Current latency and error of each request.
    lat: Vec<f32>,
    wrong: Vec<bool>,
    tot: Totals,
    /// Per ramp: request indices with positive confidence, most confident first.
    order: Vec<Vec<u32>>,
    /// Per threshold candidate of the ramp being swept: (threshold, totals).
    options: Vec<(f32, Totals)>,
}

impl<'a> State<'a> {
    fn new(w: &'a TuningWindow, limits: ErrorLimits) -> Self {
        let (n, m) = (w.len(), w.ramp_count());
        // Positive f32s order like their bit patterns, so (descending score, ascending
        // index) is one ascending u64 key: a much cheaper sort than comparing floats.
        let mut keys: Vec<u64> = Vec::with_capacity(n);
        let order = (0..m)
            .map(|k| {
                keys.clear();
                keys.extend(
                    w.scores(k)
                        .iter()
                        .enumerate()
                        .filter(|(_, s)| **s > 0.0)
                        .map(|(i, s)| (u64::from(!s.to_bits()) << 32) | i as u64),
                );
                keys.sort_unstable();
                keys.iter().map(|&key| key as u32).collect()
            })
            .collect();
        let lat: Vec<f32> = (0..n).map(|i| w.no_exit_ms(i)).collect();
        let total = lat.iter().map(|&l| f64::from(l)).sum();
        Self {
            w,
            m,
            limits: Totals {
                err: i64::from(limits.window),
                rec: i64::from(limits.recent),
                lat: 0.0,
            },
            // f32 latencies summed in different orders differ by rounding; ignore such gains.
            tol: 1e-6 * w.total_full_ms().max(1.0),
            thr: vec![NEVER_EXIT; m],
            mask: vec![0; n],
            lat,
            wrong: vec![false; n],
            tot: Totals {
                err: 0,
                rec: 0,
                lat: total,
            },
            order,
            options: Vec::with_capacity(n + 1),
        }
    }

    fn feasible(&self, t: &Totals) -> bool {
        t.err <= self.limits.err && t.rec <= self.limits.rec
    }

    /// Outcome (latency, wrong) of request `i` exiting at the first set bit of `bits`.
    #[inline]
    fn outcome(&self, i: usize, bits: u64) -> (f32, bool) {
        let exit = (bits != 0).then(|| bits.trailing_zeros() as usize);
        self.w.outcome(i, exit)
    }

    /// Fills `options` with every distinct exit set of ramp `k` (others fixed), from
    /// "none exit" (threshold 1.0) to "all exit", with the totals each would give.
    fn sweep(&mut self, k: usize) {
        let (w, bit) = (self.w, 1u64 << k);
        let below = bit - 1;
        let above = !(bit | below);
        let current = self.thr[k];
        // One pass over the requests reaching k, most confident first, accumulating what
        // letting each exit at k changes relative to letting none exit there. The current
        // exits are a prefix of that order, so "none exit" = current minus that prefix.
        let zero = Totals {
            err: 0,
            rec: 0,
            lat: 0.0,
        };
        let (mut acc, mut at_current) = (zero, zero);
        self.options.clear();
        self.options.push((NEVER_EXIT, zero));
        let order = &self.order[k];
        let (mut j, len) = (0, order.len());
        // Index of the first request at or after `j` that reaches ramp k.
        let next_reaching = |mut j: usize| {
            while j < len && self.mask[order[j] as usize] & below != 0 {
                j += 1;
            }
            j
        };
        j = next_reaching(j);
        while j < len {
            let i = order[j] as usize;
            let s = w.score(k, i);
            // Requests exiting at k now would fall through to the next ramp that takes them;
            // the others already exit beyond k, so their current outcome is the fallback.
            let (fl, fw) = if s > current {
                self.outcome(i, self.mask[i] & above)
            } else {
                (self.lat[i], self.wrong[i])
            };
            acc.lat += f64::from(w.exit_ms(k, i) - fl);
            let d = i64::from(w.wrong(k, i)) - i64::from(fw);
            acc.err += d;
            if w.is_recent(i) {
                acc.rec += d;
            }
            if s > current {
                at_current = acc;
            }
            j = next_reaching(j + 1);
            let next = (j < len).then(|| w.score(k, order[j] as usize));
            if !next.is_some_and(|ns| ns >= s) {
                self.options.push((next.unwrap_or(0.0), acc));
            }
        }
        let base = Totals {
            err: self.tot.err - at_current.err,
            rec: self.tot.rec - at_current.rec,
            lat: self.tot.lat - at_current.lat,
        };
        for (_, o) in &mut self.options {
            o.err += base.err;
            o.rec += base.rec;
            o.lat += base.lat;
        }
    }

    /// Sets ramp `k`'s threshold and updates masks and totals, O(n).
    fn apply(&mut self, k: usize, t: f32) {
        let (w, bit) = (self.w, 1u64 << k);
        let below = bit - 1;
        self.thr[k] = t;
        for i in 0..self.mask.len() {
            let old = self.mask[i];
            let new = if crate::exit_config::exits(w.score(k, i), t) {
                old | bit
            } else {
                old & !bit
            };
            if old == new {
                continue;
            }
            self.mask[i] = new;
            if old & below != 0 {
                continue;
            }
            let (ol, ow) = (self.lat[i], self.wrong[i]);
            let (nl, nw) = self.outcome(i, new);
            self.lat[i] = nl;
            self.wrong[i] = nw;
            self.tot.lat += f64::from(nl) - f64::from(ol);
            let d = i64::from(nw) - i64::from(ow);
            self.tot.err += d;
            if w.is_recent(i) {
                self.tot.rec += d;
            }
        }
    }

    fn snapshot(&self) -> Snapshot {
        Snapshot {
            thr: self.thr.clone(),
            mask: self.mask.clone(),
            lat: self.lat.clone(),
            wrong: self.wrong.clone(),
            tot: self.tot,
        }
    }

    fn save(&self, s: &mut Snapshot) {
        s.thr.copy_from_slice(&self.thr);
        s.mask.copy_from_slice(&self.mask);
        s.lat.copy_from_slice(&self.lat);
        s.wrong.copy_from_slice(&self.wrong);
        s.tot = self.tot;
    }

    fn restore(&mut self, s: &Snapshot) {
        self.thr.copy_from_slice(&s.thr);
        self.mask.copy_from_slice(&s.mask);
        self.lat.copy_from_slice(&s.lat);
        self.wrong.copy_from_slice(&s.wrong);
        self.tot = s.tot;
    }
}
