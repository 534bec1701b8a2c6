//! `apparate loadgen`: open-loop load on a running server, with a workload's inputs in
//! the workload's order (so its drift reaches the server as it would in production).

use std::{path::PathBuf, sync::Arc, time::Duration};

use anyhow::{Context, Result};
use apparate_engine::{
    data::data_dir,
    workload::{BatchInput, Workload, WorkloadStream},
};
use apparate_proto::v1;
use apparate_server::loadgen::{self, LoadReport, LoadSpec};

/// Arguments of `apparate loadgen`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Server endpoint.
    #[arg(
        long,
        env = "APPARATE_ENDPOINT",
        default_value = "http://127.0.0.1:50051"
    )]
    pub target: String,
    /// Workload whose inputs are sent, in order and cycled (configs/workloads/*.yaml).
    #[arg(long, default_value = "configs/workloads/fmnist-day-night.yaml")]
    pub workload: PathBuf,
    /// Mean arrivals per second.
    #[arg(long, default_value_t = 200.0)]
    pub rate: f64,
    /// Seconds to keep sending.
    #[arg(long, default_value_t = 10.0)]
    pub duration_s: f64,
    /// Evenly spaced arrivals instead of Poisson.
    #[arg(long)]
    pub even: bool,
    /// Seed of the arrival process.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

/// Every request of a workload, as `Infer` requests, in stream order.
pub fn workload_requests(path: &std::path::Path) -> Result<Vec<v1::InferRequest>> {
    let workload = Workload::from_yaml_file(path)?;
    let stream = WorkloadStream::open(&workload, &data_dir())
        .with_context(|| format!("loading the data of {}", path.display()))?;
    let mut requests = Vec::with_capacity(stream.len());
    for batch in stream.batches(256) {
        match batch.input {
            BatchInput::Images(images) => {
                requests.extend(loadgen::tensor_requests(&images, &workload.name));
            }
            BatchInput::Texts(texts) => {
                requests.extend(texts.into_iter().map(|text| v1::InferRequest {
                    client_tag: workload.name.clone(),
                    input: Some(v1::infer_request::Input::Text(text)),
                }));
            }
        }
    }
    Ok(requests)
}

/// One line per measure, for people.
pub fn summary(report: &LoadReport) -> String {
    let errors = if report.errors.is_empty() {
        "none".to_owned()
    } else {
        format!("{:?}", report.errors)
    };
    format!(
        "answered {} of {} sent ({} skipped, errors: {errors}) in {:.1} s: {:.0} req/s\n\
         latency p50 {:.2} ms, p95 {:.2} ms, p99 {:.2} ms; released early: {:.1} %",
        report.samples.len(),
        report.sent,
        report.skipped,
        report.elapsed.as_secs_f64(),
        report.throughput(),
        report.latency_ms(0.5),
        report.latency_ms(0.95),
        report.latency_ms(0.99),
        100.0 * report.exit_rate(),
    )
}

/// Runs the load and prints the summary.
pub fn run(args: &Args) -> Result<()> {
    anyhow::ensure!(
        args.rate > 0.0 && args.rate.is_finite(),
        "--rate must be a positive number, got {}",
        args.rate
    );
    anyhow::ensure!(
        args.duration_s > 0.0 && args.duration_s <= 86_400.0,
        "--duration-s must be in (0, 86400], got {}",
        args.duration_s
    );
    let requests = Arc::new(workload_requests(&args.workload)?);
    let spec = LoadSpec {
        rate_per_s: args.rate,
        duration: Duration::from_secs_f64(args.duration_s),
        poisson: !args.even,
        seed: args.seed,
        ..LoadSpec::default()
    };
    let runtime = tokio::runtime::Runtime::new()?;
    let report = runtime.block_on(async {
        let client = loadgen::connect(&args.target)
            .await
            .map_err(|e| anyhow::anyhow!("cannot reach {}: {e}", args.target))?;
        anyhow::Ok(loadgen::run(client, requests, &spec, |_| {}).await)
    })?;
    println!("{}", summary(&report));
    Ok(())
}
