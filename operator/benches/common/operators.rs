//! The operators under test, each a child process with a kubeconfig of its own user: weft's
//! release binary, and the Tigera operator from a binary named by `TIGERA_OPERATOR`. For each:
//! how it starts, its equivalent Installation, what Available means, how a no-op reconcile is
//! triggered (an annotation on the Installation, which both watch and neither renders, or a
//! label on the node agent's DaemonSet, which both manage), how it is torn down, and which of
//! its own metrics count reconciles and API requests.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams,
};
use kube::{Client, ResourceExt};
use weft_api::Installation;
use weft_e2e::process::ManagedProcess;
use weft_e2e::{CLUSTER_CIDR, Lifetime, LocalCluster};
use weft_operator::manifests::apply_yaml;

use super::{MANAGER, TIGERA_USER, WEFT_USER, free_port, poll};

/// The Tigera operator's namespace (created before it starts, as its manifests do).
const TIGERA_NAMESPACE: &str = "tigera-operator";
const TEARDOWN_LIMIT: Duration = Duration::from_secs(600);

/// An operator to measure.
#[derive(Debug, Clone)]
pub enum Operator {
    Weft,
    /// The Tigera operator binary; its CRDs come from `crds` (a directory of YAML files) when
    /// given, else from its own `-manage-crds`.
    Tigera {
        binary: PathBuf,
        crds: Option<PathBuf>,
    },
}

/// A started operator process.
pub struct Running {
    pub process: ManagedProcess,
    pub pid: u32,
    pub metrics_port: u16,
}

fn tigera_api(client: &Client, kind: &str, plural: &str) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk("operator.tigera.io", "v1", kind);
    Api::all_with(
        client.clone(),
        &ApiResource::from_gvk_with_plural(&gvk, plural),
    )
}

fn tigera_installation() -> String {
    format!(
        "apiVersion: operator.tigera.io/v1
kind: Installation
metadata:
  name: default
spec:
  variant: Calico
  calicoNetwork:
    ipPools:
    - name: default-ipv4-ippool
      cidr: {CLUSTER_CIDR}
      encapsulation: VXLAN
      blockSize: 26
      natOutgoing: Enabled
      nodeSelector: all()
"
    )
}

async fn crd_established(client: &Client, name: &str) -> anyhow::Result<bool> {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    Ok(crds.get_opt(name).await?.is_some_and(|crd| {
        crd.status
            .and_then(|status| status.conditions)
            .is_some_and(|conditions| {
                conditions
                    .iter()
                    .any(|c| c.type_ == "Established" && c.status == "True")
            })
    }))
}

async fn apply_crd_dir(client: &Client, dir: &Path) -> anyhow::Result<()> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("TIGERA_CRDS={}", dir.display()))?
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .filter(|path| {
            path.extension()
                .is_some_and(|ext| ext == "yaml" || ext == "yml")
        })
        .collect();
    files.sort();
    anyhow::ensure!(
        !files.is_empty(),
        "TIGERA_CRDS={}: no .yaml files",
        dir.display()
    );
    for file in files {
        let text = std::fs::read_to_string(&file)?;
        apply_yaml(client, &file.display().to_string(), &text, MANAGER).await?;
    }
    Ok(())
}

impl Operator {
    pub fn name(&self) -> &'static str {
        match self {
            Self::Weft => "weft-operator",
            Self::Tigera { .. } => "tigera-operator",
        }
    }

    /// The API user it runs as (what the audit log is filtered by).
    pub fn user(&self) -> &'static str {
        match self {
            Self::Weft => WEFT_USER,
            Self::Tigera { .. } => TIGERA_USER,
        }
    }

    /// Starts the process (killed with the bench process however that ends) and waits until
    /// its Installation kind exists and, for weft, it serves metrics. (The Tigera operator
    /// serves metrics only once an Installation exists.)
    pub async fn start(&self, cluster: &LocalCluster, client: &Client) -> anyhow::Result<Running> {
        let metrics_port = free_port()?;
        let kubeconfig = cluster.user_kubeconfig(self.user()).display().to_string();
        let mut env = vec![("KUBECONFIG".to_owned(), kubeconfig)];
        let (program, args, installations) = match self {
            Self::Weft => {
                env.push(("RUST_LOG".into(), "warn".into()));
                let args = vec![
                    format!("--health-address=127.0.0.1:{metrics_port}"),
                    "--identity=bench".into(),
                    // Tigera runs with -enable-leader-election=false: neither renews a Lease.
                    "--no-leader-election".into(),
                ];
                let program = PathBuf::from(env!("CARGO_BIN_EXE_weft-operator"));
                (program, args, "installations.operator.weft.dev")
            }
            Self::Tigera { binary, crds } => {
                let namespaces: Api<Namespace> = Api::all(client.clone());
                let namespace = serde_json::json!({"apiVersion": "v1", "kind": "Namespace",
                    "metadata": {"name": TIGERA_NAMESPACE}});
                let params = PatchParams::apply(MANAGER).force();
                namespaces
                    .patch(TIGERA_NAMESPACE, &params, &Patch::Apply(namespace))
                    .await?;
                env.extend([
                    ("OPERATOR_NAMESPACE".into(), TIGERA_NAMESPACE.into()),
                    ("METRICS_ENABLED".into(), "true".into()),
                    ("METRICS_HOST".into(), "127.0.0.1".into()),
                    ("METRICS_PORT".into(), metrics_port.to_string()),
                ]);
                let mut args = vec!["-enable-leader-election=false".to_owned()];
                match crds {
                    Some(dir) => apply_crd_dir(client, dir).await?,
                    None => args.push("-manage-crds".into()),
                }
                (binary.clone(), args, "installations.operator.tigera.io")
            }
        };
        let log = cluster.dir().join(format!("logs/{}.log", self.name()));
        let process = ManagedProcess::start_with_env(
            self.name(),
            &program,
            &args,
            &env,
            &log,
            Lifetime::BoundToThisProcess,
        )?;
        let weft = matches!(self, Self::Weft);
        let group = installations.split_once('.').map_or("", |(_, group)| group);
        let kind = GroupVersionKind::gvk(group, "v1", "Installation");
        poll(
            &format!("{} started", self.name()),
            Duration::from_secs(300),
            || async {
                let serving = !weft || super::metrics::scrape(metrics_port).await.is_ok();
                // Established is not served yet: the Installation is applied through discovery.
                let served = crd_established(client, installations).await?
                    && kube::discovery::pinned_kind(client, &kind).await.is_ok();
                Ok((serving && served).then_some(()))
            },
        )
        .await?;
        Ok(Running {
            pid: process.pid(),
            process,
            metrics_port,
        })
    }

    /// Applies the Installation (weft: the minimal sample; Tigera: one VXLAN pool).
    pub async fn apply_installation(&self, client: &Client) -> anyhow::Result<()> {
        match self {
            Self::Weft => {
                let text = include_str!("../../tests/fixtures/minimal.installation.yaml");
                apply_yaml(client, "minimal Installation", text, MANAGER).await?;
            }
            Self::Tigera { .. } => {
                apply_yaml(
                    client,
                    "Tigera Installation",
                    &tigera_installation(),
                    MANAGER,
                )
                .await?;
            }
        }
        Ok(())
    }

    /// Whether every rendered object is there (weft: its last one, the controllers' PDB).
    pub async fn all_applied(&self, client: &Client) -> anyhow::Result<Option<bool>> {
        match self {
            Self::Weft => {
                let budgets: Api<PodDisruptionBudget> =
                    Api::namespaced(client.clone(), "weft-system");
                Ok(Some(budgets.get_opt("weft-controllers").await?.is_some()))
            }
            Self::Tigera { .. } => Ok(None),
        }
    }

    /// weft: Installation Available=True for its generation; Tigera: TigeraStatus `calico`
    /// Available=True.
    pub async fn available(&self, client: &Client) -> anyhow::Result<bool> {
        match self {
            Self::Weft => {
                let api: Api<Installation> = Api::all(client.clone());
                Ok(api
                    .get_opt("default")
                    .await?
                    .is_some_and(|i| i.is_available()))
            }
            Self::Tigera { .. } => {
                let api = tigera_api(client, "TigeraStatus", "tigerastatuses");
                let Some(status) = api.get_opt("calico").await? else {
                    return Ok(false);
                };
                let conditions = status.data["status"]["conditions"].as_array().cloned();
                Ok(conditions
                    .unwrap_or_default()
                    .iter()
                    .any(|c| c["type"] == "Available" && c["status"] == "True"))
            }
        }
    }

    fn installations(&self, client: &Client) -> Api<DynamicObject> {
        match self {
            Self::Weft => {
                let gvk = GroupVersionKind::gvk("operator.weft.dev", "v1", "Installation");
                Api::all_with(client.clone(), &ApiResource::from_gvk(&gvk))
            }
            Self::Tigera { .. } => tigera_api(client, "Installation", "installations"),
        }
    }

    /// Changes an annotation of the Installation that the operator does not render: a
    /// reconcile with nothing to do.
    pub async fn touch(&self, client: &Client, tick: u64) -> anyhow::Result<()> {
        let patch =
            serde_json::json!({"metadata": {"annotations": {"bench/tick": tick.to_string()}}});
        self.installations(client)
            .patch("default", &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
        Ok(())
    }

    /// Changes a label of the node agent's DaemonSet, an object the operator manages and
    /// watches but whose labels it does not all own: a reconcile that must write nothing.
    pub async fn touch_managed(&self, client: &Client, tick: u64) -> anyhow::Result<()> {
        let (namespace, name) = self.agent_daemon_set();
        let patch = serde_json::json!({"metadata": {"labels": {"bench-tick": tick.to_string()}}});
        Api::<DaemonSet>::namespaced(client.clone(), namespace)
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
        Ok(())
    }

    /// Namespace and name of the operator's node agent DaemonSet.
    pub fn agent_daemon_set(&self) -> (&'static str, &'static str) {
        match self {
            Self::Weft => ("weft-system", "weft-node"),
            Self::Tigera { .. } => ("calico-system", "calico-node"),
        }
    }

    /// Deletes the Installation, waits until it and the pods of its components are gone (for
    /// Tigera, its `calico-system` namespace too), then stops the process.
    pub async fn teardown(&self, client: &Client, running: Running) -> anyhow::Result<()> {
        let installations = self.installations(client);
        installations
            .delete("default", &DeleteParams::default())
            .await?;
        poll("Installation deleted", TEARDOWN_LIMIT, || async {
            Ok(installations
                .get_opt("default")
                .await?
                .is_none()
                .then_some(()))
        })
        .await?;
        let components = match self {
            Self::Weft => "weft-system",
            Self::Tigera { .. } => "calico-system",
        };
        let namespaces: Api<Namespace> = Api::all(client.clone());
        if let Self::Tigera { .. } = self {
            // Owner references collect its objects; deleting the namespace does not wait for that.
            let _ = namespaces
                .delete(components, &DeleteParams::default())
                .await;
        }
        let pods: Api<Pod> = Api::namespaced(client.clone(), components);
        poll(
            &format!("pods of {components} gone"),
            TEARDOWN_LIMIT,
            || async {
                let left = pods.list_metadata(&ListParams::default().limit(1)).await?;
                Ok(left.items.is_empty().then_some(()))
            },
        )
        .await?;
        if let Self::Tigera { .. } = self {
            poll(
                &format!("namespace {components} gone"),
                TEARDOWN_LIMIT,
                || async {
                    Ok(namespaces
                        .get_opt(components)
                        .await?
                        .is_none()
                        .then_some(()))
                },
            )
            .await?;
        }
        drop(running.process); // SIGTERM, then SIGKILL after a grace period
        // Both leave their IP pools behind on purpose (addresses may still be in use); the next
        // measurement starts without them, as on a fresh cluster.
        let pools = self.pools(client);
        let left = match pools.list(&ListParams::default()).await {
            Ok(list) => list.items,
            Err(kube::Error::Api(status)) if status.code == 404 => Vec::new(),
            Err(error) => return Err(error.into()),
        };
        for pool in left {
            pools
                .delete(&pool.name_any(), &DeleteParams::default())
                .await?;
        }
        Ok(())
    }

    fn pools(&self, client: &Client) -> Api<DynamicObject> {
        let (group, version) = match self {
            Self::Weft => ("network.weft.dev", "v1"),
            Self::Tigera { .. } => ("crd.projectcalico.org", "v1"),
        };
        let gvk = GroupVersionKind::gvk(group, version, "IPPool");
        Api::all_with(client.clone(), &ApiResource::from_gvk(&gvk))
    }

    /// The series of its own metrics that count reconciles, and the label telling them apart.
    pub fn reconcile_metric(&self) -> (&'static str, &'static str) {
        match self {
            Self::Weft => ("weft_operator_reconciles_total", "-"),
            Self::Tigera { .. } => ("controller_runtime_reconcile_total", "controller"),
        }
    }

    /// The series of its own metrics that count API requests, and their verb label.
    pub fn request_metric(&self) -> (&'static str, &'static str) {
        match self {
            Self::Weft => ("weft_operator_api_requests_total", "verb"),
            Self::Tigera { .. } => ("rest_client_requests_total", "method"),
        }
    }
}
