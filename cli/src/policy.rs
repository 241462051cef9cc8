//! `weftctl policy`: network policy analysis.

use std::process::ExitCode;

#[derive(clap::Subcommand)]
pub enum Command {
    /// Print the reachability of every pod to every pod.
    Matrix,
}

pub fn run(_command: Command) -> ExitCode {
    eprintln!("weftctl policy: not implemented yet");
    ExitCode::from(2)
}
