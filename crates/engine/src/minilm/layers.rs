//! The BERT building blocks as plain frozen tensors, loaded by HuggingFace name.
//!
//! No `VarStore`: the backbone is never trained here, so weights are bare tensors that do
//! not require grad, and nothing can add them to an optimizer by accident.

use std::{collections::HashMap, path::Path};

use tch::{Device, Kind, Tensor};

use super::config::MiniLmConfig;
use crate::{EngineError, Result};

/// Named tensors from a safetensors file, handed out once each with their shape checked.
pub(super) struct Weights<'a> {
    path: &'a Path,
    tensors: HashMap<String, Tensor>,
    device: Device,
}

impl<'a> Weights<'a> {
    /// Reads every tensor of `path`. A `bert.` prefix (as `BertFor*` checkpoints write
    /// it) is dropped so bare and wrapped encoders load alike.
    pub(super) fn read(path: &'a Path, device: Device) -> Result<Self> {
        if !path.exists() {
            return Err(EngineError::MissingData {
                path: path.to_owned(),
            });
        }
        let tensors = Tensor::read_safetensors(path)
            .map_err(|e| EngineError::BadData {
                path: path.to_owned(),
                reason: e.to_string(),
            })?
            .into_iter()
            .map(|(name, t)| (name.strip_prefix("bert.").unwrap_or(&name).to_owned(), t))
            .collect();
        Ok(Self {
            path,
            tensors,
            device,
        })
    }

    fn take(&mut self, name: &str, shape: &[i64]) -> Result<Tensor> {
        let bad = |reason: String| EngineError::BadData {
            path: self.path.to_owned(),
            reason,
        };
        let tensor = self
            .tensors
            .remove(name)
            .ok_or_else(|| bad(format!("tensor `{name}` is missing")))?;
        if tensor.size() != shape {
            return Err(bad(format!(
                "tensor `{name}` has shape {:?}, config.json implies {shape:?}",
                tensor.size()
            )));
        }
        Ok(tensor
            .to_kind(Kind::Float)
            .to_device(self.device)
            .set_requires_grad(false))
    }
}

/// `x W^T + b`.
#[derive(Debug)]
pub(super) struct Linear {
    weight: Tensor,
    bias: Tensor,
}

impl Linear {
    fn load(w: &mut Weights<'_>, name: &str, inputs: i64, outputs: i64) -> Result<Self> {
        Ok(Self {
            weight: w.take(&format!("{name}.weight"), &[outputs, inputs])?,
            bias: w.take(&format!("{name}.bias"), &[outputs])?,
        })
    }

    fn forward(&self, xs: &Tensor) -> Tensor {
        xs.linear(&self.weight, Some(&self.bias))
    }
}

/// LayerNorm over the last (hidden) dimension.
#[derive(Debug)]
pub(super) struct LayerNorm {
    weight: Tensor,
    bias: Tensor,
    eps: f64,
}

impl LayerNorm {
    fn load(w: &mut Weights<'_>, name: &str, size: i64, eps: f64) -> Result<Self> {
        Ok(Self {
            weight: w.take(&format!("{name}.weight"), &[size])?,
            bias: w.take(&format!("{name}.bias"), &[size])?,
            eps,
        })
    }

    fn forward(&self, xs: &Tensor) -> Tensor {
        xs.layer_norm(
            [self.weight.size()[0]],
            Some(&self.weight),
            Some(&self.bias),
            self.eps,
            false,
        )
    }
}

/// Word + absolute position + token type (always segment 0: single sentences) → LayerNorm.
#[derive(Debug)]
pub(super) struct Embeddings {
    word: Tensor,
    position: Tensor,
    segment_zero: Tensor,
    norm: LayerNorm,
}

impl Embeddings {
    pub(super) fn load(w: &mut Weights<'_>, c: &MiniLmConfig) -> Result<Self> {
        let h = c.hidden_size;
        let p = "embeddings";
        let word = w.take(&format!("{p}.word_embeddings.weight"), &[c.vocab_size, h])?;
        let position = w.take(
            &format!("{p}.position_embeddings.weight"),
            &[c.max_position_embeddings, h],
        )?;
        let token_type = w.take(
            &format!("{p}.token_type_embeddings.weight"),
            &[c.type_vocab_size, h],
        )?;
        Ok(Self {
            word,
            position,
            segment_zero: token_type.get(0),
            norm: LayerNorm::load(w, &format!("{p}.LayerNorm"), h, c.layer_norm_eps)?,
        })
    }

    /// `ids` is `[B, T]` int64 on the weights' device with `T` ≤ the position table.
    pub(super) fn forward(&self, ids: &Tensor) -> Result<Tensor> {
        let tokens = ids.size()[1];
        // Fallible: an id past the vocabulary is the caller's error, not a panic (on CPU;
        // CUDA reports it asynchronously as a device assert).
        let words = Tensor::f_embedding(&self.word, ids, -1, false, false)?;
        let positions = self.position.narrow(0, 0, tokens);
        Ok(self
            .norm
            .forward(&(words + positions.unsqueeze(0) + &self.segment_zero)))
    }
}

/// One post-LN transformer encoder layer.
#[derive(Debug)]
pub(super) struct EncoderLayer {
    query: Linear,
    key: Linear,
    value: Linear,
    attention_out: Linear,
    attention_norm: LayerNorm,
    intermediate: Linear,
    output: Linear,
    output_norm: LayerNorm,
    heads: i64,
}

impl EncoderLayer {
    pub(super) fn load(w: &mut Weights<'_>, c: &MiniLmConfig, index: usize) -> Result<Self> {
        let (h, i, eps) = (c.hidden_size, c.intermediate_size, c.layer_norm_eps);
        let p = format!("encoder.layer.{index}");
        Ok(Self {
            query: Linear::load(w, &format!("{p}.attention.self.query"), h, h)?,
            key: Linear::load(w, &format!("{p}.attention.self.key"), h, h)?,
            value: Linear::load(w, &format!("{p}.attention.self.value"), h, h)?,
            attention_out: Linear::load(w, &format!("{p}.attention.output.dense"), h, h)?,
            attention_norm: LayerNorm::load(w, &format!("{p}.attention.output.LayerNorm"), h, eps)?,
            intermediate: Linear::load(w, &format!("{p}.intermediate.dense"), h, i)?,
            output: Linear::load(w, &format!("{p}.output.dense"), i, h)?,
            output_norm: LayerNorm::load(w, &format!("{p}.output.LayerNorm"), h, eps)?,
            heads: c.num_attention_heads,
        })
    }

    /// `xs` is `[B, T, H]`; `keep` is the `[B, 1, 1, T]` bool mask of keys that may be
    /// attended to, so padding never leaks into real tokens.
    pub(super) fn forward(&self, xs: &Tensor, keep: &Tensor) -> Tensor {
        let (batch, tokens, hidden) = xs.size3().expect("checked [B, T, H] by the caller");
        let heads = |t: Tensor| {
            t.view([batch, tokens, self.heads, hidden / self.heads])
                .transpose(1, 2)
        };
        // libtorch's fused attention: the same maths as softmax(QK^T/√d + mask)·V, with
        // the fastest kernel the device has (flash / memory-efficient on CUDA).
        let context = Tensor::scaled_dot_product_attention(
            &heads(self.query.forward(xs)),
            &heads(self.key.forward(xs)),
            &heads(self.value.forward(xs)),
            Some(keep),
            0.0,
            false,
            None,
            false,
        )
        .transpose(1, 2)
        .reshape([batch, tokens, hidden]);
        let xs = self
            .attention_norm
            .forward(&(self.attention_out.forward(&context) + xs));
        let inner = self.intermediate.forward(&xs).gelu("none");
        self.output_norm
            .forward(&(self.output.forward(&inner) + xs))
    }
}
