//! `prepare` for the CNN families: train the backbone on Fashion-MNIST, distil the
//! ramps on the bootstrap split, evaluate on the test set, profile on the serving
//! device, and assemble a bundle.

use super::{Phase, PrepareOptions, PrepareProgress};
use crate::{
    Bundle, EarlyExitModel, InputSpec, Manifest, Result,
    bundle::FORMAT_VERSION,
    data::{FASHION_MNIST_CLASSES, Split, data_dir, load_fashion_mnist},
    evaluate,
    model::{CnnSpec, Family},
    profiler::{ProfileConfig, profile_latency},
    train::{TrainConfig, train_backbone, train_ramps},
};

/// Runs the whole pipeline for `resnet` or `vgg` and returns the bundle (not yet saved).
pub fn prepare_cnn(opts: &PrepareOptions, progress: PrepareProgress<'_>) -> Result<Bundle> {
    let spec = match opts.family {
        Family::Resnet => CnnSpec::resnet(10),
        Family::Vgg => CnnSpec::vgg(10),
        Family::Minilm => {
            return Err(crate::EngineError::InvalidInput(
                "prepare_cnn prepares resnet or vgg; use prepare_minilm for minilm".into(),
            ));
        }
    };
    let dir = data_dir().join("fashion-mnist");
    let mut train = load_fashion_mnist(&dir, Split::Train)?;
    let mut test = load_fashion_mnist(&dir, Split::Test)?;
    let mut cfg = TrainConfig {
        seed: opts.seed,
        ..TrainConfig::default()
    };
    let mut profile_cfg = ProfileConfig::default();
    if opts.quick {
        // Enough steps for batch norm's running statistics to settle, at a gentler peak.
        train = train.slice(0, 6000);
        test = test.slice(0, 1000);
        cfg.epochs = 1;
        cfg.lr = 0.05;
        cfg.ramp_epochs = 15;
        profile_cfg = ProfileConfig {
            batch_sizes: vec![1, 8, 64],
            reps: 5,
            warmup: 1,
        };
    }
    cfg.epochs = opts.epochs.unwrap_or(cfg.epochs);

    tch::manual_seed(opts.seed);
    let mut model = EarlyExitModel::cnn(spec, opts.device);
    train_backbone(
        &mut model,
        &train.images,
        &train.labels,
        &cfg,
        &mut |s, t, l| progress(Phase::Backbone, s, t, Some(l)),
    )?;
    let bootstrap =
        ((train.len() as f64 * opts.bootstrap_share).ceil() as usize).clamp(1, train.len());
    let bootstrap = train.slice(0, bootstrap);
    train_ramps(&mut model, &bootstrap.images, &cfg, &mut |s, t, l| {
        progress(Phase::Ramps, s, t, Some(l))
    })?;
    let report = evaluate(
        &model,
        &test.images,
        &test.labels,
        &format!("fashion-mnist test ({})", test.len()),
    );
    let example = test.slice(0, 1).images;
    let profile = profile_latency(&model, &example, None, &profile_cfg, |s, t| {
        progress(Phase::Profile, s, t, None)
    });
    let manifest = Manifest {
        format_version: FORMAT_VERSION,
        name: format!("{}-fmnist", opts.family.as_str()),
        classes: FASHION_MNIST_CLASSES
            .iter()
            .map(|c| (*c).to_owned())
            .collect(),
        input: InputSpec::Tensor {
            shape: vec![1, 28, 28],
        },
        candidates: model.cuts().to_vec(),
        architecture: model.architecture.clone(),
        profiled_on: crate::device::device_label(opts.device),
    };
    Ok(Bundle {
        manifest,
        model,
        profile,
        report,
        tokenizer: None,
        encoder_dir: None,
    })
}
