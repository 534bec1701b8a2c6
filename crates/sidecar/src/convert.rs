//! Protocol messages (`apparate_proto::v1`) to and from controller types, in one place.
//! Every check names the protocol field that is wrong.

use apparate_controller::{
    ExitConfig, FeedbackRecord, LatencyProfile, RampObservation, RampOutput, RampProfile,
    RampThreshold,
};
use apparate_proto::v1 as pb;
use thiserror::Error;

/// A server message the controller cannot use.
#[derive(Debug, Error, PartialEq)]
#[error("server sent an unusable `{field}`: {reason}")]
pub struct ConvertError {
    /// Protocol field path, e.g. `DescribeReply.profile`.
    pub field: String,
    /// What is wrong.
    pub reason: String,
}

fn err(field: &str, reason: impl ToString) -> ConvertError {
    ConvertError {
        field: field.to_owned(),
        reason: reason.to_string(),
    }
}

/// A feedback record as the controller sees it. Ramps are sorted by id; the observed
/// latency is queueing plus time to the reply's release (what the client waited).
pub fn feedback_record(r: &pb::FeedbackRecord) -> FeedbackRecord {
    let mut ramps: Vec<RampObservation> = r
        .ramps
        .iter()
        .map(|o| RampObservation {
            ramp_id: o.ramp_id,
            output: RampOutput {
                label: o.label,
                confidence: o.confidence,
                entropy: o.entropy,
            },
        })
        .collect();
    ramps.sort_by_key(|o| o.ramp_id);
    let released = if r.release_us > 0 {
        r.release_us
    } else {
        r.exec_us
    };
    FeedbackRecord {
        request_id: r.request_id,
        ramps,
        final_label: r.final_label,
        batch_size: r.batch_size,
        queue_us: r.queue_us,
        exec_us: released,
    }
}

/// The controller's latency profile from `Describe`: candidate names from
/// `candidates`, costs from `profile`, validated.
pub fn latency_profile(d: &pb::DescribeReply) -> Result<LatencyProfile, ConvertError> {
    let p = d
        .profile
        .as_ref()
        .ok_or_else(|| err("DescribeReply.profile", "missing"))?;
    let mut ramps: Vec<&pb::RampLatency> = p.ramps.iter().collect();
    ramps.sort_by_key(|r| r.ramp_id);
    let profile = LatencyProfile {
        batch_sizes: p.batch_sizes.clone(),
        full_model_ms: p.full_model_ms.clone(),
        ramps: ramps
            .iter()
            .map(|r| RampProfile {
                id: r.ramp_id,
                name: d
                    .candidates
                    .iter()
                    .find(|c| c.id == r.ramp_id)
                    .map_or_else(|| format!("ramp{}", r.ramp_id), |c| c.name.clone()),
                backbone_ms: r.backbone_ms.clone(),
                ramp_ms: r.ramp_ms.clone(),
            })
            .collect(),
    };
    profile
        .validate()
        .map_err(|e| err("DescribeReply.profile", e))?;
    if !d.candidates.is_empty() && d.candidates.len() != profile.ramps.len() {
        return Err(err(
            "DescribeReply.candidates",
            format!(
                "{} candidates but the profile has {} ramps",
                d.candidates.len(),
                profile.ramps.len()
            ),
        ));
    }
    Ok(profile)
}

/// A protocol exit config as the controller's (the lease is the sidecar's business).
pub fn exit_config(c: &pb::ExitConfig, field: &str) -> Result<ExitConfig, ConvertError> {
    let ramps = c
        .ramps
        .iter()
        .map(|r| RampThreshold {
            ramp_id: r.ramp_id,
            threshold: r.threshold,
        })
        .collect();
    ExitConfig::new(c.version, ramps).map_err(|e| err(field, e))
}

/// The protocol form of a controller config with a lease.
pub fn exit_config_pb(c: &ExitConfig, lease_ms: u32) -> pb::ExitConfig {
    pb::ExitConfig {
        version: c.version,
        ramps: c
            .ramps
            .iter()
            .map(|r| pb::RampThreshold {
                ramp_id: r.ramp_id,
                threshold: r.threshold,
            })
            .collect(),
        lease_ms,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn describe() -> pb::DescribeReply {
        let profile = LatencyProfile::synthetic(3, 10.0, 0.01);
        pb::DescribeReply {
            candidates: (0..3)
                .map(|id| pb::CandidateRamp {
                    id,
                    name: format!("block{id}"),
                    depth_fraction: (id + 1) as f32 / 4.0,
                })
                .collect(),
            profile: Some(pb::LatencyProfile {
                batch_sizes: profile.batch_sizes.clone(),
                full_model_ms: profile.full_model_ms.clone(),
                // Out of order on the wire: the conversion sorts by id.
                ramps: profile
                    .ramps
                    .iter()
                    .rev()
                    .map(|r| pb::RampLatency {
                        ramp_id: r.id,
                        backbone_ms: r.backbone_ms.clone(),
                        ramp_ms: r.ramp_ms.clone(),
                    })
                    .collect(),
            }),
            ..Default::default()
        }
    }

    #[test]
    fn profile_takes_names_from_candidates_and_costs_from_the_profile() {
        let p = latency_profile(&describe()).unwrap();
        let expected = LatencyProfile::synthetic(3, 10.0, 0.01);
        assert_eq!(p.batch_sizes, expected.batch_sizes);
        assert_eq!(p.ramps[2].name, "block2");
        assert_eq!(p.ramps[2].backbone_ms, expected.ramps[2].backbone_ms);
    }

    #[test]
    fn bad_profiles_name_the_field() {
        let mut d = describe();
        d.profile = None;
        assert_eq!(
            latency_profile(&d).unwrap_err().field,
            "DescribeReply.profile"
        );
        let mut d = describe();
        d.profile.as_mut().unwrap().ramps[0].ramp_ms.pop();
        let e = latency_profile(&d).unwrap_err();
        assert!(e.to_string().contains("ramp_ms"), "{e}");
        let mut d = describe();
        d.candidates.pop();
        assert_eq!(
            latency_profile(&d).unwrap_err().field,
            "DescribeReply.candidates"
        );
    }

    #[test]
    fn feedback_sorts_ramps_and_uses_release_time() {
        let out = |ramp_id, confidence| pb::RampOutput {
            ramp_id,
            label: 4,
            confidence,
            entropy: 0.3,
        };
        let r = pb::FeedbackRecord {
            request_id: 9,
            config_version: 3,
            ramps: vec![out(5, 0.9), out(0, 0.2)],
            final_label: 4,
            final_confidence: 0.99,
            exited_ramp: Some(5),
            batch_size: 16,
            queue_us: 100,
            exec_us: 9_000,
            release_us: 2_000,
        };
        let c = feedback_record(&r);
        assert_eq!(c.request_id, 9);
        assert_eq!(
            c.ramps.iter().map(|o| o.ramp_id).collect::<Vec<_>>(),
            vec![0, 5]
        );
        assert_eq!(c.output(5).unwrap().confidence, 0.9);
        assert_eq!((c.batch_size, c.final_label), (16, 4));
        assert_eq!(c.observed_us(), 2_100);
        let final_answer = pb::FeedbackRecord { release_us: 0, ..r };
        assert_eq!(feedback_record(&final_answer).observed_us(), 9_100);
    }

    #[test]
    fn exit_configs_round_trip_and_bad_ones_name_the_field() {
        let c = ExitConfig::new(
            7,
            vec![
                RampThreshold {
                    ramp_id: 1,
                    threshold: 0.8,
                },
                RampThreshold {
                    ramp_id: 4,
                    threshold: 1.0,
                },
            ],
        )
        .unwrap();
        let wire = exit_config_pb(&c, 3_000);
        assert_eq!(wire.lease_ms, 3_000);
        assert_eq!(exit_config(&wire, "x").unwrap(), c);
        let mut bad = wire;
        bad.ramps[0].threshold = 1.5;
        let e = exit_config(&bad, "DescribeReply.active_config").unwrap_err();
        assert_eq!(e.field, "DescribeReply.active_config");
    }
}
