//! Serving forward pass on libtorch: what ramps cost and how early the first answer comes.
//!
//! Weights are freshly initialised (timing does not depend on them), so the bench needs no
//! data. Compare within one run, as ratios:
//! - `full/bBATCH` vs `all_ramps/bBATCH`: throughput with every candidate ramp evaluated;
//! - `first_ramp/b64` vs `full/b64`: time until the shallowest ramp's answer exists.

use apparate_engine::{EarlyExitModel, device::set_threads, model::CnnSpec};
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use tch::{Device, Kind, Tensor};

fn forward(c: &mut Criterion) {
    set_threads(0);
    tch::manual_seed(0);
    for (name, spec) in [("resnet", CnnSpec::resnet(10)), ("vgg", CnnSpec::vgg(10))] {
        let model = EarlyExitModel::cnn(spec, Device::cuda_if_available());
        let all: Vec<u32> = model.cuts().iter().map(|c| c.id).collect();
        let mut group = c.benchmark_group(name);
        for batch in [1i64, 64] {
            let x = Tensor::rand([batch, 1, 28, 28], (Kind::Float, Device::Cpu));
            group.bench_with_input(BenchmarkId::new("full", batch), &x, |b, x| {
                b.iter(|| model.forward_exits(x, None, &[], |_, _| {}))
            });
            group.bench_with_input(BenchmarkId::new("all_ramps", batch), &x, |b, x| {
                b.iter(|| model.forward_exits(x, None, &all, |_, _| {}))
            });
        }
        // Time to the first ramp's answer: the same pass, stopped right after ramp 0.
        let x = Tensor::rand([64, 1, 28, 28], (Kind::Float, Device::Cpu));
        group.bench_function("first_ramp/64", |b| {
            b.iter(|| model.forward_until(&x, None, 0))
        });
        group.finish();
    }
}

criterion_group!(benches, forward);
criterion_main!(benches);
