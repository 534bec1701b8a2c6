//! `prepare` for the CNN families: train the backbone on Fashion-MNIST, distil the
//! ramps on the bootstrap split, evaluate on the test set, profile on the serving
//! device, and assemble a bundle.

use apparate_controller::rng::SplitMix64;

use super::{Phase, PrepareOptions, PrepareProgress};
use crate::{
    Bundle, EarlyExitModel, InputSpec, Manifest, Result,
    bundle::FORMAT_VERSION,
    data::{FASHION_MNIST_CLASSES, Split, data_dir, load_fashion_mnist},
    evaluate,
    model::{CnnSpec, Family},
    profiler::{ProfileConfig, profile_latency},
    train::{TrainConfig, train_backbone, train_ramps},
    workload::{Corruption, corrupt_image},
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
        deep_supervision: opts.deep_supervision,
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
    let ramp_inputs = with_corrupted_copies(&bootstrap.images, opts.ramp_augment_copies, opts.seed);
    train_ramps(&mut model, &ramp_inputs, &cfg, &mut |s, t, l| {
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

/// `images` (`[N, 1, side, side]`, pixels in [0, 1]) followed by `copies` corrupted
/// versions of each, with seeded random contrast, brightness, blur and noise. Ramps learn
/// the backbone's answer on these too, so a ramp's confidence still means something when
/// the light or the focus changes: trained on clean images only, the shallow ramps were
/// confidently wrong on dim, noisy ones (docs/decisions.md).
fn with_corrupted_copies(images: &tch::Tensor, copies: usize, seed: i64) -> tch::Tensor {
    let size = images.size();
    let side = usize::try_from(size[size.len() - 1]).expect("image side");
    let clean = Vec::<f32>::try_from(images.flatten(0, -1)).expect("f32 images");
    let mut rng = SplitMix64::new(seed as u64 ^ 0x5EED_0FC0_FFEE);
    let mut all = clean.clone();
    for _ in 0..copies {
        for image in clean.chunks(side * side) {
            let c = Corruption {
                contrast: 0.3 + 0.7 * rng.unit(),
                brightness: 0.4 * rng.unit() - 0.25,
                blur_sigma_px: if rng.unit() < 0.3 {
                    1.5 * rng.unit()
                } else {
                    0.0
                },
                noise_sigma: if rng.unit() < 0.5 {
                    0.12 * rng.unit()
                } else {
                    0.0
                },
            };
            let mut pixels = image.to_vec();
            corrupt_image(&mut pixels, side, &c, &mut rng);
            all.extend_from_slice(&pixels);
        }
    }
    let mut shape = size;
    shape[0] *= 1 + copies as i64;
    tch::Tensor::from_slice(&all).view(shape.as_slice())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn corrupted_copies_follow_the_clean_images_and_are_seeded() {
        let images = tch::Tensor::rand([5, 1, 28, 28], (tch::Kind::Float, tch::Device::Cpu));
        let out = with_corrupted_copies(&images, 3, 7);
        assert_eq!(out.size(), [20, 1, 28, 28]);
        assert!(
            out.narrow(0, 0, 5).equal(&images),
            "clean images come first"
        );
        let copies = out.narrow(0, 5, 15);
        assert!(copies.min().double_value(&[]) >= 0.0 && copies.max().double_value(&[]) <= 1.0);
        for k in 0..3 {
            let copy = out.narrow(0, 5 * (k + 1), 5);
            assert!(!copy.equal(&images), "copy {k} is corrupted");
        }
        assert!(out.equal(&with_corrupted_copies(&images, 3, 7)));
        assert!(!out.equal(&with_corrupted_copies(&images, 3, 8)));
        assert!(with_corrupted_copies(&images, 0, 7).equal(&images));
    }
}
