//! install → upgrade → `helm test` → uninstall → install again, with Helm 3 and with Helm 4, on the
//! local control plane with kwok nodes.
//!
//! What runs for real: Helm itself (creating the CRDs of crds/, rendering, applying, running hooks,
//! waiting for them), the API server, the controllers that turn the chart's Deployment and Job into
//! pods, and — on a [`NodeRunner`] node the chart's `nodeSelector` values pin them to — the
//! programs those pods describe: the operator binary with the Deployment's args and env, and
//! kubectl with the hooks' args, each authenticated as its pod's ServiceAccount so the chart's
//! RBAC is what they get. No container images are pulled: the runner maps the image
//! `weft-operator` to the binary built from this workspace and `kubectl` to the pinned kubectl.
//! The pods the operator itself deploys (the node agent, the controllers) run on kwok nodes and on
//! the runner node only as reported statuses, as in the operator's other cluster tests.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Namespace, Pod, ServiceAccount};
use k8s_openapi::api::rbac::v1::ClusterRole;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, ListParams};
use kube::{Client, ResourceExt};
use weft_api::{GlobalNetworkPolicy, Installation, IpPool};
use weft_e2e::{Helm, HelmMajor, LocalCluster, NodeRunner, RunnerOptions};

use super::{chart_dir, helm};

mod steps;

/// The scenarios share cluster-scoped objects (CRDs, Installation/default), so they run one at a
/// time.
pub(super) static SERIAL: Mutex<()> = Mutex::new(());

const RELEASE: &str = "weft";
const NAMESPACE: &str = "weft-operator";
const RUNNER_LABEL: &str = "weft.dev/chart-runner";
const GNP_CRD: &str = "globalnetworkpolicies.network.weft.dev";
/// The field the "previous" chart's GlobalNetworkPolicy CRD lacks.
const NEW_FIELD: &str = "doNotTrack";
const AVAILABLE_WITHIN: Duration = Duration::from_secs(180);
const USER_OBJECTS: &str = "
apiVersion: network.weft.dev/v1
kind: IPPool
metadata:
  name: user-pool
spec:
  cidr: 10.250.0.0/22
  blockSize: 27
  encapsulation: None
---
apiVersion: network.weft.dev/v1
kind: GlobalNetworkPolicy
metadata:
  name: user-policy
spec:
  order: 100
  selector: all()
  types: [Ingress]
  ingress:
  - action: Allow
";

#[test]
fn helm3_install_upgrade_test_uninstall_install_again() {
    run_scenario(HelmMajor::V3);
}

#[test]
fn helm4_install_upgrade_test_uninstall_install_again() {
    run_scenario(HelmMajor::V4);
}

fn run_scenario(major: HelmMajor) {
    let _serial = SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    if let Err(error) = runtime.block_on(scenario(major)) {
        panic!("helm {major:?}: {error:#}");
    }
}

struct Scenario {
    helm: Helm,
    state: tempfile::TempDir,
    cluster: &'static LocalCluster,
    client: Client,
    runner: NodeRunner,
    tag: &'static str,
    port: u16,
    health_port: u16,
}

impl Scenario {
    /// The values every install and upgrade passes: the operator and the hooks on the runner
    /// node, the operator's port free on this host.
    fn placement(&self) -> Vec<String> {
        let label = RUNNER_LABEL.replace('.', "\\.");
        vec![
            "--set".into(),
            format!("nodeSelector.{label}={}", self.tag),
            "--set".into(),
            format!("hooks.nodeSelector.{label}={}", self.tag),
            "--set".into(),
            format!("metrics.port={}", self.port),
            "--set".into(),
            format!("health.port={}", self.health_port),
        ]
    }

    async fn helm_output(&self, args: &[String]) -> anyhow::Result<std::process::Output> {
        let command = self
            .helm
            .command(self.state.path(), self.cluster.kubeconfig());
        let mut command = tokio::process::Command::from(command);
        let started = Instant::now();
        let output = command.args(args).output().await.context("running helm")?;
        println!(
            "$ helm {} ({}, {:.1}s, {})\n{}{}",
            args.join(" "),
            self.helm.version,
            started.elapsed().as_secs_f64(),
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        Ok(output)
    }

    async fn helm(&self, args: &[&str], with_placement: bool) -> anyhow::Result<String> {
        let mut all: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        if with_placement {
            all.extend(self.placement());
        }
        let output = self.helm_output(&all).await?;
        ensure!(
            output.status.success(),
            "helm {} failed: {}",
            all.join(" "),
            String::from_utf8_lossy(&output.stderr)
        );
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// Operator processes the runner started, oldest first.
    fn operator_runs(&self) -> Vec<weft_e2e::node_runner::Run> {
        self.runner
            .runs()
            .into_iter()
            .filter(|run| run.program.ends_with("weft-operator"))
            .collect()
    }

    fn kubectl_runs(&self) -> Vec<weft_e2e::node_runner::Run> {
        self.runner
            .runs()
            .into_iter()
            .filter(|run| run.program.ends_with("kubectl"))
            .collect()
    }
}

async fn wait_for<T, F, Fut>(what: &str, limit: Duration, mut check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<Option<T>>>,
{
    let started = Instant::now();
    loop {
        if let Some(value) = check().await? {
            return Ok(value);
        }
        if started.elapsed() > limit {
            bail!("timed out after {}s waiting for {what}", limit.as_secs());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn wait_available(client: &Client) -> anyhow::Result<Duration> {
    let installations: Api<Installation> = Api::all(client.clone());
    let started = Instant::now();
    wait_for(
        "Installation/default Available",
        AVAILABLE_WITHIN,
        || async {
            let installation = installations.get_opt("default").await?;
            Ok(installation.filter(|i| i.is_available()).map(|_| ()))
        },
    )
    .await?;
    Ok(started.elapsed())
}

async fn crd_has_field(client: &Client) -> anyhow::Result<bool> {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let crd = serde_json::to_value(crds.get(GNP_CRD).await?)?;
    let spec = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"];
    Ok(!spec["properties"][NEW_FIELD].is_null())
}

fn copy_dir(from: &Path, to: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}

/// The chart as its previous version: version 0.0.9, whose GlobalNetworkPolicy CRD lacks
/// `doNotTrack`. Installed with `manageCRDs=false`, it stands for an older operator that carried
/// the older CRDs.
fn previous_chart(dir: &Path) -> anyhow::Result<PathBuf> {
    let chart = dir.join("weft-previous");
    copy_dir(&chart_dir(), &chart)?;
    let chart_yaml = chart.join("Chart.yaml");
    let text =
        std::fs::read_to_string(&chart_yaml)?.replace("\nversion: 0.1.0\n", "\nversion: 0.0.9\n");
    ensure!(
        text.contains("version: 0.0.9"),
        "Chart.yaml has version 0.1.0"
    );
    std::fs::write(&chart_yaml, text)?;
    let crd_path = chart.join("crds").join(format!("{GNP_CRD}.yaml"));
    let mut crd: serde_json::Value = serde_saphyr::from_str(&std::fs::read_to_string(&crd_path)?)?;
    let properties = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
        ["properties"]
        .as_object_mut()
        .context("GlobalNetworkPolicy CRD spec properties")?;
    ensure!(
        properties.remove(NEW_FIELD).is_some(),
        "the CRD has {NEW_FIELD}"
    );
    std::fs::write(&crd_path, serde_json::to_string_pretty(&crd)?)?;
    let written = std::fs::read_to_string(&crd_path)?;
    ensure!(
        !written.contains(NEW_FIELD),
        "{} still mentions {NEW_FIELD}",
        crd_path.display()
    );
    Ok(chart)
}

fn free_port() -> anyhow::Result<u16> {
    Ok(weft_e2e::free_listen_port()?)
}

async fn scenario(major: HelmMajor) -> anyhow::Result<()> {
    let tag = match major {
        HelmMajor::V3 => "helm3",
        HelmMajor::V4 => "helm4",
    };
    let cluster = LocalCluster::shared()
        .await
        .context("the local control plane is required for this test")?;
    let client = cluster.client().await?;
    cluster.add_nodes(2, &BTreeMap::new()).await?;
    let operator_binary = PathBuf::from(env!("CARGO_BIN_EXE_weft-operator"));
    let runner = NodeRunner::start(
        cluster,
        RunnerOptions {
            name: format!("chart-runner-{tag}"),
            labels: BTreeMap::from([(RUNNER_LABEL.to_string(), tag.to_string())]),
            programs: BTreeMap::from([
                ("weft-operator".to_string(), operator_binary),
                ("kubectl".to_string(), cluster.binaries().path("kubectl")),
            ]),
        },
    )
    .await?;
    let s = Scenario {
        helm: helm(major),
        state: tempfile::tempdir()?,
        cluster,
        client,
        runner,
        tag,
        port: free_port()?,
        health_port: free_port()?,
    };
    let outcome = steps::run(&s).await;
    s.runner.stop().await?;
    outcome
}
