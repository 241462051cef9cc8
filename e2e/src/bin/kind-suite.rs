//! `kind-suite`: the real-node checks of `e2e/kind/` beyond `weftctl check` and the upstream
//! suites, against the cluster in KUBECONFIG: `diagnosis` (the operator names real pod trouble),
//! `untrusted` (hostile objects cost only themselves) and `disruption` (a TCP stream through a
//! rolling update of the agents; a worker deleted). Prints one PASS line per check and exits non-zero on the first failure. `disruption` deletes
//! a worker: run it last.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use weft_e2e::kind_suite::{Suite, diagnosis, disruption, untrusted};

#[derive(Parser)]
#[command(
    name = "kind-suite",
    about = "weft's real-node checks on the kind e2e cluster"
)]
struct Cli {
    /// The kind cluster's name (its node containers are <cluster>-worker, -worker2, ...).
    #[arg(long, env = "WEFT_E2E_CLUSTER", default_value = "weft-e2e")]
    cluster: String,
    /// The agnhost image on every node, for the test pods.
    #[arg(long)]
    agnhost: String,
    #[command(subcommand)]
    command: Check,
}

#[derive(Subcommand)]
enum Check {
    /// Misconfigure the Installation three ways; the status must name pod, node and reason.
    Diagnosis {
        /// A registry address of ours where nothing listens (image pulls fail on the node).
        #[arg(long)]
        unserved_registry: String,
    },
    /// Hostile Node and IPAMBlocks beside live pods: policy and routes hold, refusals reported,
    /// the agents' health port closed to pods.
    Untrusted,
    /// Rolling update under a TCP stream, then a worker deletion.
    Disruption {
        /// The registry the weft images are also tagged under on every node.
        #[arg(long)]
        rollout_registry: String,
    },
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let client = match kube::Client::try_default().await {
        Ok(client) => client,
        Err(error) => {
            eprintln!("kind-suite: no cluster in KUBECONFIG: {error}");
            return ExitCode::FAILURE;
        }
    };
    let suite = Suite {
        client,
        cluster: cli.cluster,
        agnhost: cli.agnhost,
    };
    let result = match cli.command {
        Check::Diagnosis { unserved_registry } => diagnosis::run(&suite, &unserved_registry).await,
        Check::Untrusted => untrusted::run_check(&suite).await,
        Check::Disruption { rollout_registry } => {
            async {
                let rolling = disruption::rolling_update(&suite, &rollout_registry).await?;
                println!("{rolling}");
                Ok(vec![disruption::worker_deletion(&suite).await?])
            }
            .await
        }
    };
    match result {
        Ok(lines) => {
            for line in lines {
                println!("{line}");
            }
            ExitCode::SUCCESS
        }
        Err(error) => {
            println!("FAIL {error:#}");
            ExitCode::FAILURE
        }
    }
}
