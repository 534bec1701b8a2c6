//! The exit configuration pushed to servers, and the one exit rule every part of the
//! system applies.
//!
//! **Exit rule.** A request exits at the first active ramp (in depth order) whose
//! confidence is *strictly greater* than that ramp's threshold. Thresholds live in
//! `[0, 1]`. Because a max-softmax confidence never exceeds 1, a threshold of
//! [`NEVER_EXIT`] (`1.0`) means the ramp runs but never releases anything; `0.0` releases
//! every input with positive confidence. A NaN confidence never exits.

use serde::{Deserialize, Serialize};

use crate::error::{ControllerError, Result};
use crate::record::FeedbackRecord;

/// The threshold that disables exits at a ramp while keeping its outputs flowing.
pub const NEVER_EXIT: f32 = 1.0;

/// True when a ramp with this threshold releases an input with this confidence.
/// `NEVER_EXIT` never releases, even a (numerically) over-confident 1.0000001.
#[inline]
pub fn exits(confidence: f32, threshold: f32) -> bool {
    threshold < NEVER_EXIT && confidence > threshold
}

/// One active ramp and its threshold.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RampThreshold {
    /// Candidate ramp id.
    pub ramp_id: u32,
    /// Exit when confidence > threshold; `1.0` = never exit.
    pub threshold: f32,
}

/// A versioned set of active ramps with their thresholds, sorted by ramp id.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExitConfig {
    /// Monotonically increasing; a server applies a config only if it is newer.
    pub version: u64,
    /// Active ramps sorted by `ramp_id`.
    pub ramps: Vec<RampThreshold>,
}

impl ExitConfig {
    /// Builds a config, sorting the ramps by id and rejecting duplicates or bad thresholds.
    pub fn new(version: u64, mut ramps: Vec<RampThreshold>) -> Result<Self> {
        ramps.sort_by_key(|r| r.ramp_id);
        let config = Self { version, ramps };
        config.validate()?;
        Ok(config)
    }

    /// Active ramps `ids`, all in the never-exit state.
    pub fn never_exit(version: u64, ids: &[u32]) -> Result<Self> {
        let ramps = ids
            .iter()
            .map(|&ramp_id| RampThreshold {
                ramp_id,
                threshold: NEVER_EXIT,
            })
            .collect();
        Self::new(version, ramps)
    }

    /// Checks ordering and threshold range.
    pub fn validate(&self) -> Result<()> {
        if self.ramps.windows(2).any(|w| w[0].ramp_id >= w[1].ramp_id) {
            return Err(ControllerError::InvalidExitConfig(
                "ramp ids must be unique and sorted".into(),
            ));
        }
        match self
            .ramps
            .iter()
            .find(|r| !(0.0..=1.0).contains(&r.threshold))
        {
            Some(r) => Err(ControllerError::InvalidExitConfig(format!(
                "ramp {} threshold {} is outside [0, 1]",
                r.ramp_id, r.threshold
            ))),
            None => Ok(()),
        }
    }

    /// Active ramp ids in depth order.
    pub fn ramp_ids(&self) -> Vec<u32> {
        self.ramps.iter().map(|r| r.ramp_id).collect()
    }

    /// Thresholds in depth order.
    pub fn thresholds(&self) -> Vec<f32> {
        self.ramps.iter().map(|r| r.threshold).collect()
    }

    /// The threshold of an active ramp.
    pub fn threshold(&self, ramp_id: u32) -> Option<f32> {
        self.ramps
            .iter()
            .find(|r| r.ramp_id == ramp_id)
            .map(|r| r.threshold)
    }

    /// Index (into `ramps`) of the ramp this record exits at, or `None` if it runs to the
    /// end. Ramps whose output the record lacks cannot release it.
    pub fn first_exit(&self, record: &FeedbackRecord) -> Option<usize> {
        self.ramps.iter().position(|r| {
            record
                .output(r.ramp_id)
                .is_some_and(|o| exits(o.confidence, r.threshold))
        })
    }

    /// Same active ramps and thresholds, ignoring the version.
    pub fn same_policy(&self, other: &Self) -> bool {
        self.ramps == other.ramps
    }

    /// Renders `id:threshold` pairs, for decisions and logs.
    pub fn describe(&self) -> String {
        describe_thresholds(&self.ramps)
    }
}

/// `id:threshold` pairs separated by commas, e.g. `0:0.9120,3:0.999962,5:1.0000`.
pub fn describe_thresholds(ramps: &[RampThreshold]) -> String {
    ramps
        .iter()
        .map(|r| format!("{}:{}", r.ramp_id, format_threshold(r.threshold)))
        .collect::<Vec<_>>()
        .join(",")
}

/// A threshold for people: four decimals, six when it is open but within 0.001 of never
/// exiting (real thresholds often are, and `1.0000` would read as shut).
pub fn format_threshold(threshold: f32) -> String {
    if (0.999..NEVER_EXIT).contains(&threshold) {
        format!("{threshold:.6}")
    } else {
        format!("{threshold:.4}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{RampObservation, RampOutput};

    fn record(confs: &[(u32, f32)]) -> FeedbackRecord {
        FeedbackRecord {
            request_id: 1,
            ramps: confs
                .iter()
                .map(|&(ramp_id, confidence)| RampObservation {
                    ramp_id,
                    output: RampOutput {
                        label: 0,
                        confidence,
                        entropy: 0.0,
                    },
                })
                .collect(),
            final_label: 0,
            batch_size: 1,
            queue_us: 0,
            exec_us: 0,
        }
    }

    #[test]
    fn never_exit_holds_even_for_saturated_confidence() {
        let cfg = ExitConfig::never_exit(1, &[0, 2]).unwrap();
        assert_eq!(cfg.first_exit(&record(&[(0, 1.0), (2, 1.0)])), None);
    }

    #[test]
    fn exits_at_first_ramp_strictly_above_threshold() {
        let cfg = ExitConfig::new(
            1,
            vec![
                RampThreshold {
                    ramp_id: 4,
                    threshold: 0.5,
                },
                RampThreshold {
                    ramp_id: 1,
                    threshold: 0.9,
                },
            ],
        )
        .unwrap();
        assert_eq!(cfg.ramp_ids(), vec![1, 4]);
        assert_eq!(cfg.first_exit(&record(&[(1, 0.9), (4, 0.6)])), Some(1));
        assert_eq!(cfg.first_exit(&record(&[(1, 0.95), (4, 0.6)])), Some(0));
        assert_eq!(cfg.first_exit(&record(&[(1, f32::NAN), (4, 0.5)])), None);
        // A ramp missing from the record cannot release it.
        assert_eq!(cfg.first_exit(&record(&[(4, 0.6)])), Some(1));
    }

    #[test]
    fn rejects_out_of_range_and_duplicate_ramps() {
        let t = |ramp_id, threshold| RampThreshold { ramp_id, threshold };
        assert!(ExitConfig::new(1, vec![t(0, 1.5)]).is_err());
        assert!(ExitConfig::new(1, vec![t(0, f32::NAN)]).is_err());
        assert!(ExitConfig::new(1, vec![t(2, 0.5), t(2, 0.6)]).is_err());
    }
}
