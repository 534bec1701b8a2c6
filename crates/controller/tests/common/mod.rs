//! Helpers shared by the integration tests.
#![allow(dead_code)]

use apparate_controller::{FeedbackRecord, LatencyProfile, RampObservation, RampOutput};
use proptest::prelude::*;

/// One random request: per ramp (confidence step out of 20, agrees with final).
pub type RawRequest = (u32, Vec<(u8, bool)>);

/// Random requests over `ramps` ramps; confidences are quantised to create ties.
pub fn raw_requests(ramps: usize, max_len: usize) -> impl Strategy<Value = Vec<RawRequest>> {
    prop::collection::vec(
        (
            prop::sample::select(vec![1u32, 8, 20, 32]),
            prop::collection::vec((0u8..=20, prop::bool::weighted(0.9)), ramps),
        ),
        1..max_len,
    )
}

/// Turns raw requests into feedback for ramps `0..m`.
pub fn records(raw: &[RawRequest]) -> Vec<FeedbackRecord> {
    raw.iter()
        .enumerate()
        .map(|(i, (batch_size, outs))| FeedbackRecord {
            request_id: i as u64,
            ramps: outs
                .iter()
                .enumerate()
                .map(|(k, &(step, agree))| RampObservation {
                    ramp_id: k as u32,
                    output: RampOutput {
                        label: if agree { 0 } else { 1 },
                        confidence: f32::from(step) / 20.0,
                        entropy: 0.0,
                    },
                })
                .collect(),
            final_label: 0,
            batch_size: *batch_size,
            queue_us: 10,
            exec_us: 1000,
        })
        .collect()
}

/// The profile used by the property tests.
pub fn profile(ramps: u32) -> LatencyProfile {
    LatencyProfile::synthetic(ramps, 10.0, 0.002)
}
