//! `weft-demo` (`make demo`): the install path end to end on a local control plane. It starts a
//! cluster with 3 kwok nodes, applies weft's CRDs and the operator's RBAC (config/rbac), runs the
//! operator in this process as its own ServiceAccount, applies the sample Installation, waits for
//! it to become Available and prints `kubectl get installation` and the component table.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::Parser;
use kube::Api;
use tokio::sync::watch;
use weft_api::Installation;
use weft_e2e::{ClusterOptions, LocalCluster};
use weft_operator::manifests::{apply_yaml, install_crds};
use weft_operator::runtime::{Handles, Options, run};

const FIELD_MANAGER: &str = "weft-demo";
const OPERATOR_NAMESPACE: &str = "weft-operator";

/// Install weft on a local cluster and show its status.
#[derive(Parser)]
#[command(name = "weft-demo")]
struct Args {
    /// kwok nodes in the cluster.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..=1000))]
    nodes: u16,
    /// The Installation to apply.
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/../config/samples/installation-minimal.yaml"))]
    installation: PathBuf,
    /// Seconds to wait for the Installation to become Available.
    #[arg(long, default_value_t = 120)]
    timeout_seconds: u64,
}

fn kubectl(cluster: &LocalCluster, args: &[&str]) -> anyhow::Result<String> {
    let output = cluster
        .kubectl()
        .args(args)
        .output()
        .context("running kubectl")?;
    if !output.status.success() {
        bail!(
            "kubectl {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

fn component_table(installation: &Installation) -> String {
    let mut table = format!(
        "{:<12} {:<10} {:<12} {:<9} {}\n",
        "COMPONENT", "AVAILABLE", "PROGRESSING", "DEGRADED", "MESSAGE"
    );
    for component in installation
        .status
        .iter()
        .flat_map(|status| &status.components)
    {
        table.push_str(&format!(
            "{:<12} {:<10} {:<12} {:<9} {}\n",
            component.name,
            component.available,
            component.progressing,
            component.degraded,
            component.message.as_deref().unwrap_or_default()
        ));
    }
    table
}

async fn wait_available(api: &Api<Installation>, limit: Duration) -> anyhow::Result<Installation> {
    let started = Instant::now();
    let mut last_table = String::new();
    loop {
        if let Some(installation) = api.get_opt("default").await? {
            let table = component_table(&installation);
            if table != last_table && installation.status.is_some() {
                println!("[{:>5.1}s]\n{table}", started.elapsed().as_secs_f64());
                last_table = table;
            }
            if installation.is_available() {
                return Ok(installation);
            }
        }
        if started.elapsed() > limit {
            bail!(
                "Installation/default was not Available after {}s",
                limit.as_secs()
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

async fn demo(args: Args) -> anyhow::Result<()> {
    let manifest = std::fs::read_to_string(&args.installation)
        .with_context(|| format!("--installation {}", args.installation.display()))?;
    println!(
        "Starting a local control plane with {} kwok nodes...",
        args.nodes
    );
    let options = ClusterOptions {
        nodes: usize::from(args.nodes),
        ..ClusterOptions::default()
    };
    let cluster = LocalCluster::start(options).await?;
    let admin = cluster.client().await?;
    install_crds(&admin, FIELD_MANAGER).await?;
    for (name, text) in weft_e2e::OPERATOR_RBAC {
        apply_yaml(&admin, name, text, FIELD_MANAGER).await?;
    }
    println!(
        "CRDs and config/rbac applied; starting the operator as ServiceAccount {OPERATOR_NAMESPACE}/weft-operator"
    );
    let operator_client = cluster
        .client_as_service_account(OPERATOR_NAMESPACE, "weft-operator")
        .await?;
    let (stop, shutdown) = watch::channel(false);
    let operator = tokio::spawn(run(
        operator_client,
        Options {
            health_address: "127.0.0.1:0".parse()?,
            metrics_address: None,
            lease_namespace: Some(OPERATOR_NAMESPACE.into()),
            identity: "weft-demo".into(),
            settings: Default::default(),
        },
        Handles::new(),
        shutdown,
    ));
    let started = Instant::now();
    let source = args.installation.display().to_string();
    apply_yaml(&admin, &source, &manifest, FIELD_MANAGER).await?;
    println!("Applied {source}; waiting for Available...");
    let api: Api<Installation> = Api::all(admin.clone());
    let installation = wait_available(&api, Duration::from_secs(args.timeout_seconds)).await?;
    println!(
        "Installation/default Available after {:.1}s\n",
        started.elapsed().as_secs_f64()
    );
    println!(
        "$ kubectl get installation\n{}",
        kubectl(&cluster, &["get", "installation"])?
    );
    println!("Components:\n{}", component_table(&installation));
    println!(
        "$ kubectl -n weft-system get daemonsets,deployments\n{}",
        kubectl(
            &cluster,
            &["-n", "weft-system", "get", "daemonsets,deployments"]
        )?
    );
    println!(
        "$ kubectl get ippools\n{}",
        kubectl(&cluster, &["get", "ippools"])?
    );
    let _ = stop.send(true);
    operator.await??;
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    match demo(Args::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("weft-demo: {error:#}");
            ExitCode::FAILURE
        }
    }
}
