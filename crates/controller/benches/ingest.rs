//! Record ingestion: chunk accounting alone, and the full policy loop in steady state (no
//! re-tuning), in records per second.

use std::hint::black_box;
use std::time::Duration;

use apparate_controller::accounting::ChunkAccumulator;
use apparate_controller::{
    Controller, ControllerConfig, ExitConfig, FeedbackRecord, LatencyProfile, RampObservation,
    RampOutput, RampThreshold,
};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

const RECORDS: usize = 64 * 1024;

/// Records whose ramps always disagree with the final output: any exit would be an error,
/// so the tuner keeps every ramp closed and the loop never re-tunes after the first chunk.
fn records(active: &[u32]) -> Vec<FeedbackRecord> {
    (0..RECORDS as u64)
        .map(|i| FeedbackRecord {
            request_id: i,
            ramps: active
                .iter()
                .map(|&ramp_id| RampObservation {
                    ramp_id,
                    output: RampOutput {
                        label: 1,
                        confidence: 0.5 + (i % 50) as f32 / 100.0,
                        entropy: 0.5,
                    },
                })
                .collect(),
            final_label: 0,
            batch_size: 8,
            queue_us: 100 + i % 1000,
            exec_us: 5000 + i % 3000,
        })
        .collect()
}

fn bench_ingest(c: &mut Criterion) {
    let profile = LatencyProfile::synthetic(8, 10.0, 0.0025);
    let active: Vec<u32> = (0..8).collect();
    let config = ExitConfig::new(
        1,
        active
            .iter()
            .map(|&ramp_id| RampThreshold {
                ramp_id,
                threshold: 0.9,
            })
            .collect(),
    )
    .expect("valid config");
    let recs = records(&active);
    let mut group = c.benchmark_group("ingest");
    group.throughput(Throughput::Elements(RECORDS as u64));
    group.bench_function("accounting", |b| {
        b.iter(|| {
            for chunk in recs.chunks(64) {
                let mut acc = ChunkAccumulator::new(&config, &profile);
                for r in chunk {
                    acc.push(black_box(r));
                }
                black_box(acc.finish(0, Duration::ZERO, 0.01));
            }
        })
    });
    group.bench_function("controller_on_record", |b| {
        let cfg = ControllerConfig {
            retune_every_chunks: 0,
            adjust_every_chunks: 0,
            ..ControllerConfig::default()
        };
        let start = ExitConfig::never_exit(0, &active).expect("valid config");
        b.iter_batched(
            || {
                let ctrl = Controller::new(cfg.clone(), profile.clone(), start.clone())
                    .expect("valid controller");
                (ctrl, recs.clone())
            },
            |(mut ctrl, recs)| {
                for r in recs {
                    black_box(ctrl.on_record(r, Duration::ZERO));
                }
            },
            criterion::BatchSize::LargeInput,
        )
    });
    group.finish();
}

criterion_group!(benches, bench_ingest);
criterion_main!(benches);
