//! `apparate`: the one binary a user runs. Each subcommand lives in its own module.

mod demo;
mod doctor;
mod prepare;

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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Demo(args) => demo::run(&args),
        Command::Doctor(args) => doctor::run(&args),
        Command::Prepare(args) => prepare::run(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("apparate: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
