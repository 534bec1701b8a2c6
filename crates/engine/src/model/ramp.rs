//! Ramp heads (pool → linear) and what any head's softmax tells us.

use tch::{Kind, Tensor, nn, nn::Module};

use super::CutPoint;

/// A ramp: pools the backbone's activation at its cut point and classifies it.
/// Images are average-pooled to a `grid × grid` map (`grid = 1` is global average
/// pooling), text is mean-pooled over its unmasked tokens.
#[derive(Debug)]
pub struct Ramp {
    linear: nn::Linear,
    /// `[side², grid²]` averaging matrix for image cuts with `grid > 1`. On the CPU one
    /// matrix product pools several times faster than libtorch's adaptive pooling kernel,
    /// which kept all ramps together over 10 % of the ResNet's cost.
    pool_matrix: Option<Tensor>,
}

impl Ramp {
    /// A fresh ramp for `cut` (its channels pooled to `grid × grid` when it is an image
    /// cut) predicting `classes` classes.
    pub fn new(path: &nn::Path, cut: &CutPoint, grid: i64, classes: i64) -> Self {
        let (features, pool_matrix) = if grid > 1 && cut.side > 0 {
            (
                cut.width * grid * grid,
                Some(pool_matrix(cut.side, grid, path.device())),
            )
        } else {
            (cut.width, None)
        };
        Self {
            linear: nn::linear(path / "fc", features, classes, Default::default()),
            pool_matrix,
        }
    }

    /// Logits from an activation at the ramp's cut point.
    pub fn forward(&self, activation: &Tensor, mask: Option<&Tensor>) -> Tensor {
        self.linear.forward(&self.pool(activation, mask))
    }

    /// Pooled features of an activation, as `forward_pooled` takes them.
    pub fn pool(&self, activation: &Tensor, mask: Option<&Tensor>) -> Tensor {
        match (&self.pool_matrix, mask) {
            (Some(p), None) => activation.flatten(2, -1).matmul(p).flatten(1, -1),
            _ => pool(activation, mask),
        }
    }

    /// Logits from already pooled features (used to train ramps on cached features).
    pub fn forward_pooled(&self, pooled: &Tensor) -> Tensor {
        self.linear.forward(pooled)
    }
}

/// The matrix that averages a row-major `side × side` map over a `grid × grid`
/// partition (cells of ⌊side/grid⌋ or ⌈side/grid⌉ pixels).
fn pool_matrix(side: i64, grid: i64, device: tch::Device) -> Tensor {
    let n = usize::try_from(side * side).expect("small map");
    let cells = usize::try_from(grid * grid).expect("small grid");
    let mut m = vec![0f32; n * cells];
    let cell = |pos: i64| pos * grid / side;
    let mut count = vec![0f32; cells];
    for pixel in 0..n {
        let (row, col) = (pixel as i64 / side, pixel as i64 % side);
        let c = usize::try_from(cell(row) * grid + cell(col)).expect("cell index");
        m[pixel * cells + c] = 1.0;
        count[c] += 1.0;
    }
    for (i, v) in m.iter_mut().enumerate() {
        *v /= count[i % cells];
    }
    Tensor::from_slice(&m)
        .view([side * side, grid * grid])
        .to_device(device)
}

/// Global pooling: `[B, C, H, W]` → mean over H and W; `[B, T, C]` with mask `[B, T]` →
/// mean over the unmasked tokens. Returns `[B, C]`.
pub fn pool(activation: &Tensor, mask: Option<&Tensor>) -> Tensor {
    match mask {
        None => activation.mean_dim([2i64, 3].as_slice(), false, Kind::Float),
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

#[cfg(test)]
mod tests {
    use tch::{Device, Kind, Tensor};

    use super::pool_matrix;

    #[test]
    fn pool_matrix_averages_like_adaptive_pooling_on_divisible_maps() {
        for (side, grid) in [(28, 4), (14, 2), (8, 4)] {
            let x = Tensor::rand([3, 5, side, side], (Kind::Float, Device::Cpu));
            let by_matrix = x
                .flatten(2, -1)
                .matmul(&pool_matrix(side, grid, Device::Cpu))
                .flatten(1, -1);
            let by_kernel = x.adaptive_avg_pool2d([grid, grid]).flatten(1, -1);
            assert!(
                by_matrix.allclose(&by_kernel, 1e-5, 1e-6, false),
                "side {side}, grid {grid}"
            );
        }
    }

    #[test]
    fn pool_matrix_covers_every_pixel_of_uneven_maps_once() {
        // 7 pixels into 4 cells: every column sums to 1 (an average) and every pixel is used.
        let p = pool_matrix(7, 4, Device::Cpu);
        let ones = Tensor::ones([16], (Kind::Float, Device::Cpu));
        assert!(
            p.sum_dim_intlist([0i64].as_slice(), false, Kind::Float)
                .allclose(&ones, 1e-6, 1e-6, false)
        );
        assert_eq!(p.gt(0.0).sum(Kind::Int64).int64_value(&[]), 49);
    }
}
