//! `apparate doctor`: what this machine gives us, and what is missing.

use anyhow::{Context, Result, bail};
use apparate_engine::{
    data::{Split, data_dir, load_fashion_mnist},
    device::{DeviceChoice, describe},
};

/// Arguments of `apparate doctor`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Device to check: auto, cpu, cuda or cuda:N.
    #[arg(long, env = "APPARATE_DEVICE", default_value = "auto", value_parser = parse_device)]
    pub device: DeviceChoice,
}

/// Parses `--device` for clap.
pub fn parse_device(text: &str) -> Result<DeviceChoice, String> {
    DeviceChoice::parse(text)
        .ok_or_else(|| format!("'{text}' is not a device: use auto, cpu, cuda or cuda:N"))
}

/// Prints the device and checks that the data sets load.
pub fn run(args: &Args) -> Result<()> {
    let device = args.device.resolve();
    println!("libtorch: {}", describe(device));
    if device.is_cuda() && !tch::Cuda::is_available() {
        bail!("--device {device:?} asked for CUDA, but libtorch sees no GPU");
    }
    let dir = data_dir();
    println!("data: {}", dir.display());
    let test =
        load_fashion_mnist(&dir.join("fashion-mnist"), Split::Test).context("Fashion-MNIST")?;
    println!("  fashion-mnist: {} test images", test.len());
    for (name, file) in [
        ("vader", "movieReviewSnippets_GroundTruth.txt"),
        ("minilm", "model.safetensors"),
        ("mnist", "0.json"),
    ] {
        let path = dir.join(name).join(file);
        if !path.is_file() {
            bail!(
                "{}: missing; run `scripts/bootstrap.sh data`",
                path.display()
            );
        }
        println!("  {name}: {}", path.display());
    }
    println!("ok");
    Ok(())
}
