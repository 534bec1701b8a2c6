//! Early-exit models: a backbone cut into stages, a ramp head at every cut point,
//! and the original model's final head.
//!
//! A backbone with `n` candidate cut points has `n + 1` stages: stage `i < n` ends at
//! cut point `i` (ramp id `i`), the last stage ends at the final head's input. Running
//! the stages in order is exactly the original model, so the final output of an
//! early-exit forward pass is bit-for-bit the plain model's.

mod cnn;
mod encoder;
mod ramp;

use serde::{Deserialize, Serialize};
use tch::{Tensor, nn};

pub use cnn::{CnnSpec, build_cnn};
pub(crate) use encoder::EncoderBackbone;
pub use encoder::MiniLmSpec;
pub use ramp::{HeadOutput, Ramp, pool};

/// The model families we can prepare.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Family {
    /// CIFAR-style ResNet for 28×28 inputs; a cut after every residual block.
    Resnet,
    /// VGG-style conv stack; a cut after every conv block.
    Vgg,
    /// all-MiniLM-L6-v2 with a sentiment head; a cut after every encoder layer.
    Minilm,
}

impl Family {
    /// The name used on the command line and in manifests.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Resnet => "resnet",
            Self::Vgg => "vgg",
            Self::Minilm => "minilm",
        }
    }
}

/// One candidate cut point of a backbone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CutPoint {
    /// Ramp id: index of the cut point, 0 = shallowest.
    pub id: u32,
    /// Name in the model, e.g. `block3`.
    pub name: String,
    /// Features a ramp at this cut sees (channels or hidden size).
    pub width: i64,
    /// Share of the backbone's multiply-adds done before this cut, in (0, 1).
    pub depth_fraction: f32,
    /// Height (= width) of the activation map at this cut; 0 for sequence models.
    #[serde(default)]
    pub side: i64,
}

/// A backbone split into stages at its candidate cut points. The original model's
/// classifier is not part of it: every family ends in a grid-1 [`Ramp`] (global or
/// masked mean pool → linear) that the early-exit model owns.
pub trait Backbone: Send + std::fmt::Debug {
    /// The candidate cut points, shallowest first.
    fn cuts(&self) -> &[CutPoint];
    /// Runs stage `i` (`0..=cuts().len()`) on the previous stage's output (or the input).
    /// `mask` is the attention mask for text models, `None` for images.
    fn stage(&self, i: usize, x: &Tensor, mask: Option<&Tensor>, train: bool) -> Tensor;
    /// Features (channels or hidden size) of the last stage's output, the final head's input.
    fn out_width(&self) -> i64;
}

/// Builds the ramps for `cuts` under `path` (`ramp{id}/...`), pooling images to
/// `grid × grid`.
pub fn build_ramps(path: &nn::Path, cuts: &[CutPoint], grid: i64, classes: i64) -> Vec<Ramp> {
    let ramp = |c: &CutPoint| Ramp::new(&(path / format!("ramp{}", c.id)), c, grid, classes);
    cuts.iter().map(ramp).collect()
}
