//! all-MiniLM-L6-v2, the pretrained BERT encoder behind the `minilm` family, with a cut
//! point after every encoder layer.
//!
//! The encoder is written out with `tch` ops rather than loaded as TorchScript so that a
//! caller can stop after any layer: `embed`, then `layer(i, ..)` one at a time, evaluating
//! a ramp (masked mean pool → linear) in between and releasing confident answers early.
//! `forward_all` is the same walk collecting every layer's output, for ramp training.
//!
//! The backbone is frozen: weights are plain tensors that never require grad, every forward
//! runs under `no_grad`, and there is no dropout (inference only). Numerics are checked
//! against a plain-PyTorch reference in `tests/minilm.rs` (fixture made by
//! `scripts/make_minilm_fixture.py`).

mod config;
mod layers;

use std::{fmt, path::Path};

use tch::{Device, Kind, Tensor};

pub use config::MiniLmConfig;
use layers::{Embeddings, EncoderLayer, Weights};

use crate::{EngineError, Result};

/// The frozen BERT encoder on one device. `Send`, so it can live on a worker thread.
pub struct MiniLm {
    config: MiniLmConfig,
    embeddings: Embeddings,
    layers: Vec<EncoderLayer>,
    device: Device,
}

// A serving worker owns the model on its own thread; keep that possible.
const _: fn() = || {
    fn send<T: Send>() {}
    send::<MiniLm>();
};

impl fmt::Debug for MiniLm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MiniLm")
            .field("config", &self.config)
            .field("device", &self.device)
            .finish_non_exhaustive()
    }
}

impl MiniLm {
    /// Loads `config.json` and `model.safetensors` from `dir` (normally
    /// `data_dir()/minilm`) onto `device`.
    pub fn load(dir: &Path, device: Device) -> Result<Self> {
        let config = MiniLmConfig::from_file(&dir.join("config.json"))?;
        let weights_path = dir.join("model.safetensors");
        let mut weights = Weights::read(&weights_path, device)?;
        let embeddings = Embeddings::load(&mut weights, &config)?;
        let layers = (0..config.num_hidden_layers)
            .map(|i| EncoderLayer::load(&mut weights, &config, i))
            .collect::<Result<_>>()?;
        Ok(Self {
            config,
            embeddings,
            layers,
            device,
        })
    }

    /// The sizes read from `config.json`.
    pub fn config(&self) -> &MiniLmConfig {
        &self.config
    }

    /// Where the weights live; inputs are moved here.
    pub fn device(&self) -> Device {
        self.device
    }

    /// Encoder layers, hence cut points: 6 for all-MiniLM-L6-v2.
    pub fn num_layers(&self) -> usize {
        self.layers.len()
    }

    /// Width of every hidden state: 384 for all-MiniLM-L6-v2.
    pub fn hidden_size(&self) -> i64 {
        self.config.hidden_size
    }

    /// Token ids `[B, T]` (int64) → the embedding output `[B, T, H]`, the input of layer 0.
    pub fn embed(&self, input_ids: &Tensor) -> Result<Tensor> {
        let _no_grad = tch::no_grad_guard();
        let size = input_ids.size();
        if size.len() != 2 || input_ids.kind() != Kind::Int64 {
            return Err(EngineError::InvalidInput(format!(
                "input ids must be [batch, tokens] int64, got {size:?} {:?}",
                input_ids.kind()
            )));
        }
        if size[1] > self.config.max_position_embeddings {
            return Err(EngineError::InvalidInput(format!(
                "{} tokens exceed the model's {} positions; truncate when tokenizing",
                size[1], self.config.max_position_embeddings
            )));
        }
        self.embeddings.forward(&input_ids.to_device(self.device))
    }

    /// Runs encoder layer `index` (0-based) on `hidden` `[B, T, H]`, the output of
    /// `embed` or of layer `index - 1`. `attention_mask` is the tokenizer's `[B, T]` mask
    /// (nonzero = real token); every row needs at least one real token, as every
    /// tokenized sentence has (`[CLS]`, `[SEP]`).
    pub fn layer(&self, index: usize, hidden: &Tensor, attention_mask: &Tensor) -> Result<Tensor> {
        let _no_grad = tch::no_grad_guard();
        let layer = self.layers.get(index).ok_or_else(|| {
            EngineError::InvalidInput(format!(
                "layer {index} does not exist; the model has {}",
                self.layers.len()
            ))
        })?;
        let keep = self.key_mask(hidden, attention_mask)?;
        Ok(layer.forward(&hidden.to_device(self.device), &keep))
    }

    /// The hidden state after every encoder layer, in order (`num_layers` tensors of
    /// `[B, T, H]`); the last is the model's output.
    pub fn forward_all(&self, input_ids: &Tensor, attention_mask: &Tensor) -> Result<Vec<Tensor>> {
        let _no_grad = tch::no_grad_guard();
        let mut hidden = self.embed(input_ids)?;
        let keep = self.key_mask(&hidden, attention_mask)?;
        let mut outputs = Vec::with_capacity(self.layers.len());
        for layer in &self.layers {
            hidden = layer.forward(&hidden, &keep);
            outputs.push(hidden.shallow_clone());
        }
        Ok(outputs)
    }

    /// Sentence embeddings `[B, H]` as sentence-transformers computes them for this model:
    /// the masked mean of the last layer, L2-normalised.
    pub fn sentence_embedding(
        &self,
        input_ids: &Tensor,
        attention_mask: &Tensor,
    ) -> Result<Tensor> {
        let _no_grad = tch::no_grad_guard();
        let last = self
            .forward_all(input_ids, attention_mask)?
            .pop()
            .expect("config check guarantees at least one layer");
        let pooled = masked_mean_pool(&last, &attention_mask.to_device(self.device))?;
        Ok(l2_normalize(&pooled))
    }

    /// Checks `hidden` against `mask` and turns the mask into the `[B, 1, 1, T]` bool
    /// "may attend to this key" form attention broadcasts over heads and queries.
    fn key_mask(&self, hidden: &Tensor, attention_mask: &Tensor) -> Result<Tensor> {
        let (h, m) = (hidden.size(), attention_mask.size());
        if h.len() != 3 || h[2] != self.config.hidden_size || m.len() != 2 || h[..2] != m[..] {
            return Err(EngineError::InvalidInput(format!(
                "hidden {h:?} and attention mask {m:?} must be [B, T, {}] and [B, T]",
                self.config.hidden_size
            )));
        }
        if hidden.kind() != Kind::Float {
            return Err(EngineError::InvalidInput(format!(
                "hidden states must be float32, got {:?}",
                hidden.kind()
            )));
        }
        let (batch, tokens) = (m[0], m[1]);
        Ok(attention_mask
            .to_device(self.device)
            .ne(0)
            .view([batch, 1, 1, tokens]))
    }
}

/// Mean of `hidden` `[B, T, H]` over the real tokens of `attention_mask` `[B, T]`: the
/// pooling of sentence-transformers and of every `minilm` ramp, so padding never changes
/// a sentence's features. Works with or without grad (ramps train on top of it).
pub fn masked_mean_pool(hidden: &Tensor, attention_mask: &Tensor) -> Result<Tensor> {
    let (h, m) = (hidden.size(), attention_mask.size());
    if h.len() != 3 || m.len() != 2 || h[..2] != m[..] {
        return Err(EngineError::InvalidInput(format!(
            "hidden {h:?} and attention mask {m:?} must be [B, T, H] and [B, T]"
        )));
    }
    let weights = attention_mask
        .to_device(hidden.device())
        .ne(0)
        .to_kind(hidden.kind())
        .unsqueeze(-1);
    // The clamp (sentence-transformers' 1e-9) keeps an all-padding row at 0, not NaN.
    let counts = weights.sum_dim_intlist(1, false, None).clamp_min(1e-9);
    Ok((hidden * &weights).sum_dim_intlist(1, false, None) / counts)
}

/// Rows scaled to unit L2 norm, with `torch.nn.functional.normalize`'s 1e-12 floor.
pub fn l2_normalize(xs: &Tensor) -> Tensor {
    let norms = xs.norm_scalaropt_dim(2, 1, true).clamp_min(1e-12);
    xs / norms
}
