//! Ramp adjustment: which ramps earn their keep, which to drop, where to try a new one.
//!
//! A ramp's utility is the latency it saves the requests it releases, relative to where
//! they would have exited without it, minus what it costs every request that passes it:
//! `exit share × saving vs. next exit − pass-through share × own cost`, computed exactly per
//! request on recent feedback and expressed in ms per request.

use crate::config::ControllerConfig;
use crate::decision::Reason;
use crate::profile::LatencyProfile;
use crate::window::TuningWindow;

/// An active ramp as the planner sees it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RampStatus {
    /// Candidate id.
    pub ramp_id: u32,
    /// Utility over recent chunks, ms per request.
    pub utility_ms: f64,
    /// Too young to judge (still warming up or not yet observed long enough).
    pub protected: bool,
}

/// What the planner wants changed.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RampPlan {
    /// Ramps to deactivate, with their utility.
    pub remove: Vec<(u32, f64)>,
    /// A ramp to activate (in the never-exit state) and why.
    pub activate: Option<(u32, Reason)>,
    /// Set when an activation was wanted but nothing fitted: why we looked.
    pub skipped: Option<Reason>,
}

/// Utility of each active ramp of `window` under `thresholds`, in ms per request.
pub fn ramp_utilities(window: &TuningWindow, thresholds: &[f32]) -> Vec<f64> {
    let m = window.ramp_count();
    let mut total = vec![0.0f64; m];
    for i in 0..window.len() {
        let exit = window.exit_from(thresholds, i, 0);
        let last = exit.unwrap_or(m.saturating_sub(1));
        // Every ramp the request passed through cost it the ramp's own time.
        for (k, t) in total.iter_mut().enumerate().take(last) {
            *t -= f64::from(window.ramp_ms(k, i));
        }
        match exit {
            Some(k) => {
                let (with, _) = window.outcome(i, Some(k));
                let fallback = window.exit_from(thresholds, i, k + 1);
                let without = window.outcome(i, fallback).0 - window.ramp_ms(k, i);
                total[k] += f64::from(without - with);
            }
            None if m > 0 => total[m - 1] -= f64::from(window.ramp_ms(m - 1, i)),
            None => {}
        }
    }
    let n = window.len().max(1) as f64;
    total.into_iter().map(|t| t / n).collect()
}

/// Decides removals and at most one activation.
///
/// * Unprotected ramps with negative utility are removed.
/// * After a removal, the nearest inactive position *deeper* than the shallowest removed
///   ramp is tried (more inputs are confident there).
/// * When every active ramp has positive utility, the nearest inactive position *earlier*
///   than the most useful ramp is tried (to release its easy inputs sooner).
/// * With no ramp left, the middle candidate is tried.
///
/// A candidate must not be `blocked` (cooling down), and the resulting set must fit both
/// `max_active_ramps` and `ramp_budget_share` at every profiled batch size.
pub fn plan_ramps(
    active: &[RampStatus],
    profile: &LatencyProfile,
    cfg: &ControllerConfig,
    blocked: impl Fn(u32) -> bool,
) -> RampPlan {
    let mut plan = RampPlan {
        remove: active
            .iter()
            .filter(|s| !s.protected && s.utility_ms < 0.0)
            .map(|s| (s.ramp_id, s.utility_ms))
            .collect(),
        ..RampPlan::default()
    };
    let kept: Vec<&RampStatus> = active
        .iter()
        .filter(|s| !plan.remove.iter().any(|(id, _)| *id == s.ramp_id))
        .collect();
    let candidates = profile.candidate_count();
    let (reason, order): (Reason, Vec<u32>) =
        if let Some(&(shallowest, _)) = plan.remove.iter().min_by_key(|(id, _)| *id) {
            (
                Reason::ExploreDeeper,
                (shallowest + 1..candidates).collect(),
            )
        } else if kept.is_empty() {
            let mid = candidates / 2;
            let mut ids: Vec<u32> = (0..candidates).collect();
            ids.sort_by_key(|&id| (id.abs_diff(mid), id));
            (Reason::NoActiveRamps, ids)
        } else if kept.iter().all(|s| !s.protected && s.utility_ms > 0.0) {
            let best = kept
                .iter()
                .max_by(|a, b| a.utility_ms.total_cmp(&b.utility_ms))
                .map_or(0, |s| s.ramp_id);
            (Reason::ExploreEarlier, (0..best).rev().collect())
        } else {
            return plan;
        };
    let mut ids: Vec<u32> = kept.iter().map(|s| s.ramp_id).collect();
    let fits = |id: u32, ids: &mut Vec<u32>| {
        if ids.len() >= cfg.max_active_ramps {
            return false;
        }
        ids.push(id);
        let ok = profile.ramp_cost_share(ids) <= cfg.ramp_budget_share + 1e-12;
        ids.pop();
        ok
    };
    let pick = order.into_iter().find(|&id| {
        !ids.contains(&id)
            && !plan.remove.iter().any(|(r, _)| *r == id)
            && !blocked(id)
            && fits(id, &mut ids)
    });
    match pick {
        Some(id) => plan.activate = Some((id, reason)),
        None => plan.skipped = Some(reason),
    }
    plan
}

/// A starting ramp set: the most evenly spread candidates that fit the budget.
pub fn initial_ramps(profile: &LatencyProfile, cfg: &ControllerConfig) -> Vec<u32> {
    let total = profile.candidate_count();
    for count in (1..=cfg.max_active_ramps.min(total as usize) as u32).rev() {
        let mut ids: Vec<u32> = (0..count)
            .map(|j| ((u64::from(j) * 2 + 1) * u64::from(total) / (u64::from(count) * 2)) as u32)
            .collect();
        ids.dedup();
        if profile.ramp_cost_share(&ids) <= cfg.ramp_budget_share + 1e-12 {
            return ids;
        }
    }
    Vec::new()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(ramp_id: u32, utility_ms: f64) -> RampStatus {
        RampStatus {
            ramp_id,
            utility_ms,
            protected: false,
        }
    }

    #[test]
    fn negative_ramps_go_and_a_deeper_one_is_tried() {
        let profile = LatencyProfile::synthetic(8, 10.0, 0.004);
        let cfg = ControllerConfig::default();
        let plan = plan_ramps(&[status(1, -0.2), status(5, 1.0)], &profile, &cfg, |_| {
            false
        });
        assert_eq!(plan.remove, vec![(1, -0.2)]);
        assert_eq!(plan.activate, Some((2, Reason::ExploreDeeper)));
    }

    #[test]
    fn useful_ramps_lead_to_an_earlier_one_within_budget() {
        let profile = LatencyProfile::synthetic(8, 10.0, 0.004);
        let cfg = ControllerConfig::default();
        let plan = plan_ramps(&[status(3, 0.5), status(6, 2.0)], &profile, &cfg, |id| {
            id == 5
        });
        assert!(plan.remove.is_empty());
        assert_eq!(plan.activate, Some((4, Reason::ExploreEarlier)));
        // Five ramps of 0.4 % fill a 2 % budget: a sixth never fits.
        let full: Vec<RampStatus> = [1, 2, 3, 5, 7].iter().map(|&id| status(id, 1.0)).collect();
        let plan = plan_ramps(&full, &profile, &cfg, |_| false);
        assert_eq!(plan.activate, None);
        assert_eq!(plan.skipped, Some(Reason::ExploreEarlier));
    }

    #[test]
    fn protected_ramps_are_never_removed() {
        let profile = LatencyProfile::synthetic(8, 10.0, 0.004);
        let cfg = ControllerConfig::default();
        let young = RampStatus {
            protected: true,
            ..status(2, -5.0)
        };
        let plan = plan_ramps(&[young], &profile, &cfg, |_| false);
        assert!(plan.remove.is_empty() && plan.activate.is_none());
    }

    #[test]
    fn initial_ramps_spread_evenly_within_budget() {
        let profile = LatencyProfile::synthetic(12, 10.0, 0.004);
        let ids = initial_ramps(&profile, &ControllerConfig::default());
        assert_eq!(ids.len(), 5);
        assert!(profile.ramp_cost_share(&ids) <= 0.02 + 1e-12);
        assert!(ids.windows(2).all(|w| w[0] < w[1]));
    }
}
