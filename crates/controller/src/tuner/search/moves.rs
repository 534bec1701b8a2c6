//! The moves of the search: ratio ascent, coordinate polish, exchange and spend. Each
//! move sweeps one ramp's thresholds (O(n)) and applies the best one.

use super::{MAX_EXCHANGE_LEVELS, Snapshot, State};
use crate::exit_config::NEVER_EXIT;

/// A lower threshold for one ramp and what it changes.
#[derive(Debug, Clone, Copy)]
pub(super) struct Move {
    threshold: f32,
    d_err: i64,
    d_lat: f64,
}

/// Free moves first (largest saving), then the largest saving per added error.
fn beats(a: Option<Move>, b: Option<Move>) -> bool {
    let (a, b) = match (a, b) {
        (None, _) => return false,
        (Some(_), None) => return true,
        (Some(a), Some(b)) => (a, b),
    };
    match (a.d_err <= 0, b.d_err <= 0) {
        (true, false) => true,
        (false, true) => false,
        (true, true) => a.d_lat > b.d_lat,
        (false, false) => {
            let (lhs, rhs) = (a.d_lat * b.d_err as f64, b.d_lat * a.d_err as f64);
            lhs > rhs || (lhs == rhs && a.d_lat > b.d_lat)
        }
    }
}

impl State<'_> {
    /// Ratio ascent: repeatedly applies the best move over all ramps. Returns the number of
    /// moves applied.
    pub(super) fn ratio_ascent(&mut self, max_moves: u32) -> u32 {
        let mut moves = 0;
        while moves < max_moves {
            let mut best: Option<(usize, Move)> = None;
            for k in 0..self.m {
                let mv = self.best_move_on(k);
                if beats(mv, best.map(|b| b.1)) {
                    best = mv.map(|mv| (k, mv));
                }
            }
            let Some((k, mv)) = best else { break };
            self.apply(k, mv.threshold);
            moves += 1;
        }
        moves
    }

    /// The best ratio-ascent move on ramp `k`: a lower threshold within the limits.
    fn best_move_on(&mut self, k: usize) -> Option<Move> {
        self.sweep(k);
        let mut best = None;
        for &(t, o) in &self.options {
            let mv = Move {
                threshold: t,
                d_err: o.err - self.tot.err,
                d_lat: self.tot.lat - o.lat,
            };
            if t < self.thr[k] && mv.d_lat > self.tol && self.feasible(&o) && beats(Some(mv), best)
            {
                best = Some(mv);
            }
        }
        best
    }

    /// Best feasible threshold for ramp `k` with the others fixed; true if it improved.
    pub(super) fn polish(&mut self, k: usize) -> bool {
        self.sweep(k);
        let mut best: Option<(f32, f64)> = None;
        for &(t, o) in &self.options {
            if self.feasible(&o) && o.lat < best.map_or(self.tot.lat - self.tol, |b| b.1 - self.tol)
            {
                best = Some((t, o.lat));
            }
        }
        match best {
            Some((t, _)) if t != self.thr[k] => {
                self.apply(k, t);
                true
            }
            _ => false,
        }
    }

    /// Raises ramp `a` just enough to give back one error (then two, ...), lets the other
    /// ramps re-polish with the freed budget, and keeps the first result whose latency fell.
    pub(super) fn exchange(&mut self, a: usize, saved: &mut Snapshot) {
        self.sweep(a);
        let current = self.thr[a];
        let mut levels = [NEVER_EXIT; MAX_EXCHANGE_LEVELS];
        let mut count = 0;
        let mut fewest = self.tot.err;
        for &(t, o) in self.options.iter().rev() {
            if t > current && o.err < fewest && count < MAX_EXCHANGE_LEVELS {
                fewest = o.err;
                levels[count] = t;
                count += 1;
            }
        }
        for &t in &levels[..count] {
            self.save(saved);
            let before = self.tot.lat;
            self.apply(a, t);
            for k in (0..self.m).filter(|&k| k != a) {
                self.polish(k);
            }
            // Feasibility is checked, not assumed: a measured profile need not make every
            // threshold raise cost latency, so the exchange could otherwise leave the limits.
            if self.feasible(&self.tot) && self.tot.lat < before - self.tol {
                return;
            }
            self.restore(saved);
        }
    }

    /// The mirror of [`State::exchange`]: lowers ramp `a` to spend one (or two) errors
    /// beyond the limit at its best saving, lets the other ramps give errors back, and keeps
    /// the result only if it is feasible and faster.
    pub(super) fn spend(&mut self, a: usize, saved: &mut Snapshot) {
        self.sweep(a);
        let current = self.thr[a];
        let mut picks = [(NEVER_EXIT, f64::INFINITY); MAX_EXCHANGE_LEVELS];
        for &(t, o) in &self.options {
            let extra = o.err - self.tot.err;
            if t < current && (1..=MAX_EXCHANGE_LEVELS as i64).contains(&extra) {
                let slot = &mut picks[(extra - 1) as usize];
                if o.lat < slot.1 && o.lat < self.tot.lat - self.tol {
                    *slot = (t, o.lat);
                }
            }
        }
        for (t, lat) in picks {
            if !lat.is_finite() {
                continue;
            }
            self.save(saved);
            let before = self.tot.lat;
            self.apply(a, t);
            for k in (0..self.m).filter(|&k| k != a) {
                if self.feasible(&self.tot) {
                    self.polish(k);
                } else {
                    self.repair(k);
                }
            }
            if self.feasible(&self.tot) && self.tot.lat < before - self.tol {
                return;
            }
            self.restore(saved);
        }
    }

    /// From an infeasible state: the fastest feasible threshold for ramp `k`, if any.
    fn repair(&mut self, k: usize) {
        self.sweep(k);
        let mut best: Option<(f32, f64)> = None;
        for &(t, o) in &self.options {
            if self.feasible(&o) && best.is_none_or(|b| o.lat < b.1 - self.tol) {
                best = Some((t, o.lat));
            }
        }
        if let Some((t, _)) = best
            && t != self.thr[k]
        {
            self.apply(k, t);
        }
    }
}
