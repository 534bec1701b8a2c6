//! The `prepare` pipeline: turn a model family into an early-exit bundle on real data.
//!
//! Every family follows the same recipe: obtain the original model (a CNN trained here,
//! or the pretrained MiniLM encoder with a sentiment head trained here on its frozen
//! features), distil a ramp at every candidate cut point from the original model's own
//! predictions on a bootstrap split with the backbone frozen, report each ramp's
//! agreement on held-out data, and profile latency on the serving device.

mod cnn;
mod minilm;

use tch::{Device, Kind, Tensor};

pub use cnn::prepare_cnn;
pub use minilm::prepare_minilm;

use crate::{
    Bundle, InputSpec, Result,
    model::Family,
    profiler::{ProfileConfig, profile_latency},
    train::TrainConfig,
};

/// What to prepare.
#[derive(Debug, Clone, PartialEq)]
pub struct PrepareOptions {
    pub family: Family,
    pub device: Device,
    /// A slice of the data, short training, a short profile: seconds, for tests.
    pub quick: bool,
    /// Passes over the training set for what the original model trains: the CNN
    /// backbone (default 4, or 1 when quick) or MiniLM's head (default 200).
    pub epochs: Option<u32>,
    /// Share of the training set that trains the ramps (the bootstrap split): its start
    /// for images, a seeded random subset for the movie reviews (whose file is sorted by
    /// label).
    pub bootstrap_share: f64,
    /// CNN ramps also train on this many corrupted copies of each bootstrap image
    /// (random contrast, brightness, blur and noise), labelled with the backbone's answer
    /// on the copy; 0 = clean images only. MiniLM ignores it.
    pub ramp_augment_copies: usize,
    /// Weight of the ramps' loss on the true labels while a CNN backbone trains (deep
    /// supervision: it makes the intermediate features easier for a ramp to read); 0 =
    /// the final loss alone. MiniLM ignores it (its encoder is pretrained and frozen).
    pub deep_supervision: f64,
    pub seed: i64,
}

impl PrepareOptions {
    /// The defaults of `apparate prepare` for `family` on `device`.
    pub fn new(family: Family, device: Device) -> Self {
        let train = TrainConfig::default();
        Self {
            family,
            device,
            quick: false,
            epochs: None,
            bootstrap_share: 0.1,
            ramp_augment_copies: 3,
            deep_supervision: train.deep_supervision,
            seed: train.seed,
        }
    }
}

/// Which phase a progress report is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Training a CNN backbone (steps).
    Backbone,
    /// Running the frozen encoder over the texts once (batches).
    Features,
    /// Training MiniLM's head on cached features (epochs).
    Head,
    /// Distilling the ramps (epochs).
    Ramps,
    /// Profiling latency (batch sizes).
    Profile,
}

impl Phase {
    /// Every phase, in the order `Phase as usize` numbers them.
    pub const ALL: [Self; 5] = [
        Self::Backbone,
        Self::Features,
        Self::Head,
        Self::Ramps,
        Self::Profile,
    ];
}

/// Progress reports: (phase, done, total, loss if any).
pub type PrepareProgress<'a> = &'a mut dyn FnMut(Phase, u64, u64, Option<f64>);

/// Runs the pipeline of `opts.family` and returns the bundle (not yet saved).
pub fn prepare(opts: &PrepareOptions, progress: PrepareProgress<'_>) -> Result<Bundle> {
    match opts.family {
        Family::Resnet | Family::Vgg => prepare_cnn(opts, progress),
        Family::Minilm => prepare_minilm(opts, progress),
    }
}

/// Profiles a bundle again on this machine and replaces its profile (not saved): the
/// controller's cost model should come from the serving machine, at the serving thread
/// count, with nothing else running. Images are timed on seeded uniform noise (no data
/// needed; a constant image ran about half as fast, likely from denormal activations);
/// texts on the median-length movie-review test sentence, as `prepare` does (needs the
/// VADER data).
pub fn reprofile(bundle: &mut Bundle, progress: &mut dyn FnMut(u64, u64)) -> Result<()> {
    let device = bundle.model.device();
    let (example, mask) = match &bundle.manifest.input {
        InputSpec::Tensor { shape } => {
            let mut dims = vec![1i64];
            dims.extend(shape.iter().map(|&d| i64::from(d)));
            tch::manual_seed(0);
            (Tensor::rand(dims.as_slice(), (Kind::Float, device)), None)
        }
        InputSpec::Text { .. } => {
            let (ids, mask) = minilm::profile_example(bundle)?;
            (ids, Some(mask))
        }
    };
    let cfg = match bundle.model.architecture.family() {
        Family::Minilm => minilm::profile_config(),
        Family::Resnet | Family::Vgg => ProfileConfig::default(),
    };
    bundle.profile = profile_latency(&bundle.model, &example, mask.as_ref(), &cfg, progress);
    bundle.manifest.profiled_on = crate::device::device_label(device);
    Ok(())
}
