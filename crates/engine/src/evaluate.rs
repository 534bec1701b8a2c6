//! Accuracy of the final head and agreement of every ramp with it.

use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

use crate::{EarlyExitModel, model::CutPoint};

/// The accuracy report written into a bundle.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccuracyReport {
    /// What it was measured on, e.g. "fashion-mnist test (10000)".
    pub dataset: String,
    /// Top-1 accuracy of the original model against the true labels.
    pub final_accuracy: f64,
    pub ramps: Vec<RampReport>,
}

/// One ramp's quality on held-out data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RampReport {
    pub id: u32,
    pub name: String,
    /// Share of inputs where the ramp predicts what the final layer predicts.
    pub agreement: f64,
    /// Top-1 accuracy against the true labels.
    pub accuracy: f64,
}

/// Evaluates on `(inputs, labels)` (CPU tensors; batches move to the model's device).
pub fn evaluate(
    model: &EarlyExitModel,
    inputs: &Tensor,
    labels: &Tensor,
    dataset: &str,
) -> AccuracyReport {
    let mut ramps: Vec<Vec<Tensor>> = model.cuts().iter().map(|_| Vec::new()).collect();
    let mut finals = Vec::new();
    for x in inputs.split(500, 0) {
        let (r, f) = model.forward_all_ramps(&x, None);
        for (all, logits) in ramps.iter_mut().zip(r) {
            all.push(logits);
        }
        finals.push(f);
    }
    let ramps: Vec<Tensor> = ramps.iter().map(|parts| Tensor::cat(parts, 0)).collect();
    report_from_logits(
        model.cuts(),
        &ramps,
        &Tensor::cat(&finals, 0),
        labels,
        dataset,
    )
}

/// The report from every ramp's logits and the final logits on the same inputs.
pub(crate) fn report_from_logits(
    cuts: &[CutPoint],
    ramp_logits: &[Tensor],
    final_logits: &Tensor,
    labels: &Tensor,
    dataset: &str,
) -> AccuracyReport {
    let share = |a: &Tensor, b: &Tensor| {
        a.eq_tensor(&b.to_device(a.device()))
            .to_kind(Kind::Float)
            .mean(Kind::Float)
            .double_value(&[])
    };
    let fin = final_logits.argmax(-1, false);
    AccuracyReport {
        dataset: dataset.to_owned(),
        final_accuracy: share(&fin, labels),
        ramps: cuts
            .iter()
            .zip(ramp_logits)
            .map(|(c, logits)| {
                let pred = logits.argmax(-1, false);
                RampReport {
                    id: c.id,
                    name: c.name.clone(),
                    agreement: share(&pred, &fin),
                    accuracy: share(&pred, labels),
                }
            })
            .collect(),
    }
}
