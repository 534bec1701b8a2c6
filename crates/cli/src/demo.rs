//! `apparate demo`: the main job. For now the thinnest real path through the
//! engine: train a small classifier on real Fashion-MNIST with libtorch on the
//! serving device and report its test accuracy and batch latency. It grows into
//! the live early-exit demo (server + sidecar + drifting load) as those land.

use std::time::Instant;

use anyhow::{Context, Result};
use apparate_engine::{
    data::{ImageSet, Split, data_dir, load_fashion_mnist},
    device::{DeviceChoice, describe, set_threads},
};
use indicatif::{ProgressBar, ProgressStyle};
use tch::{Device, Kind, Tensor, nn, nn::Module, nn::OptimizerConfig};

use crate::doctor::parse_device;

/// Arguments of `apparate demo`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Device to run on: auto, cpu, cuda or cuda:N.
    #[arg(long, env = "APPARATE_DEVICE", default_value = "auto", value_parser = parse_device)]
    pub device: DeviceChoice,
    /// Training epochs over the 60,000 training images.
    #[arg(long, default_value_t = 2)]
    pub epochs: u32,
    /// libtorch threads (0 = one per core).
    #[arg(long, env = "APPARATE_THREADS", default_value_t = 0)]
    pub threads: usize,
    /// Seed for weights and shuffling.
    #[arg(long, default_value_t = 7)]
    pub seed: i64,
}

const BATCH: i64 = 128;

/// Trains and evaluates; prints a short report.
pub fn run(args: &Args) -> Result<()> {
    set_threads(args.threads);
    tch::manual_seed(args.seed);
    let device = args.device.resolve();
    println!("apparate demo: {}", describe(device));
    let dir = data_dir().join("fashion-mnist");
    let train = load_fashion_mnist(&dir, Split::Train).context("loading the training split")?;
    let test = load_fashion_mnist(&dir, Split::Test).context("loading the test split")?;

    let vs = nn::VarStore::new(device);
    let root = vs.root();
    let model = nn::seq()
        .add_fn(|x| x.flatten(1, -1))
        .add(nn::linear(&root / "fc1", 784, 256, Default::default()))
        .add_fn(Tensor::relu)
        .add(nn::linear(&root / "fc2", 256, 10, Default::default()));
    let mut opt = nn::Adam::default().build(&vs, 1e-3)?;

    let steps = u64::from(args.epochs) * u64::try_from(train.len().div_ceil(BATCH as usize))?;
    let bar = ProgressBar::new(steps).with_style(ProgressStyle::with_template(
        "training {bar:40} {pos}/{len} steps, loss {msg} [{elapsed}<{eta}]",
    )?);
    let started = Instant::now();
    for _ in 0..args.epochs {
        let order = Tensor::randperm(i64::try_from(train.len())?, (Kind::Int64, Device::Cpu));
        for batch in order.split(BATCH, 0) {
            let x = train.images.index_select(0, &batch).to_device(device);
            let y = train.labels.index_select(0, &batch).to_device(device);
            let loss = model.forward(&x).cross_entropy_for_logits(&y);
            opt.backward_step(&loss);
            bar.set_message(format!("{:.3}", loss.double_value(&[])));
            bar.inc(1);
        }
    }
    bar.finish();
    let train_secs = started.elapsed().as_secs_f64();

    let accuracy = evaluate(&model, &test, device);
    let batch_ms = median_batch_ms(&model, &test, device);
    println!("trained {} epochs in {train_secs:.1} s", args.epochs);
    println!(
        "test accuracy: {:.2} % on {} Fashion-MNIST test images",
        100.0 * accuracy,
        test.len()
    );
    println!("median forward latency at batch 64: {batch_ms:.3} ms");
    Ok(())
}

fn evaluate(model: &impl Module, set: &ImageSet, device: Device) -> f64 {
    let _guard = tch::no_grad_guard();
    let mut correct = 0.0;
    for (x, y) in set
        .images
        .split(1000, 0)
        .iter()
        .zip(set.labels.split(1000, 0))
    {
        let predicted = model.forward(&x.to_device(device)).argmax(-1, false);
        correct += predicted
            .eq_tensor(&y.to_device(device))
            .sum(Kind::Float)
            .double_value(&[]);
    }
    correct / set.len() as f64
}

fn median_batch_ms(model: &impl Module, set: &ImageSet, device: Device) -> f64 {
    let _guard = tch::no_grad_guard();
    let x = set.images.narrow(0, 0, 64).to_device(device);
    let mut times: Vec<f64> = (0..50)
        .map(|_| {
            let t = Instant::now();
            let out = model.forward(&x);
            // Reading a value waits for asynchronous (CUDA) work to finish.
            let _ = out.double_value(&[0, 0]);
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}
