//! weftctl, the weft command-line tool: offline rendering, CRD output, network policy analysis
//! and the connectivity check of a live cluster.

mod check;
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
    /// Check pod networking and policy in the cluster in KUBECONFIG (creates and deletes a
    /// weft-check-<random> namespace).
    Check(check::Args),
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Crds(args) => crds::run(args),
        Command::Render(args) => render::run(args),
        Command::Policy(command) => policy::run(command),
        Command::Check(args) => check::run(args),
    }
}
