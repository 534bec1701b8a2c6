//! Ramp heads (pool → linear) and what any head's softmax tells us.

use tch::{Kind, Tensor, nn, nn::Module};

/// A ramp: pools the backbone's activation at its cut point and classifies it.
/// Images are average-pooled to a `grid × grid` map (`grid = 1` is global average
/// pooling), text is mean-pooled over its unmasked tokens.
#[derive(Debug)]
pub struct Ramp {
    linear: nn::Linear,
    grid: i64,
}

impl Ramp {
    /// A fresh ramp reading `width` channels pooled to `grid × grid` and predicting
    /// `classes` classes.
    pub fn new(path: &nn::Path, width: i64, grid: i64, classes: i64) -> Self {
        let features = width * grid * grid;
        Self {
            linear: nn::linear(path / "fc", features, classes, Default::default()),
            grid,
        }
    }

    /// Logits from an activation at the ramp's cut point.
    pub fn forward(&self, activation: &Tensor, mask: Option<&Tensor>) -> Tensor {
        self.linear.forward(&self.pool(activation, mask))
    }

    /// Pooled features of an activation, as `forward_pooled` takes them.
    pub fn pool(&self, activation: &Tensor, mask: Option<&Tensor>) -> Tensor {
        pool(activation, mask, self.grid)
    }

    /// Logits from already pooled features (used to train ramps on cached features).
    pub fn forward_pooled(&self, pooled: &Tensor) -> Tensor {
        self.linear.forward(pooled)
    }
}

/// `[B, C, H, W]` → averages over a `grid × grid` partition of H × W, flattened to
/// `[B, C·grid²]`; `[B, T, C]` with mask `[B, T]` → mean over the unmasked tokens, `[B, C]`.
pub fn pool(activation: &Tensor, mask: Option<&Tensor>, grid: i64) -> Tensor {
    match mask {
        None if grid == 1 => activation.mean_dim([2i64, 3].as_slice(), false, Kind::Float),
        None => activation.adaptive_avg_pool2d([grid, grid]).flatten(1, -1),
        Some(mask) => {
            let m = mask.to_kind(Kind::Float).unsqueeze(-1);
            let summed = (activation * &m).sum_dim_intlist([1i64].as_slice(), false, Kind::Float);
            summed
                / m.sum_dim_intlist([1i64].as_slice(), false, Kind::Float)
                    .clamp_min(1e-9)
        }
    }
}

/// Per-example label, confidence (max softmax) and entropy (nats) of one head on a batch.
#[derive(Debug, Clone, PartialEq)]
pub struct HeadOutput {
    pub labels: Vec<u32>,
    pub confidences: Vec<f32>,
    pub entropies: Vec<f32>,
}

impl HeadOutput {
    /// Reads a batch of logits `[B, classes]` (moves them to the CPU).
    pub fn from_logits(logits: &Tensor) -> Self {
        let log_p = logits.to_kind(Kind::Float).log_softmax(-1, Kind::Float);
        let p = log_p.exp();
        let (confidence, label) = p.max_dim(-1, false);
        let entropy = -(&p * &log_p).sum_dim_intlist([-1i64].as_slice(), false, Kind::Float);
        let to_f32 =
            |t: Tensor| Vec::<f32>::try_from(t.to_device(tch::Device::Cpu)).expect("float tensor");
        let labels: Vec<i64> =
            Vec::try_from(label.to_device(tch::Device::Cpu)).expect("int tensor");
        Self {
            labels: labels
                .into_iter()
                .map(|l| u32::try_from(l).expect("class index"))
                .collect(),
            confidences: to_f32(confidence),
            entropies: to_f32(entropy),
        }
    }

    /// Batch size.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// True for an empty batch.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }
}
