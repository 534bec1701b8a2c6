//! Text to token tensors for the BERT-style models, via HuggingFace `tokenizers`.
//!
//! The model's `tokenizer.json` pads every input to 128 tokens. A serving batch should
//! cost what its longest sentence needs, not 128 positions, so the fixed padding is
//! replaced by padding to the longest sequence in each batch; padded positions carry
//! `attention_mask = 0` and id 0 (`[PAD]`), which the encoder and the mean pool ignore.

use std::path::Path;

use tch::{Device, Tensor};
use tokenizers::{PaddingParams, PaddingStrategy, Tokenizer, TruncationParams, TruncationStrategy};

use crate::{EngineError, Result};

/// Longest tokenized input (special tokens included) unless the caller asks otherwise:
/// what all-MiniLM-L6-v2's `tokenizer.json` truncates to.
pub const DEFAULT_MAX_TOKENS: usize = 128;

/// `[CLS]` and `[SEP]`: a limit below this leaves no room for the template.
const MIN_MAX_TOKENS: usize = 2;

/// A tokenized batch on one device, both `[batch, tokens]` int64.
#[derive(Debug)]
pub struct TokenBatch {
    /// Vocabulary ids, `[PAD]` (0) after each sentence's end.
    pub input_ids: Tensor,
    /// 1 for real tokens (special ones included), 0 for padding.
    pub attention_mask: Tensor,
}

/// A WordPiece tokenizer that pads per batch and truncates to a fixed length.
#[derive(Debug)]
pub struct TextTokenizer {
    inner: Tokenizer,
    max_tokens: usize,
}

impl TextTokenizer {
    /// Loads `tokenizer.json`, truncating every input to `max_tokens` tokens.
    pub fn from_file(path: &Path, max_tokens: usize) -> Result<Self> {
        if max_tokens < MIN_MAX_TOKENS {
            return Err(EngineError::InvalidInput(format!(
                "max_tokens {max_tokens} leaves no room for [CLS] and [SEP]"
            )));
        }
        if !path.exists() {
            return Err(EngineError::MissingData {
                path: path.to_owned(),
            });
        }
        let bad = |reason: String| EngineError::BadData {
            path: path.to_owned(),
            reason,
        };
        let mut inner = Tokenizer::from_file(path).map_err(|e| bad(e.to_string()))?;
        // Keep the file's pad id and token; only the fixed length goes.
        let padding = PaddingParams {
            strategy: PaddingStrategy::BatchLongest,
            ..inner.get_padding().cloned().unwrap_or_default()
        };
        inner.with_padding(Some(padding));
        inner
            .with_truncation(Some(TruncationParams {
                max_length: max_tokens,
                strategy: TruncationStrategy::LongestFirst,
                ..TruncationParams::default()
            }))
            .map_err(|e| bad(format!("cannot truncate to {max_tokens} tokens: {e}")))?;
        Ok(Self { inner, max_tokens })
    }

    /// The truncation length, special tokens included.
    pub fn max_tokens(&self) -> usize {
        self.max_tokens
    }

    /// Token ids of one text, with `[CLS]`/`[SEP]`, truncated, unpadded.
    pub fn ids(&self, text: &str) -> Result<Vec<u32>> {
        let encoding = self
            .inner
            .encode_fast(text, true)
            .map_err(|e| EngineError::Tokenize(e.to_string()))?;
        Ok(encoding.get_ids().to_vec())
    }

    /// Tokenizes a batch into `[batch, longest]` ids and mask on `device`.
    ///
    /// An empty batch gives `[0, 0]` tensors rather than an error, so callers that drain
    /// a queue need no special case.
    pub fn encode<S: AsRef<str>>(&self, texts: &[S], device: Device) -> Result<TokenBatch> {
        let inputs: Vec<&str> = texts.iter().map(AsRef::as_ref).collect();
        let encodings = if inputs.is_empty() {
            Vec::new()
        } else {
            // `_fast` skips char offsets, which nothing here reads.
            self.inner
                .encode_batch_fast(inputs, true)
                .map_err(|e| EngineError::Tokenize(e.to_string()))?
        };
        let rows = encodings.len();
        let cols = encodings.first().map_or(0, |e| e.len());
        let mut ids = Vec::with_capacity(rows * cols);
        let mut mask = Vec::with_capacity(rows * cols);
        for encoding in &encodings {
            debug_assert_eq!(encoding.len(), cols, "padding makes every row as long");
            ids.extend(encoding.get_ids().iter().map(|&id| i64::from(id)));
            mask.extend(encoding.get_attention_mask().iter().map(|&m| i64::from(m)));
        }
        let shape = [to_i64(rows), to_i64(cols)];
        Ok(TokenBatch {
            input_ids: Tensor::from_slice(&ids).view(shape).to_device(device),
            attention_mask: Tensor::from_slice(&mask).view(shape).to_device(device),
        })
    }
}

fn to_i64(n: usize) -> i64 {
    i64::try_from(n).expect("a batch dimension fits in i64")
}
