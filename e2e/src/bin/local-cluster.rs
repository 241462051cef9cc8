//! `local-cluster`: a real local control plane for people — `up [--nodes N]` starts it in the
//! background and prints the `export KUBECONFIG=...` line, `status` shows its processes and
//! nodes, `down` stops every process and removes its directory.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use weft_e2e::{ClusterOptions, Lifetime, LocalCluster, state};

#[derive(Parser)]
#[command(
    name = "local-cluster",
    about = "Run weft's local Kubernetes control plane"
)]
struct Cli {
    /// Directory holding the cluster's PKI, data, logs and pid list.
    #[arg(long, global = true, env = "WEFT_CLUSTER_DIR", default_value_os_t = state::default_detached_dir())]
    dir: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start the control plane in the background with N kwok nodes.
    Up {
        #[arg(long, default_value_t = 3)]
        nodes: usize,
    },
    /// Show whether each process runs, and the nodes.
    Status,
    /// Stop every process and remove the cluster directory.
    Down,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Up { nodes } => up(cli.dir, nodes).await,
        Command::Status => status(cli.dir),
        Command::Down => down(cli.dir),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("local-cluster: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn up(dir: PathBuf, nodes: usize) -> Result<(), String> {
    if let Ok(processes) = state::detached_status(&dir) {
        if processes.iter().any(|(_, _, alive)| *alive) {
            return Err(format!(
                "a cluster is already running in {} (run `local-cluster down` first)",
                dir.display()
            ));
        }
        std::fs::remove_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    let options = ClusterOptions {
        nodes: 0,
        state_dir: Some(dir),
        lifetime: Lifetime::Detached,
        ..ClusterOptions::default()
    };
    let cluster = LocalCluster::start(options)
        .await
        .map_err(|e| e.to_string())?;
    let names = cluster
        .add_nodes(nodes, &BTreeMap::new())
        .await
        .map_err(|e| e.to_string())?;
    eprintln!(
        "local-cluster: Kubernetes {} is up with {} Ready node(s): {}",
        cluster.binaries().versions.kubernetes,
        names.len(),
        names.join(", ")
    );
    eprintln!(
        "local-cluster: kubectl is {}",
        cluster.binaries().path("kubectl").display()
    );
    println!("export KUBECONFIG={}", cluster.kubeconfig().display());
    cluster.release();
    Ok(())
}

fn status(dir: PathBuf) -> Result<(), String> {
    let processes = state::detached_status(&dir).map_err(|e| {
        format!(
            "no cluster in {} ({e}); start one with `local-cluster up`",
            dir.display()
        )
    })?;
    for (name, pid, alive) in &processes {
        let state = if *alive { "running" } else { "NOT RUNNING" };
        let rss = weft_e2e::process::rss_mib(*pid)
            .map(|mib| format!("{mib:.0} MiB RSS"))
            .unwrap_or_default();
        println!("{name:<24} pid {pid:<8} {state:<12} {rss}");
    }
    let kubectl = weft_e2e::Binaries::locate()
        .map_err(|e| e.to_string())?
        .path("kubectl");
    let shown = std::process::Command::new(kubectl)
        .arg("--kubeconfig")
        .arg(dir.join("admin.kubeconfig"))
        .args(["get", "nodes", "-o", "custom-columns=NAME:.metadata.name,READY:.status.conditions[?(@.type==\"Ready\")].status,POD-CIDR:.spec.podCIDR"])
        .status()
        .map_err(|e| e.to_string())?;
    if processes.iter().all(|(_, _, alive)| *alive) && shown.success() {
        Ok(())
    } else {
        Err("the cluster is not fully running".into())
    }
}

fn down(dir: PathBuf) -> Result<(), String> {
    let stopped =
        state::stop_detached(&dir).map_err(|e| format!("no cluster in {} ({e})", dir.display()))?;
    eprintln!(
        "local-cluster: stopped {} process(es): {}",
        stopped.len(),
        stopped.join(", ")
    );
    Ok(())
}
