//! The `weft-operator` binary: parses flags, sets up logging, connects to the API server, applies
//! weft's CRDs when `--manage-crds` is given, and runs the operator until SIGTERM or Ctrl-C.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;
use tracing_subscriber::EnvFilter;
use weft_operator::context::Settings;
use weft_operator::labels::FIELD_MANAGER;
use weft_operator::manifests::{CrdOutcome, install_crds};
use weft_operator::runtime::{Handles, Options, run};

#[derive(Clone, Copy, Debug, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum LogLevel {
    Error,
    Warn,
    Info,
    Debug,
    Trace,
}

impl LogLevel {
    fn directive(self) -> &'static str {
        match self {
            Self::Error => "error",
            Self::Warn => "warn",
            Self::Info => "info",
            Self::Debug => "debug",
            Self::Trace => "trace",
        }
    }
}

/// Installs and keeps reconciling weft from `Installation/default`.
#[derive(Parser, Debug)]
#[command(name = "weft-operator", version)]
struct Args {
    /// Address of /healthz and /readyz (and of /metrics without --metrics-address). The operator
    /// runs on the host network: the host's loopback is where the kubelet probes, and no pod
    /// reaches it there.
    #[arg(long, env = "WEFT_HEALTH_ADDRESS", default_value = "127.0.0.1:9443")]
    health_address: SocketAddr,
    /// Address of /metrics alone, e.g. 0.0.0.0:9442 for a Prometheus on another host; on the
    /// host network it is reachable from the pod network unless a host firewall restricts it.
    #[arg(long, env = "WEFT_METRICS_ADDRESS")]
    metrics_address: Option<SocketAddr>,
    /// Namespace of the leader-election Lease.
    #[arg(long, env = "POD_NAMESPACE", default_value = "weft-operator")]
    lease_namespace: String,
    /// Run without leader election (only safe with a single replica).
    #[arg(long)]
    no_leader_election: bool,
    /// This replica's identity in the Lease and in Events (default: the host name).
    #[arg(long, env = "POD_NAME")]
    identity: Option<String>,
    /// Seconds teardown may take before the finalizer lets go and reports what is left.
    #[arg(long, default_value_t = 120, value_parser = clap::value_parser!(u64).range(1..=3600))]
    teardown_timeout_seconds: u64,
    /// Seconds a component's pods may keep failing (crash loop, image pull, OOM kill) before
    /// the component and the Installation are Degraded.
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=3600))]
    degraded_grace_seconds: u64,
    /// Log format.
    #[arg(long, env = "WEFT_LOG_FORMAT", value_enum, default_value = "text")]
    log_format: LogFormat,
    /// Log level; RUST_LOG, when set, takes precedence (for per-module directives).
    #[arg(long, env = "WEFT_LOG_LEVEL", value_enum, default_value = "info")]
    log_level: LogLevel,
    /// Server-side-apply weft's CRDs (the ones this binary was built with) before starting, so
    /// rolling out a new operator version upgrades them.
    #[arg(long)]
    manage_crds: bool,
}

fn init_logging(format: LogFormat, level: LogLevel) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level.directive()));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|name| name.trim().to_owned())
        .unwrap_or_else(|_| "weft-operator".into())
}

/// Turns `shutdown` true on SIGTERM or SIGINT.
fn watch_signals(shutdown: watch::Sender<bool>) -> std::io::Result<()> {
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    tokio::spawn(async move {
        tokio::select! {
            _ = terminate.recv() => tracing::info!("SIGTERM: stopping"),
            _ = interrupt.recv() => tracing::info!("SIGINT: stopping"),
        }
        let _ = shutdown.send(true);
    });
    Ok(())
}

// One thread: the operator waits on the API server almost all the time, and every extra thread
// would get its own allocator arena (measured at 1,000 nodes: 51 MiB peak RSS with the default
// runtime, 30 MiB with a single arena).
#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args = Args::parse();
    init_logging(args.log_format, args.log_level);
    let (stop, shutdown) = watch::channel(false);
    if let Err(error) = watch_signals(stop) {
        tracing::error!(%error, "cannot handle signals");
        return ExitCode::FAILURE;
    }
    let client = match kube::Client::try_default().await {
        Ok(client) => client,
        Err(error) => {
            tracing::error!(%error, "cannot configure the Kubernetes client");
            return ExitCode::FAILURE;
        }
    };
    if args.manage_crds {
        match install_crds(&client, FIELD_MANAGER).await {
            Ok(outcomes) => {
                let kept = outcomes
                    .iter()
                    .filter(|outcome| matches!(outcome, CrdOutcome::KeptNewer { .. }))
                    .count();
                tracing::info!(
                    applied = outcomes.len() - kept,
                    kept_newer = kept,
                    "applied weft's CRDs"
                );
            }
            Err(error) => {
                tracing::error!(%error, "cannot apply weft's CRDs (--manage-crds)");
                return ExitCode::FAILURE;
            }
        }
    }
    let options = Options {
        health_address: args.health_address,
        metrics_address: args.metrics_address,
        lease_namespace: (!args.no_leader_election).then_some(args.lease_namespace),
        identity: args.identity.unwrap_or_else(hostname),
        settings: Settings {
            teardown_timeout: Duration::from_secs(args.teardown_timeout_seconds),
            degraded_grace: Duration::from_secs(args.degraded_grace_seconds),
            ..Settings::default()
        },
    };
    match run(client, options, Handles::new(), shutdown).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(%error, "the operator stopped");
            ExitCode::FAILURE
        }
    }
}
