//! Latency profiler: median time for the backbone to reach each cut point, for each
//! ramp, and for the whole model, per batch size, on the serving device. Its output is
//! the controller's cost model.

use std::time::Instant;

use apparate_controller::{LatencyProfile, RampProfile};
use tch::{Device, Tensor};

use crate::EarlyExitModel;

/// What to measure.
#[derive(Debug, Clone, PartialEq)]
pub struct ProfileConfig {
    /// Batch sizes, ascending (default 1, 2, 4, …, 64).
    pub batch_sizes: Vec<u32>,
    /// Timed repetitions per batch size; the median is kept.
    pub reps: usize,
    /// Untimed repetitions first.
    pub warmup: usize,
}

impl Default for ProfileConfig {
    fn default() -> Self {
        Self {
            batch_sizes: vec![1, 2, 4, 8, 16, 32, 64],
            reps: 30,
            warmup: 3,
        }
    }
}

/// Profiles `model` on inputs made by repeating `example` (one input, with its batch
/// dimension of 1). `progress(done, total)` is called after each batch size.
pub fn profile_latency(
    model: &EarlyExitModel,
    example: &Tensor,
    mask: Option<&Tensor>,
    cfg: &ProfileConfig,
    mut progress: impl FnMut(u64, u64),
) -> LatencyProfile {
    let _guard = tch::no_grad_guard();
    let device = model.device();
    let cuts = model.cuts().len();
    let mut full_model_ms = Vec::new();
    let mut backbone_ms = vec![Vec::new(); cuts];
    let mut ramp_ms = vec![Vec::new(); cuts];
    for (done, &b) in cfg.batch_sizes.iter().enumerate() {
        let x = repeat_batch(example, b).to_device(device);
        let m = mask.map(|m| repeat_batch(m, b).to_device(device));
        let mut full = Vec::with_capacity(cfg.reps);
        let mut reach = vec![Vec::with_capacity(cfg.reps); cuts];
        let mut ramp = vec![Vec::with_capacity(cfg.reps); cuts];
        for rep in 0..cfg.warmup + cfg.reps {
            let timed = rep >= cfg.warmup;
            // Each ramp runs right after its stage, as in serving (its input still in
            // cache); its time is kept out of the backbone's cumulative time.
            let start = Instant::now();
            let mut in_ramps = 0.0;
            let h = model.walk(&x, m.as_ref(), |i, h| {
                sync(device);
                let reached = ms_since(start) - in_ramps;
                let t = Instant::now();
                let _ = model.ramps[i].forward(h, m.as_ref());
                sync(device);
                let cost = ms_since(t);
                in_ramps += cost;
                if timed {
                    reach[i].push(reached);
                    ramp[i].push(cost);
                }
            });
            let _ = model.head.forward(&h, m.as_ref());
            sync(device);
            if timed {
                full.push(ms_since(start) - in_ramps);
            }
        }
        full_model_ms.push(median(full));
        for i in 0..cuts {
            backbone_ms[i].push(median(std::mem::take(&mut reach[i])));
            ramp_ms[i].push(median(std::mem::take(&mut ramp[i])));
        }
        progress(done as u64 + 1, cfg.batch_sizes.len() as u64);
    }
    let ramps = model
        .cuts()
        .iter()
        .map(|c| RampProfile {
            id: c.id,
            name: c.name.clone(),
            backbone_ms: std::mem::take(&mut backbone_ms[c.id as usize]),
            ramp_ms: std::mem::take(&mut ramp_ms[c.id as usize]),
        })
        .collect();
    LatencyProfile {
        batch_sizes: cfg.batch_sizes.clone(),
        full_model_ms,
        ramps,
    }
}

fn repeat_batch(one: &Tensor, b: u32) -> Tensor {
    let mut reps = vec![1i64; one.dim()];
    reps[0] = i64::from(b);
    one.repeat(reps.as_slice())
}

/// Waits for queued GPU work so wall-clock times mean something.
fn sync(device: Device) {
    if let Device::Cuda(i) = device {
        tch::Cuda::synchronize(i64::try_from(i).expect("gpu index"));
    }
}

fn ms_since(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1e3
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}
