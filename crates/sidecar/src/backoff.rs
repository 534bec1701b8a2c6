//! Reconnect delays: capped exponential backoff with "equal jitter" — each delay is half
//! the capped exponential step plus a uniform random share of the other half, so retries
//! from many sidecars spread out but never collapse to zero. Seeded, so tests are exact.

use std::time::Duration;

use apparate_controller::rng::SplitMix64;

/// Delay generator; [`Backoff::reset`] after a connection that worked.
#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    attempt: u32,
    rng: SplitMix64,
}

impl Backoff {
    /// Delays grow from `initial` (doubling) and never exceed `max`.
    pub fn new(initial: Duration, max: Duration, seed: u64) -> Self {
        Self {
            initial,
            max: max.max(initial),
            attempt: 0,
            rng: SplitMix64::new(seed),
        }
    }

    /// The capped step for the current attempt, before jitter.
    pub fn step(&self) -> Duration {
        let factor = 1u32.checked_shl(self.attempt.min(31)).unwrap_or(u32::MAX);
        self.initial.saturating_mul(factor).min(self.max)
    }

    /// The next delay, in `[step/2, step]`; advances the attempt counter.
    pub fn next_delay(&mut self) -> Duration {
        let step = self.step();
        self.attempt = self.attempt.saturating_add(1);
        let half = step / 2;
        half + (step - half).mul_f64(self.rng.unit())
    }

    /// Failures since the last reset.
    pub fn attempts(&self) -> u32 {
        self.attempt
    }

    /// Back to `initial` after a successful connection.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_within_jitter_bounds_and_cap() {
        let ms = Duration::from_millis;
        let mut b = Backoff::new(ms(100), ms(1_000), 7);
        let delays: Vec<Duration> = (0..8).map(|_| b.next_delay()).collect();
        let steps = [100, 200, 400, 800, 1_000, 1_000, 1_000, 1_000];
        for (d, s) in delays.iter().zip(steps) {
            assert!(
                *d >= ms(s / 2) && *d <= ms(s),
                "{d:?} not in [{}, {s}] ms",
                s / 2
            );
        }
        // Jitter: not every capped delay is the same.
        assert!(delays[4..].windows(2).any(|w| w[0] != w[1]), "{delays:?}");
        b.reset();
        assert_eq!(b.attempts(), 0);
        assert!(b.next_delay() <= ms(100));
    }

    #[test]
    fn same_seed_same_delays_and_huge_attempt_counts_do_not_overflow() {
        let ms = Duration::from_millis;
        let mut a = Backoff::new(ms(50), ms(5_000), 1);
        let mut b = Backoff::new(ms(50), ms(5_000), 1);
        for _ in 0..100 {
            assert_eq!(a.next_delay(), b.next_delay());
        }
        assert_eq!(a.step(), ms(5_000));
    }
}
