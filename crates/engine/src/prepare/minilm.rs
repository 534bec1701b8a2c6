//! `prepare` for the `minilm` family: the pretrained all-MiniLM-L6-v2 encoder, frozen,
//! with a sentiment head (masked mean pool → linear, 2 classes) trained here on the
//! movie-review training split, and a ramp after every encoder layer but the last.
//!
//! The encoder runs over every sentence exactly once: the masked mean of each layer's
//! output is cached, and the head and all ramps train on those `[n, 384]` rows, so
//! training costs seconds once the features exist. Sentences are batched by token
//! length, so padding costs almost nothing.

use apparate_controller::rng::SplitMix64;
use tch::{Kind, Tensor};

use super::{Phase, PrepareOptions, PrepareProgress};
use crate::{
    Bundle, EarlyExitModel, EngineError, InputSpec, Manifest, Result,
    bundle::FORMAT_VERSION,
    data::{Domain, SplitSpec, TextExample, data_dir, load_vader_split},
    evaluate::report_from_logits,
    model::{Family, MiniLmSpec},
    profiler::{ProfileConfig, profile_latency},
    text::{DEFAULT_MAX_TOKENS, TextTokenizer},
    train::{TrainConfig, final_predictions, fit_head, fit_ramps},
};

/// Sentiment classes, by label (the VADER corpora binarised by sign).
pub const SENTIMENT_CLASSES: [&str; 2] = ["negative", "positive"];
/// Longest text a `minilm` bundle accepts; the tokenizer keeps its first 128 tokens.
const MAX_TEXT_BYTES: u32 = 4096;
/// Sentences per encoder batch while caching features.
const FEATURE_BATCH: usize = 64;
/// Quick mode's slices of the movie-review train and test splits.
const QUICK_TRAIN: usize = 1000;
const QUICK_TEST: usize = 400;
/// Passes over the cached features for the head and for the ramps: a few seconds.
const HEAD_EPOCHS: u32 = 200;

/// Runs the whole pipeline for `minilm` and returns the bundle (not yet saved). Needs
/// `data_dir()/minilm` and `data_dir()/vader`; the bundle it returns does not.
pub fn prepare_minilm(opts: &PrepareOptions, progress: PrepareProgress<'_>) -> Result<Bundle> {
    if opts.family != Family::Minilm {
        return Err(EngineError::InvalidInput(format!(
            "prepare_minilm prepares minilm, not {}",
            opts.family.as_str()
        )));
    }
    let seed = u64::from_le_bytes(opts.seed.to_le_bytes());
    let encoder_dir = data_dir().join("minilm");
    let split = load_vader_split(
        &data_dir().join("vader"),
        Domain::Movie,
        SplitSpec::default(),
    )?;
    let (mut train, mut test) = (split.train, split.test);
    let mut profile_cfg = profile_config();
    if opts.quick {
        train = random_subset(train, QUICK_TRAIN, seed);
        test = random_subset(test, QUICK_TEST, seed);
        profile_cfg = ProfileConfig {
            batch_sizes: vec![1, 8],
            reps: 3,
            warmup: 1,
        };
    }
    let spec = MiniLmSpec {
        classes: SENTIMENT_CLASSES.len() as i64,
        max_tokens: DEFAULT_MAX_TOKENS,
    };
    tch::manual_seed(opts.seed);
    let mut model = EarlyExitModel::minilm(spec.clone(), &encoder_dir, opts.device)?;
    let tokenizer = TextTokenizer::from_file(&encoder_dir.join("tokenizer.json"), spec.max_tokens)?;

    let texts: Vec<&str> = train.iter().chain(&test).map(|e| e.text.as_str()).collect();
    let (cut_features, final_features) =
        encode_features(&model, &tokenizer, &texts, &mut |done, total| {
            progress(Phase::Features, done, total, None)
        })?;
    let n_train = i64::try_from(train.len()).expect("fits");
    let n_test = i64::try_from(test.len()).expect("fits");
    let labels = |set: &[TextExample]| {
        Tensor::from_slice(&set.iter().map(|e| i64::from(e.label)).collect::<Vec<_>>())
            .to_device(opts.device)
    };
    let (train_labels, test_labels) = (labels(&train), labels(&test));

    // Linear heads on raw mean-pooled states train slowly (their scales differ by
    // orders of magnitude across dimensions); each head trains on standardised features
    // and the standardisation is folded into its weights afterwards.
    let standardize = |f: &Tensor| {
        let train = f.narrow(0, 0, n_train);
        let mean = train.mean_dim([0i64].as_slice(), false, Kind::Float);
        let std = (&train - &mean)
            .square()
            .mean_dim([0i64].as_slice(), false, Kind::Float)
            .sqrt()
            .clamp_min(1e-4);
        ((f - &mean) / &std, mean, std)
    };
    let (final_std, mean, std) = standardize(&final_features);
    fit_head(
        &mut model,
        &final_std.narrow(0, 0, n_train),
        &train_labels,
        opts.epochs.unwrap_or(HEAD_EPOCHS),
        opts.seed,
        &mut |s, t, l| progress(Phase::Head, s, t, Some(l)),
    )?;
    model.head.fold_standardization(&mean, &std);

    let (bootstrap, held_out) = split_rows(train.len(), opts.bootstrap_share, seed);
    let (bootstrap, held_out) = (
        bootstrap.to_device(opts.device),
        held_out.to_device(opts.device),
    );
    let mut folds = Vec::with_capacity(cut_features.len());
    let boot_features: Vec<Tensor> = cut_features
        .iter()
        .map(|f| {
            let (f, mean, std) = standardize(f);
            folds.push((mean, std));
            f.index_select(0, &bootstrap)
        })
        .collect();
    let targets = final_predictions(&model, &final_features.index_select(0, &bootstrap));
    let cfg = TrainConfig {
        ramp_epochs: HEAD_EPOCHS,
        seed: opts.seed,
        ..TrainConfig::default()
    };
    fit_ramps(
        &mut model,
        &boot_features,
        &targets,
        &cfg,
        &mut |s, t, l| progress(Phase::Ramps, s, t, Some(l)),
    )?;
    for (ramp, (mean, std)) in model.ramps.iter_mut().zip(&folds) {
        ramp.fold_standardization(mean, std);
    }
    // Heads fitted this long on a few hundred sentences are overconfident: a quarter of their
    // outputs read exactly 1.0 in f32, wrong ones included, which no threshold can separate.
    // One temperature per ramp, fitted on the training rows outside the bootstrap split,
    // spreads them out again (argmax, and so agreement, unchanged).
    if held_out.numel() > 0 {
        let _guard = tch::no_grad_guard();
        let targets = final_predictions(&model, &final_features.index_select(0, &held_out));
        for (ramp, f) in model.ramps.iter_mut().zip(&cut_features) {
            let logits = ramp.forward_pooled(&f.index_select(0, &held_out));
            ramp.scale_logits(fit_temperature(&logits, &targets));
        }
    }

    let report = {
        let _guard = tch::no_grad_guard();
        let ramp_logits: Vec<Tensor> = cut_features
            .iter()
            .zip(&model.ramps)
            .map(|(f, ramp)| ramp.forward_pooled(&f.narrow(0, n_train, n_test)))
            .collect();
        let final_logits = model
            .head
            .forward_pooled(&final_features.narrow(0, n_train, n_test));
        report_from_logits(
            model.cuts(),
            &ramp_logits,
            &final_logits,
            &test_labels,
            &format!("vader movie-review test ({})", test.len()),
        )
    };

    let example = tokenizer.encode(&[typical_sentence(&test, &tokenizer)?], opts.device)?;
    let profile = profile_latency(
        &model,
        &example.input_ids,
        Some(&example.attention_mask),
        &profile_cfg,
        |s, t| progress(Phase::Profile, s, t, None),
    );

    let manifest = Manifest {
        format_version: FORMAT_VERSION,
        name: "minilm-sentiment".to_owned(),
        classes: SENTIMENT_CLASSES.iter().map(|c| (*c).to_owned()).collect(),
        input: InputSpec::Text {
            max_bytes: MAX_TEXT_BYTES,
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
        tokenizer: Some(tokenizer),
        encoder_dir: Some(encoder_dir),
    })
}

/// Pooled features of every text at every cut and at the final head's input, in the
/// order of `texts`. `progress(done, total)` counts batches.
fn encode_features(
    model: &EarlyExitModel,
    tokenizer: &TextTokenizer,
    texts: &[&str],
    progress: &mut dyn FnMut(u64, u64),
) -> Result<(Vec<Tensor>, Tensor)> {
    let mut order: Vec<(usize, usize)> = texts
        .iter()
        .enumerate()
        .map(|(i, t)| Ok((tokenizer.ids(t)?.len(), i)))
        .collect::<Result<_>>()?;
    order.sort_unstable();
    let batches = order.len().div_ceil(FEATURE_BATCH) as u64;
    let mut per_cut: Vec<Vec<Tensor>> = model.cuts().iter().map(|_| Vec::new()).collect();
    let mut last = Vec::new();
    for (done, chunk) in order.chunks(FEATURE_BATCH).enumerate() {
        let batch: Vec<&str> = chunk.iter().map(|&(_, i)| texts[i]).collect();
        let tokens = tokenizer.encode(&batch, model.device())?;
        let (cuts, fin) = model.pooled(&tokens.input_ids, Some(&tokens.attention_mask));
        for (all, f) in per_cut.iter_mut().zip(cuts) {
            all.push(f);
        }
        last.push(fin);
        progress(done as u64 + 1, batches);
    }
    // Row r of the sorted features is text order[r].1; put every text back in its place.
    let mut inverse = vec![0i64; order.len()];
    for (row, &(_, i)) in order.iter().enumerate() {
        inverse[i] = i64::try_from(row).expect("fits");
    }
    let inverse = Tensor::from_slice(&inverse).to_device(model.device());
    let unsort = |parts: &[Tensor]| Tensor::cat(parts, 0).index_select(0, &inverse);
    Ok((per_cut.iter().map(|p| unsort(p)).collect(), unsort(&last)))
}

/// Splits the rows `0..n` with `seed` into the bootstrap split, `round(n × share)` (at least
/// 1) of them, and the rest; both ascending.
fn split_rows(n: usize, share: f64, seed: u64) -> (Tensor, Tensor) {
    let count = ((n as f64 * share).round() as usize).clamp(1, n.max(1));
    let order: Vec<i64> = shuffled(n, seed)
        .into_iter()
        .map(|i| i64::try_from(i).expect("fits"))
        .collect();
    let (mut bootstrap, mut rest) = (order[..count].to_vec(), order[count..].to_vec());
    bootstrap.sort_unstable();
    rest.sort_unstable();
    (Tensor::from_slice(&bootstrap), Tensor::from_slice(&rest))
}

/// The temperature `T` on a log grid from 1/4 to 256 that minimises the cross-entropy of
/// `softmax(logits / T)` against `targets` (temperature scaling, Guo et al. 2017).
fn fit_temperature(logits: &Tensor, targets: &Tensor) -> f64 {
    (0..=60)
        .map(|k| 2f64.powf(-2.0 + 10.0 * f64::from(k) / 60.0))
        .map(|t| {
            (
                (logits / t)
                    .cross_entropy_for_logits(targets)
                    .double_value(&[]),
                t,
            )
        })
        .min_by(|a, b| a.0.total_cmp(&b.0))
        .map_or(1.0, |(_, t)| t)
}

/// Encoder passes are long: fewer repetitions than the CNNs' default.
pub(crate) fn profile_config() -> ProfileConfig {
    ProfileConfig {
        reps: 10,
        warmup: 2,
        ..ProfileConfig::default()
    }
}

/// A sentence of median token length: it stands for the workload in the profile.
fn typical_sentence<'a>(test: &'a [TextExample], tokenizer: &TextTokenizer) -> Result<&'a str> {
    let mut by_length: Vec<(usize, &str)> = test
        .iter()
        .map(|e| Ok((tokenizer.ids(&e.text)?.len(), e.text.as_str())))
        .collect::<Result<_>>()?;
    by_length.sort_unstable();
    by_length
        .get(by_length.len() / 2)
        .map(|&(_, text)| text)
        .ok_or_else(|| EngineError::InvalidInput("no test sentences to profile with".into()))
}

/// The profiling input of a text bundle: the median-length movie-review test sentence,
/// exactly as `prepare` picks it. Needs `data_dir()/vader`.
pub(crate) fn profile_example(bundle: &Bundle) -> Result<(Tensor, Tensor)> {
    let split = load_vader_split(
        &data_dir().join("vader"),
        Domain::Movie,
        SplitSpec::default(),
    )?;
    let typical = typical_sentence(&split.test, bundle.text_input()?.0)?;
    bundle.encode_texts(&[typical])
}

/// `count` examples chosen with `seed`, kept in their original order.
fn random_subset(examples: Vec<TextExample>, count: usize, seed: u64) -> Vec<TextExample> {
    let mut keep = vec![false; examples.len()];
    for i in shuffled(examples.len(), seed).into_iter().take(count) {
        keep[i] = true;
    }
    examples
        .into_iter()
        .zip(keep)
        .filter_map(|(e, k)| k.then_some(e))
        .collect()
}

/// A seeded Fisher-Yates permutation of `0..n`.
fn shuffled(n: usize, seed: u64) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    let mut rng = SplitMix64::new(seed);
    for i in (1..n).rev() {
        order.swap(i, rng.below(i as u64 + 1) as usize);
    }
    order
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temperature_cools_overconfident_logits_and_sharpens_timid_ones() {
        let targets = Tensor::from_slice(&[0i64, 0, 1, 1]);
        // Certain on every row, wrong on one of four: a high temperature fits best.
        let loud = Tensor::from_slice(&[20f32, -20., 20., -20., 20., -20., -20., 20.]).view([4, 2]);
        assert!(fit_temperature(&loud, &targets) > 8.0);
        // Right on every row with small margins: the coolest temperature on the grid.
        let timid =
            Tensor::from_slice(&[0.5f32, -0.5, 0.5, -0.5, -0.5, 0.5, -0.5, 0.5]).view([4, 2]);
        assert_eq!(fit_temperature(&timid, &targets), 0.25);
    }

    #[test]
    fn the_bootstrap_split_and_the_rest_cover_every_row_once() {
        let (boot, rest) = split_rows(10, 0.3, 7);
        let (boot, rest) = (
            Vec::<i64>::try_from(&boot).unwrap(),
            Vec::<i64>::try_from(&rest).unwrap(),
        );
        assert_eq!(boot.len(), 3);
        assert!(boot.windows(2).all(|w| w[0] < w[1]) && rest.windows(2).all(|w| w[0] < w[1]));
        let mut all = [boot, rest].concat();
        all.sort_unstable();
        assert_eq!(all, (0..10).collect::<Vec<i64>>());
    }
}
