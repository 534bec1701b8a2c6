//! The model's `config.json`: only the sizes the forward pass needs, checked before any
//! weight is read so a wrong file fails with a reason rather than a shape panic later.

use std::path::Path;

use serde::Deserialize;

use crate::{EngineError, Result, data::read_file};

/// Sizes of a BERT encoder, as HuggingFace's `BertConfig` names them.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct MiniLmConfig {
    pub vocab_size: i64,
    pub hidden_size: i64,
    pub num_hidden_layers: usize,
    pub num_attention_heads: i64,
    pub intermediate_size: i64,
    pub max_position_embeddings: i64,
    pub type_vocab_size: i64,
    pub layer_norm_eps: f64,
    #[serde(default = "default_act")]
    pub hidden_act: String,
    #[serde(default = "default_position_type")]
    pub position_embedding_type: String,
}

fn default_act() -> String {
    "gelu".to_owned()
}

fn default_position_type() -> String {
    "absolute".to_owned()
}

impl MiniLmConfig {
    /// Reads and checks `config.json`.
    pub fn from_file(path: &Path) -> Result<Self> {
        let bad = |reason: String| EngineError::BadData {
            path: path.to_owned(),
            reason,
        };
        let config: Self =
            serde_json::from_slice(&read_file(path)?).map_err(|e| bad(e.to_string()))?;
        config.check().map_err(bad)?;
        Ok(config)
    }

    /// Width of one attention head.
    pub fn head_dim(&self) -> i64 {
        self.hidden_size / self.num_attention_heads
    }

    fn check(&self) -> std::result::Result<(), String> {
        // HF's "gelu" is the exact erf form; "gelu_new" and friends are tanh
        // approximations this encoder does not implement, so they must not pass silently.
        if self.hidden_act != "gelu" {
            return Err(format!(
                "hidden_act `{}` is not supported (only `gelu`)",
                self.hidden_act
            ));
        }
        if self.position_embedding_type != "absolute" {
            return Err(format!(
                "position_embedding_type `{}` is not supported (only `absolute`)",
                self.position_embedding_type
            ));
        }
        let sizes = [
            ("vocab_size", self.vocab_size),
            ("hidden_size", self.hidden_size),
            ("num_attention_heads", self.num_attention_heads),
            ("intermediate_size", self.intermediate_size),
            ("max_position_embeddings", self.max_position_embeddings),
            ("type_vocab_size", self.type_vocab_size),
        ];
        if let Some((name, value)) = sizes.iter().find(|(_, v)| *v < 1) {
            return Err(format!("{name} is {value}, must be at least 1"));
        }
        if self.num_hidden_layers == 0 {
            return Err("num_hidden_layers is 0".to_owned());
        }
        if self.hidden_size % self.num_attention_heads != 0 {
            return Err(format!(
                "hidden_size {} is not a multiple of num_attention_heads {}",
                self.hidden_size, self.num_attention_heads
            ));
        }
        if self.layer_norm_eps.is_nan() || self.layer_norm_eps <= 0.0 {
            return Err(format!(
                "layer_norm_eps {} must be positive",
                self.layer_norm_eps
            ));
        }
        Ok(())
    }
}
