//! `apparate-sidecar`: a thin wrapper over [`apparate_sidecar::SidecarArgs`].

use std::process::ExitCode;

use apparate_sidecar::SidecarArgs;
use clap::Parser;

/// Tunes a model server's early exits live (`run`), or replays a recorded trace (`replay`).
#[derive(Debug, Parser)]
#[command(name = "apparate-sidecar", version, about, long_about = None)]
struct Cli {
    #[command(flatten)]
    args: SidecarArgs,
}

fn main() -> ExitCode {
    apparate_sidecar::run_cli(Cli::parse().args)
}
