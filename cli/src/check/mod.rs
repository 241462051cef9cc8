//! `weftctl check`: a connectivity check of the pod network of the cluster in KUBECONFIG.
//!
//! In a fresh namespace `weft-check-<random>` it starts agnhost pods: a client (`color: red`), a
//! stranger (`color: green`) and an echo pod (`color: blue`) on one node, a host-network pod on
//! that node, and echo pods on a node in the same subnet and on one in another subnet (`ip route
//! get` from the host-network pod tells which), plus a ClusterIP Service. It checks pod to pod
//! (same node, other node same subnet, other node cross subnet), pod to Service by ClusterIP and
//! by DNS name, node to pod, pod to an outside address (`--outside`: the source it sees must be the
//! node's address when the pod's pool has natOutgoing Enabled, the pod's when Disabled), and
//! policy: default-deny ingress, default-deny egress, allow by label and the seed's blue policy.
//! It prints a PASS / FAIL / SKIP table, deletes the namespace and exits 1 on any FAIL (and on
//! any SKIP with `--require-all`).

mod cluster;
mod objects;
mod policies;
mod probe;
mod report;
mod run;

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

/// Errors that stop the check before or while setting it up.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error("the Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("no client configuration (KUBECONFIG or in-cluster): {0}")]
    Config(#[from] kube::config::InferConfigError),
    #[error("the cluster has no schedulable node")]
    NoNodes,
    #[error("cannot start the async runtime: {0}")]
    Runtime(#[from] std::io::Error),
}

#[derive(clap::Args)]
pub struct Args {
    /// The agnhost image the check's pods run (it must be present on the nodes or pullable).
    #[arg(long, default_value = "registry.k8s.io/e2e-test-images/agnhost:2.63.0")]
    image: String,
    /// Address (IP:PORT) of an agnhost netexec outside the cluster, for the pod to outside check;
    /// without it that check is skipped.
    #[arg(long)]
    outside: Option<SocketAddr>,
    /// Seconds to wait for the check's pods to be Ready.
    #[arg(long, default_value_t = 180, value_parser = clap::value_parser!(u64).range(1..=3600))]
    timeout: u64,
    /// Seconds to wait for a policy change to take effect.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=600))]
    policy_timeout: u64,
    /// Keep the namespace (and its pods) after the check, for debugging.
    #[arg(long)]
    keep: bool,
    /// Fail when a check is skipped: for clusters that have everything every check needs (two
    /// subnets, an outside address), where a skip means the check could not see what it should.
    #[arg(long)]
    require_all: bool,
}

/// Settings of one run, from the flags.
pub struct Settings {
    pub image: String,
    pub outside: Option<SocketAddr>,
    pub timeout: Duration,
    pub policy_timeout: Duration,
    pub keep: bool,
}

pub fn run(args: Args) -> ExitCode {
    let settings = Settings {
        image: args.image,
        outside: args.outside,
        timeout: Duration::from_secs(args.timeout),
        policy_timeout: Duration::from_secs(args.policy_timeout),
        keep: args.keep,
    };
    let result = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(CheckError::from)
        .and_then(|runtime| runtime.block_on(run::check(&settings)));
    match result {
        Ok(report) => {
            print!("{}", report.table());
            let skipped = report.skipped();
            if args.require_all && skipped > 0 {
                eprintln!("weftctl check: {skipped} checks skipped and --require-all is set");
                ExitCode::FAILURE
            } else if report.passed() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(error) => {
            eprintln!("weftctl check: {error}");
            ExitCode::FAILURE
        }
    }
}
