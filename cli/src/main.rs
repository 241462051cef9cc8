//! weftctl, the weft command-line tool: offline rendering, CRD output and network policy analysis.

mod crds;
mod policy;
mod render;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "weftctl", version, about = "The weft command-line tool")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print every weft CustomResourceDefinition as multi-document YAML.
    Crds(crds::Args),
    /// Print the objects the operator applies for an Installation, without a cluster.
    Render(render::Args),
    /// Analyse network policies offline.
    #[command(subcommand)]
    Policy(policy::Command),
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Crds(args) => crds::run(args),
        Command::Render(args) => render::run(args),
        Command::Policy(command) => policy::run(command),
    }
}
