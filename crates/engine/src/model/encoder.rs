//! The `minilm` family's backbone: the frozen all-MiniLM-L6-v2 encoder, one stage per
//! encoder layer, a cut point after every layer but the last.

use serde::{Deserialize, Serialize};
use tch::Tensor;

use super::{Backbone, CutPoint};
use crate::minilm::MiniLm;

/// Everything a bundle records to rebuild a `minilm` model besides its files: the
/// encoder's weights, config and tokenizer travel in the bundle's `encoder/` folder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MiniLmSpec {
    /// Classes of the sentiment head (2: negative, positive).
    pub classes: i64,
    /// Tokens kept per text, `[CLS]` and `[SEP]` included; longer texts are truncated.
    pub max_tokens: usize,
}

/// The encoder cut into stages: stage 0 embeds and runs layer 0, stage `i` runs layer `i`.
#[derive(Debug)]
pub(crate) struct EncoderBackbone {
    encoder: MiniLm,
    cuts: Vec<CutPoint>,
}

impl EncoderBackbone {
    pub(crate) fn new(encoder: MiniLm) -> Self {
        let layers = encoder.num_layers();
        // Layers are identical in cost, and the embedding lookup is free next to them.
        let cuts = (0..layers - 1)
            .map(|i| CutPoint {
                id: u32::try_from(i).expect("few layers"),
                name: format!("layer{}", i + 1),
                width: encoder.hidden_size(),
                depth_fraction: (i + 1) as f32 / layers as f32,
                side: 0,
            })
            .collect();
        Self { encoder, cuts }
    }
}

impl Backbone for EncoderBackbone {
    fn cuts(&self) -> &[CutPoint] {
        &self.cuts
    }

    /// # Panics
    /// Without a mask, or on ids the tokenizer cannot produce (out of the vocabulary,
    /// longer than the position table): text inputs come from `Bundle::encode_texts`.
    fn stage(&self, i: usize, x: &Tensor, mask: Option<&Tensor>, _train: bool) -> Tensor {
        let mask = mask.expect("a text model needs the attention mask");
        let run = || {
            let hidden = if i == 0 {
                self.encoder.embed(x)?
            } else {
                x.shallow_clone()
            };
            self.encoder.layer(i, &hidden, mask)
        };
        run().unwrap_or_else(|e| panic!("encoder stage {i}: {e}"))
    }

    fn out_width(&self) -> i64 {
        self.encoder.hidden_size()
    }
}
