//! What a kubelet would do for the demo's namespace nodes, done by the demo itself: register
//! each node as a Ready Node (its underlay address, capacity for the scheduler) and renew its
//! Lease; run the node's `weft-agent run` (the weft-node DaemonSet's pod there) and one
//! `weft-agent controllers` per weft-controllers pod bound to these nodes; report each such
//! pod Running and Ready exactly while its process answers `/readyz` 200; finish the graceful
//! deletion of pods whose process it stopped.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime};

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use serde_json::json;

use super::children::Child;
use super::host::{free_port, http_status};
use super::underlay::NodeNetns;
use super::{Error, api};

const MANAGER: &str = "weft-demo";
const WEFT_SYSTEM: &str = "weft-system";
const NAME_LABEL: &str = "app.kubernetes.io/name";
const LEASE_SECONDS: i32 = 40;

/// One namespace node: its underlay, directories and agent.
#[derive(Debug)]
pub struct DemoNode {
    pub name: String,
    pub underlay: NodeNetns,
    pub dir: PathBuf,
    pub health_port: u16,
    pub agent: Option<Child>,
}

impl DemoNode {
    pub fn bin_dir(&self) -> PathBuf {
        self.dir.join("cni-bin")
    }
    pub fn conf_dir(&self) -> PathBuf {
        self.dir.join("cni-conf")
    }
    pub fn state_dir(&self) -> PathBuf {
        self.dir.join("state")
    }
}

/// The kubelet stand-in of every namespace node.
pub struct Kubelet {
    client: Client,
    kubeconfig: PathBuf,
    binaries: PathBuf,
    pub nodes: Vec<DemoNode>,
    controllers: BTreeMap<String, (Child, u16)>,
    last_lease: Option<Instant>,
}

/// RFC 3339 with microseconds, as Lease and condition times are written.
pub(crate) fn now_rfc3339() -> String {
    let since = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    let seconds = since.as_secs() as i64;
    let (days, rest) = (seconds.div_euclid(86_400), seconds.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:06}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60,
        since.subsec_micros()
    )
}

fn ready_status(pod: &Pod, ready: bool, address: Ipv4Addr) -> serde_json::Value {
    let now = now_rfc3339();
    let containers: Vec<serde_json::Value> = pod
        .spec
        .iter()
        .flat_map(|spec| &spec.containers)
        .map(|container| {
            json!({"name": container.name, "image": container.image, "imageID": "",
                   "ready": ready, "restartCount": 0, "started": true,
                   "state": {"running": {"startedAt": now}}})
        })
        .collect();
    let state = if ready { "True" } else { "False" };
    let condition = |kind: &str, status: &str| json!({"type": kind, "status": status, "lastTransitionTime": now});
    json!({"status": {
        "phase": "Running", "hostIP": address.to_string(), "podIP": address.to_string(),
        "hostIPs": [{"ip": address.to_string()}], "podIPs": [{"ip": address.to_string()}],
        "startTime": now,
        "conditions": [condition("PodScheduled", "True"), condition("Initialized", "True"),
                       condition("ContainersReady", state), condition("Ready", state)],
        "containerStatuses": containers,
    }})
}

fn pod_ready(pod: &Pod) -> bool {
    pod.status
        .iter()
        .flat_map(|status| status.conditions.iter().flatten())
        .any(|condition| condition.type_ == "Ready" && condition.status == "True")
}

impl Kubelet {
    pub fn new(client: Client, kubeconfig: &Path, binaries: &Path) -> Self {
        Self {
            client,
            kubeconfig: kubeconfig.to_owned(),
            binaries: binaries.to_owned(),
            nodes: Vec::new(),
            controllers: BTreeMap::new(),
            last_lease: None,
        }
    }

    /// Registers `underlay` as Node `name`: Ready, its address, room for pods.
    pub async fn register(
        &mut self,
        name: &str,
        underlay: NodeNetns,
        dir: &Path,
    ) -> Result<(), Error> {
        let nodes: Api<Node> = Api::all(self.client.clone());
        let node: Node = serde_json::from_value(json!({"metadata": {"name": name, "labels": {
            "kubernetes.io/hostname": name, "kubernetes.io/os": "linux",
            "weft.dev/demo-subnet": format!("subnet-{}", underlay.subnet)}}}))
        .map_err(|error| Error::Setup(error.to_string()))?;
        nodes
            .create(&PostParams::default(), &node)
            .await
            .map_err(api(format!("create Node {name}")))?;
        let now = now_rfc3339();
        let resources = json!({"cpu": "4", "memory": "8Gi", "pods": "110"});
        let status = json!({"status": {
            "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                "message": "weft-demo runs this node's processes", "lastHeartbeatTime": now,
                "lastTransitionTime": now}],
            "addresses": [{"type": "InternalIP", "address": underlay.address.to_string()},
                          {"type": "Hostname", "address": name}],
            "capacity": resources, "allocatable": resources,
        }});
        nodes
            .patch_status(name, &PatchParams::default(), &Patch::Strategic(&status))
            .await
            .map_err(api(format!("set the status of Node {name}")))?;
        let dir = dir.join(name);
        std::fs::create_dir_all(&dir).map_err(|source| Error::Io {
            what: dir.display().to_string(),
            source,
        })?;
        self.nodes.push(DemoNode {
            name: name.to_owned(),
            underlay,
            dir,
            health_port: free_port()?,
            agent: None,
        });
        Ok(())
    }

    /// Starts `weft-agent run` for node `index` (its CNI files must be installed).
    pub fn start_agent(&mut self, index: usize) -> Result<(), Error> {
        let node = &self.nodes[index];
        let mut command = Command::new(self.binaries.join("weft-agent"));
        command
            .arg("run")
            .env("KUBECONFIG", &self.kubeconfig)
            .env("NODE_NAME", &node.name)
            .env("WEFT_NETNS", format!("/run/netns/{}", node.underlay.netns))
            .env("WEFT_STATE_DIR", node.state_dir())
            .env("CNI_BIN_DIR", node.bin_dir())
            .env("CNI_CONF_DIR", node.conf_dir())
            .env("WEFT_HEALTH_ADDRESS", "127.0.0.1")
            .env("WEFT_HEALTH_PORT", node.health_port.to_string())
            .env("WEFT_LOG_LEVEL", "info");
        let log = node.dir.join("agent.log");
        let child = Child::spawn(&format!("weft-agent of {}", node.name), command, &log)?;
        self.nodes[index].agent = Some(child);
        Ok(())
    }

    /// The pids of every process this kubelet runs.
    pub fn pids(&self) -> Vec<u32> {
        let agents = self.nodes.iter().filter_map(|node| node.agent.as_ref());
        agents
            .chain(self.controllers.values().map(|(child, _)| child))
            .map(Child::pid)
            .collect()
    }

    /// Renews the Leases when due and brings the weft-system pods on these nodes in line with
    /// their processes; fails when a process has died.
    pub async fn sync(&mut self) -> Result<(), Error> {
        for node in &mut self.nodes {
            if let Some(agent) = node.agent.as_mut() {
                agent.ensure_running()?;
            }
        }
        if self
            .last_lease
            .is_none_or(|at| at.elapsed() > Duration::from_secs(10))
        {
            self.renew_leases().await?;
            self.last_lease = Some(Instant::now());
        }
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), WEFT_SYSTEM);
        let list = pods
            .list(&ListParams::default())
            .await
            .map_err(api("list the weft-system pods".into()))?;
        for pod in list.items {
            self.sync_pod(&pods, &pod).await?;
        }
        Ok(())
    }

    async fn sync_pod(&mut self, pods: &Api<Pod>, pod: &Pod) -> Result<(), Error> {
        let name = pod.name_any();
        let node_name = pod.spec.as_ref().and_then(|spec| spec.node_name.clone());
        let Some(index) = self
            .nodes
            .iter()
            .position(|node| Some(&node.name) == node_name.as_ref())
        else {
            return Ok(());
        };
        if pod.metadata.deletion_timestamp.is_some() {
            self.controllers.remove(&name);
            let _ = pods
                .delete(&name, &DeleteParams::default().grace_period(0))
                .await;
            return Ok(());
        }
        let port = match pod.labels().get(NAME_LABEL).map(String::as_str) {
            Some("weft-node") => self.nodes[index].health_port,
            Some("weft-controllers") => self.controllers_port(&name)?,
            _ => return Ok(()),
        };
        let ready = http_status(port, "/readyz") == Some(200);
        if ready != pod_ready(pod) {
            let status = ready_status(pod, ready, self.nodes[index].underlay.address);
            pods.patch_status(&name, &PatchParams::default(), &Patch::Strategic(&status))
                .await
                .map_err(api(format!("set the status of Pod {WEFT_SYSTEM}/{name}")))?;
        }
        Ok(())
    }

    /// The health port of the controllers process of pod `name`, started when new.
    fn controllers_port(&mut self, name: &str) -> Result<u16, Error> {
        if let Some((child, port)) = self.controllers.get_mut(name) {
            child.ensure_running()?;
            return Ok(*port);
        }
        let port = free_port()?;
        let mut command = Command::new(self.binaries.join("weft-agent"));
        command
            .arg("controllers")
            .env("KUBECONFIG", &self.kubeconfig)
            .env("POD_NAMESPACE", WEFT_SYSTEM)
            .env("POD_NAME", name)
            .env("WEFT_HEALTH_ADDRESS", "127.0.0.1")
            .env("WEFT_HEALTH_PORT", port.to_string())
            .env("WEFT_LOG_LEVEL", "info");
        let dir = self
            .nodes
            .first()
            .map(|node| node.dir.clone())
            .unwrap_or_default();
        let log = dir.with_file_name(format!("{name}.log"));
        let child = Child::spawn(name, command, &log)?;
        self.controllers.insert(name.to_owned(), (child, port));
        Ok(port)
    }

    async fn renew_leases(&self) -> Result<(), Error> {
        let leases: Api<Lease> = Api::namespaced(self.client.clone(), "kube-node-lease");
        for node in &self.nodes {
            let lease = json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                "metadata": {"name": node.name, "namespace": "kube-node-lease"},
                "spec": {"holderIdentity": node.name, "leaseDurationSeconds": LEASE_SECONDS,
                         "renewTime": now_rfc3339()}});
            leases
                .patch(
                    &node.name,
                    &PatchParams::apply(MANAGER).force(),
                    &Patch::Apply(&lease),
                )
                .await
                .map_err(api(format!("renew the Lease of {}", node.name)))?;
        }
        Ok(())
    }

    /// Each agent's `/readyz` answer and last log lines, for a step that timed out.
    pub fn diagnose(&self) -> String {
        let mut text = String::new();
        for node in &self.nodes {
            let ready = http_status(node.health_port, "/readyz")
                .map_or("no answer".to_owned(), |status| status.to_string());
            text.push_str(&format!(
                "weft-agent of {} (/readyz: {ready}), last log lines:\n{}\n",
                node.name,
                crate::process::log_tail(&node.dir.join("agent.log"))
            ));
        }
        text
    }

    /// Stops every process at once, then waits for each.
    pub fn stop(&mut self) {
        let agents = self.nodes.iter().filter_map(|node| node.agent.as_ref());
        for child in agents.chain(self.controllers.values().map(|(child, _)| child)) {
            child.terminate();
        }
        self.controllers.clear();
        for node in &mut self.nodes {
            node.agent = None;
        }
    }
}

impl Drop for Kubelet {
    fn drop(&mut self) {
        self.stop();
    }
}
