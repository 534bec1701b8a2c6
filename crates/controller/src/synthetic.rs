//! Deterministic synthetic traces with drifting difficulty, for tests, benches and demos.
//!
//! Each request has a difficulty `h`; a ramp at relative depth `d` has margin
//! `10 (d − h)`, and its confidence is `1/C + (1 − 1/C)·σ(0.8·margin + noise + 1)` with
//! logistic noise: deep ramps on easy inputs are confident, shallow ramps on hard inputs
//! are not. The ramp agrees with the final output with probability
//! `confidence^error_exponent`: below 1 the ramp is under-confident (safe), above 1 it is
//! over-confident, as corrupted inputs make real models — thresholds tuned before such a
//! phase then let errors through. Everything is driven by a
//! SplitMix64 generator seeded from the spec, so a spec always yields the same trace.

use serde::{Deserialize, Serialize};

use crate::record::RampOutput;
use crate::replay::{Trace, TraceRequest};
use crate::rng::SplitMix64;

/// A synthetic workload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyntheticSpec {
    /// PRNG seed.
    pub seed: u64,
    /// Candidate ramps (evenly spaced cut points).
    pub candidate_ramps: u32,
    /// Number of classes.
    #[serde(default = "default_classes")]
    pub classes: u32,
    /// Batch size recorded for every request.
    #[serde(default = "default_batch_size")]
    pub batch_size: u32,
    /// Phases, played in order.
    pub phases: Vec<PhaseSpec>,
}

/// A stretch of the workload with one difficulty mix.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PhaseSpec {
    /// Label for reports.
    pub name: String,
    /// Requests in the phase.
    pub requests: usize,
    /// Difficulty is uniform in `[difficulty_min, difficulty_max]` (0 = trivial, 1 = hardest).
    pub difficulty_min: f64,
    /// Upper end of the difficulty range.
    pub difficulty_max: f64,
    /// A ramp agrees with the final output with probability `confidence^error_exponent`.
    #[serde(default = "default_error_exponent")]
    pub error_exponent: f64,
}

fn default_classes() -> u32 {
    10
}

fn default_batch_size() -> u32 {
    8
}

fn default_error_exponent() -> f64 {
    0.5
}

impl SyntheticSpec {
    /// A three-phase easy → hard → easy workload of `chunks_per_phase × 64` requests each.
    pub fn drifting(seed: u64, candidate_ramps: u32, chunks_per_phase: usize) -> Self {
        let phase = |name: &str, lo, hi, exponent| PhaseSpec {
            name: name.into(),
            requests: chunks_per_phase * 64,
            difficulty_min: lo,
            difficulty_max: hi,
            error_exponent: exponent,
        };
        Self {
            seed,
            candidate_ramps,
            classes: default_classes(),
            batch_size: default_batch_size(),
            phases: vec![
                phase("easy", 0.0, 0.5, 0.5),
                phase("hard", 0.3, 1.0, 2.0),
                phase("easy_again", 0.0, 0.5, 0.5),
            ],
        }
    }

    /// Generates the trace.
    pub fn generate(&self) -> Trace {
        let mut rng = SplitMix64::new(self.seed);
        let classes = self.classes.max(2);
        let r = self.candidate_ramps;
        let mut requests = Vec::new();
        for phase in &self.phases {
            for _ in 0..phase.requests {
                let span = phase.difficulty_max - phase.difficulty_min;
                let h = phase.difficulty_min + span * rng.unit();
                let final_label = below(&mut rng, classes);
                let ramps = (0..r)
                    .map(|k| {
                        let depth = f64::from(k + 1) / f64::from(r + 1);
                        let margin = 10.0 * (depth - h);
                        ramp_output(&mut rng, margin, phase.error_exponent, final_label, classes)
                    })
                    .collect();
                requests.push(TraceRequest {
                    request_id: requests.len() as u64,
                    batch_size: self.batch_size,
                    final_label,
                    ramps,
                });
            }
        }
        Trace { requests }
    }
}

fn ramp_output(
    rng: &mut SplitMix64,
    margin: f64,
    exponent: f64,
    final_label: u32,
    classes: u32,
) -> RampOutput {
    let floor = 1.0 / f64::from(classes);
    let confidence = floor + (1.0 - floor) * sigmoid(0.8 * margin + logistic(rng) + 1.0);
    let agree = rng.unit() < confidence.powf(exponent);
    let label = if agree {
        final_label
    } else {
        (final_label + 1 + below(rng, classes - 1)) % classes
    };
    // Entropy of a softmax with this maximum and the rest spread evenly.
    let rest = (1.0 - confidence) / f64::from(classes - 1);
    let entropy = -(confidence * confidence.ln())
        - if rest > 0.0 {
            f64::from(classes - 1) * rest * rest.ln()
        } else {
            0.0
        };
    RampOutput {
        label,
        confidence: confidence as f32,
        entropy: entropy as f32,
    }
}

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

fn below(rng: &mut SplitMix64, n: u32) -> u32 {
    u32::try_from(rng.below(u64::from(n.max(1)))).expect("below a u32")
}

fn logistic(rng: &mut SplitMix64) -> f64 {
    let u = rng.unit();
    (u / (1.0 - u)).ln()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_trace_and_deeper_ramps_agree_more() {
        let spec = SyntheticSpec::drifting(7, 8, 4);
        let a = spec.generate();
        assert_eq!(a, spec.generate());
        assert_eq!(a.len(), 3 * 4 * 64);
        let agree = |k: usize| {
            a.requests
                .iter()
                .filter(|r| r.ramps[k].label == r.final_label)
                .count()
        };
        assert!(agree(7) > agree(0));
        assert!(
            a.requests
                .iter()
                .flat_map(|r| &r.ramps)
                .all(|o| (0.0..=1.0).contains(&o.confidence))
        );
    }
}
