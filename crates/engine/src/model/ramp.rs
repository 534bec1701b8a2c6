//! Ramp heads (pool → linear) and what any head's softmax tells us.

use tch::{Kind, Tensor, nn, nn::Module};

use super::CutPoint;

/// A ramp: pools the backbone's activation at its cut point and classifies it.
/// Images are average-pooled to a `grid × grid` map (`grid = 1` is global average
/// pooling), text is mean-pooled over its unmasked tokens.
#[derive(Debug)]
pub struct Ramp {
    linear: nn::Linear,
    /// Grid-pooled image ramps on wide cuts read only their first channels (see
    /// [`MAX_RAMP_INPUT`]); `None` reads them all.
    channels: Option<i64>,
    /// `[side², grid²]` averaging matrix for image cuts with `grid > 1`. On the CPU one
    /// matrix product pools several times faster than libtorch's adaptive pooling kernel,
    /// which kept all ramps together over 10 % of the ResNet's cost.
    pool_matrix: Option<Tensor>,
    /// `[classes, C·side²]`: the pooling matrix folded into the linear weights (see
    /// [`Ramp::fold_pool`]); serving then costs one matrix product per ramp.
    folded: Option<Tensor>,
}

impl Ramp {
    /// A fresh ramp for `cut` (its channels pooled to `grid × grid` when it is an image
    /// cut) predicting `classes` classes.
    pub fn new(path: &nn::Path, cut: &CutPoint, grid: i64, classes: i64) -> Self {
        let (features, channels, pool_matrix) = if grid > 1 && cut.side > 0 {
            let read = cut
                .width
                .min((MAX_RAMP_INPUT / (cut.side * cut.side)).max(1));
            (
                read * grid * grid,
                (read < cut.width).then_some(read),
                Some(pool_matrix(cut.side, grid, path.device())),
            )
        } else {
            (cut.width, None, None)
        };
        let mut ramp = Self {
            linear: nn::linear(path / "fc", features, classes, Default::default()),
            channels,
            pool_matrix,
            folded: None,
        };
        ramp.fold_pool();
        ramp
    }

    /// A head on globally pooled features (mean over pixels, or over real tokens): the
    /// original model's final classifier in every family.
    pub fn global(path: &nn::Path, width: i64, classes: i64) -> Self {
        Self {
            linear: nn::linear(path / "fc", width, classes, Default::default()),
            channels: None,
            pool_matrix: None,
            folded: None,
        }
    }

    /// Logits from an activation at the ramp's cut point.
    pub fn forward(&self, activation: &Tensor, mask: Option<&Tensor>) -> Tensor {
        match (&self.folded, mask) {
            // `W · Xᵀ` (10 rows, batch columns) runs about twice as fast on the CPU as the
            // same product the other way round, `X · Wᵀ` with ten columns (a poor GEMM
            // shape); the transposed result is a view.
            (Some(w), None) => {
                let x = self.read(activation).flatten(1, -1);
                match &self.linear.bs {
                    Some(b) => b.unsqueeze(1).addmm(w, &x.tr()).tr(),
                    None => w.mm(&x.tr()).tr(),
                }
            }
            _ => self.linear.forward(&self.pool(activation, mask)),
        }
    }

    /// Folds grid pooling into the linear weights: pooling is linear, so
    /// `W · pool(x) = (W Pᵀ) · x` per channel, and one `[B, C·side²] × [C·side², classes]`
    /// product replaces the pooling product and the linear layer (cheaper on the CPU: see
    /// docs/decisions.md).
    /// The folded copy must follow the weights: the model refolds after training ramps
    /// and after loading a bundle ([`crate::EarlyExitModel::fold_ramp_pools`]).
    pub(crate) fn fold_pool(&mut self) {
        let Some(p) = &self.pool_matrix else {
            return;
        };
        let _guard = tch::no_grad_guard();
        let (classes, features) = self.linear.ws.size2().expect("linear weights are 2-d");
        let (pixels, cells) = p.size2().expect("pool matrix is 2-d");
        let channels = features / cells;
        let w = self
            .linear
            .ws
            .view([classes, channels, cells])
            .matmul(&p.tr())
            .reshape([classes, channels * pixels]);
        self.folded = Some(w.contiguous());
    }

    /// Pooled features of an activation, as `forward_pooled` takes them.
    pub fn pool(&self, activation: &Tensor, mask: Option<&Tensor>) -> Tensor {
        match (&self.pool_matrix, mask) {
            (Some(p), None) => self
                .read(activation)
                .flatten(2, -1)
                .matmul(p)
                .flatten(1, -1),
            _ => pool(activation, mask),
        }
    }

    /// The channels of an image activation this ramp reads: a view, no copy (for
    /// contiguous NCHW activations each row stays one contiguous run).
    fn read(&self, activation: &Tensor) -> Tensor {
        match self.channels {
            Some(c) => activation.narrow(1, 0, c),
            None => activation.shallow_clone(),
        }
    }

    /// Folds an input standardisation into the weights: a head trained on
    /// `(x - mean) / std` becomes a head on raw `x` with the same outputs, since
    /// `W (x - μ) / σ + b = (W / σ) x + (b - (W / σ) μ)`.
    pub(crate) fn fold_standardization(&mut self, mean: &Tensor, std: &Tensor) {
        let _guard = tch::no_grad_guard();
        let w = &self.linear.ws / std.unsqueeze(0);
        let shift = w.matmul(&mean.unsqueeze(-1)).squeeze_dim(-1);
        self.linear.ws.copy_(&w);
        if let Some(b) = self.linear.bs.as_mut() {
            let folded = &*b - shift;
            b.copy_(&folded);
        }
    }

    /// Divides the logits by `temperature` (folded into the weights; argmax unchanged).
    pub(crate) fn scale_logits(&mut self, temperature: f64) {
        let _guard = tch::no_grad_guard();
        let w = &self.linear.ws / temperature;
        self.linear.ws.copy_(&w);
        if let Some(b) = self.linear.bs.as_mut() {
            let scaled = &*b / temperature;
            b.copy_(&scaled);
        }
        self.fold_pool();
    }

    /// Logits from already pooled features (used to train ramps on cached features).
    pub fn forward_pooled(&self, pooled: &Tensor) -> Tensor {
        self.linear.forward(pooled)
    }
}

/// Most activation values per input a grid-pooled image ramp reads (16 channels of a
/// 28×28 map): on wider cuts it reads only the first `MAX_RAMP_INPUT / side²` channels.
/// A ramp's cost is the pass over its input, and past about 3 MB per batch of 64 that pass
/// leaves the CPU's cache: VGG's first ramp (32 channels at 28×28) cost 0.53 ms reading all
/// of them and 0.11 ms reading half, which took the VGG's ramps under 5 % of the model
/// (docs/decisions.md).
pub const MAX_RAMP_INPUT: i64 = 16 * 28 * 28;

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
    /// Reads a batch of logits `[B, classes]`.
    ///
    /// The logits cross to the CPU in one copy and the softmax statistics are computed
    /// here, in f64: for a serving batch that is a few hundred numbers, far cheaper than
    /// the half-dozen libtorch ops (each with its own dispatch) it replaces, and it runs
    /// once per active ramp per batch.
    pub fn from_logits(logits: &Tensor) -> Self {
        let (batch, classes) = logits.size2().expect("logits are [batch, classes]");
        let values = Vec::<f32>::try_from(
            logits
                .to_device(tch::Device::Cpu)
                .to_kind(Kind::Float)
                .contiguous()
                .view([-1]),
        )
        .expect("float logits");
        let classes = usize::try_from(classes).expect("classes");
        let mut out = Self {
            labels: Vec::with_capacity(usize::try_from(batch).unwrap_or(0)),
            confidences: Vec::with_capacity(usize::try_from(batch).unwrap_or(0)),
            entropies: Vec::with_capacity(usize::try_from(batch).unwrap_or(0)),
        };
        for row in values.chunks_exact(classes.max(1)) {
            let (stats, label) = softmax_stats(row);
            out.labels.push(u32::try_from(label).expect("class index"));
            out.confidences.push(stats.0 as f32);
            out.entropies.push(stats.1 as f32);
        }
        out
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

/// ((max softmax, entropy in nats), argmax) of one row of logits; the first of equal
/// maxima wins, as `argmax` does.
fn softmax_stats(row: &[f32]) -> ((f64, f64), usize) {
    let (label, max) = row
        .iter()
        .enumerate()
        .fold((0, f64::NEG_INFINITY), |(bi, bv), (i, &v)| {
            if f64::from(v) > bv {
                (i, f64::from(v))
            } else {
                (bi, bv)
            }
        });
    // log p_i = z_i - max - ln Σ exp(z_j - max); H = -Σ p_i log p_i.
    let sum: f64 = row.iter().map(|&z| (f64::from(z) - max).exp()).sum();
    let log_sum = sum.ln();
    let entropy = -row
        .iter()
        .map(|&z| {
            let log_p = f64::from(z) - max - log_sum;
            log_p.exp() * log_p
        })
        .sum::<f64>();
    ((1.0 / sum, entropy.max(0.0)), label)
}

#[cfg(test)]
mod tests {
    use tch::{Device, Kind, Tensor};

    use super::{HeadOutput, Ramp, pool_matrix};
    use crate::model::CutPoint;

    #[test]
    fn head_output_matches_libtorch_softmax() {
        tch::manual_seed(1);
        let logits = Tensor::randn([6, 10], (Kind::Float, Device::Cpu)) * 4.0;
        let out = HeadOutput::from_logits(&logits);
        let log_p = logits.log_softmax(-1, Kind::Float);
        let p = log_p.exp();
        let (conf, label) = p.max_dim(-1, false);
        let entropy = -(&p * &log_p).sum_dim_intlist([-1i64].as_slice(), false, Kind::Float);
        let labels: Vec<i64> = Vec::try_from(label).unwrap();
        let conf: Vec<f32> = Vec::try_from(conf).unwrap();
        let entropy: Vec<f32> = Vec::try_from(entropy).unwrap();
        assert_eq!(
            out.labels.iter().map(|&l| i64::from(l)).collect::<Vec<_>>(),
            labels
        );
        for i in 0..6 {
            assert!((out.confidences[i] - conf[i]).abs() < 1e-5, "row {i}");
            assert!((out.entropies[i] - entropy[i]).abs() < 1e-4, "row {i}");
        }
    }

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
    fn folded_ramps_equal_pooling_then_linear() {
        tch::manual_seed(3);
        for (side, width) in [(28, 16), (14, 32), (7, 64), (28, 32)] {
            let vs = tch::nn::VarStore::new(Device::Cpu);
            let cut = CutPoint {
                id: 0,
                name: "cut".into(),
                width,
                depth_fraction: 0.5,
                side,
            };
            let ramp = Ramp::new(&vs.root(), &cut, 4, 10);
            assert!(ramp.folded.is_some());
            let x = Tensor::rand([5, width, side, side], (Kind::Float, Device::Cpu));
            let folded = ramp.forward(&x, None);
            let plain = ramp.forward_pooled(&ramp.pool(&x, None));
            assert!(folded.allclose(&plain, 1e-4, 1e-5, false), "side {side}");
        }
    }

    #[test]
    fn ramps_on_wide_cuts_read_only_their_first_channels() {
        tch::manual_seed(4);
        let vs = tch::nn::VarStore::new(Device::Cpu);
        let cut = CutPoint {
            id: 0,
            name: "wide".into(),
            width: 32,
            depth_fraction: 0.1,
            side: 28,
        };
        let ramp = Ramp::new(&vs.root(), &cut, 4, 10);
        assert_eq!(ramp.channels, Some(16));
        assert_eq!(ramp.linear.ws.size(), [10, 16 * 16]);
        let x = Tensor::rand([3, 32, 28, 28], (Kind::Float, Device::Cpu));
        let y = x.copy();
        let _ = y.narrow(1, 16, 16).fill_(5.0);
        assert!(
            ramp.forward(&x, None)
                .allclose(&ramp.forward(&y, None), 1e-5, 1e-6, false)
        );
        assert!(!ramp.forward(&x, None).allclose(
            &ramp.forward(&(&x * 2.0), None),
            1e-3,
            1e-3,
            false
        ));
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
