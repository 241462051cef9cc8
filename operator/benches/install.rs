//! Operator benchmark on a local control plane with 100 and 1,000 kwok nodes (`cargo bench -p
//! weft-operator --bench install`). For each size it runs the release `weft-operator` binary as a
//! child process, applies the minimal Installation and reports: time from apply to Available,
//! the operator's peak RSS (VmHWM), and API requests per no-op reconcile (from its own request
//! counter while reconciles are triggered by touching an annotation it does not render).
//! Sizes can be chosen with `WEFT_BENCH_NODES=100,1000`.

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Node};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::Client;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use weft_api::Installation;
use weft_e2e::{ClusterOptions, LocalCluster};
use weft_operator::manifests::{apply_yaml, install_crds};

const MANAGER: &str = "weft-bench";
const NO_OP_RECONCILES: u64 = 20;

struct Figures {
    nodes: usize,
    to_applied: Duration,
    to_available: Duration,
    peak_rss_kib: u64,
    requests_per_reconcile: f64,
    writes_per_reconcile: f64,
}

fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

async fn metrics(port: u16) -> anyhow::Result<BTreeMap<String, f64>> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).await?;
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await?;
    let mut text = String::new();
    stream.read_to_string(&mut text).await?;
    Ok(text
        .lines()
        .filter(|line| line.starts_with("weft_operator_"))
        .filter_map(|line| {
            let (name, value) = line.rsplit_once(' ')?;
            Some((name.to_owned(), value.parse().ok()?))
        })
        .collect())
}

fn sum(metrics: &BTreeMap<String, f64>, prefix: &str, verbs: &[&str]) -> f64 {
    metrics
        .iter()
        .filter(|(name, _)| name.starts_with(prefix))
        .filter(|(name, _)| {
            verbs
                .iter()
                .any(|verb| name.contains(&format!("verb=\"{verb}\"")))
        })
        .map(|(_, value)| value)
        .sum()
}

fn peak_rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .context("VmHWM in /proc/PID/status")
}

/// Waits for Available; returns when the last rendered object (the PodDisruptionBudget) was first
/// seen, i.e. when the operator had applied everything, measured from `started`.
async fn wait_available(
    client: &Client,
    started: Instant,
    limit: Duration,
) -> anyhow::Result<Duration> {
    let api: Api<Installation> = Api::all(client.clone());
    let budgets: Api<PodDisruptionBudget> = Api::namespaced(client.clone(), "weft-system");
    let mut applied = None;
    loop {
        if applied.is_none() && budgets.get_opt("weft-controllers").await?.is_some() {
            applied = Some(started.elapsed());
        }
        let installation = api.get("default").await?;
        if installation.is_available() {
            return Ok(applied.unwrap_or_else(|| started.elapsed()));
        }
        if started.elapsed() > limit {
            bail!("not Available after {limit:?}: {:?}", installation.status);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn measure(cluster: &LocalCluster, nodes: usize) -> anyhow::Result<Figures> {
    let client = cluster.client().await?;
    let port = free_port()?;
    let mut operator = tokio::process::Command::new(env!("CARGO_BIN_EXE_weft-operator"))
        .env("KUBECONFIG", cluster.kubeconfig())
        .env("RUST_LOG", "warn")
        .arg(format!("--health-address=127.0.0.1:{port}"))
        .args(["--identity", "bench", "--lease-namespace", "weft-operator"])
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    let pid = operator.id().context("operator pid")?;

    let installation = include_str!("../tests/fixtures/minimal.installation.yaml");
    let started = Instant::now();
    apply_yaml(&client, "minimal Installation", installation, MANAGER).await?;
    let to_applied = wait_available(&client, started, Duration::from_secs(600)).await?;
    let to_available = started.elapsed();

    // Settle, then trigger reconciles by touching an annotation the operator does not render.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let before = metrics(port).await?;
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), "weft-system");
    for tick in 0..NO_OP_RECONCILES {
        let patch =
            serde_json::json!({"metadata": {"annotations": {"bench/tick": tick.to_string()}}});
        config_maps
            .patch(
                "weft-cni-config",
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await?;
        tokio::time::sleep(Duration::from_millis(800)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = metrics(port).await?;
    let reconciles =
        after["weft_operator_reconciles_total"] - before["weft_operator_reconciles_total"];
    let all = ["GET", "POST", "PUT", "PATCH", "DELETE"];
    let writes = ["POST", "PUT", "PATCH", "DELETE"];
    let prefix = "weft_operator_api_requests_total";
    let requests = sum(&after, prefix, &all) - sum(&before, prefix, &all);
    let written = sum(&after, prefix, &writes) - sum(&before, prefix, &writes);
    let peak_rss_kib = peak_rss_kib(pid)?;

    let installations: Api<Installation> = Api::all(client.clone());
    installations
        .delete("default", &DeleteParams::default())
        .await?;
    while installations.get_opt("default").await?.is_some() {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    operator.start_kill()?;
    operator.wait().await?;
    Ok(Figures {
        nodes,
        to_applied,
        to_available,
        peak_rss_kib,
        requests_per_reconcile: requests / reconciles.max(1.0),
        writes_per_reconcile: written / reconciles.max(1.0),
    })
}

/// Nodes that get a pod CIDR from the controller-manager: its 10.244.0.0/16 holds 256 /24s.
const NODES_WITH_POD_CIDR: usize = 200;

/// Grows the cluster from `have` to `want` Ready kwok nodes. The first ones come from
/// `LocalCluster::add_nodes` (with pod CIDRs); beyond the controller-manager's CIDR range the
/// bench creates kwok Nodes itself: the operator's DaemonSet runs on them just the same.
async fn add_nodes(
    cluster: &LocalCluster,
    client: &Client,
    have: usize,
    want: usize,
) -> anyhow::Result<()> {
    let with_cidr = want.min(NODES_WITH_POD_CIDR).saturating_sub(have);
    cluster.add_nodes(with_cidr, &BTreeMap::new()).await?;
    let first = have.max(NODES_WITH_POD_CIDR);
    if want <= first {
        return Ok(());
    }
    let nodes: Api<Node> = Api::all(client.clone());
    futures::stream::iter(first..want)
        .map(|index| {
            let nodes = nodes.clone();
            async move {
                let manifest =
                    weft_e2e::state::kwok_node(&format!("bench-node-{index}"), &BTreeMap::new());
                let node: Node = serde_json::from_value(manifest)?;
                nodes.create(&PostParams::default(), &node).await?;
                anyhow::Ok(())
            }
        })
        .buffer_unordered(16)
        .try_collect::<Vec<()>>()
        .await?;
    let started = Instant::now();
    loop {
        let ready = nodes
            .list(&ListParams::default())
            .await?
            .items
            .iter()
            .filter(|node| {
                node.status
                    .as_ref()
                    .and_then(|status| status.conditions.as_ref())
                    .is_some_and(|conditions| {
                        conditions
                            .iter()
                            .any(|c| c.type_ == "Ready" && c.status == "True")
                    })
            })
            .count();
        if ready >= want {
            return Ok(());
        }
        if started.elapsed() > Duration::from_secs(600) {
            bail!("only {ready} of {want} nodes Ready after 600s");
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

async fn bench() -> anyhow::Result<Vec<Figures>> {
    let sizes: Vec<usize> = std::env::var("WEFT_BENCH_NODES")
        .unwrap_or_else(|_| "100,1000".into())
        .split(',')
        .map(|size| {
            size.trim()
                .parse()
                .context("WEFT_BENCH_NODES: comma-separated node counts")
        })
        .collect::<anyhow::Result<_>>()?;
    let cluster = LocalCluster::start(ClusterOptions::default()).await?;
    let client = cluster.client().await?;
    install_crds(&client, MANAGER).await?;
    for (name, text) in [
        (
            "namespace.yaml",
            include_str!("../../config/rbac/namespace.yaml"),
        ),
        (
            "service_account.yaml",
            include_str!("../../config/rbac/service_account.yaml"),
        ),
        (
            "cluster_role.yaml",
            include_str!("../../config/rbac/cluster_role.yaml"),
        ),
        (
            "cluster_role_binding.yaml",
            include_str!("../../config/rbac/cluster_role_binding.yaml"),
        ),
    ] {
        apply_yaml(&client, name, text, MANAGER).await?;
    }
    let mut figures = Vec::new();
    let mut nodes = 0;
    for size in sizes {
        let started = Instant::now();
        add_nodes(&cluster, &client, nodes, size).await?;
        eprintln!(
            "{size} nodes Ready in {:.1}s",
            started.elapsed().as_secs_f64()
        );
        nodes = size.max(nodes);
        figures.push(measure(&cluster, nodes).await?);
    }
    Ok(figures)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // `cargo test --benches` runs bench targets with `--bench` absent: nothing to measure then.
    if !std::env::args().any(|arg| arg == "--bench") {
        return Ok(());
    }
    let figures = bench().await?;
    println!(
        "| kwok nodes | apply → all objects applied | apply → Available | operator peak RSS | API requests per no-op reconcile | writes per no-op reconcile |"
    );
    println!("|---:|---:|---:|---:|---:|---:|");
    for f in figures {
        println!(
            "| {} | {:.2} s | {:.2} s | {:.1} MiB | {:.1} | {:.1} |",
            f.nodes,
            f.to_applied.as_secs_f64(),
            f.to_available.as_secs_f64(),
            f.peak_rss_kib as f64 / 1024.0,
            f.requests_per_reconcile,
            f.writes_per_reconcile
        );
    }
    Ok(())
}
