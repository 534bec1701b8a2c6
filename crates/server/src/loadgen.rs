//! An open-loop load generator: requests arrive on a schedule (Poisson or evenly
//! spaced) whether or not earlier ones were answered, as on a real service, so queueing
//! shows up in the latencies instead of being hidden by a closed loop.

use std::{
    collections::BTreeMap,
    sync::Arc,
    time::{Duration, Instant},
};

use apparate_controller::rng::SplitMix64;
use apparate_proto::v1::{self, inference_client::InferenceClient};
use hdrhistogram::Histogram;
use tokio::sync::mpsc;
use tonic::transport::Channel;

/// How to drive the server.
#[derive(Debug, Clone)]
pub struct LoadSpec {
    /// Mean arrivals per second.
    pub rate_per_s: f64,
    /// How long to keep sending.
    pub duration: Duration,
    /// Exponential inter-arrival gaps (Poisson arrivals) instead of even spacing.
    pub poisson: bool,
    /// Seed of the arrival process.
    pub seed: u64,
    /// Requests allowed in flight; arrivals beyond it are counted as `skipped`
    /// (the server is overloaded: say so rather than exhaust memory).
    pub max_in_flight: usize,
}

impl Default for LoadSpec {
    fn default() -> Self {
        Self {
            rate_per_s: 200.0,
            duration: Duration::from_secs(10),
            poisson: true,
            seed: 1,
            max_in_flight: 4096,
        }
    }
}

/// One answered request.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Index into the inputs (arrival number modulo their count).
    pub input: usize,
    /// Client-side latency, microseconds.
    pub latency_us: u64,
    pub reply: v1::InferReply,
}

/// What a run measured.
#[derive(Debug)]
pub struct LoadReport {
    pub sent: u64,
    pub skipped: u64,
    /// Failed requests by gRPC code.
    pub errors: BTreeMap<String, u64>,
    pub elapsed: Duration,
    pub samples: Vec<Sample>,
}

impl LoadReport {
    /// Answered requests per second of the run.
    pub fn throughput(&self) -> f64 {
        self.samples.len() as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// Latency quantile `q` in [0, 1], milliseconds (0 without samples).
    pub fn latency_ms(&self, q: f64) -> f64 {
        // 1 µs .. 1 h at 3 significant figures; longer latencies saturate.
        let mut h = Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3).expect("valid bounds");
        for s in &self.samples {
            h.saturating_record(s.latency_us.max(1));
        }
        h.value_at_quantile(q) as f64 / 1000.0
    }

    /// Share of answers released by a ramp.
    pub fn exit_rate(&self) -> f64 {
        let early = self
            .samples
            .iter()
            .filter(|s| s.reply.ramp_id.is_some())
            .count();
        early as f64 / self.samples.len().max(1) as f64
    }
}

/// One `Infer` request per image of `images` (`[N, ...]`, float32, any device), each
/// tagged `client_tag`.
pub fn tensor_requests(images: &tch::Tensor, client_tag: &str) -> Vec<v1::InferRequest> {
    let dims = images.size();
    let shape: Vec<u32> = dims[1..]
        .iter()
        .map(|&d| u32::try_from(d).expect("non-negative dimension"))
        .collect();
    let flat: Vec<f32> = Vec::try_from(
        images
            .to_device(tch::Device::Cpu)
            .to_kind(tch::Kind::Float)
            .contiguous()
            .view([-1]),
    )
    .expect("float tensor");
    let per = shape.iter().map(|&d| d as usize).product::<usize>().max(1);
    flat.chunks(per)
        .map(|values| v1::InferRequest {
            client_tag: client_tag.to_owned(),
            input: Some(v1::infer_request::Input::Tensor(v1::Tensor {
                shape: shape.clone(),
                values: values.to_vec(),
            })),
        })
        .collect()
}

/// Dials `endpoint` (e.g. `http://127.0.0.1:50051`).
pub async fn connect(
    endpoint: &str,
) -> Result<InferenceClient<Channel>, Box<dyn std::error::Error + Send + Sync>> {
    let channel = Channel::from_shared(endpoint.to_owned())?.connect().await?;
    Ok(InferenceClient::new(channel))
}

/// Sends `inputs` (cycled) at `spec`'s rate for `spec.duration`, then waits for every
/// answer. `on_sample` sees each answer as it arrives (for live tables).
pub async fn run(
    client: InferenceClient<Channel>,
    inputs: Arc<Vec<v1::InferRequest>>,
    spec: &LoadSpec,
    mut on_sample: impl FnMut(&Sample),
) -> LoadReport {
    assert!(!inputs.is_empty(), "loadgen needs at least one input");
    let (tx, mut rx) = mpsc::unbounded_channel::<Result<Sample, tonic::Status>>();
    let mut rng = SplitMix64::new(spec.seed);
    let start = Instant::now();
    let mut next = start;
    let mut sent = 0u64;
    let mut skipped = 0u64;
    let mut in_flight = 0usize;
    let mut errors = BTreeMap::new();
    let mut samples = Vec::new();
    let mut record = |r: Result<Sample, tonic::Status>, samples: &mut Vec<Sample>| match r {
        Ok(s) => {
            on_sample(&s);
            samples.push(s);
        }
        Err(status) => *errors.entry(format!("{:?}", status.code())).or_insert(0) += 1,
    };
    let gap = |rng: &mut SplitMix64| {
        let mean = 1.0 / spec.rate_per_s.max(1e-6);
        let secs = if spec.poisson {
            -mean * (1.0 - rng.unit()).max(1e-12).ln()
        } else {
            mean
        };
        Duration::from_secs_f64(secs)
    };
    while next.duration_since(start) < spec.duration {
        // Collect answers that are in while waiting for the next arrival.
        loop {
            tokio::select! {
                biased;
                Some(r) = rx.recv() => { in_flight -= 1; record(r, &mut samples); }
                () = tokio::time::sleep_until(next.into()) => break,
            }
        }
        let index = usize::try_from(sent).unwrap_or(usize::MAX) % inputs.len();
        sent += 1;
        next += gap(&mut rng);
        if in_flight >= spec.max_in_flight {
            skipped += 1;
            continue;
        }
        in_flight += 1;
        let mut client = client.clone();
        let inputs = Arc::clone(&inputs);
        let tx = tx.clone();
        tokio::spawn(async move {
            let t0 = Instant::now();
            let result = client.infer(inputs[index].clone()).await.map(|r| Sample {
                input: index,
                latency_us: u64::try_from(t0.elapsed().as_micros()).unwrap_or(u64::MAX),
                reply: r.into_inner(),
            });
            let _ = tx.send(result);
        });
    }
    drop(tx);
    while let Some(r) = rx.recv().await {
        record(r, &mut samples);
    }
    LoadReport {
        sent,
        skipped,
        errors,
        elapsed: start.elapsed(),
        samples,
    }
}
