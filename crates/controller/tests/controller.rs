//! Behaviour of the policy loop as a sidecar would see it.

use std::time::Duration;

use apparate_controller::decision::keys;
use apparate_controller::{
    AttrValue, Controller, ControllerConfig, ControllerError, DecisionKind, ExitConfig,
    FeedbackRecord, LatencyProfile, NEVER_EXIT, RampObservation, RampOutput, Reason,
};

const AT: Duration = Duration::from_secs(1);

/// A request whose ramps (ids `ramps`) report `confidence` and agree with the final label
/// unless `wrong` names them.
fn record(id: u64, ramps: &[u32], confidence: f32, wrong: &[u32]) -> FeedbackRecord {
    FeedbackRecord {
        request_id: id,
        ramps: ramps
            .iter()
            .map(|&ramp_id| RampObservation {
                ramp_id,
                output: RampOutput {
                    label: u32::from(wrong.contains(&ramp_id)),
                    confidence,
                    entropy: 0.1,
                },
            })
            .collect(),
        final_label: 0,
        batch_size: 8,
        queue_us: 200,
        exec_us: 4_000,
    }
}

fn easy_chunk(ramps: &[u32]) -> Vec<FeedbackRecord> {
    (0..64).map(|i| record(i, ramps, 0.99, &[])).collect()
}

fn controller(cfg: ControllerConfig, ramps: &[u32]) -> Controller {
    let profile = LatencyProfile::synthetic(8, 10.0, 0.004);
    Controller::new(cfg, profile, ExitConfig::never_exit(0, ramps).unwrap()).unwrap()
}

fn quiet() -> ControllerConfig {
    ControllerConfig {
        retune_every_chunks: 0,
        adjust_every_chunks: 0,
        ..ControllerConfig::default()
    }
}

/// A 5 % budget with no chunk-coverage aim: one chunk is evidence enough to open exits.
fn loose() -> ControllerConfig {
    ControllerConfig {
        accuracy_budget: 0.05,
        chunk_coverage: 0.0,
        ..quiet()
    }
}

#[test]
fn first_chunk_is_tuned_and_emits_version_one_with_explanations() {
    let mut ctrl = controller(loose(), &[2, 5]);
    let out = ctrl.on_chunk(&easy_chunk(&[2, 5]), AT);
    assert_eq!(out.report.requests, 64);
    assert_eq!(out.report.accuracy, 1.0);
    let config = out.config.expect("first chunk opens the ramps");
    assert_eq!(config.version, 1);
    assert!(config.ramps.iter().any(|r| r.threshold < NEVER_EXIT));
    let retune = &out.decisions[0];
    assert_eq!(
        (retune.kind, retune.reason),
        (DecisionKind::Retune, Reason::FirstChunk)
    );
    assert_eq!(
        retune.attribute(keys::WINDOW_REQUESTS),
        Some(&AttrValue::I64(64))
    );
    assert_eq!(
        retune.attribute(keys::TUNER),
        Some(&AttrValue::Str("ours".into()))
    );
    assert!(retune.attribute(keys::SAVING_AFTER).is_some());
    let emit = out.decisions.last().unwrap();
    assert_eq!(emit.kind, DecisionKind::EmitConfig);
    assert_eq!(
        emit.attribute(keys::CONFIG_VERSION),
        Some(&AttrValue::I64(1))
    );
    assert!(
        emit.to_string()
            .starts_with("emit_config apparate.chunk_id=0")
    );
}

#[test]
fn nothing_is_emitted_when_nothing_changes() {
    let mut ctrl = controller(loose(), &[2, 5]);
    ctrl.on_chunk(&easy_chunk(&[2, 5]), AT);
    let out = ctrl.on_chunk(&easy_chunk(&[2, 5]), AT);
    assert!(out.config.is_none());
    assert!(out.decisions.is_empty());
    assert_eq!(ctrl.config().version, 1);
}

#[test]
fn exits_wait_for_evidence_and_a_chunk_over_budget_shuts_them_until_new_evidence() {
    let cfg = ControllerConfig {
        retune_every_chunks: 1,
        ..quiet()
    };
    let mut ctrl = controller(cfg, &[2, 5]);
    let retune_of = |out: &apparate_controller::ChunkOutcome| {
        out.decisions
            .iter()
            .find(|d| d.kind == DecisionKind::Retune)
            .cloned()
            .unwrap()
    };
    // The default target (0.08 %) needs (0 + 1) / (n + 1) <= 0.0008: n >= 1248 requests,
    // so the 20th clean chunk (1,280 requests) is the first that may open exits.
    let feed = |ctrl: &mut Controller, chunks: u64| {
        for chunk in 0..chunks {
            let out = ctrl.on_chunk(&easy_chunk(&[2, 5]), AT);
            assert!(out.config.is_none(), "chunk {chunk} opened exits");
        }
    };
    let first = ctrl.on_chunk(&easy_chunk(&[2, 5]), AT);
    assert_eq!(
        retune_of(&first).attribute(keys::ERROR_ALLOWANCE),
        Some(&AttrValue::I64(-1))
    );
    feed(&mut ctrl, 18);
    let opened = ctrl.on_chunk(&easy_chunk(&[2, 5]), AT).config.unwrap();
    assert!(opened.threshold(2).unwrap() < NEVER_EXIT, "{opened:?}");

    // Ramp 2 is now confidently wrong on a tenth of the inputs.
    let bad: Vec<_> = (0..64)
        .map(|i| record(i, &[2, 5], 0.99, if i % 10 == 0 { &[2] } else { &[] }))
        .collect();
    let out = ctrl.on_chunk(&bad, AT);
    assert!(out.report.over_budget);
    let retune = retune_of(&out);
    assert_eq!(retune.reason, Reason::OverBudget);
    assert_eq!(
        retune.attribute(keys::CALM_CHUNKS),
        Some(&AttrValue::I64(0))
    );
    let config = out.config.expect("exits shut");
    assert!(config.ramps.iter().all(|r| r.threshold == NEVER_EXIT));
    // The old evidence no longer counts: 19 new chunks keep them shut, the 20th reopens.
    feed(&mut ctrl, 19);
    assert!(ctrl.on_chunk(&easy_chunk(&[2, 5]), AT).config.is_some());
}

#[test]
fn records_are_grouped_into_chunks_and_a_partial_chunk_can_be_flushed() {
    let mut ctrl = controller(quiet(), &[3]);
    let mut outcomes = 0;
    for i in 0..150 {
        if let Some(out) = ctrl.on_record(record(i, &[3], 0.99, &[]), AT) {
            assert_eq!(out.report.requests, 64);
            outcomes += 1;
        }
    }
    assert_eq!(outcomes, 2);
    let last = ctrl.flush(AT).expect("22 buffered records");
    assert_eq!(last.report.requests, 22);
    assert!(ctrl.flush(AT).is_none());
    assert_eq!(ctrl.chunks_seen(), 3);
}

#[test]
fn a_useless_ramp_is_removed_and_a_new_one_warms_up_before_it_may_exit() {
    let cfg = ControllerConfig {
        adjust_every_chunks: 2,
        retune_every_chunks: 0,
        ..loose()
    };
    let mut ctrl = controller(cfg, &[1, 6]);
    // Ramp 1 is never confident: it only costs time. Ramp 6 releases everything.
    let chunk = |active: &[u32]| -> Vec<FeedbackRecord> {
        (0..64)
            .map(|i| {
                let mut r = record(i, active, 0.99, &[]);
                for o in &mut r.ramps {
                    if o.ramp_id == 1 {
                        o.output.confidence = 0.2;
                        o.output.label = 1;
                    }
                }
                r
            })
            .collect()
    };
    ctrl.on_chunk(&chunk(&[1, 6]), AT);
    let out = ctrl.on_chunk(&chunk(&[1, 6]), AT);
    let removed = out
        .decisions
        .iter()
        .find(|d| d.kind == DecisionKind::RemoveRamp)
        .unwrap();
    assert_eq!(removed.attribute(keys::RAMP_ID), Some(&AttrValue::I64(1)));
    let added = out
        .decisions
        .iter()
        .find(|d| d.kind == DecisionKind::ActivateRamp)
        .unwrap();
    assert_eq!(added.reason, Reason::ExploreDeeper);
    let AttrValue::I64(new_id) = added.attribute(keys::RAMP_ID).unwrap().clone() else {
        panic!("ramp id is an integer")
    };
    let new_id = new_id as u32;
    let config = out.config.unwrap();
    assert_eq!(config.threshold(1), None);
    assert_eq!(
        config.threshold(new_id),
        Some(NEVER_EXIT),
        "a new ramp starts closed"
    );
    assert_eq!(ctrl.warming_ramps(), vec![new_id]);

    // One chunk with the new ramp's outputs ends the warm-up and re-tunes with it.
    let active = config.ramp_ids();
    let out = ctrl.on_chunk(&chunk(&active), AT);
    assert!(ctrl.warming_ramps().is_empty());
    assert!(
        out.decisions
            .iter()
            .any(|d| d.kind == DecisionKind::Retune && d.reason == Reason::RampWarmedUp)
    );
}

#[test]
fn bad_settings_and_configs_are_rejected_up_front() {
    let profile = LatencyProfile::synthetic(8, 10.0, 0.004);
    let start = ExitConfig::never_exit(0, &[1]).unwrap();
    let bad = ControllerConfig {
        chunk_size: 0,
        ..ControllerConfig::default()
    };
    let err = Controller::new(bad, profile.clone(), start.clone()).unwrap_err();
    assert!(matches!(
        err,
        ControllerError::InvalidConfig {
            field: "chunk_size",
            ..
        }
    ));
    let unknown = ExitConfig::never_exit(0, &[9]).unwrap();
    assert!(Controller::new(ControllerConfig::default(), profile.clone(), unknown).is_err());
    let too_many = ExitConfig::never_exit(0, &[0, 1, 2, 3, 4, 5, 6]).unwrap();
    let err = Controller::new(ControllerConfig::default(), profile, too_many).unwrap_err();
    assert!(err.to_string().contains("ramp_budget_share"), "{err}");
}

#[test]
fn with_no_ramps_at_all_the_middle_candidate_is_tried() {
    let cfg = ControllerConfig {
        adjust_every_chunks: 1,
        ..quiet()
    };
    let mut ctrl = controller(cfg, &[]);
    let out = ctrl.on_chunk(&easy_chunk(&[]), AT);
    let added = out
        .decisions
        .iter()
        .find(|d| d.kind == DecisionKind::ActivateRamp)
        .expect("a ramp is activated");
    assert_eq!(added.reason, Reason::NoActiveRamps);
    assert_eq!(out.config.unwrap().ramps.len(), 1);
}
