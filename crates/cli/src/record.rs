//! `apparate record`: run a workload through a bundle with every candidate ramp active and
//! write the trace (JSON Lines, `docs/trace-format.md`) that replay and eval read.

use std::{
    fs::File,
    io::BufWriter,
    path::{Path, PathBuf},
};

use anyhow::{Context, Result};
use apparate_controller::Trace;
use apparate_engine::{
    Bundle,
    data::data_dir,
    device::{DeviceChoice, set_threads},
    workload::{RecordOptions, Workload, WorkloadStream, record_trace},
};
use indicatif::{ProgressBar, ProgressStyle};

use crate::doctor::parse_device;

/// Arguments of `apparate record`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Bundle folder written by `apparate prepare`.
    #[arg(long)]
    pub bundle: PathBuf,
    /// Workload file (see configs/workloads/ and docs/workloads.md).
    #[arg(long)]
    pub workload: PathBuf,
    /// Trace file to write (JSON Lines).
    #[arg(long)]
    pub out: PathBuf,
    /// Record only the first N requests of the workload.
    #[arg(long)]
    pub limit: Option<u64>,
    /// Device to run on: auto, cpu, cuda or cuda:N.
    #[arg(long, env = "APPARATE_DEVICE", default_value = "auto", value_parser = parse_device)]
    pub device: DeviceChoice,
    /// libtorch threads (0 = one per core).
    #[arg(long, env = "APPARATE_THREADS", default_value_t = 0)]
    pub threads: usize,
}

/// Runs `record`.
pub fn run(args: &Args) -> Result<()> {
    set_threads(args.threads);
    let workload = Workload::from_yaml_file(&args.workload)?;
    let workload = match args.limit {
        Some(n) => workload.truncated(n),
        None => workload,
    };
    let trace = record(&args.bundle, &workload, args.device, true)?;
    write_trace(&trace, &args.out)?;
    println!(
        "recorded {} requests of {} through {} into {}",
        trace.len(),
        workload.name,
        args.bundle.display(),
        args.out.display()
    );
    Ok(())
}

/// Loads the bundle and the workload's data and records the trace.
pub fn record(
    bundle_dir: &Path,
    workload: &Workload,
    device: DeviceChoice,
    show_progress: bool,
) -> Result<Trace> {
    let bundle = Bundle::load(bundle_dir, device.resolve())
        .with_context(|| format!("loading the bundle in {}", bundle_dir.display()))?;
    let stream = WorkloadStream::open(workload, &data_dir())?;
    let bar = if show_progress {
        ProgressBar::new(stream.len() as u64)
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template(&format!(
            "{:>9} {{bar:40}} {{pos}}/{{len}} requests [{{elapsed}}<{{eta}}]",
            "record"
        ))
        .expect("valid template"),
    );
    let trace = record_trace(
        &bundle,
        &stream,
        RecordOptions::default(),
        &mut |done, _| {
            bar.set_position(done);
        },
    )?;
    bar.finish_and_clear();
    Ok(trace)
}

/// Writes a trace, creating the parent folder.
pub fn write_trace(trace: &Trace, path: &Path) -> Result<()> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    let file = File::create(path).with_context(|| format!("creating {}", path.display()))?;
    trace
        .write_jsonl(BufWriter::new(file))
        .with_context(|| format!("writing {}", path.display()))
}

/// Reads a trace file.
pub fn read_trace(path: &Path) -> Result<Trace> {
    let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    Trace::read_jsonl(std::io::BufReader::new(file))
        .with_context(|| format!("reading {}", path.display()))
}
