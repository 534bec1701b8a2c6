//! The inference worker: one OS thread per device (libtorch work never runs on the
//! async runtime), fed by a bounded channel. It forms batches (up to
//! `max_batch_size`, or whatever arrived within `max_wait_ms` of the first request),
//! runs each batch through the backbone, releases each request's reply the moment its
//! first active ramp is confident enough, keeps the batch running to the final layer,
//! answers the rest there, and publishes one feedback record per request.

use std::{
    panic::AssertUnwindSafe,
    path::PathBuf,
    sync::Arc,
    time::{Duration, Instant},
};

use apparate_engine::{
    Bundle, InputSpec, Manifest, device::DeviceChoice, device::set_threads, model::HeadOutput,
};
use apparate_proto::v1;
use crossbeam::channel::{Receiver, RecvTimeoutError, Sender, bounded};
use tch::Tensor;
use tokio::sync::oneshot;
use tonic::Status;

use crate::{ServeError, feedback::FeedbackHub, state::ConfigState};

/// What a request carries into the worker, already validated against the manifest.
#[derive(Debug)]
pub(crate) enum Payload {
    Tensor(Vec<f32>),
    Text(String),
}

/// One accepted request.
#[derive(Debug)]
pub(crate) struct Job {
    pub id: u64,
    pub payload: Payload,
    pub arrived: Instant,
    pub reply: oneshot::Sender<Result<v1::InferReply, Status>>,
}

/// What the worker tells the server once the bundle is loaded.
#[derive(Debug)]
pub(crate) struct Loaded {
    pub manifest: Manifest,
    pub profile: apparate_controller::LatencyProfile,
    pub device: String,
    pub state: Arc<ConfigState>,
}

/// Batching settings the worker needs.
#[derive(Debug, Clone)]
pub(crate) struct WorkerSettings {
    pub bundle: PathBuf,
    pub device: DeviceChoice,
    pub threads: usize,
    pub max_batch: usize,
    pub max_wait: Duration,
    pub queue: usize,
}

/// Starts the worker thread and waits until it has loaded the bundle.
/// `make_state` builds the config state from the loaded manifest (the safe config
/// is checked against the bundle's candidates there).
pub(crate) fn spawn(
    settings: WorkerSettings,
    hub: Arc<FeedbackHub>,
    make_state: impl FnOnce(&Manifest) -> Result<Arc<ConfigState>, ServeError> + Send + 'static,
) -> Result<(Sender<Job>, std::thread::JoinHandle<()>, Loaded), ServeError> {
    let (tx, rx) = bounded::<Job>(settings.queue);
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let handle = std::thread::Builder::new()
        .name("apparate-inference".into())
        .spawn(move || {
            set_threads(settings.threads);
            let device = settings.device.resolve();
            let bundle = match Bundle::load(&settings.bundle, device) {
                Ok(b) => b,
                Err(e) => {
                    let _ = ready_tx.send(Err(ServeError::Bundle(e)));
                    return;
                }
            };
            let state = match make_state(&bundle.manifest) {
                Ok(s) => s,
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                    return;
                }
            };
            let loaded = Loaded {
                manifest: bundle.manifest.clone(),
                profile: bundle.profile.clone(),
                device: apparate_engine::device::describe(device),
                state: Arc::clone(&state),
            };
            if ready_tx.send(Ok(loaded)).is_err() {
                return;
            }
            let worker = Worker {
                bundle,
                state,
                hub,
                max_batch: settings.max_batch,
                max_wait: settings.max_wait,
            };
            worker.run(&rx);
        })
        .map_err(ServeError::Io)?;
    match ready_rx.recv() {
        Ok(Ok(loaded)) => Ok((tx, handle, loaded)),
        Ok(Err(e)) => {
            let _ = handle.join();
            Err(e)
        }
        Err(_) => Err(ServeError::WorkerDied),
    }
}

struct Worker {
    bundle: Bundle,
    state: Arc<ConfigState>,
    hub: Arc<FeedbackHub>,
    max_batch: usize,
    max_wait: Duration,
}

/// A request of the running batch, until its reply is released.
struct InFlight {
    id: u64,
    queue_us: u64,
    reply: Option<oneshot::Sender<Result<v1::InferReply, Status>>>,
    exited: Option<u32>,
    release_us: u64,
    ramps: Vec<v1::RampOutput>,
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

impl Worker {
    /// Serves until every sender is gone and the queue is empty, so every accepted
    /// request is answered.
    fn run(&self, rx: &Receiver<Job>) {
        while let Ok(first) = rx.recv() {
            let deadline = first.arrived + self.max_wait;
            let mut jobs = vec![first];
            while jobs.len() < self.max_batch {
                match rx.recv_deadline(deadline) {
                    Ok(job) => jobs.push(job),
                    Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => break,
                }
            }
            self.run_batch(jobs);
        }
        tracing::info!("inference worker: queue drained, stopping");
    }

    fn run_batch(&self, jobs: Vec<Job>) {
        let start = Instant::now();
        let config = self.state.for_batch(start);
        let n = jobs.len();
        let span = tracing::info_span!(
            "batch",
            batch_size = n,
            config.version = config.version,
            exits = tracing::field::Empty,
            exits_by_ramp = tracing::field::Empty,
            exec_us = tracing::field::Empty,
        );
        let _enter = span.enter();
        let mut flights = Vec::with_capacity(n);
        let mut payloads = Vec::with_capacity(n);
        for job in jobs {
            flights.push(InFlight {
                id: job.id,
                queue_us: micros(start.saturating_duration_since(job.arrived)),
                reply: Some(job.reply),
                exited: None,
                release_us: 0,
                ramps: Vec::with_capacity(config.ramps.len()),
            });
            payloads.push(job.payload);
        }
        let active: Vec<u32> = config.ramps.iter().map(|r| r.ramp_id).collect();
        let classes = &self.bundle.manifest.classes;
        let reply = |f: &InFlight, label: u32, confidence: f32, ramp: Option<u32>, at: u64| {
            v1::InferReply {
                request_id: f.id,
                label,
                label_name: classes.get(label as usize).cloned().unwrap_or_default(),
                confidence,
                ramp_id: ramp,
                config_version: config.version,
                batch_size: u32::try_from(n).unwrap_or(u32::MAX),
                queue_us: f.queue_us,
                exec_us: at,
            }
        };

        let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| {
            let (x, mask) = self.inputs(payloads)?;
            let final_out = self.bundle.model.forward_exits(
                &x,
                mask.as_ref(),
                &active,
                |ramp_id, out: HeadOutput| {
                    let threshold = config
                        .ramps
                        .iter()
                        .find(|r| r.ramp_id == ramp_id)
                        .map_or(f32::INFINITY, |r| r.threshold);
                    let at = micros(start.elapsed());
                    for (j, f) in flights.iter_mut().enumerate() {
                        let (label, confidence) = (out.labels[j], out.confidences[j]);
                        f.ramps.push(v1::RampOutput {
                            ramp_id,
                            label,
                            confidence,
                            entropy: out.entropies[j],
                        });
                        // NaN > t is false: a NaN confidence never exits.
                        if f.exited.is_none() && confidence > threshold {
                            f.exited = Some(ramp_id);
                            f.release_us = at;
                            if let Some(tx) = f.reply.take() {
                                let _ = tx.send(Ok(reply(f, label, confidence, Some(ramp_id), at)));
                            }
                        }
                    }
                },
            );
            Ok::<_, Status>(final_out)
        }));
        let exec_us = micros(start.elapsed());
        let final_out = match outcome {
            Ok(Ok(out)) => out,
            Ok(Err(status)) => return fail_all(&mut flights, &status),
            Err(panic) => {
                let what = panic
                    .downcast_ref::<String>()
                    .map(String::as_str)
                    .or_else(|| panic.downcast_ref::<&str>().copied())
                    .unwrap_or("unknown panic");
                tracing::error!(error = what, "inference batch failed");
                return fail_all(
                    &mut flights,
                    &Status::internal(format!("inference failed: {what}")),
                );
            }
        };

        let mut records = Vec::with_capacity(n);
        let mut exits_by_ramp: Vec<(u32, u64)> = active.iter().map(|&r| (r, 0)).collect();
        for (j, f) in flights.iter_mut().enumerate() {
            let (label, confidence) = (final_out.labels[j], final_out.confidences[j]);
            if let Some(tx) = f.reply.take() {
                f.release_us = exec_us;
                let _ = tx.send(Ok(reply(f, label, confidence, None, exec_us)));
            }
            if let Some(e) = f.exited
                && let Some(slot) = exits_by_ramp.iter_mut().find(|s| s.0 == e)
            {
                slot.1 += 1;
            }
            records.push(v1::FeedbackRecord {
                request_id: f.id,
                config_version: config.version,
                ramps: std::mem::take(&mut f.ramps),
                final_label: label,
                final_confidence: confidence,
                exited_ramp: f.exited,
                batch_size: u32::try_from(n).unwrap_or(u32::MAX),
                queue_us: f.queue_us,
                exec_us,
                release_us: f.release_us,
            });
        }
        self.hub.publish(&records);
        let exits: u64 = exits_by_ramp.iter().map(|e| e.1).sum();
        span.record("exits", exits);
        span.record(
            "exits_by_ramp",
            exits_by_ramp
                .iter()
                .map(|(r, k)| format!("{r}:{k}"))
                .collect::<Vec<_>>()
                .join(","),
        );
        span.record("exec_us", exec_us);
        crate::metrics::batch(n, &exits_by_ramp);
    }

    /// The batch's model input (and attention mask for text models).
    fn inputs(&self, payloads: Vec<Payload>) -> Result<(Tensor, Option<Tensor>), Status> {
        match &self.bundle.manifest.input {
            InputSpec::Tensor { shape } => {
                let mut dims = vec![i64::try_from(payloads.len()).unwrap_or(i64::MAX)];
                dims.extend(shape.iter().map(|&d| i64::from(d)));
                let mut flat = Vec::with_capacity(payloads.len() * shape_len(shape));
                for p in payloads {
                    match p {
                        Payload::Tensor(values) => flat.extend(values),
                        Payload::Text(_) => {
                            return Err(Status::internal("text payload for a tensor model"));
                        }
                    }
                }
                Ok((Tensor::from_slice(&flat).view(dims.as_slice()), None))
            }
            InputSpec::Text { .. } => {
                let texts: Vec<&str> = payloads
                    .iter()
                    .map(|p| match p {
                        Payload::Text(t) => Ok(t.as_str()),
                        Payload::Tensor(_) => {
                            Err(Status::internal("tensor payload for a text model"))
                        }
                    })
                    .collect::<Result<_, _>>()?;
                let (ids, mask) = self
                    .bundle
                    .encode_texts(&texts)
                    .map_err(|e| Status::internal(format!("tokenizer: {e}")))?;
                Ok((ids, Some(mask)))
            }
        }
    }
}

/// Element count of one input of `shape`.
pub(crate) fn shape_len(shape: &[u32]) -> usize {
    shape.iter().map(|&d| d as usize).product()
}

/// Answers every request not yet answered with `status` (a failed batch).
fn fail_all(flights: &mut [InFlight], status: &Status) {
    for f in flights {
        if let Some(tx) = f.reply.take() {
            let _ = tx.send(Err(status.clone()));
        }
    }
}
