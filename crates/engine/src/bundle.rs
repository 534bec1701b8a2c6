//! Bundles: everything needed to serve a prepared model, in one folder, without the
//! training data.
//!
//! ```text
//! DIR/manifest.yaml        family, classes, input spec, architecture, candidate ramps
//! DIR/weights.safetensors  backbone.* and ramps.* tensors
//! DIR/profile.yaml         latency profile (the controller's cost model)
//! DIR/report.yaml          accuracy of the final head and agreement of each ramp
//! ```

use std::path::{Path, PathBuf};

use apparate_controller::LatencyProfile;
use serde::{Deserialize, Serialize};
use tch::Device;

use crate::{AccuracyReport, Architecture, EarlyExitModel, EngineError, Result, model::CutPoint};

/// Bumped when the layout changes incompatibly.
pub const FORMAT_VERSION: u32 = 1;
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
}

impl Bundle {
    /// Writes the bundle into `dir` (created if needed).
    pub fn save(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(|source| EngineError::Io {
            path: dir.to_owned(),
            source,
        })?;
        tch::Tensor::write_safetensors(&self.model.named_weights(), dir.join(WEIGHTS))?;
        write_yaml(&dir.join(MANIFEST), &self.manifest)?;
        write_yaml(&dir.join(PROFILE), &self.profile)?;
        write_yaml(&dir.join(REPORT), &self.report)
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
        let mut model = EarlyExitModel::new(manifest.architecture.clone(), device);
        if model.cuts() != manifest.candidates.as_slice() {
            return Err(bad(
                &dir.join(MANIFEST),
                "candidates do not match the architecture".into(),
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
            vs.load(&weights)
                .map_err(|e| bad(&weights, e.to_string()))?;
        }
        Ok(Self {
            manifest,
            model,
            profile,
            report,
        })
    }
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
