//! The data behind a workload, and the batches of model inputs it yields.

use std::path::Path;

use apparate_controller::rng::SplitMix64;
use tch::Tensor;

use super::{
    DatasetKind, Mix, SplitKind, Workload, WorkloadError,
    plan::{PlannedRequest, Pools, RequestSource, plan},
};
use crate::{
    EngineError,
    data::{
        Domain, Split, SplitSpec, TextExample, load_fashion_mnist, load_mnist, load_vader_split,
    },
    workload::corrupt_image,
};

const SIDE: usize = 28;
const PIXELS: usize = SIDE * SIDE;

/// A batch's model input.
#[derive(Debug)]
pub enum BatchInput {
    /// `[B, 1, 28, 28]` float32 in [0, 1], on the CPU.
    Images(Tensor),
    /// One sentence per request.
    Texts(Vec<String>),
}

/// Consecutive requests of the stream, ready for a forward pass.
#[derive(Debug)]
pub struct WorkloadBatch {
    /// The requests, in stream order.
    pub requests: Vec<PlannedRequest>,
    pub input: BatchInput,
    /// Ground truth per request (class index; text: 1 = positive).
    pub labels: Vec<u32>,
}

enum Data {
    Images { pixels: Vec<f32>, labels: Vec<u32> },
    Text(Vec<(Domain, Vec<TextExample>)>),
}

/// A workload bound to its data: the planned stream, batch by batch.
pub struct WorkloadStream {
    workload: Workload,
    plan: Vec<PlannedRequest>,
    data: Data,
}

impl std::fmt::Debug for WorkloadStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkloadStream")
            .field("workload", &self.workload.name)
            .field("requests", &self.plan.len())
            .finish_non_exhaustive()
    }
}

impl WorkloadStream {
    /// Loads the data the workload needs from `data_dir` (normally [`crate::data::data_dir`])
    /// and plans every request.
    pub fn open(workload: &Workload, data_dir: &Path) -> Result<Self, WorkloadError> {
        let (data, pools) = match workload.dataset {
            DatasetKind::FashionMnist | DatasetKind::Mnist => {
                let split = match workload.split {
                    SplitKind::Test => Split::Test,
                    SplitKind::Train => Split::Train,
                };
                let set = if workload.dataset == DatasetKind::Mnist {
                    load_mnist(&data_dir.join("mnist"), split)?
                } else {
                    load_fashion_mnist(&data_dir.join("fashion-mnist"), split)?
                };
                let pixels =
                    Vec::<f32>::try_from(set.images.flatten(0, -1)).map_err(EngineError::from)?;
                let labels = Vec::<i64>::try_from(&set.labels).map_err(EngineError::from)?;
                image_data(pixels, labels.into_iter().map(|l| l as u32).collect())
            }
            DatasetKind::Vader => {
                let mut domains: Vec<Domain> = workload
                    .mixes
                    .iter()
                    .filter_map(|m| match m {
                        Mix::Domain(d) => Some(*d),
                        Mix::Classes(_) => None,
                    })
                    .collect();
                domains.sort();
                domains.dedup();
                let mut texts = Vec::new();
                let mut pools = Pools::default();
                for d in domains {
                    let split = load_vader_split(&data_dir.join("vader"), d, SplitSpec::default())?;
                    let examples = match workload.split {
                        SplitKind::Test => split.test,
                        SplitKind::Train => split.train,
                    };
                    pools.domains.push((d, (0..examples.len()).collect()));
                    texts.push((d, examples));
                }
                (Data::Text(texts), pools)
            }
        };
        for (s, mix) in workload.mixes.iter().enumerate() {
            if let Mix::Classes(weights) = mix
                && let Some(c) = weights
                    .iter()
                    .zip(&pools.classes)
                    .position(|(&w, pool)| w > 0.0 && pool.is_empty())
            {
                return Err(WorkloadError::Invalid {
                    path: workload.name.clone(),
                    reason: format!(
                        "segments[{s}].class_mix: class {c} has no examples in the data"
                    ),
                });
            }
        }
        let plan = plan(workload, &pools);
        Ok(Self {
            workload: workload.clone(),
            plan,
            data,
        })
    }

    /// The workload.
    pub fn workload(&self) -> &Workload {
        &self.workload
    }

    /// Every request, in order.
    pub fn plan(&self) -> &[PlannedRequest] {
        &self.plan
    }

    /// Number of requests.
    pub fn len(&self) -> usize {
        self.plan.len()
    }

    /// True when there are no requests.
    pub fn is_empty(&self) -> bool {
        self.plan.is_empty()
    }

    /// The batch of requests `start..start + len` (clipped to the stream).
    pub fn batch(&self, start: usize, len: usize) -> WorkloadBatch {
        let end = (start + len).min(self.plan.len());
        let requests = self.plan[start.min(end)..end].to_vec();
        let mut labels = Vec::with_capacity(requests.len());
        let input = match &self.data {
            Data::Images {
                pixels,
                labels: truth,
            } => {
                let mut buf = Vec::with_capacity(requests.len() * PIXELS);
                for r in &requests {
                    let RequestSource::Image {
                        index,
                        corruption,
                        noise_seed,
                        ..
                    } = r.source
                    else {
                        unreachable!("image workloads plan image requests")
                    };
                    let mut img = pixels[index * PIXELS..(index + 1) * PIXELS].to_vec();
                    corrupt_image(
                        &mut img,
                        SIDE,
                        &corruption,
                        &mut SplitMix64::new(noise_seed),
                    );
                    buf.extend_from_slice(&img);
                    labels.push(truth[index]);
                }
                let n = requests.len() as i64;
                BatchInput::Images(Tensor::from_slice(&buf).view([n, 1, SIDE as i64, SIDE as i64]))
            }
            Data::Text(domains) => {
                let texts = requests
                    .iter()
                    .map(|r| {
                        let RequestSource::Text { domain, index } = r.source else {
                            unreachable!("text workloads plan text requests")
                        };
                        let examples = &domains
                            .iter()
                            .find(|(d, _)| *d == domain)
                            .expect("loaded")
                            .1;
                        labels.push(u32::from(examples[index].label));
                        examples[index].text.clone()
                    })
                    .collect();
                BatchInput::Texts(texts)
            }
        };
        WorkloadBatch {
            requests,
            input,
            labels,
        }
    }

    /// Consecutive batches of `batch_size` requests (the last may be shorter).
    pub fn batches(&self, batch_size: usize) -> impl Iterator<Item = WorkloadBatch> + '_ {
        let size = batch_size.max(1);
        (0..self.plan.len())
            .step_by(size)
            .map(move |start| self.batch(start, size))
    }
}

fn image_data(pixels: Vec<f32>, labels: Vec<u32>) -> (Data, Pools) {
    let classes = labels.iter().max().map_or(0, |&m| m as usize + 1);
    let mut pools = Pools {
        classes: vec![Vec::new(); classes.max(10)],
        domains: Vec::new(),
    };
    for (i, &l) in labels.iter().enumerate() {
        pools.classes[l as usize].push(i);
    }
    (Data::Images { pixels, labels }, pools)
}
