//! Fashion-MNIST in its IDX format, gzipped, as Debian's `dataset-fashion-mnist` ships it.

use std::{io::Read, path::Path};

use flate2::read::GzDecoder;
use tch::{Kind, Tensor};

use super::read_file;
use crate::{EngineError, Result};

/// Class names, by label.
pub const FASHION_MNIST_CLASSES: [&str; 10] = [
    "t-shirt",
    "trouser",
    "pullover",
    "dress",
    "coat",
    "sandal",
    "shirt",
    "sneaker",
    "bag",
    "ankle-boot",
];

const IMAGE_MAGIC: u32 = 0x0000_0803;
const LABEL_MAGIC: u32 = 0x0000_0801;
const SIDE: usize = 28;

/// Which half of the data set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    /// Fashion-MNIST: 60,000 images; MNIST: 8,000.
    Train,
    /// Fashion-MNIST: 10,000 images; MNIST: 2,000.
    Test,
}

/// Images as `[n, 1, 28, 28]` float32 in [0, 1] and labels as `[n]` int64, on the CPU.
#[derive(Debug)]
pub struct ImageSet {
    pub images: Tensor,
    pub labels: Tensor,
}

impl ImageSet {
    /// Number of examples.
    pub fn len(&self) -> usize {
        usize::try_from(self.labels.size()[0]).unwrap_or(0)
    }

    /// Examples `start..start + len` (a view, no copy).
    pub fn slice(&self, start: usize, len: usize) -> Self {
        let (start, len) = (
            i64::try_from(start).expect("fits"),
            i64::try_from(len).expect("fits"),
        );
        Self {
            images: self.images.narrow(0, start, len),
            labels: self.labels.narrow(0, start, len),
        }
    }

    /// True when there are no examples.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Loads one split from `dir` (normally `data_dir()/fashion-mnist`).
pub fn load_fashion_mnist(dir: &Path, split: Split) -> Result<ImageSet> {
    let prefix = match split {
        Split::Train => "train",
        Split::Test => "t10k",
    };
    let image_path = dir.join(format!("{prefix}-images-idx3-ubyte.gz"));
    let label_path = dir.join(format!("{prefix}-labels-idx1-ubyte.gz"));
    let pixels = read_idx(&image_path, IMAGE_MAGIC, &[SIDE, SIDE])?;
    let labels = read_idx(&label_path, LABEL_MAGIC, &[])?;
    let n = labels.len();
    if pixels.len() != n * SIDE * SIDE {
        return Err(EngineError::BadData {
            path: image_path,
            reason: format!(
                "holds {} images but the label file has {n}",
                pixels.len() / (SIDE * SIDE)
            ),
        });
    }
    if let Some(bad) = labels
        .iter()
        .find(|&&l| usize::from(l) >= FASHION_MNIST_CLASSES.len())
    {
        return Err(EngineError::BadData {
            path: label_path,
            reason: format!("label {bad} is not a class"),
        });
    }
    let n = i64::try_from(n).expect("fits");
    let side = i64::try_from(SIDE).expect("fits");
    let images = Tensor::from_slice(&pixels)
        .view([n, 1, side, side])
        .to_kind(Kind::Float)
        / 255.0;
    let labels = Tensor::from_slice(&labels).to_kind(Kind::Int64);
    Ok(ImageSet { images, labels })
}

/// Reads a gzipped IDX file of unsigned bytes and checks its header: the magic
/// number and the trailing dimensions `inner` (the first dimension is the count).
fn read_idx(path: &Path, magic: u32, inner: &[usize]) -> Result<Vec<u8>> {
    let bad = |reason: String| EngineError::BadData {
        path: path.to_owned(),
        reason,
    };
    let mut bytes = Vec::new();
    GzDecoder::new(read_file(path)?.as_slice())
        .read_to_end(&mut bytes)
        .map_err(|e| bad(format!("not valid gzip ({e})")))?;
    let header_len = 4 * (2 + inner.len());
    if bytes.len() < header_len {
        return Err(bad(format!(
            "only {} bytes, shorter than its header",
            bytes.len()
        )));
    }
    let word = |i: usize| u32::from_be_bytes(bytes[4 * i..4 * i + 4].try_into().expect("4 bytes"));
    if word(0) != magic {
        return Err(bad(format!(
            "magic number {:#010x}, expected {magic:#010x}",
            word(0)
        )));
    }
    let mut expected = word(1) as usize;
    for (i, &dim) in inner.iter().enumerate() {
        if word(2 + i) as usize != dim {
            return Err(bad(format!(
                "dimension {} is {}, expected {dim}",
                i + 1,
                word(2 + i)
            )));
        }
        expected *= dim;
    }
    bytes.drain(..header_len);
    if bytes.len() != expected {
        return Err(bad(format!(
            "{} data bytes, header promises {expected}",
            bytes.len()
        )));
    }
    Ok(bytes)
}
