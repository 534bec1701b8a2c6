//! What the server reports about every request: each active ramp's answer, the final answer,
//! and how long the request waited and ran.

use serde::{Deserialize, Serialize};

/// One ramp's answer for one request.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RampOutput {
    /// Predicted class.
    pub label: u32,
    /// Max softmax probability, in [0, 1]: what exit thresholds compare against.
    pub confidence: f32,
    /// Entropy of the softmax in nats; kept so an entropy-based exit rule can be added.
    pub entropy: f32,
}

/// A ramp's output tagged with the ramp that produced it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RampObservation {
    /// Candidate ramp id (0 = shallowest).
    pub ramp_id: u32,
    /// What the ramp said.
    pub output: RampOutput,
}

/// Feedback for one served request. Every request runs to the final layer, so
/// `final_label` is a free label for every ramp's answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeedbackRecord {
    /// Server-assigned request id.
    pub request_id: u64,
    /// Outputs of the ramps that were active for this request, in depth order.
    pub ramps: Vec<RampObservation>,
    /// The original model's prediction.
    pub final_label: u32,
    /// Size of the batch the request ran in.
    pub batch_size: u32,
    /// Time spent queued before its batch started, in µs.
    pub queue_us: u64,
    /// Time from batch start to the request's release, in µs.
    pub exec_us: u64,
}

impl FeedbackRecord {
    /// The output of ramp `ramp_id`, if it was active for this request.
    pub fn output(&self, ramp_id: u32) -> Option<&RampOutput> {
        self.ramps
            .iter()
            .find(|o| o.ramp_id == ramp_id)
            .map(|o| &o.output)
    }

    /// Observed end-to-end latency (queueing plus execution), in µs.
    pub fn observed_us(&self) -> u64 {
        self.queue_us.saturating_add(self.exec_us)
    }
}
