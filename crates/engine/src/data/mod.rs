//! Real data sets, read from the cache that `scripts/bootstrap.sh data` fills.

mod fashion_mnist;
mod mnist;
mod vader;

use std::path::{Path, PathBuf};

pub use fashion_mnist::{FASHION_MNIST_CLASSES, ImageSet, Split, load_fashion_mnist};
pub use mnist::{MNIST_CLASSES, MNIST_SPLIT_SEED, load_mnist};
pub use vader::{
    DEFAULT_SPLIT_SEED, Domain, SplitSpec, TextExample, TextSplit, load_vader, load_vader_split,
    split_examples,
};

use crate::{EngineError, Result};

/// The data cache: `$APPARATE_DATA`, else `~/.cache/apparate/data` (the bootstrap default).
pub fn data_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("APPARATE_DATA") {
        return PathBuf::from(dir);
    }
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("."), PathBuf::from);
    home.join(".cache/apparate/data")
}

/// Reads a whole file, turning "not found" into advice on how to fetch it.
pub(crate) fn read_file(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|source| match source.kind() {
        std::io::ErrorKind::NotFound => EngineError::MissingData {
            path: path.to_owned(),
        },
        _ => EngineError::Io {
            path: path.to_owned(),
            source,
        },
    })
}
