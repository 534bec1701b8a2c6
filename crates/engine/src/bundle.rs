//! Bundles: everything needed to serve a prepared model, in one folder, without the
//! training data.
//!
//! ```text
//! DIR/manifest.yaml        family, classes, input spec, architecture, candidate ramps
//! DIR/weights.safetensors  backbone.* and ramps.* tensors
//! DIR/profile.yaml         latency profile (the controller's cost model)
//! DIR/report.yaml          accuracy of the final head and agreement of each ramp
//! DIR/encoder/             text models only: the pretrained encoder's config.json,
//!                          model.safetensors and tokenizer.json, copied as they came
//! ```

use std::path::{Path, PathBuf};

use apparate_controller::LatencyProfile;
use serde::{Deserialize, Serialize};
use tch::Device;

use crate::{
    AccuracyReport, Architecture, EarlyExitModel, EngineError, Result, model::CutPoint,
    text::TextTokenizer,
};

/// Bumped when the layout changes incompatibly (2: the final head is `backbone.head.fc`,
/// text bundles).
pub const FORMAT_VERSION: u32 = 2;
/// The encoder's files a text bundle carries in its `encoder/` folder.
const ENCODER_DIR: &str = "encoder";
const ENCODER_FILES: [&str; 3] = ["config.json", "model.safetensors", "tokenizer.json"];
const MANIFEST: &str = "manifest.yaml";
const WEIGHTS: &str = "weights.safetensors";
const PROFILE: &str = "profile.yaml";
const REPORT: &str = "report.yaml";

/// What a bundle's inputs look like.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum InputSpec {
    /// One float32 tensor per request, of this shape (no batch dimension), values in [0, 1].
    Tensor { shape: Vec<u32> },
    /// UTF-8 text, at most this many bytes.
    Text { max_bytes: u32 },
}

/// `manifest.yaml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub format_version: u32,
    pub name: String,
    pub classes: Vec<String>,
    pub input: InputSpec,
    pub architecture: Architecture,
    pub candidates: Vec<CutPoint>,
    /// Device the profile was measured on, e.g. `cpu` or `cuda:0`.
    pub profiled_on: String,
}

/// A loaded bundle, ready to serve.
#[derive(Debug)]
pub struct Bundle {
    pub manifest: Manifest,
    pub model: EarlyExitModel,
    pub profile: LatencyProfile,
    pub report: AccuracyReport,
    /// The tokenizer of a text bundle (`None` for tensor inputs).
    pub tokenizer: Option<TextTokenizer>,
    /// Folder holding `ENCODER_FILES` for a text model: where `save` copies them from.
    pub(crate) encoder_dir: Option<PathBuf>,
}

impl Bundle {
    /// Writes the bundle into `dir` (created if needed).
    pub fn save(&self, dir: &Path) -> Result<()> {
        self.save_files(dir)?;
        tch::Tensor::write_safetensors(&self.model.named_weights(), dir.join(WEIGHTS))?;
        if let Some(source) = &self.encoder_dir {
            copy_encoder(source, &dir.join(ENCODER_DIR))?;
        }
        Ok(())
    }

    /// Writes the manifest, profile and report into `dir`, leaving weights alone: what
    /// re-profiling a bundle changes.
    pub fn save_files(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(|source| EngineError::Io {
            path: dir.to_owned(),
            source,
        })?;
        write_yaml(&dir.join(MANIFEST), &self.manifest)?;
        write_yaml(&dir.join(PROFILE), &self.profile)?;
        write_yaml(&dir.join(REPORT), &self.report)
    }

    /// The tokenizer and per-text byte limit of a text bundle; an error for one that takes
    /// tensors.
    pub fn text_input(&self) -> Result<(&TextTokenizer, u32)> {
        match (&self.tokenizer, &self.manifest.input) {
            (Some(tokenizer), InputSpec::Text { max_bytes }) => Ok((tokenizer, *max_bytes)),
            _ => Err(EngineError::InvalidInput(format!(
                "bundle `{}` takes {:?}, not text",
                self.manifest.name, self.manifest.input
            ))),
        }
    }

    /// Tokenizes a batch of texts for `model.forward_exits`: `(input_ids, attention_mask)`,
    /// both `[batch, longest]` int64 on the model's device, padded to the batch's longest
    /// text. Fails for a bundle that takes tensors, and for a text over the manifest's
    /// `max_bytes` (naming its index).
    pub fn encode_texts(&self, texts: &[&str]) -> Result<(tch::Tensor, tch::Tensor)> {
        let (tokenizer, max_bytes) = self.text_input()?;
        let limit = usize::try_from(max_bytes).unwrap_or(usize::MAX);
        if let Some((i, t)) = texts.iter().enumerate().find(|(_, t)| t.len() > limit) {
            return Err(EngineError::InvalidInput(format!(
                "text {i} is {} bytes; bundle `{}` takes at most {max_bytes}",
                t.len(),
                self.manifest.name
            )));
        }
        let batch = tokenizer.encode(texts, self.model.device())?;
        Ok((batch.input_ids, batch.attention_mask))
    }

    /// Loads the bundle in `dir` onto `device`.
    pub fn load(dir: &Path, device: Device) -> Result<Self> {
        let manifest: Manifest = read_yaml(&dir.join(MANIFEST))?;
        if manifest.format_version != FORMAT_VERSION {
            return Err(bad(
                &dir.join(MANIFEST),
                format!(
                    "format_version {} is not {FORMAT_VERSION}; prepare the bundle again",
                    manifest.format_version
                ),
            ));
        }
        let profile: LatencyProfile = read_yaml(&dir.join(PROFILE))?;
        profile
            .validate()
            .map_err(|e| bad(&dir.join(PROFILE), e.to_string()))?;
        let report = read_yaml(&dir.join(REPORT))?;
        let encoder_dir = dir.join(ENCODER_DIR);
        let (mut model, tokenizer, encoder_dir) = match (&manifest.architecture, &manifest.input) {
            (Architecture::Cnn(spec), InputSpec::Tensor { .. }) => {
                (EarlyExitModel::cnn(spec.clone(), device), None, None)
            }
            (Architecture::Minilm(spec), InputSpec::Text { .. }) => {
                let model = EarlyExitModel::minilm(spec.clone(), &encoder_dir, device)
                    .map_err(|e| bad(&encoder_dir, e.to_string()))?;
                let tokenizer =
                    TextTokenizer::from_file(&encoder_dir.join("tokenizer.json"), spec.max_tokens)
                        .map_err(|e| bad(&encoder_dir, e.to_string()))?;
                (model, Some(tokenizer), Some(encoder_dir))
            }
            (arch, input) => {
                return Err(bad(
                    &dir.join(MANIFEST),
                    format!(
                        "input {input:?} does not fit the {} architecture",
                        arch.family().as_str()
                    ),
                ));
            }
        };
        if model.cuts() != manifest.candidates.as_slice() {
            return Err(bad(
                &dir.join(MANIFEST),
                "candidates do not match the architecture; prepare the bundle again".into(),
            ));
        }
        if profile.ramps.len() != model.cuts().len() {
            return Err(bad(
                &dir.join(PROFILE),
                format!(
                    "{} ramps, the model has {}",
                    profile.ramps.len(),
                    model.cuts().len()
                ),
            ));
        }
        let weights = dir.join(WEIGHTS);
        if !weights.is_file() {
            return Err(bad(&weights, "missing".into()));
        }
        for vs in [&mut model.backbone_vs, &mut model.ramps_vs] {
            vs.load(&weights).map_err(|e| {
                // libtorch appends a C++ backtrace; its first line names the tensor.
                let e = e.to_string();
                let first = e.lines().next().unwrap_or_default();
                bad(
                    &weights,
                    format!("{first}; a bundle from another apparate version: prepare it again"),
                )
            })?;
        }
        model.fold_ramp_pools();
        Ok(Self {
            manifest,
            model,
            profile,
            report,
            tokenizer,
            encoder_dir,
        })
    }
}

/// Copies the encoder's files into `dest` (nothing to do when saving a loaded bundle
/// over itself).
fn copy_encoder(source: &Path, dest: &Path) -> Result<()> {
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| EngineError::Io { path, source }
    };
    std::fs::create_dir_all(dest).map_err(io(dest))?;
    let same = |a: &Path, b: &Path| matches!((a.canonicalize(), b.canonicalize()), (Ok(a), Ok(b)) if a == b);
    if same(source, dest) {
        return Ok(());
    }
    for name in ENCODER_FILES {
        let from = source.join(name);
        if !from.is_file() {
            return Err(EngineError::MissingData { path: from });
        }
        std::fs::copy(&from, dest.join(name)).map_err(io(&from))?;
    }
    Ok(())
}

fn bad(path: &Path, reason: String) -> EngineError {
    EngineError::BadBundle {
        path: path.to_owned(),
        reason,
    }
}

fn write_yaml<T: Serialize>(path: &PathBuf, value: &T) -> Result<()> {
    let text = serde_saphyr::to_string(value).map_err(|e| bad(path, e.to_string()))?;
    std::fs::write(path, text).map_err(|source| EngineError::Io {
        path: path.clone(),
        source,
    })
}

fn read_yaml<T: for<'de> Deserialize<'de>>(path: &PathBuf) -> Result<T> {
    let text = std::fs::read_to_string(path).map_err(|source| match source.kind() {
        std::io::ErrorKind::NotFound => bad(
            path,
            "missing: is this a bundle written by `apparate prepare`?".into(),
        ),
        _ => EngineError::Io {
            path: path.clone(),
            source,
        },
    })?;
    serde_saphyr::from_str(&text).map_err(|e| bad(path, e.to_string()))
}
