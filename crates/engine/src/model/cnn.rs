//! The two CNN families for 28×28 single-channel images: a CIFAR-style ResNet and a
//! VGG-style conv stack. Both take raw pixels in [0, 1] (normalisation is part of the
//! model, so a bundle is self-contained); the early-exit model adds the final head
//! (global average pooling → linear).

use serde::{Deserialize, Serialize};
use tch::{Tensor, nn, nn::ModuleT};

use super::{Backbone, CutPoint, Family};

/// Fashion-MNIST pixel statistics, applied inside the model.
const MEAN: f64 = 0.2860;
const STD: f64 = 0.3530;
const SIDE: i64 = 28;

/// One block: its output channels, and whether it halves the resolution (stride 2 in a
/// ResNet block, a 2×2 max-pool on a VGG block's input, run at the end of the block before).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlockSpec {
    pub channels: i64,
    pub downsample: bool,
}

/// Everything needed to rebuild a CNN from its weights.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CnnSpec {
    pub family: Family,
    pub in_channels: i64,
    pub classes: i64,
    pub blocks: Vec<BlockSpec>,
    /// Ramps average-pool their cut point's activation to `ramp_grid × ramp_grid`.
    /// Global average pooling (1) threw away too much for shallow ramps: see docs/decisions.md.
    pub ramp_grid: i64,
}

impl CnnSpec {
    /// ResNet-20 layout for 28×28: three stages of three basic blocks, 16/32/64 channels.
    pub fn resnet(classes: i64) -> Self {
        Self::from_widths(
            Family::Resnet,
            classes,
            &[
                (16, false),
                (16, false),
                (16, false),
                (32, true),
                (32, false),
                (32, false),
                (64, true),
                (64, false),
                (64, false),
            ],
        )
    }

    /// VGG-style stack: 32-32 | 64-64 | 128-128 with max-pools between the pairs.
    pub fn vgg(classes: i64) -> Self {
        Self::from_widths(
            Family::Vgg,
            classes,
            &[
                (32, false),
                (32, false),
                (64, true),
                (64, false),
                (128, true),
                (128, false),
            ],
        )
    }

    fn from_widths(family: Family, classes: i64, widths: &[(i64, bool)]) -> Self {
        let blocks = widths
            .iter()
            .map(|&(channels, downsample)| BlockSpec {
                channels,
                downsample,
            })
            .collect();
        Self {
            family,
            in_channels: 1,
            classes,
            blocks,
            ramp_grid: 4,
        }
    }

    /// Multiply-adds of each block for one input (stem folded into block 0): the basis
    /// of each cut point's `depth_fraction`.
    fn block_macs(&self) -> Vec<f64> {
        let mut side = SIDE;
        let mut c_in = self.in_channels;
        let mut macs = Vec::with_capacity(self.blocks.len());
        for (i, b) in self.blocks.iter().enumerate() {
            if b.downsample {
                side /= 2;
            }
            let area = (side * side) as f64;
            let conv = |ci: i64, co: i64| area * (ci * co * 9) as f64;
            let m = match self.family {
                Family::Resnet => {
                    let stem = if i == 0 {
                        conv(self.in_channels, self.blocks[0].channels)
                    } else {
                        0.0
                    };
                    let shortcut = if c_in != b.channels {
                        area * (c_in * b.channels) as f64
                    } else {
                        0.0
                    };
                    stem + conv(c_in, b.channels) + conv(b.channels, b.channels) + shortcut
                }
                _ => conv(c_in, b.channels),
            };
            macs.push(m);
            c_in = b.channels;
        }
        macs
    }

    /// Candidate cut points: after every block but the last.
    pub fn cuts(&self) -> Vec<CutPoint> {
        let macs = self.block_macs();
        let total: f64 = macs.iter().sum();
        let mut done = 0.0;
        let mut side = SIDE;
        (0..self.blocks.len() - 1)
            .map(|i| {
                done += macs[i];
                // A ResNet block downsamples inside itself; a VGG block ends with the max-pool
                // that halves the next block's input (see `Block::Plain`).
                let halves = match self.family {
                    Family::Resnet => self.blocks[i].downsample,
                    _ => self.blocks[i + 1].downsample,
                };
                if halves {
                    side = (side + 1) / 2;
                }
                CutPoint {
                    id: u32::try_from(i).expect("few blocks"),
                    name: format!("block{}", i + 1),
                    width: self.blocks[i].channels,
                    depth_fraction: (done / total) as f32,
                    side,
                }
            })
            .collect()
    }
}

/// Builds the backbone described by `spec` under `path`.
pub fn build_cnn(path: &nn::Path, spec: &CnnSpec) -> Box<dyn Backbone> {
    let mut blocks = Vec::with_capacity(spec.blocks.len());
    let mut c_in = spec.in_channels;
    for (i, b) in spec.blocks.iter().enumerate() {
        let p = path / format!("block{}", i + 1);
        blocks.push(match spec.family {
            Family::Resnet => Block::Residual(Box::new(Residual::new(
                &p,
                if i == 0 { None } else { Some(c_in) },
                spec.in_channels,
                *b,
            ))),
            _ => Block::Plain(
                Box::new(ConvBn::new(&p, c_in, b.channels, 1)),
                spec.blocks.get(i + 1).is_some_and(|next| next.downsample),
            ),
        });
        c_in = b.channels;
    }
    Box::new(Cnn {
        blocks,
        out_width: c_in,
        cuts: spec.cuts(),
    })
}

#[derive(Debug)]
struct Cnn {
    blocks: Vec<Block>,
    out_width: i64,
    cuts: Vec<CutPoint>,
}

impl Backbone for Cnn {
    fn cuts(&self) -> &[CutPoint] {
        &self.cuts
    }

    fn stage(&self, i: usize, x: &Tensor, _mask: Option<&Tensor>, train: bool) -> Tensor {
        let x = if i == 0 {
            (x - MEAN) / STD
        } else {
            x.shallow_clone()
        };
        let y = self.blocks[i].forward_t(&x, train);
        if train && i == 0 {
            // Train the rest channels-last (NHWC strides; libtorch follows the input's
            // layout): faster on the CPU for these small-channel convolutions. A one-channel
            // input has no layout to follow, hence after the first block.
            y.permute([0, 2, 3, 1]).contiguous().permute([0, 3, 1, 2])
        } else {
            y
        }
    }

    fn out_width(&self) -> i64 {
        self.out_width
    }
}

#[derive(Debug)]
enum Block {
    Residual(Box<Residual>),
    /// Conv block, followed by a 2×2 max-pool when the flag is set (the next block
    /// downsamples). Pooling at the end of the block, as in the classic VGG layout, puts
    /// the cut after the pool: the ramp there reads a map a quarter the size, for the same
    /// backbone computation.
    Plain(Box<ConvBn>, bool),
}

impl Block {
    fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        match self {
            Self::Residual(r) => r.forward_t(x, train),
            Self::Plain(c, pool) => {
                let y = c.forward_t(x, train).relu();
                if *pool { y.max_pool2d_default(2) } else { y }
            }
        }
    }
}

/// conv3×3 (no bias) → batch norm.
#[derive(Debug)]
struct ConvBn {
    conv: nn::Conv2D,
    bn: nn::BatchNorm,
}

impl ConvBn {
    fn new(p: &nn::Path, c_in: i64, c_out: i64, stride: i64) -> Self {
        let cfg = nn::ConvConfig {
            stride,
            padding: 1,
            bias: false,
            ..Default::default()
        };
        Self {
            conv: nn::conv2d(p / "conv", c_in, c_out, 3, cfg),
            bn: nn::batch_norm2d(p / "bn", c_out, Default::default()),
        }
    }

    fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        self.bn.forward_t(&x.apply(&self.conv), train)
    }
}

/// A basic residual block; block 0 also carries the stem convolution.
#[derive(Debug)]
struct Residual {
    stem: Option<ConvBn>,
    a: ConvBn,
    b: ConvBn,
    shortcut: Option<(nn::Conv2D, nn::BatchNorm)>,
}

impl Residual {
    /// `c_in` is `None` for block 0, whose input is the stem's output.
    fn new(p: &nn::Path, c_in: Option<i64>, image_channels: i64, spec: BlockSpec) -> Self {
        let stem = c_in
            .is_none()
            .then(|| ConvBn::new(&(p / "stem"), image_channels, spec.channels, 1));
        let c_in = c_in.unwrap_or(spec.channels);
        let stride = if spec.downsample { 2 } else { 1 };
        let shortcut = (c_in != spec.channels || stride != 1).then(|| {
            let cfg = nn::ConvConfig {
                stride,
                bias: false,
                ..Default::default()
            };
            (
                nn::conv2d(p / "short" / "conv", c_in, spec.channels, 1, cfg),
                nn::batch_norm2d(p / "short" / "bn", spec.channels, Default::default()),
            )
        });
        Self {
            stem,
            a: ConvBn::new(&(p / "a"), c_in, spec.channels, stride),
            b: ConvBn::new(&(p / "b"), spec.channels, spec.channels, 1),
            shortcut,
        }
    }

    fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        let x = match &self.stem {
            Some(stem) => stem.forward_t(x, train).relu(),
            None => x.shallow_clone(),
        };
        let y = self.b.forward_t(&self.a.forward_t(&x, train).relu(), train);
        let skip = match &self.shortcut {
            Some((conv, bn)) => bn.forward_t(&x.apply(conv), train),
            None => x,
        };
        (y + skip).relu()
    }
}
