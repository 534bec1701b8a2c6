//! Latency profile: what reaching each cut point and running each ramp costs, per batch size.
//!
//! Lookups between profiled batch sizes interpolate linearly; outside the profiled range
//! they clamp to the nearest end (the engine never batches beyond what it profiled, and
//! extrapolating a fixed-overhead curve below batch 1 makes no sense).

use serde::{Deserialize, Serialize};

use crate::error::{ControllerError, Result};

/// Profiled latencies of the full model and of every candidate ramp.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LatencyProfile {
    /// Profiled batch sizes, strictly increasing.
    pub batch_sizes: Vec<u32>,
    /// Full model latency (no ramps) at each batch size, in milliseconds.
    pub full_model_ms: Vec<f64>,
    /// Every candidate ramp, ordered by depth; `ramps[i].id == i`.
    pub ramps: Vec<RampProfile>,
}

/// Profiled latencies of one candidate ramp.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RampProfile {
    /// Candidate index, 0 = shallowest cut point.
    pub id: u32,
    /// Human-readable position, e.g. `layer2.1`.
    pub name: String,
    /// Backbone time from the input to this ramp's cut point, per batch size, in ms.
    pub backbone_ms: Vec<f64>,
    /// The ramp head's own cost, per batch size, in ms.
    pub ramp_ms: Vec<f64>,
}

/// Latencies of every way a request can leave the model under one active ramp set.
#[derive(Debug, Clone, PartialEq)]
pub struct PathCosts {
    /// The original model without ramps: the baseline savings are measured against.
    pub full_ms: f64,
    /// Exit at the k-th active ramp: backbone to its cut + all active ramp costs up to it.
    pub exit_ms: Vec<f64>,
    /// Each active ramp's own cost.
    pub ramp_ms: Vec<f64>,
    /// No exit: the full model plus every active ramp.
    pub no_exit_ms: f64,
}

impl LatencyProfile {
    /// Parses and validates a YAML profile.
    pub fn from_yaml_str(yaml: &str) -> Result<Self> {
        let profile: Self =
            serde_saphyr::from_str(yaml).map_err(|e| ControllerError::Yaml(e.to_string()))?;
        profile.validate()?;
        Ok(profile)
    }

    /// Renders the profile as YAML.
    pub fn to_yaml_string(&self) -> Result<String> {
        serde_saphyr::to_string(self).map_err(|e| ControllerError::Yaml(e.to_string()))
    }

    /// Checks shapes and values; every later lookup relies on this.
    pub fn validate(&self) -> Result<()> {
        let bad = |msg: String| Err(ControllerError::InvalidProfile(msg));
        let n = self.batch_sizes.len();
        if n == 0 {
            return bad("batch_sizes is empty".into());
        }
        if self.batch_sizes.windows(2).any(|w| w[0] >= w[1]) || self.batch_sizes[0] == 0 {
            return bad(format!(
                "batch_sizes must be positive and strictly increasing, got {:?}",
                self.batch_sizes
            ));
        }
        check_series("full_model_ms", &self.full_model_ms, n)?;
        if self.full_model_ms.iter().any(|&v| v <= 0.0) {
            return bad("full_model_ms must be positive".into());
        }
        for (i, ramp) in self.ramps.iter().enumerate() {
            if ramp.id as usize != i {
                return bad(format!(
                    "ramps must be listed by id 0..n in depth order: position {i} has id {}",
                    ramp.id
                ));
            }
            check_series("backbone_ms", &ramp.backbone_ms, n)
                .and_then(|()| check_series("ramp_ms", &ramp.ramp_ms, n))
                .map_err(|e| ControllerError::InvalidProfile(format!("ramp {i}: {e}")))?;
        }
        Ok(())
    }

    /// Number of candidate ramps.
    pub fn candidate_count(&self) -> u32 {
        self.ramps.len() as u32
    }

    /// The candidate ramp with this id, if any.
    pub fn ramp(&self, id: u32) -> Option<&RampProfile> {
        self.ramps.get(id as usize)
    }

    /// Full model latency at a batch size, in ms.
    pub fn full_ms(&self, batch_size: u32) -> f64 {
        self.lookup(&self.full_model_ms, batch_size)
    }

    /// Backbone time to reach ramp `id`'s cut point at a batch size, in ms
    /// (the full model's time for an unknown id).
    pub fn backbone_ms(&self, id: u32, batch_size: u32) -> f64 {
        match self.ramp(id) {
            Some(r) => self.lookup(&r.backbone_ms, batch_size),
            None => self.full_ms(batch_size),
        }
    }

    /// Ramp `id`'s own cost at a batch size, in ms (0 for an unknown id).
    pub fn ramp_ms(&self, id: u32, batch_size: u32) -> f64 {
        self.ramp(id)
            .map_or(0.0, |r| self.lookup(&r.ramp_ms, batch_size))
    }

    /// Latency of every exit path under the active ramps `active` (sorted by depth).
    pub fn path_costs(&self, active: &[u32], batch_size: u32) -> PathCosts {
        let full_ms = self.full_ms(batch_size);
        let ramp_ms: Vec<f64> = active
            .iter()
            .map(|&id| self.ramp_ms(id, batch_size))
            .collect();
        let mut ramps_so_far = 0.0;
        let exit_ms = active
            .iter()
            .zip(&ramp_ms)
            .map(|(&id, own)| {
                ramps_so_far += own;
                self.backbone_ms(id, batch_size) + ramps_so_far
            })
            .collect();
        PathCosts {
            full_ms,
            exit_ms,
            ramp_ms,
            no_exit_ms: full_ms + ramps_so_far,
        }
    }

    /// The largest share of the full model's latency that the ramps in `ramps` add,
    /// over all profiled batch sizes.
    pub fn ramp_cost_share(&self, ramps: &[u32]) -> f64 {
        (0..self.batch_sizes.len())
            .map(|b| {
                let cost: f64 = ramps
                    .iter()
                    .filter_map(|&id| self.ramp(id))
                    .map(|r| r.ramp_ms[b])
                    .sum();
                cost / self.full_model_ms[b]
            })
            .fold(0.0, f64::max)
    }

    /// Checks that every id is a known candidate and the list is strictly increasing.
    pub fn check_ramps(&self, ramps: &[u32]) -> Result<()> {
        if ramps.windows(2).any(|w| w[0] >= w[1]) {
            return Err(ControllerError::InvalidExitConfig(format!(
                "ramp ids must be strictly increasing, got {ramps:?}"
            )));
        }
        match ramps.iter().find(|&&id| self.ramp(id).is_none()) {
            Some(id) => Err(ControllerError::InvalidExitConfig(format!(
                "ramp {id} is not a candidate (profile has {})",
                self.ramps.len()
            ))),
            None => Ok(()),
        }
    }

    /// A deterministic profile for tests, benches and demos: `candidates` evenly spaced cut
    /// points over a model taking `full_model_ms` at batch size 1, each ramp costing
    /// `ramp_share` of the full model. Larger batches cost proportionally more per batch.
    pub fn synthetic(candidates: u32, full_model_ms: f64, ramp_share: f64) -> Self {
        let batch_sizes = vec![1, 8, 32];
        let scale = |b: u32| 1.0 + 0.05 * f64::from(b - 1);
        let full: Vec<f64> = batch_sizes
            .iter()
            .map(|&b| full_model_ms * scale(b))
            .collect();
        let ramps = (0..candidates)
            .map(|id| {
                let depth = f64::from(id + 1) / f64::from(candidates + 1);
                RampProfile {
                    id,
                    name: format!("cut{id}"),
                    backbone_ms: full.iter().map(|f| f * depth).collect(),
                    ramp_ms: full.iter().map(|f| f * ramp_share).collect(),
                }
            })
            .collect();
        Self {
            batch_sizes,
            full_model_ms: full,
            ramps,
        }
    }

    fn lookup(&self, values: &[f64], batch_size: u32) -> f64 {
        let sizes = &self.batch_sizes;
        let pos = sizes.partition_point(|&b| b < batch_size);
        if pos == 0 {
            return values[0];
        }
        if pos == sizes.len() {
            return values[pos - 1];
        }
        let (lo, hi) = (sizes[pos - 1], sizes[pos]);
        if hi == batch_size {
            return values[pos];
        }
        let t = f64::from(batch_size - lo) / f64::from(hi - lo);
        values[pos - 1] + t * (values[pos] - values[pos - 1])
    }
}

fn check_series(name: &str, values: &[f64], len: usize) -> Result<()> {
    if values.len() != len {
        return Err(ControllerError::InvalidProfile(format!(
            "{name} has {} values for {len} batch sizes",
            values.len()
        )));
    }
    if let Some(v) = values.iter().find(|v| !v.is_finite() || **v < 0.0) {
        return Err(ControllerError::InvalidProfile(format!(
            "{name} holds {v}, expected a finite non-negative number of ms"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookups_interpolate_between_and_clamp_outside_profiled_sizes() {
        let p = LatencyProfile::synthetic(4, 10.0, 0.01);
        assert_eq!(p.full_ms(1), 10.0);
        assert_eq!(p.full_ms(0), 10.0);
        assert!((p.full_ms(8) - 13.5).abs() < 1e-9);
        let mid = p.full_ms(20);
        assert!(mid > p.full_ms(8) && mid < p.full_ms(32));
        assert_eq!(p.full_ms(1000), p.full_ms(32));
    }

    #[test]
    fn path_costs_add_every_active_ramp_up_to_the_exit() {
        let p = LatencyProfile::synthetic(4, 10.0, 0.01);
        let c = p.path_costs(&[1, 3], 1);
        assert!((c.exit_ms[0] - (4.0 + 0.1)).abs() < 1e-9);
        assert!((c.exit_ms[1] - (8.0 + 0.2)).abs() < 1e-9);
        assert!((c.no_exit_ms - 10.2).abs() < 1e-9);
    }

    #[test]
    fn yaml_round_trip_and_validation_name_the_problem() {
        let p = LatencyProfile::synthetic(3, 5.0, 0.02);
        let yaml = p.to_yaml_string().unwrap();
        assert_eq!(LatencyProfile::from_yaml_str(&yaml).unwrap(), p);
        let mut bad = p.clone();
        bad.ramps[1].ramp_ms.pop();
        let err = bad.validate().unwrap_err().to_string();
        assert!(err.contains("ramp 1") && err.contains("ramp_ms"), "{err}");
    }
}
