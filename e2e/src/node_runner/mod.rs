//! A Node whose pods run as local processes: a small kubelet for tests that must run the real
//! program a manifest describes (the operator of a Helm chart's Deployment, the kubectl of its
//! hooks) rather than let kwok pretend. The Node is registered with the API server (Ready, a
//! renewed Lease, room for pods) and carries labels tests select it by. For every pod bound to it:
//!
//! - a container whose image is mapped to a local program runs that program with the container's
//!   args and env (values and `fieldRef`s), authenticated as the pod's ServiceAccount (a kubeconfig
//!   impersonating it, so the RBAC under test is what applies), its output in `<dir>/<pod>.log`;
//! - any other pod is reported Running and Ready without running anything, as kwok would;
//! - the pod's status follows the process: Running and Ready while it runs, Succeeded or Failed
//!   when it exits (restartPolicy Never/OnFailure), restarted when it exits under Always;
//! - a pod being deleted gets SIGTERM (SIGKILL after its grace period) and is then removed.
//!
//! Only the first container of a pod runs and init containers are skipped. It is a test fixture:
//! nothing isolates the process (no namespaces, no image), which is why it only runs programs the
//! test names.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, Time};
use k8s_openapi::jiff::Timestamp;
use kube::Client;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::json;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::{Error, LocalCluster};

mod pods;

use pods::State;

/// What a [`NodeRunner`] is and runs.
#[derive(Debug, Clone)]
pub struct RunnerOptions {
    /// The Node's name (and its `kubernetes.io/hostname`).
    pub name: String,
    /// Extra labels of the Node (it always has `kubernetes.io/os=linux`).
    pub labels: BTreeMap<String, String>,
    /// Image repository (after the last `/`, before `:tag`) → the local program that stands for
    /// the image's command, e.g. `weft-operator` → the built operator binary.
    pub programs: BTreeMap<String, PathBuf>,
}

/// One process the runner started, for assertions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    pub namespace: String,
    pub pod: String,
    pub program: PathBuf,
    pub args: Vec<String>,
    /// `None` while it runs; -1 when it was killed by a signal.
    pub exit_code: Option<i32>,
}

/// A registered Node running its pods' mapped containers as local processes. [`NodeRunner::stop`]
/// stops them and deletes the Node; dropping it kills the processes.
pub struct NodeRunner {
    name: String,
    dir: PathBuf,
    runs: Arc<Mutex<Vec<Run>>>,
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
    client: Client,
}

pub(crate) const POLL: Duration = Duration::from_millis(200);
pub(crate) const LEASE_RENEW: Duration = Duration::from_secs(10);
const LEASE_NAMESPACE: &str = "kube-node-lease";

impl NodeRunner {
    /// Registers the Node and starts serving its pods.
    pub async fn start(cluster: &LocalCluster, options: RunnerOptions) -> Result<Self, Error> {
        let client = cluster.client().await?;
        let dir = cluster.dir().join(format!("runner-{}", options.name));
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        register_node(&client, &options).await?;
        let name = options.name.clone();
        let runs = Arc::new(Mutex::new(Vec::new()));
        let (stop, stopped) = watch::channel(false);
        let state = State {
            client: client.clone(),
            options,
            admin_kubeconfig: cluster.kubeconfig().to_path_buf(),
            dir: dir.clone(),
            runs: runs.clone(),
            processes: HashMap::new(),
            ready: HashSet::new(),
        };
        let task = tokio::spawn(state.serve(stopped));
        Ok(Self {
            name,
            dir,
            runs,
            stop,
            task: Some(task),
            client,
        })
    }

    /// The Node's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Where the output of pod `namespace/pod` is written.
    pub fn log_path(&self, namespace: &str, pod: &str) -> PathBuf {
        self.dir.join(pods::log_file_name(namespace, pod))
    }

    /// Every process started so far, oldest first.
    pub fn runs(&self) -> Vec<Run> {
        self.runs.lock().expect("runs").clone()
    }

    /// Stops every process, then deletes the Node.
    pub async fn stop(mut self) -> Result<(), Error> {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
        let nodes: Api<Node> = Api::all(self.client.clone());
        match nodes.delete(&self.name, &DeleteParams::default()).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(response)) if response.code == 404 => Ok(()),
            Err(e) => Err(Error::Api(format!("delete Node {}: {e}", self.name))),
        }
    }
}

impl Drop for NodeRunner {
    fn drop(&mut self) {
        // Aborting the task drops its children, which are killed on drop.
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

pub(crate) fn now() -> serde_json::Value {
    serde_json::to_value(Time(Timestamp::now())).unwrap_or_default()
}

async fn register_node(client: &Client, options: &RunnerOptions) -> Result<(), Error> {
    let nodes: Api<Node> = Api::all(client.clone());
    let mut labels = BTreeMap::from([
        ("kubernetes.io/hostname".to_string(), options.name.clone()),
        ("kubernetes.io/os".to_string(), "linux".to_string()),
        ("kubernetes.io/arch".to_string(), "amd64".to_string()),
    ]);
    labels.extend(options.labels.clone());
    let node: Node = serde_json::from_value(json!({
        "metadata": {"name": options.name, "labels": labels},
    }))
    .map_err(|e| Error::Api(format!("Node manifest: {e}")))?;
    nodes
        .create(&PostParams::default(), &node)
        .await
        .map_err(|e| Error::Api(format!("create Node {}: {e}", options.name)))?;
    report_node_ready(client, &options.name).await?;
    renew_lease(client, &options.name).await
}

async fn report_node_ready(client: &Client, name: &str) -> Result<(), Error> {
    let nodes: Api<Node> = Api::all(client.clone());
    let resources = json!({"cpu": "8", "memory": "16Gi", "pods": "110"});
    let status = json!({"status": {
        "capacity": resources,
        "allocatable": resources,
        "addresses": [{"type": "InternalIP", "address": "127.0.0.1"},
                      {"type": "Hostname", "address": name}],
        "conditions": [{
            "type": "Ready", "status": "True", "reason": "LocalProcesses",
            "message": "pods run as local processes",
            "lastHeartbeatTime": now(), "lastTransitionTime": now(),
        }],
        "nodeInfo": {"architecture": "amd64", "operatingSystem": "linux",
                     "kubeletVersion": "local", "kubeProxyVersion": "local",
                     "machineID": "", "systemUUID": "", "bootID": "", "kernelVersion": "",
                     "osImage": "", "containerRuntimeVersion": ""},
    }});
    nodes
        .patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
        .await
        .map_err(|e| Error::Api(format!("Node {name} status: {e}")))?;
    Ok(())
}

pub(crate) async fn renew_lease(client: &Client, name: &str) -> Result<(), Error> {
    let leases: Api<Lease> = Api::namespaced(client.clone(), LEASE_NAMESPACE);
    let lease = json!({
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": name, "namespace": LEASE_NAMESPACE},
        "spec": {"holderIdentity": name, "leaseDurationSeconds": 40,
                 "renewTime": serde_json::to_value(MicroTime(Timestamp::now())).unwrap_or_default()},
    });
    leases
        .patch(
            name,
            &PatchParams::apply("weft-node-runner").force(),
            &Patch::Apply(&lease),
        )
        .await
        .map_err(|e| Error::Api(format!("renew Lease {name}: {e}")))?;
    Ok(())
}
