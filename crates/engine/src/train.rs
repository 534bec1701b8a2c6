//! Training: the backbone on labels, then every ramp with the backbone frozen on the
//! backbone's own predictions (distillation), as Apparate prepares its ramps.

use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor, nn, nn::OptimizerConfig};

use crate::{EarlyExitModel, Result};

/// Training hyper-parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    /// Passes over the training set for the backbone.
    pub epochs: u32,
    pub batch_size: i64,
    /// Peak learning rate of SGD with Nesterov momentum (warm-up, then cosine decay).
    pub lr: f64,
    pub weight_decay: f64,
    /// Passes over the bootstrap split for each ramp.
    pub ramp_epochs: u32,
    pub seed: i64,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            epochs: 4,
            batch_size: 128,
            lr: 0.1,
            weight_decay: 5e-4,
            ramp_epochs: 40,
            seed: 7,
        }
    }
}

/// Progress callback: (step, total steps, last loss).
pub type Progress<'a> = &'a mut dyn FnMut(u64, u64, f64);

/// Trains the backbone and its final head on `(images, labels)` with horizontal-flip
/// augmentation. Inputs stay on the CPU; batches move to the model's device.
pub fn train_backbone(
    model: &mut EarlyExitModel,
    images: &Tensor,
    labels: &Tensor,
    cfg: &TrainConfig,
    progress: Progress<'_>,
) -> Result<()> {
    tch::manual_seed(cfg.seed);
    let device = model.device();
    let sgd = nn::Sgd {
        momentum: 0.9,
        dampening: 0.0,
        wd: cfg.weight_decay,
        nesterov: true,
    };
    let mut opt = sgd.build(&model.backbone_vs, cfg.lr)?;
    let n = images.size()[0];
    let per_epoch = u64::try_from((n + cfg.batch_size - 1) / cfg.batch_size).expect("positive");
    let total = per_epoch * u64::from(cfg.epochs);
    let mut step = 0u64;
    for _ in 0..cfg.epochs {
        let order = Tensor::randperm(n, (Kind::Int64, Device::Cpu));
        for idx in order.split(cfg.batch_size, 0) {
            opt.set_lr(lr_at(cfg.lr, step, total));
            let x = flip_half(&images.index_select(0, &idx)).to_device(device);
            let y = labels.index_select(0, &idx).to_device(device);
            let loss = model.forward_train(&x).cross_entropy_for_logits(&y);
            opt.backward_step(&loss);
            step += 1;
            progress(step, total, loss.double_value(&[]));
        }
    }
    Ok(())
}

/// Trains every ramp on `inputs` (the bootstrap split), with the backbone frozen,
/// to predict the backbone's own final prediction. Activations are pooled once and
/// cached, so each ramp trains on `[n, width]` features.
pub fn train_ramps(
    model: &mut EarlyExitModel,
    inputs: &Tensor,
    cfg: &TrainConfig,
    progress: Progress<'_>,
) -> Result<()> {
    tch::manual_seed(cfg.seed);
    let device = model.device();
    let (features, targets) = pooled_features(model, inputs);
    let mut opt = nn::Adam::default().build(&model.ramps_vs, 1e-2)?;
    let n = targets.size()[0];
    let total = u64::from(cfg.ramp_epochs);
    for epoch in 0..cfg.ramp_epochs {
        let order = Tensor::randperm(n, (Kind::Int64, device));
        let mut last = 0.0;
        for idx in order.split(256, 0) {
            // One optimiser over all ramps: their parameters and losses are independent.
            let loss = features
                .iter()
                .zip(&model.ramps)
                .map(|(f, ramp)| {
                    ramp.forward_pooled(&f.index_select(0, &idx))
                        .cross_entropy_for_logits(&targets.index_select(0, &idx))
                })
                .fold(Tensor::zeros([], (Kind::Float, device)), |a, b| a + b);
            opt.backward_step(&loss);
            last = loss.double_value(&[]) / features.len().max(1) as f64;
        }
        progress(u64::from(epoch) + 1, total, last);
    }
    Ok(())
}

/// Pooled activations at every cut point and the final predictions, for `inputs`.
fn pooled_features(model: &EarlyExitModel, inputs: &Tensor) -> (Vec<Tensor>, Tensor) {
    let _guard = tch::no_grad_guard();
    let mut per_cut: Vec<Vec<Tensor>> = (0..model.cuts().len()).map(|_| Vec::new()).collect();
    let mut finals = Vec::new();
    for x in inputs.split(512, 0) {
        let h = model.walk(&x, None, |i, h| {
            per_cut[i].push(model.ramps[i].pool(h, None))
        });
        finals.push(model.backbone.head(&h, None, false).argmax(-1, false));
    }
    (
        per_cut.iter().map(|parts| Tensor::cat(parts, 0)).collect(),
        Tensor::cat(&finals, 0),
    )
}

/// Linear warm-up over the first 15 % of steps, then cosine decay to zero.
fn lr_at(peak: f64, step: u64, total: u64) -> f64 {
    let t = step as f64 / total.max(1) as f64;
    if t < 0.15 {
        peak * (t / 0.15).max(0.02)
    } else {
        peak * 0.5 * (1.0 + (std::f64::consts::PI * (t - 0.15) / 0.85).cos())
    }
}

/// Mirrors a random half of the images left to right.
fn flip_half(x: &Tensor) -> Tensor {
    let flip = Tensor::rand([x.size()[0], 1, 1, 1], (Kind::Float, x.device())).lt(0.5);
    x.flip([3]).where_self(&flip, x)
}
