//! One tuning run with 8 active ramps: our search versus the greedy reproduction, on the
//! same window. Compare the two medians as a ratio. 256 requests is the reference
//! size; 1024 is the default window (16 chunks of 64).

use std::hint::black_box;

use apparate_controller::LatencyProfile;
use apparate_controller::synthetic::SyntheticSpec;
use apparate_controller::tuner::{ErrorLimits, error_allowance, tune_greedy, tune_search};
use apparate_controller::window::TuningWindow;
use criterion::{Criterion, criterion_group, criterion_main};

fn window_x8(n: usize) -> (TuningWindow, ErrorLimits) {
    let trace = SyntheticSpec::drifting(42, 8, 20).generate();
    let ids: Vec<u32> = (0..8).collect();
    let records: Vec<_> = trace.requests[..n]
        .iter()
        .map(|r| r.feedback(&ids, 0, 0))
        .collect();
    let profile = LatencyProfile::synthetic(8, 10.0, 0.0025);
    let (older, recent) = records.split_at(n - 64);
    let window = TuningWindow::build_parts(older, recent, &ids, &profile);
    let window_errors = error_allowance(window.len(), 0.01, None).unwrap_or(0);
    let limits = ErrorLimits {
        window: window_errors,
        recent: error_allowance(window.recent_len(), 0.01, None).unwrap_or(0),
    };
    (window, limits)
}

fn bench_tuners(c: &mut Criterion) {
    for n in [256, 1024] {
        let (window, limits) = window_x8(n);
        let mut group = c.benchmark_group(format!("tune_{n}x8"));
        group.bench_function("ours", |b| {
            b.iter(|| tune_search(black_box(&window), limits))
        });
        group.bench_function("greedy", |b| {
            b.iter(|| tune_greedy(black_box(&window), limits))
        });
        group.finish();
    }

    let trace = SyntheticSpec::drifting(42, 8, 4).generate();
    let ids: Vec<u32> = (0..8).collect();
    let records: Vec<_> = trace.requests[..256]
        .iter()
        .map(|r| r.feedback(&ids, 0, 0))
        .collect();
    let profile = LatencyProfile::synthetic(8, 10.0, 0.0025);
    c.bench_function("window_build_256x8", |b| {
        b.iter(|| TuningWindow::build(black_box(&records), &ids, &profile))
    });
}

criterion_group!(benches, bench_tuners);
criterion_main!(benches);
