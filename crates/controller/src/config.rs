//! Controller settings: parsed, defaulted in one place, validated before use.

use serde::{Deserialize, Serialize};

use crate::error::{ControllerError, Result};

/// Which threshold tuner the policy loop runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TunerKind {
    /// Apparate's greedy hill climber on a fixed step grid (the paper's baseline).
    Greedy,
    /// Our search over the window's actual confidence values.
    #[default]
    Ours,
}

impl TunerKind {
    /// Lower-case name for reports and spans.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Greedy => "greedy",
            Self::Ours => "ours",
        }
    }
}

/// Everything the policy loop can be told. YAML keys are the field names; missing keys
/// take the defaults from [`ControllerConfig::default`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ControllerConfig {
    /// Largest tolerated accuracy loss versus the original model, as a fraction (0.01 = 1 %).
    pub accuracy_budget: f64,
    /// Records per chunk: the unit of accounting and decisions.
    pub chunk_size: usize,
    /// How many recent chunks the tuner looks at (the latest one is also held to the
    /// budget on its own).
    pub tuning_window_chunks: usize,
    /// Re-tune at least this often, so savings come back after a drift passes; 0 = never.
    pub retune_every_chunks: usize,
    /// Run ramp adjustment every this many chunks; 0 = never.
    pub adjust_every_chunks: usize,
    /// Total cost of the active ramps may not exceed this share of the full model's latency
    /// at any profiled batch size.
    pub ramp_budget_share: f64,
    /// Upper bound on simultaneously active ramps.
    pub max_active_ramps: usize,
    /// A removed ramp cannot be re-activated for this many chunks (stops flapping).
    pub ramp_cooldown_chunks: usize,
    /// Which tuner to run.
    pub tuner: TunerKind,
    /// Keep a one-sided upper confidence bound on the error rate within budget, instead of
    /// the point estimate.
    pub statistical: bool,
    /// Confidence level of that bound, in (0.5, 1).
    pub confidence_level: f64,
    /// Share of chunks that should stay within the accuracy budget on their own, in
    /// [0, 1); 0 lets the budget alone set the error rate tuning aims at. See
    /// [`ControllerConfig::target_error_rate`].
    pub chunk_coverage: f64,
}

impl Default for ControllerConfig {
    fn default() -> Self {
        Self {
            accuracy_budget: 0.01,
            chunk_size: 64,
            tuning_window_chunks: 48,
            retune_every_chunks: 4,
            adjust_every_chunks: 8,
            ramp_budget_share: 0.02,
            max_active_ramps: 8,
            ramp_cooldown_chunks: 32,
            tuner: TunerKind::Ours,
            statistical: false,
            confidence_level: 0.9,
            chunk_coverage: 0.95,
        }
    }
}

impl ControllerConfig {
    /// Parses YAML and validates it.
    pub fn from_yaml_str(yaml: &str) -> Result<Self> {
        let cfg: Self =
            serde_saphyr::from_str(yaml).map_err(|e| ControllerError::Yaml(e.to_string()))?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Rejects values the controller cannot work with, naming the field and value.
    pub fn validate(&self) -> Result<()> {
        fn bad(field: &'static str, value: impl ToString, reason: &'static str) -> Result<()> {
            Err(ControllerError::InvalidConfig {
                field,
                value: value.to_string(),
                reason,
            })
        }
        let open_unit = |v: f64| v > 0.0 && v < 1.0;
        if !open_unit(self.accuracy_budget) {
            return bad("accuracy_budget", self.accuracy_budget, "must be in (0, 1)");
        }
        if self.chunk_size == 0 || self.chunk_size > 1 << 20 {
            return bad("chunk_size", self.chunk_size, "must be in 1..=1048576");
        }
        if self.tuning_window_chunks == 0 || self.tuning_window_chunks > 1024 {
            return bad(
                "tuning_window_chunks",
                self.tuning_window_chunks,
                "must be in 1..=1024",
            );
        }
        if !(0.0..=1.0).contains(&self.ramp_budget_share) {
            return bad(
                "ramp_budget_share",
                self.ramp_budget_share,
                "must be in [0, 1]",
            );
        }
        if self.max_active_ramps == 0 || self.max_active_ramps > 64 {
            return bad(
                "max_active_ramps",
                self.max_active_ramps,
                "must be in 1..=64",
            );
        }
        if !(self.confidence_level > 0.5 && self.confidence_level < 1.0) {
            return bad(
                "confidence_level",
                self.confidence_level,
                "must be in (0.5, 1)",
            );
        }
        if !(0.0..1.0).contains(&self.chunk_coverage) {
            return bad("chunk_coverage", self.chunk_coverage, "must be in [0, 1)");
        }
        Ok(())
    }

    /// The disagreement rate tuning aims at: the accuracy budget, or less when
    /// `chunk_coverage` asks for it.
    ///
    /// A chunk stays within budget only while it holds at most `floor(budget × chunk_size)`
    /// disagreeing exits: at 64 requests and 1 % that is none at all, so a policy that spends
    /// the whole budget on average breaks it on about half of the chunks. The rate returned
    /// is the largest at which a chunk of independent requests stays within budget with
    /// probability `chunk_coverage` (binomial; 0.08 % for 64 requests, 1 % and 0.95).
    pub fn target_error_rate(&self) -> f64 {
        let budget = self.accuracy_budget;
        if self.chunk_coverage <= 0.0 {
            return budget;
        }
        let n = self.chunk_size as u64;
        let allowed = (budget * self.chunk_size as f64 + 1e-9).floor() as u64;
        let covered = |rate: f64| binomial_cdf(n, allowed, rate) >= self.chunk_coverage;
        if covered(budget) {
            return budget;
        }
        // The CDF falls as the rate grows: bisect on [0, budget].
        let (mut lo, mut hi) = (0.0, budget);
        for _ in 0..60 {
            let mid = 0.5 * (lo + hi);
            if covered(mid) {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        lo
    }
}

/// `P[Binomial(n, p) ≤ k]`, summed in log space term by term.
fn binomial_cdf(n: u64, k: u64, p: f64) -> f64 {
    if p <= 0.0 {
        return 1.0;
    }
    if p >= 1.0 {
        return if k >= n { 1.0 } else { 0.0 };
    }
    let (nf, log_ratio) = (n as f64, (p / (1.0 - p)).ln());
    let mut log_pmf = nf * (1.0 - p).ln();
    let mut cdf = log_pmf.exp();
    for i in 1..=k.min(n) {
        let j = (i - 1) as f64;
        log_pmf += ((nf - j) / (j + 1.0)).ln() + log_ratio;
        cdf += log_pmf.exp();
    }
    cdf.min(1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_yaml_takes_defaults_and_unknown_keys_are_rejected() {
        let cfg =
            ControllerConfig::from_yaml_str("accuracy_budget: 0.02\ntuner: greedy\n").unwrap();
        assert_eq!(cfg.accuracy_budget, 0.02);
        assert_eq!(cfg.tuner, TunerKind::Greedy);
        assert_eq!(cfg.chunk_size, 64);
        assert!(ControllerConfig::from_yaml_str("chunk_sise: 3\n").is_err());
    }

    #[test]
    fn validation_names_field_and_value() {
        let cfg = ControllerConfig {
            confidence_level: 1.5,
            ..ControllerConfig::default()
        };
        let err = cfg.validate().unwrap_err().to_string();
        assert!(
            err.contains("confidence_level") && err.contains("1.5"),
            "{err}"
        );
        assert!(ControllerConfig::default().validate().is_ok());
        let cfg = ControllerConfig {
            chunk_coverage: 1.0,
            ..ControllerConfig::default()
        };
        assert!(
            cfg.validate()
                .unwrap_err()
                .to_string()
                .contains("chunk_coverage")
        );
    }

    #[test]
    fn target_error_rate_keeps_chunks_within_budget_at_the_coverage() {
        let cfg = ControllerConfig::default();
        // 64 requests at 1 % allow no error: 0.95 = (1 - r)^64.
        let r = cfg.target_error_rate();
        assert!((r - (1.0 - 0.95f64.powf(1.0 / 64.0))).abs() < 1e-9, "{r}");
        assert!((binomial_cdf(64, 0, r) - 0.95).abs() < 1e-9);
        // Coverage off: the budget itself.
        let off = ControllerConfig {
            chunk_coverage: 0.0,
            ..cfg.clone()
        };
        assert_eq!(off.target_error_rate(), 0.01);
        // Large chunks allow errors; the target stays below the budget and honours it.
        let big = ControllerConfig {
            chunk_size: 1000,
            ..cfg
        };
        let r = big.target_error_rate();
        assert!(r > 0.004 && r < 0.01, "{r}");
        assert!((binomial_cdf(1000, 10, r) - 0.95).abs() < 1e-6);
    }

    #[test]
    fn binomial_cdf_matches_small_cases() {
        assert!((binomial_cdf(2, 0, 0.5) - 0.25).abs() < 1e-12);
        assert!((binomial_cdf(2, 1, 0.5) - 0.75).abs() < 1e-12);
        assert!((binomial_cdf(3, 3, 0.3) - 1.0).abs() < 1e-12);
        assert_eq!(binomial_cdf(3, 0, 0.0), 1.0);
    }
}
