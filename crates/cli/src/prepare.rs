//! `apparate prepare`: train a model and its ramps on real data, profile it on the
//! serving device, and write a self-contained bundle.

use std::{path::PathBuf, time::Instant};

use anyhow::{Context, Result};
use apparate_engine::{
    Bundle,
    device::{DeviceChoice, describe, set_threads},
    model::Family,
    prepare::{Phase, PrepareOptions, prepare, reprofile},
};
use indicatif::{ProgressBar, ProgressStyle};

use crate::doctor::parse_device;

/// Model families `prepare` can build.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ModelArg {
    /// ResNet-20-style CNN on Fashion-MNIST, 8 candidate ramps.
    Resnet,
    /// VGG-style CNN on Fashion-MNIST, 5 candidate ramps.
    Vgg,
    /// all-MiniLM-L6-v2 with a sentiment head on movie reviews, 5 candidate ramps.
    Minilm,
}

/// The engine's defaults for what `apparate prepare` and the demo do not set themselves
/// (family and device aside, they are the same for every model).
pub fn defaults() -> PrepareOptions {
    PrepareOptions::new(Family::Resnet, tch::Device::Cpu)
}

/// Arguments of `apparate prepare`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Model family to prepare.
    #[arg(long)]
    pub model: ModelArg,
    /// Bundle folder to write (created if missing; files in it are replaced).
    #[arg(long)]
    pub out: PathBuf,
    /// Tiny and fast: a slice of the data, one short epoch, a short profile. For tests.
    #[arg(long)]
    pub quick: bool,
    /// Training epochs of the original model: the CNN backbone (default 4; 1 with
    /// --quick) or MiniLM's sentiment head (default 200).
    #[arg(long)]
    pub epochs: Option<u32>,
    /// Share of the training set, from its start, used to train the ramps (the bootstrap split).
    #[arg(long, default_value_t = defaults().bootstrap_share)]
    pub bootstrap_share: f64,
    /// CNN ramps also learn the backbone's answers on this many corrupted copies of each
    /// bootstrap image (random contrast, brightness, blur, noise), so their confidence holds
    /// up when the light or focus drifts; 0 = clean images only.
    #[arg(long, default_value_t = defaults().ramp_augment_copies)]
    pub ramp_augment_copies: usize,
    /// Weight of the ramps' loss on the true labels while a CNN backbone trains (deep
    /// supervision), which makes its intermediate features easier for the ramps to read;
    /// the ramps are then distilled as usual with the backbone frozen. 0 trains the
    /// backbone on its final loss alone. MiniLM ignores it.
    #[arg(long, default_value_t = defaults().deep_supervision)]
    pub deep_supervision: f64,
    /// Device to train and profile on: auto, cpu, cuda or cuda:N.
    #[arg(long, env = "APPARATE_DEVICE", default_value = "auto", value_parser = parse_device)]
    pub device: DeviceChoice,
    /// libtorch threads (0 = one per core).
    #[arg(long, env = "APPARATE_THREADS", default_value_t = 0)]
    pub threads: usize,
    /// Seed for initialisation and shuffling.
    #[arg(long, default_value_t = defaults().seed)]
    pub seed: i64,
}

/// Arguments of `apparate profile`.
#[derive(Debug, clap::Args)]
pub struct ProfileArgs {
    /// Bundle folder written by `apparate prepare`; its profile.yaml is replaced.
    #[arg(long)]
    pub bundle: PathBuf,
    /// Device to profile on (the serving device): auto, cpu, cuda or cuda:N.
    #[arg(long, env = "APPARATE_DEVICE", default_value = "auto", value_parser = parse_device)]
    pub device: DeviceChoice,
    /// libtorch threads: use the server's setting (0 = one per core).
    #[arg(long, env = "APPARATE_THREADS", default_value_t = 0)]
    pub threads: usize,
}

/// Re-profiles a bundle in place and prints the same table as `prepare`.
pub fn run_profile(args: &ProfileArgs) -> Result<()> {
    set_threads(args.threads);
    let device = args.device.resolve();
    eprintln!(
        "apparate profile: {} on {}",
        args.bundle.display(),
        describe(device)
    );
    let started = Instant::now();
    let mut bundle = Bundle::load(&args.bundle, device)
        .with_context(|| format!("loading the bundle {}", args.bundle.display()))?;
    let bar = progress_bar("profile", "batch sizes");
    reprofile(&mut bundle, &mut |done, total| {
        bar.set_length(total);
        bar.set_position(done);
    })?;
    bar.finish();
    bundle
        .save_files(&args.bundle)
        .with_context(|| format!("writing the profile to {}", args.bundle.display()))?;
    print_summary(&bundle, "profiled", started.elapsed().as_secs_f64());
    println!(
        "profile written to {}",
        args.bundle.join("profile.yaml").display()
    );
    Ok(())
}

/// Runs `prepare` and prints the accuracy report.
pub fn run(args: &Args) -> Result<()> {
    anyhow::ensure!(
        args.bootstrap_share > 0.0 && args.bootstrap_share <= 1.0,
        "--bootstrap-share must be in (0, 1], got {}",
        args.bootstrap_share
    );
    anyhow::ensure!(
        args.deep_supervision.is_finite() && args.deep_supervision >= 0.0,
        "--deep-supervision must be a finite weight >= 0, got {}",
        args.deep_supervision
    );
    set_threads(args.threads);
    let device = args.device.resolve();
    eprintln!(
        "apparate prepare: {} on {}",
        name(args.model),
        describe(device)
    );
    let family = family(args.model);
    let opts = PrepareOptions {
        family,
        device,
        quick: args.quick,
        epochs: args.epochs,
        bootstrap_share: args.bootstrap_share,
        ramp_augment_copies: args.ramp_augment_copies,
        deep_supervision: args.deep_supervision,
        seed: args.seed,
    };
    let started = Instant::now();
    let bars = Phase::ALL.map(|phase| {
        let (what, unit) = match phase {
            Phase::Backbone => ("backbone", "steps"),
            Phase::Features => ("features", "batches"),
            Phase::Head => ("head", "epochs"),
            Phase::Ramps => ("ramps", "epochs"),
            Phase::Profile => ("profile", "batch sizes"),
        };
        progress_bar(what, unit)
    });
    let bundle = prepare(&opts, &mut |phase, done, total, loss| {
        let bar = &bars[phase as usize];
        bar.set_length(total);
        bar.set_position(done);
        if let Some(loss) = loss {
            bar.set_message(format!("loss {loss:.3}"));
        }
        if done == total {
            bar.finish();
        }
    })?;
    bundle
        .save(&args.out)
        .with_context(|| format!("writing the bundle to {}", args.out.display()))?;
    print_summary(&bundle, "prepared", started.elapsed().as_secs_f64());
    println!("bundle written to {}", args.out.display());
    Ok(())
}

fn family(model: ModelArg) -> Family {
    match model {
        ModelArg::Resnet => Family::Resnet,
        ModelArg::Vgg => Family::Vgg,
        ModelArg::Minilm => Family::Minilm,
    }
}

fn name(model: ModelArg) -> &'static str {
    family(model).as_str()
}

fn progress_bar(what: &str, unit: &str) -> ProgressBar {
    let style = ProgressStyle::with_template(&format!(
        "{what:>9} {{bar:40}} {{pos}}/{{len}} {unit}, {{msg}} [{{elapsed}}<{{eta}}]"
    ))
    .expect("valid template");
    ProgressBar::new(0).with_style(style)
}

fn print_summary(bundle: &Bundle, what: &str, secs: f64) {
    let r = &bundle.report;
    let p = &bundle.profile;
    let last = p.batch_sizes.len() - 1;
    let full = p.full_model_ms[last];
    println!(
        "{} in {secs:.0} s; {}: final accuracy {:.2} %",
        what,
        r.dataset,
        100.0 * r.final_accuracy
    );
    println!(
        "{:<8} {:>6} {:>10} {:>9} {:>12} {:>10}",
        "ramp", "depth", "agreement", "accuracy", "reach ms", "ramp ms"
    );
    for (ramp, (cut, prof)) in r
        .ramps
        .iter()
        .zip(bundle.manifest.candidates.iter().zip(&p.ramps))
    {
        println!(
            "{:<8} {:>5.0}% {:>9.2}% {:>8.2}% {:>12.3} {:>10.4}",
            ramp.name,
            100.0 * cut.depth_fraction,
            100.0 * ramp.agreement,
            100.0 * ramp.accuracy,
            prof.backbone_ms[last],
            prof.ramp_ms[last]
        );
    }
    let all_ramps: f64 = p.ramps.iter().map(|r| r.ramp_ms[last]).sum();
    println!(
        "batch {}: full model {full:.3} ms; all {} ramps together {all_ramps:.4} ms ({:.2} % of the full model)",
        p.batch_sizes[last],
        p.ramps.len(),
        100.0 * all_ramps / full
    );
}
