//! Recording: run a workload through a bundle with every candidate ramp active and keep
//! what each ramp and the final layer said about every request (the replayable trace).

use apparate_controller::{RampOutput, Trace, TraceRequest};

use super::{BatchInput, WorkloadError, WorkloadStream};
use crate::{Bundle, InputSpec, model::HeadOutput};

/// How to record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RecordOptions {
    /// Requests per forward pass; `None` = the workload's `batch_size`.
    pub batch_size: Option<u32>,
}

/// Runs every request of `stream` through `bundle` (all candidate ramps active), calling
/// `progress(done, total)` after each batch, and returns the trace. Ground truth is not
/// part of the trace: replay measures agreement with the original model.
pub fn record_trace(
    bundle: &Bundle,
    stream: &WorkloadStream,
    opts: RecordOptions,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<Trace, WorkloadError> {
    check_fit(bundle, stream)?;
    let batch_size = opts
        .batch_size
        .unwrap_or(stream.workload().batch_size)
        .max(1);
    let total = stream.len() as u64;
    let mut requests = Vec::with_capacity(stream.len());
    for batch in stream.batches(batch_size as usize) {
        let (ramp_logits, final_logits) = match &batch.input {
            BatchInput::Images(x) => bundle.model.forward_all_ramps(x, None),
            BatchInput::Texts(texts) => {
                let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
                let (ids, mask) = bundle.encode_texts(&refs)?;
                bundle.model.forward_all_ramps(&ids, Some(&mask))
            }
        };
        let fin = HeadOutput::from_logits(&final_logits);
        let ramps: Vec<HeadOutput> = ramp_logits.iter().map(HeadOutput::from_logits).collect();
        let n = batch.requests.len() as u32;
        for (i, req) in batch.requests.iter().enumerate() {
            requests.push(TraceRequest {
                request_id: req.id,
                batch_size: n,
                final_label: fin.labels[i],
                ramps: ramps
                    .iter()
                    .map(|r| RampOutput {
                        label: r.labels[i],
                        confidence: r.confidences[i].clamp(0.0, 1.0),
                        entropy: r.entropies[i],
                    })
                    .collect(),
            });
        }
        progress(requests.len() as u64, total);
    }
    Ok(Trace { requests })
}

/// The workload's inputs must be what the bundle takes.
fn check_fit(bundle: &Bundle, stream: &WorkloadStream) -> Result<(), WorkloadError> {
    let w = stream.workload();
    let mismatch = |reason: String| WorkloadError::Mismatch {
        workload: w.name.clone(),
        bundle: bundle.manifest.name.clone(),
        reason,
    };
    match (&bundle.manifest.input, w.dataset.is_image()) {
        (InputSpec::Tensor { shape }, true) if shape.as_slice() == [1, 28, 28] => Ok(()),
        (InputSpec::Tensor { shape }, true) => Err(mismatch(format!(
            "the bundle takes tensors of shape {shape:?}, {} images are [1, 28, 28]",
            w.dataset
        ))),
        (InputSpec::Tensor { .. }, false) => Err(mismatch(format!(
            "the bundle takes image tensors, {} is text",
            w.dataset
        ))),
        (InputSpec::Text { .. }, true) => Err(mismatch(format!(
            "the bundle takes text, {} is images",
            w.dataset
        ))),
        (InputSpec::Text { .. }, false) => Ok(()),
    }
}
