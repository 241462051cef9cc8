//! What the operator benchmarks share: the local control plane grown to N kwok nodes (and a
//! workload of pods), the operator processes under test, and how they are measured — time to
//! Available, peak RSS, and the API requests of a no-op reconcile counted from the API server's
//! audit log by user, so that every operator is counted the same way.

pub mod audit;
pub mod measure;
pub mod metrics;
pub mod operators;
pub mod workload;

use std::time::{Duration, Instant};

use anyhow::Context as _;
use kube::Client;
use weft_e2e::{ClusterOptions, LocalCluster};
use weft_operator::manifests::{apply_yaml, install_crds};

/// Field manager of everything the benches apply themselves.
pub const MANAGER: &str = "weft-bench";
/// The user the weft operator runs as (a client certificate in `system:masters`).
pub const WEFT_USER: &str = "weft-operator";
/// The user the Tigera operator runs as.
pub const TIGERA_USER: &str = "tigera-operator";

/// One measured size: kwok nodes, and pods of another workload spread over them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Case {
    pub nodes: usize,
    pub pods: usize,
}

impl std::fmt::Display for Case {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.pods == 0 {
            write!(f, "{} nodes", self.nodes)
        } else {
            write!(f, "{} nodes + {} pods", self.nodes, self.pods)
        }
    }
}

/// Parses `NODES[:PODS],...` (e.g. `100,1000,1000:10000`) from the variable `name`. Sizes only
/// grow: the cluster is never shrunk between cases.
pub fn cases(name: &str, default: &str) -> anyhow::Result<Vec<Case>> {
    let text = std::env::var(name).unwrap_or_else(|_| default.into());
    let mut cases: Vec<Case> = Vec::new();
    for item in text
        .split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
    {
        let (nodes, pods) = item.split_once(':').unwrap_or((item, "0"));
        let case = Case {
            nodes: nodes.parse().with_context(|| {
                format!("{name}: {item:?} is not NODES or NODES:PODS (e.g. 1000:10000)")
            })?,
            pods: pods.parse().with_context(|| {
                format!("{name}: {item:?} is not NODES or NODES:PODS (e.g. 1000:10000)")
            })?,
        };
        if let Some(last) = cases.last()
            && (case.nodes < last.nodes || case.pods < last.pods)
        {
            anyhow::bail!("{name}: {item:?} is smaller than the case before it; sizes only grow");
        }
        cases.push(case);
    }
    anyhow::ensure!(!cases.is_empty(), "{name}: no case given");
    Ok(cases)
}

/// `cargo bench` passes `--bench`; `cargo test --all-targets` runs bench targets without it (a
/// smoke run at a tiny size).
pub fn benchmarking() -> bool {
    std::env::args().any(|arg| arg == "--bench")
}

pub fn free_port() -> anyhow::Result<u16> {
    Ok(weft_e2e::free_listen_port()?)
}

/// Peak resident set (`VmHWM`) of a process, in KiB.
pub fn peak_rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .context("VmHWM in /proc/PID/status")
}

/// A local control plane that audits the operators' users, with weft's CRDs and RBAC applied.
pub async fn cluster() -> anyhow::Result<(LocalCluster, Client)> {
    let options = ClusterOptions {
        audited_users: vec![WEFT_USER.into(), TIGERA_USER.into()],
        ..ClusterOptions::default()
    };
    let cluster = LocalCluster::start(options).await?;
    let client = cluster.client().await?;
    install_crds(&client, MANAGER).await?;
    for (name, text) in weft_e2e::OPERATOR_RBAC {
        apply_yaml(&client, name, text, MANAGER).await?;
    }
    Ok((cluster, client))
}

/// Grows the cluster to `case`: Ready kwok nodes with pod CIDRs, then the workload's pods.
/// `nodes` holds the names of the nodes so far.
pub async fn grow(
    cluster: &LocalCluster,
    client: &Client,
    nodes: &mut Vec<String>,
    case: Case,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let missing = case.nodes.saturating_sub(nodes.len());
    nodes.extend(cluster.add_nodes(missing, &Default::default()).await?);
    eprintln!(
        "{} nodes Ready in {:.1}s",
        nodes.len(),
        started.elapsed().as_secs_f64()
    );
    if case.pods > 0 {
        let started = Instant::now();
        workload::ensure_pods(client, nodes, case.pods).await?;
        eprintln!(
            "{} workload pods Running in {:.1}s",
            case.pods,
            started.elapsed().as_secs_f64()
        );
    }
    Ok(())
}

/// Polls `check` every 50 ms until it returns `Some`, failing after `limit`.
pub async fn poll<T, F, Fut>(what: &str, limit: Duration, mut check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Option<T>>>,
{
    let started = Instant::now();
    loop {
        if let Some(value) = check().await? {
            return Ok(value);
        }
        if started.elapsed() > limit {
            anyhow::bail!("{what}: not reached after {limit:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
