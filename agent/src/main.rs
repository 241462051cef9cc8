//! `weft-agent`: `install-cni`, `uninstall-cni`, `run` (the node agent) and `controllers`.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use weft_agent::controllers::{self, ControllerSettings};
use weft_agent::install_cni::{self, CniPaths};
use weft_agent::run::{self, RunSettings};

#[derive(Parser)]
#[command(name = "weft-agent", version, about = "The weft node agent")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Install the weft CNI plugins and conflist on this node (an init container's job).
    InstallCni(CniArgs),
    /// Remove the weft conflist and plugins from this node.
    UninstallCni(CniArgs),
    /// Run the node agent.
    Run(RunArgs),
    /// Run the cluster-wide IPAM garbage collection (leader-elected).
    Controllers(ControllerArgs),
}

#[derive(Args, Clone)]
struct CniArgs {
    /// Host directory of CNI plugin binaries.
    #[arg(long, env = "CNI_BIN_DIR", default_value = "/opt/cni/bin")]
    cni_bin_dir: PathBuf,
    /// Host directory of CNI network configs.
    #[arg(long, env = "CNI_CONF_DIR", default_value = "/etc/cni/net.d")]
    cni_conf_dir: PathBuf,
    /// File name of weft's conflist.
    #[arg(long, env = "CNI_CONF_NAME", default_value = "10-weft.conflist")]
    cni_conf_name: String,
    /// The conflist to install (the operator passes its ConfigMap); required by install-cni.
    #[arg(long, env = "CNI_NETWORK_CONFIG")]
    cni_network_config: Option<String>,
    /// The agent's state directory on the host (node state file, allocation store).
    #[arg(long, env = "WEFT_STATE_DIR", default_value = "/var/lib/weft")]
    state_dir: PathBuf,
    /// Where the plugin binaries to install are: `weft`, `weft-ipam` and the standard plugins the
    /// conflist chains, such as `portmap` (default: next to weft-agent).
    #[arg(long, env = "WEFT_PLUGIN_DIR")]
    plugin_dir: Option<PathBuf>,
}

impl CniArgs {
    fn paths(&self) -> CniPaths {
        let source_dir = self.plugin_dir.clone().unwrap_or_else(|| {
            std::env::current_exe()
                .ok()
                .and_then(|exe| exe.parent().map(PathBuf::from))
                .unwrap_or_else(|| PathBuf::from("/usr/local/bin"))
        });
        CniPaths {
            source_dir,
            bin_dir: self.cni_bin_dir.clone(),
            conf_dir: self.cni_conf_dir.clone(),
            conf_name: self.cni_conf_name.clone(),
            state_dir: self.state_dir.clone(),
        }
    }
}

#[derive(Args)]
struct RunArgs {
    /// This node's name.
    #[arg(long, env = "NODE_NAME")]
    node_name: String,
    #[command(flatten)]
    cni: CniArgs,
    /// The network namespace to program (default: the agent's own, the host's on a node).
    #[arg(long, env = "WEFT_NETNS")]
    netns: Option<PathBuf>,
    /// Address of /healthz, /readyz and /metrics: localhost, where the kubelet probes a
    /// host-network pod and no pod can reach.
    #[arg(long, env = "WEFT_HEALTH_ADDRESS", default_value = "127.0.0.1")]
    health_address: IpAddr,
    #[arg(long, env = "WEFT_HEALTH_PORT", default_value_t = 9099)]
    health_port: u16,
    /// Serve /metrics on this port of --metrics-address too (off when unset).
    #[arg(long, env = "WEFT_METRICS_PORT", value_parser = clap::value_parser!(u16).range(1..))]
    metrics_port: Option<u16>,
    #[arg(long, env = "WEFT_METRICS_ADDRESS", default_value = "0.0.0.0")]
    metrics_address: IpAddr,
    /// /healthz fails when a loop of the agent has not completed a pass for this many seconds.
    #[arg(long, env = "WEFT_LIVENESS_SECONDS", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..))]
    liveness_seconds: u64,
    /// Seconds a block stays empty before it is released.
    #[arg(long, env = "WEFT_BLOCK_RELEASE_SECONDS", default_value_t = 300)]
    block_release_seconds: u64,
    /// Seconds an address stays without a pod before it is freed.
    #[arg(long, env = "WEFT_ADDRESS_RELEASE_SECONDS", default_value_t = 900)]
    address_release_seconds: u64,
    /// Seconds between full re-syncs of the dataplane (repairs changes made by others).
    #[arg(long, env = "WEFT_RESYNC_SECONDS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..))]
    resync_seconds: u64,
}

#[derive(Args)]
struct ControllerArgs {
    /// Namespace of the leader Lease.
    #[arg(long, env = "POD_NAMESPACE", default_value = "weft-system")]
    namespace: String,
    /// This replica's identity in the election.
    #[arg(long, env = "POD_NAME")]
    identity: Option<String>,
    /// Seconds a deleted node's blocks are kept before they are released.
    #[arg(long, env = "WEFT_BLOCK_RELEASE_SECONDS", default_value_t = 300)]
    block_release_seconds: u64,
    /// Seconds between garbage collection passes.
    #[arg(long, env = "WEFT_GC_INTERVAL_SECONDS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    interval_seconds: u64,
    /// Address of /healthz, /readyz and /metrics: the pod's loopback, so no other pod reaches
    /// them.
    #[arg(long, env = "WEFT_HEALTH_ADDRESS", default_value = "127.0.0.1")]
    health_address: IpAddr,
    #[arg(long, env = "WEFT_HEALTH_PORT", default_value_t = 9098)]
    health_port: u16,
}

fn init_logs() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("WEFT_LOG_LEVEL")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

/// Caps glibc's malloc arenas: with one arena per thread, freed memory of the watchers and the
/// compiler stays spread over arenas and the agent's RSS grows with the thread count.
fn limit_malloc_arenas() {
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt only tunes the allocator; called before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
}

fn main() -> ExitCode {
    limit_malloc_arenas();
    let cli = Cli::parse();
    init_logs();
    let result = match cli.command {
        Command::InstallCni(args) => install(&args),
        Command::UninstallCni(args) => {
            install_cni::uninstall(&args.paths()).map_err(|error| error.to_string())
        }
        Command::Run(args) => runtime().and_then(|runtime| {
            runtime
                .block_on(run::run(RunSettings {
                    node: args.node_name,
                    cni: args.cni.paths(),
                    netns: args.netns,
                    health: SocketAddr::new(args.health_address, args.health_port),
                    metrics: args
                        .metrics_port
                        .map(|port| SocketAddr::new(args.metrics_address, port)),
                    liveness: Duration::from_secs(args.liveness_seconds),
                    block_grace: Duration::from_secs(args.block_release_seconds),
                    address_grace: Duration::from_secs(args.address_release_seconds),
                    resync: Duration::from_secs(args.resync_seconds),
                }))
                .map_err(|error| error.to_string())
        }),
        Command::Controllers(args) => runtime().and_then(|runtime| {
            let identity = args.identity.unwrap_or_else(|| {
                std::fs::read_to_string("/proc/sys/kernel/hostname")
                    .map(|name| name.trim().to_owned())
                    .unwrap_or_else(|_| format!("weft-controllers-{}", std::process::id()))
            });
            runtime
                .block_on(controllers::run(ControllerSettings {
                    namespace: args.namespace,
                    identity,
                    block_grace: Duration::from_secs(args.block_release_seconds),
                    interval: Duration::from_secs(args.interval_seconds),
                    health: SocketAddr::new(args.health_address, args.health_port),
                }))
                .map_err(|error| error.to_string())
        }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("weft-agent: {message}");
            ExitCode::FAILURE
        }
    }
}

fn install(args: &CniArgs) -> Result<(), String> {
    let config = args
        .cni_network_config
        .as_deref()
        .ok_or("CNI_NETWORK_CONFIG (--cni-network-config): required, the conflist to install")?;
    let changed = install_cni::install(&args.paths(), config).map_err(|error| error.to_string())?;
    if changed.is_empty() {
        tracing::info!("CNI plugins and conflist already in place");
    }
    for path in changed {
        tracing::info!(path = %path.display(), "installed");
    }
    Ok(())
}

fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|error| format!("starting the runtime: {error}"))
}
