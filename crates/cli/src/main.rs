//! `apparate`: the one binary a user runs. Each subcommand lives in its own module.

mod demo;
mod doctor;
mod eval;
mod loadgen;
mod plot;
mod prepare;
mod record;
mod svg;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Early-exit serving that stays within its accuracy budget on live, drifting traffic.
#[derive(Debug, Parser)]
#[command(name = "apparate", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the main job end to end (grows as the system lands; see README).
    Demo(demo::Args),
    /// Check the environment: libtorch, the serving device, the data sets.
    Doctor(doctor::Args),
    /// Train a model and its ramps, profile them, and write a servable bundle.
    Prepare(prepare::Args),
    /// Profile a bundle again on this machine (do it on the serving machine, quiet).
    Profile(prepare::ProfileArgs),
    /// Serve a bundle over gRPC with early release and live exit configs.
    Serve(apparate_server::cli::ServeArgs),
    /// Run the controller beside a server (`run`), or replay a policy over a trace (`replay`).
    Sidecar(apparate_sidecar::SidecarArgs),
    /// Send open-loop load (a workload's inputs) to a running server; report latency.
    Loadgen(loadgen::Args),
    /// Run a workload through a bundle with every ramp active and write a trace.
    Record(record::Args),
    /// Replay every policy on every workload's trace: one table, plots, optional JSON.
    Eval(eval::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => return apparate_server::cli::run_cli(&args),
        Command::Sidecar(args) => return apparate_sidecar::run_cli(args),
        Command::Loadgen(args) => loadgen::run(&args),
        Command::Demo(args) => demo::run(&args),
        Command::Doctor(args) => doctor::run(&args),
        Command::Prepare(args) => prepare::run(&args),
        Command::Profile(args) => prepare::run_profile(&args),
        Command::Record(args) => record::run(&args),
        Command::Eval(args) => eval::run(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("apparate: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
