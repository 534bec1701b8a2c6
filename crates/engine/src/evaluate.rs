//! Accuracy of the final head and agreement of every ramp with it.

use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

use crate::EarlyExitModel;

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
    let cuts = model.cuts().len();
    let mut agree = vec![0.0; cuts];
    let mut ramp_correct = vec![0.0; cuts];
    let mut final_correct = 0.0;
    let count = |t: Tensor| t.sum(Kind::Float).double_value(&[]);
    for (x, y) in inputs.split(500, 0).iter().zip(labels.split(500, 0)) {
        let y = y.to_device(model.device());
        let (ramps, fin) = model.forward_all_ramps(x, None);
        let fin = fin.argmax(-1, false);
        final_correct += count(fin.eq_tensor(&y));
        for (i, logits) in ramps.iter().enumerate() {
            let pred = logits.argmax(-1, false);
            agree[i] += count(pred.eq_tensor(&fin));
            ramp_correct[i] += count(pred.eq_tensor(&y));
        }
    }
    let n = labels.size()[0] as f64;
    AccuracyReport {
        dataset: dataset.to_owned(),
        final_accuracy: final_correct / n,
        ramps: model
            .cuts()
            .iter()
            .map(|c| RampReport {
                id: c.id,
                name: c.name.clone(),
                agreement: agree[c.id as usize] / n,
                accuracy: ramp_correct[c.id as usize] / n,
            })
            .collect(),
    }
}
