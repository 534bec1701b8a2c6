//! Training: the backbone on labels (for CNNs with every ramp learning the labels beside it:
//! deep supervision), then every ramp with the backbone frozen on the backbone's own
//! predictions (distillation), as Apparate prepares its ramps.

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
    /// Weight of the ramps' mean loss on the true labels while the CNN backbone trains
    /// (deep supervision); 0 trains the backbone on its final loss alone.
    pub deep_supervision: f64,
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
            deep_supervision: 1.0,
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
    // Deep supervision: the ramps, on the true labels, train beside the backbone.
    let mut ramp_opt = if cfg.deep_supervision > 0.0 {
        Some(sgd.build(&model.ramps_vs, cfg.lr)?)
    } else {
        None
    };
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
            let mut ramp_losses = Vec::new();
            let logits = model.forward_train(&x, |i, h| {
                if ramp_opt.is_some() {
                    let ramp = &model.ramps[i];
                    ramp_losses.push(
                        ramp.forward_pooled(&ramp.pool(h, None))
                            .cross_entropy_for_logits(&y),
                    );
                }
            });
            let mut loss = logits.cross_entropy_for_logits(&y);
            if let Some(ramp_opt) = ramp_opt.as_mut() {
                ramp_opt.set_lr(lr_at(cfg.lr, step, total));
                ramp_opt.zero_grad();
                loss += mean(ramp_losses) * cfg.deep_supervision;
            }
            opt.backward_step(&loss);
            if let Some(ramp_opt) = ramp_opt.as_mut() {
                ramp_opt.step();
            }
            step += 1;
            progress(step, total, loss.double_value(&[]));
        }
    }
    Ok(())
}

/// Trains every ramp on `inputs` (the bootstrap split), with the backbone frozen,
/// to predict the backbone's own final prediction. Activations are pooled once and
/// cached, so each ramp trains on `[n, features]` rows.
pub fn train_ramps(
    model: &mut EarlyExitModel,
    inputs: &Tensor,
    cfg: &TrainConfig,
    progress: Progress<'_>,
) -> Result<()> {
    let mut per_cut: Vec<Vec<Tensor>> = (0..model.cuts().len()).map(|_| Vec::new()).collect();
    let mut last = Vec::new();
    for x in inputs.split(512, 0) {
        let (cuts, fin) = model.pooled(&x, None);
        for (all, f) in per_cut.iter_mut().zip(cuts) {
            all.push(f);
        }
        last.push(fin);
    }
    let features: Vec<Tensor> = per_cut.iter().map(|parts| Tensor::cat(parts, 0)).collect();
    let targets = final_predictions(model, &Tensor::cat(&last, 0));
    fit_ramps(model, &features, &targets, cfg, progress)
}

/// The final head's predictions on pooled final features: the distillation targets.
pub(crate) fn final_predictions(model: &EarlyExitModel, last: &Tensor) -> Tensor {
    let _guard = tch::no_grad_guard();
    model.head.forward_pooled(last).argmax(-1, false)
}

/// Fits every ramp `i` on cached pooled `features[i]` to `targets` (class ids):
/// `cfg.ramp_epochs` passes of Adam, batches of 256.
pub(crate) fn fit_ramps(
    model: &mut EarlyExitModel,
    features: &[Tensor],
    targets: &Tensor,
    cfg: &TrainConfig,
    progress: Progress<'_>,
) -> Result<()> {
    tch::manual_seed(cfg.seed);
    let mut opt = nn::Adam::default().build(&model.ramps_vs, 1e-2)?;
    let ramps = &model.ramps;
    fit(
        &mut opt,
        targets,
        cfg.ramp_epochs,
        |idx| {
            // One optimiser over all ramps: their parameters and losses are independent.
            mean(features.iter().zip(ramps).map(|(f, ramp)| {
                ramp.forward_pooled(&f.index_select(0, idx))
                    .cross_entropy_for_logits(&targets.index_select(0, idx))
            }))
        },
        progress,
    );
    model.fold_ramp_pools();
    Ok(())
}

/// Fits the final head (for MiniLM: the only trained part of the original model) on
/// cached pooled final features to the true `labels`.
pub(crate) fn fit_head(
    model: &mut EarlyExitModel,
    features: &Tensor,
    labels: &Tensor,
    epochs: u32,
    seed: i64,
    progress: Progress<'_>,
) -> Result<()> {
    tch::manual_seed(seed);
    let mut opt = nn::Adam::default().build(&model.backbone_vs, 1e-2)?;
    let head = &model.head;
    fit(
        &mut opt,
        labels,
        epochs,
        |idx| {
            head.forward_pooled(&features.index_select(0, idx))
                .cross_entropy_for_logits(&labels.index_select(0, idx))
        },
        progress,
    );
    Ok(())
}

/// Shuffled mini-batches of 256 rows for `epochs` passes; `loss(rows)` builds each loss.
fn fit(
    opt: &mut nn::Optimizer,
    targets: &Tensor,
    epochs: u32,
    loss: impl Fn(&Tensor) -> Tensor,
    progress: Progress<'_>,
) {
    let n = targets.size()[0];
    for epoch in 0..epochs {
        let order = Tensor::randperm(n, (Kind::Int64, targets.device()));
        let mut last = 0.0;
        for idx in order.split(256, 0) {
            let l = loss(&idx);
            opt.backward_step(&l);
            last = l.double_value(&[]);
        }
        progress(u64::from(epoch) + 1, u64::from(epochs), last);
    }
}

/// The mean of scalar losses (all on one device); zero for none.
fn mean(losses: impl IntoIterator<Item = Tensor>) -> Tensor {
    let losses: Vec<Tensor> = losses.into_iter().collect();
    if losses.is_empty() {
        return Tensor::from(0f32);
    }
    Tensor::stack(&losses, 0).mean(Kind::Float)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::CnnSpec;

    /// The ramps' weights, flattened into one vector.
    fn ramp_weights(model: &EarlyExitModel) -> Tensor {
        let vars = model.ramps_vs.variables();
        let mut names: Vec<&String> = vars.keys().collect();
        names.sort();
        Tensor::cat(
            &names
                .iter()
                .map(|n| vars[*n].flatten(0, -1))
                .collect::<Vec<_>>(),
            0,
        )
    }

    #[test]
    fn deep_supervision_trains_the_ramps_with_the_backbone_and_zero_leaves_them() {
        let images = Tensor::rand([32, 1, 28, 28], (Kind::Float, Device::Cpu));
        let labels = Tensor::randint(10, [32], (Kind::Int64, Device::Cpu));
        for (weight, moves) in [(1.0, true), (0.0, false)] {
            tch::manual_seed(1);
            let mut model = EarlyExitModel::cnn(CnnSpec::resnet(10), Device::Cpu);
            let before = ramp_weights(&model).copy();
            let cfg = TrainConfig {
                epochs: 1,
                batch_size: 16,
                deep_supervision: weight,
                ..TrainConfig::default()
            };
            train_backbone(&mut model, &images, &labels, &cfg, &mut |_, _, l| {
                assert!(l.is_finite())
            })
            .unwrap();
            assert_eq!(
                !ramp_weights(&model).equal(&before),
                moves,
                "weight {weight}"
            );
        }
    }
}
