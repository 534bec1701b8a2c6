//! How many disagreeing exits a window may hold and still keep to a target error rate (the
//! accuracy budget, or the lower rate chunk coverage asks for:
//! [`crate::ControllerConfig::target_error_rate`]).
//!
//! Every tuning mode reduces to an integer error allowance for the window:
//!
//! * **point** — `floor(rate × n)`: the observed error rate must stay within the target
//!   (the static baselines, tuned once);
//! * **conformal** — `(e + 1) / (n + 1) ≤ rate`: the point estimate charged one error for
//!   choosing thresholds on the window they are judged by (the live controller's default);
//! * **statistical** — the largest `e` whose exact one-sided (Clopper–Pearson) upper
//!   confidence bound on the error rate, at the configured level, is still within budget.
//!   That bound is at most the budget exactly when `P[Binomial(n, budget) ≤ e] ≤ 1 − level`,
//!   which we evaluate in log space. When even `e = 0` fails (too few requests to certify
//!   the budget, e.g. `n < 230` at level 0.9 and budget 1 %) the answer is `None`: no exits.
//!
//! The statistical bound ignores that thresholds were chosen on the same window (selection
//! bias), so it is a safety margin, not a guarantee.

/// Errors a window of `requests` may hold at error rate `budget`: `None` means no exits at
/// all are allowed.
/// `confidence` selects the statistical mode (a level in (0.5, 1)); `None` is the point mode.
pub fn error_allowance(requests: usize, budget: f64, confidence: Option<f64>) -> Option<u32> {
    let point = (budget * requests as f64 + 1e-9).floor().max(0.0) as u32;
    let Some(level) = confidence else {
        return Some(point);
    };
    let n = requests as f64;
    let log_alpha = (1.0 - level).ln();
    let log_ratio = (budget / (1.0 - budget)).ln();
    let mut log_pmf = n * (1.0 - budget).ln();
    let mut log_cdf = log_pmf;
    let mut best = None;
    for e in 0..=point {
        if e > 0 {
            let k = f64::from(e - 1);
            log_pmf += ((n - k) / (k + 1.0)).ln() + log_ratio;
            log_cdf = log_add_exp(log_cdf, log_pmf);
        }
        if log_cdf > log_alpha {
            break;
        }
        best = Some(e);
    }
    best
}

/// Errors a window of `requests` may hold so that the *next* request's expected error rate
/// stays within `rate`: the largest `e` with `(e + 1) / (n + 1) ≤ rate`, conformal risk
/// control for a 0/1 loss (Angelopoulos et al., 2022). The `+ 1` prices in that thresholds are
/// chosen on the very window they are judged by: a threshold just above a window's most
/// confident error lets the next request's error through with probability about `1 / (n + 1)`,
/// so a window of `n` requests cannot support a rate below about `1 / n`. `None` (no exits)
/// until the window is that large.
pub fn conformal_allowance(requests: usize, rate: f64) -> Option<u32> {
    let slack = rate * (requests as f64 + 1.0) - 1.0 + 1e-9;
    (slack >= 0.0).then(|| slack.floor() as u32)
}

fn log_add_exp(a: f64, b: f64) -> f64 {
    let (hi, lo) = if a > b { (a, b) } else { (b, a) };
    hi + (lo - hi).exp().ln_1p()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn point_mode_is_the_floor_of_budget_times_requests() {
        assert_eq!(error_allowance(256, 0.01, None), Some(2));
        assert_eq!(error_allowance(64, 0.01, None), Some(0));
        assert_eq!(error_allowance(100, 0.01, None), Some(1));
    }

    #[test]
    fn statistical_mode_is_never_looser_and_refuses_tiny_windows() {
        // 0.99^256 = 0.076 <= 0.1 but 0.076 + P[X=1] = 0.27 > 0.1.
        assert_eq!(error_allowance(256, 0.01, Some(0.9)), Some(0));
        assert_eq!(error_allowance(64, 0.01, Some(0.9)), None);
        for n in [100, 500, 1000, 5000, 100_000] {
            let s = error_allowance(n, 0.01, Some(0.9)).unwrap_or(0);
            assert!(s <= error_allowance(n, 0.01, None).unwrap());
        }
        // Large windows approach the point estimate.
        let big = error_allowance(100_000, 0.01, Some(0.9)).unwrap();
        assert!(big > 950 && big < 1000, "{big}");
    }

    #[test]
    fn conformal_allowance_charges_one_error_for_choosing_on_the_window() {
        // (e + 1) / (n + 1) <= rate.
        assert_eq!(conformal_allowance(98, 0.01), None);
        assert_eq!(conformal_allowance(99, 0.01), Some(0));
        assert_eq!(conformal_allowance(199, 0.01), Some(1));
        assert_eq!(conformal_allowance(3072, 0.0008), Some(1));
        for n in [100, 500, 1000, 5000] {
            assert!(conformal_allowance(n, 0.01) < error_allowance(n, 0.01, None));
        }
    }
}
