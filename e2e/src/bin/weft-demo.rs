//! `weft-demo` (`make demo`): weft on a local control plane with a real dataplane — three
//! namespace nodes on two subnets, each with its own `weft-agent run`, pods attached by the
//! installed plugin, the connectivity matrix before and after the seed's blue policy (see
//! `weft_e2e::demo`). Without root it says why and runs the kwok demo instead; `--kwok`
//! (`make demo-kwok`) runs the kwok demo: the install path alone, on simulated nodes.
//! Ctrl-C (or SIGTERM) at any point removes everything the demo made.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use tokio::signal::unix::{SignalKind, signal};
use weft_e2e::demo::{self, host, kwok, run};

/// Install weft on a local cluster, network pods and enforce a policy.
#[derive(Parser)]
#[command(name = "weft-demo")]
struct Args {
    /// Run the kwok demo (simulated nodes, no dataplane).
    #[arg(long)]
    kwok: bool,
    /// kwok nodes in the kwok demo.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..=1000))]
    nodes: u16,
    /// The Installation to apply.
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/../config/samples/installation-minimal.yaml"))]
    installation: PathBuf,
    /// The policy applied after the first matrix.
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/../config/samples/networkpolicy-blue.yaml"))]
    policy: PathBuf,
    /// Keep the cluster and its dataplane up until Ctrl-C once everything is printed.
    #[arg(long)]
    keep: bool,
    /// Seconds to wait for each step (the Installation to become Available, the policy).
    #[arg(long, default_value_t = 120, value_parser = clap::value_parser!(u64).range(1..))]
    timeout_seconds: u64,
}

/// Where `weft-agent`, `weft`, `weft-ipam` and `weftctl` are: next to this binary.
fn binaries() -> Result<PathBuf, demo::Error> {
    let exe = std::env::current_exe().map_err(|source| demo::Error::Io {
        what: "locating weft-demo".into(),
        source,
    })?;
    let dir = exe.parent().map(PathBuf::from).unwrap_or_default();
    let missing: Vec<&str> = ["weft-agent", "weft", "weft-ipam", "weftctl"]
        .into_iter()
        .filter(|name| !dir.join(name).exists())
        .collect();
    if !missing.is_empty() {
        return Err(demo::Error::Setup(format!(
            "{} missing in {}: build them with `cargo build -p weft-agent -p weft-cni -p weftctl` \
             (`make demo` does)",
            missing.join(", "),
            dir.display()
        )));
    }
    Ok(dir)
}

async fn demo(args: Args) -> Result<(), demo::Error> {
    let timeout = Duration::from_secs(args.timeout_seconds);
    if args.kwok {
        return kwok::demo(usize::from(args.nodes), &args.installation, timeout).await;
    }
    if let Some(why) = host::missing_privileges() {
        println!(
            "weft-demo: {why}.\nRunning the kwok demo instead (simulated nodes, no dataplane).\n"
        );
        return kwok::demo(usize::from(args.nodes), &args.installation, timeout).await;
    }
    run::demo(run::Settings {
        installation: args.installation,
        policy: args.policy,
        binaries: binaries()?,
        keep: args.keep,
        timeout,
    })
    .await
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let (Ok(mut interrupt), Ok(mut terminate)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        eprintln!("weft-demo: cannot handle signals");
        return ExitCode::FAILURE;
    };
    // On a signal the demo's future is dropped, and with it everything it made.
    let result = tokio::select! {
        result = demo(args) => result,
        _ = interrupt.recv() => {
            eprintln!("weft-demo: interrupted; everything it made is removed");
            return ExitCode::from(130);
        }
        _ = terminate.recv() => {
            eprintln!("weft-demo: terminated; everything it made is removed");
            return ExitCode::from(143);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("weft-demo: {error}");
            ExitCode::FAILURE
        }
    }
}
