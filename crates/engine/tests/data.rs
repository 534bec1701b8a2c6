//! The loaders parse the real files fetched by `scripts/bootstrap.sh data`.

use std::io::Write;

use apparate_engine::{
    EngineError,
    data::{FASHION_MNIST_CLASSES, Split, data_dir, load_fashion_mnist},
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
