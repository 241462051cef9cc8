//! A multi-node cluster of network namespaces for the agent's tests.
//!
//! Underlay: a router namespace with two bridges (subnets `10.U.1.0/24` and `10.U.2.0/24`, U
//! unique per test) and a third link to an "outside" namespace (`10.U.200.2`) that stands for
//! the internet. Each node is a namespace with `eth0` on one of the bridges, registered as a
//! Node of the local control plane, with its own `weft-agent run` process (programming that
//! namespace), its own CNI bin, conf and state directories filled by `weft-agent install-cni`
//! from the conflist the operator renders. Pods are namespaces attached by running the `weft`
//! plugin inside the node's namespace; a Pod object with the node name and the address the
//! plugin returned stands for each.

#![allow(dead_code)]

pub mod netns;
pub mod plugin;
pub mod policy;

use std::collections::BTreeMap;
use std::io::Write;
use std::net::Ipv4Addr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::{Value, json};
use weft_api::{Installation, IpPool};
use weft_e2e::LocalCluster;

pub use netns::*;
pub use plugin::*;
pub use weft_e2e::demo::host::http_status;

static NEXT_ID: AtomicU8 = AtomicU8::new(0);

/// The shared local control plane of this test binary, with weft's CRDs.
pub async fn shared_cluster() -> &'static LocalCluster {
    let cluster = LocalCluster::shared()
        .await
        .expect("the local control plane is required for this test");
    let client = cluster.client().await.expect("client");
    weft_e2e::install_crds(&client, weft_api::crds(), "weft-agent-tests")
        .await
        .expect("install the CRDs");
    cluster
}

/// The Installation every agent test shares (Weft IPAM), created once.
pub async fn ensure_installation(client: &Client) {
    let api: Api<Installation> = Api::all(client.clone());
    let installation: Installation = serde_json::from_value(json!({
        "apiVersion": "operator.weft.dev/v1", "kind": "Installation",
        "metadata": {"name": "default"}, "spec": {}
    }))
    .unwrap();
    match api.create(&PostParams::default(), &installation).await {
        Ok(_) => {}
        Err(kube::Error::Api(status)) if status.is_already_exists() => {}
        Err(error) => panic!("creating the Installation: {error}"),
    }
}

/// One node: its namespace, directories and agent.
pub struct TestNode {
    pub name: String,
    pub netns: String,
    pub address: Ipv4Addr,
    pub dir: PathBuf,
    pub health_port: u16,
    pub agent: Option<Child>,
}

impl TestNode {
    pub fn bin_dir(&self) -> PathBuf {
        self.dir.join("bin")
    }
    pub fn conf_dir(&self) -> PathBuf {
        self.dir.join("conf")
    }
    pub fn state_dir(&self) -> PathBuf {
        self.dir.join("state")
    }
    pub fn node_state(&self) -> Value {
        let text = std::fs::read_to_string(self.state_dir().join("node-state.json"))
            .unwrap_or_else(|e| panic!("node state of {}: {e}", self.name));
        serde_json::from_str(&text).unwrap()
    }
    /// The first block the node state file lists.
    pub fn first_block(&self) -> String {
        self.node_state()["blocks"][0]
            .as_str()
            .unwrap_or_else(|| panic!("{} holds no block", self.name))
            .to_owned()
    }

    /// `ip route show proto 81` inside the node.
    pub fn weft_routes(&self) -> String {
        sh(&["ip", "-n", &self.netns, "route", "show", "proto", "81"])
    }
}

/// A pod attached by the plugin.
#[derive(Clone, Debug)]
pub struct TestPod {
    pub name: String,
    pub namespace: String,
    pub netns: String,
    pub node: usize,
    pub ip: Ipv4Addr,
    pub container_id: String,
}

/// The whole test cluster; dropping it kills the agents and deletes the namespaces.
pub struct NodeCluster {
    pub id: u8,
    pub client: Client,
    pub kubeconfig: PathBuf,
    pub router: String,
    pub outside: String,
    pub nodes: Vec<TestNode>,
    pub pods: Vec<TestPod>,
    pub namespace: String,
    pub pool_cidr: String,
    pub extra_args: Vec<(String, String)>,
    dir: tempfile::TempDir,
}

fn free_port() -> u16 {
    weft_e2e::free_listen_port().expect("free port")
}

impl NodeCluster {
    /// Builds the underlay with one node per entry of `subnets` (1 or 2), the test's k8s
    /// namespace and an IPPool (`encapsulation`, natOutgoing) selecting only this test's nodes.
    pub async fn new(
        cluster: &LocalCluster,
        subnets: &[u8],
        encapsulation: &str,
        nat_outgoing: &str,
    ) -> Self {
        require_root_tools();
        let id = NEXT_ID.fetch_add(1, Ordering::SeqCst);
        let underlay = 160 + id;
        let prefix = format!("wt{}-{id}", std::process::id() % 10000);
        let router = format!("{prefix}-r");
        let outside = format!("{prefix}-o");
        for namespace in [&router, &outside] {
            sh(&["ip", "netns", "add", namespace]);
            sh(&["ip", "-n", namespace, "link", "set", "lo", "up"]);
        }
        sh(&[
            "ip",
            "netns",
            "exec",
            &router,
            "sysctl",
            "-qw",
            "net.ipv4.ip_forward=1",
        ]);
        for subnet in [1, 2] {
            let bridge = format!("br{subnet}");
            sh(&[
                "ip", "-n", &router, "link", "add", &bridge, "type", "bridge",
            ]);
            let gateway = format!("10.{underlay}.{subnet}.1/24");
            sh(&["ip", "-n", &router, "addr", "add", &gateway, "dev", &bridge]);
            sh(&["ip", "-n", &router, "link", "set", &bridge, "up"]);
        }
        sh(&[
            "ip", "-n", &router, "link", "add", "o0", "type", "veth", "peer", "name", "eth0",
            "netns", &outside,
        ]);
        sh(&[
            "ip",
            "-n",
            &router,
            "addr",
            "add",
            &format!("10.{underlay}.200.1/24"),
            "dev",
            "o0",
        ]);
        sh(&["ip", "-n", &router, "link", "set", "o0", "up"]);
        sh(&[
            "ip",
            "-n",
            &outside,
            "addr",
            "add",
            &format!("10.{underlay}.200.2/24"),
            "dev",
            "eth0",
        ]);
        sh(&["ip", "-n", &outside, "link", "set", "eth0", "up"]);
        sh(&[
            "ip",
            "-n",
            &outside,
            "route",
            "add",
            "default",
            "via",
            &format!("10.{underlay}.200.1"),
        ]);

        let client = cluster.client().await.expect("admin client");
        ensure_installation(&client).await;
        let namespace = format!("wt-{id}");
        let namespaces: Api<Namespace> = Api::all(client.clone());
        let object: Namespace =
            serde_json::from_value(json!({"metadata": {"name": namespace}})).unwrap();
        let _ = namespaces.create(&PostParams::default(), &object).await;
        let pool_cidr = format!("172.{}.0.0/16", 16 + id);
        let pool: IpPool = serde_json::from_value(json!({
            "apiVersion": "network.weft.dev/v1", "kind": "IPPool",
            "metadata": {"name": format!("wt-{id}")},
            "spec": {"cidr": pool_cidr, "blockSize": 26, "encapsulation": encapsulation,
                     "natOutgoing": nat_outgoing, "nodeSelector": format!("weft-test == 't{id}'")}
        }))
        .unwrap();
        Api::<IpPool>::all(client.clone())
            .create(&PostParams::default(), &pool)
            .await
            .expect("create the test IPPool");

        let dir = tempfile::tempdir().expect("temporary directory");
        let mut this = Self {
            id,
            client,
            kubeconfig: cluster.kubeconfig().to_owned(),
            router,
            outside,
            nodes: Vec::new(),
            pods: Vec::new(),
            namespace,
            pool_cidr,
            extra_args: Vec::new(),
            dir,
        };
        for subnet in subnets {
            this.add_node(*subnet).await;
        }
        this
    }

    pub fn underlay(&self) -> u8 {
        160 + self.id
    }

    /// The outside namespace's address.
    pub fn outside_address(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, self.underlay(), 200, 2)
    }

    /// Adds a node namespace on `subnet`, its Node object and its CNI files (agent not started).
    pub async fn add_node(&mut self, subnet: u8) -> usize {
        let index = self.nodes.len();
        let name = format!("wt-{}-n{index}", self.id);
        let netns = format!("{}-n{index}", self.router.trim_end_matches("-r"));
        let underlay = self.underlay();
        let address = Ipv4Addr::new(10, underlay, subnet, 10 + index as u8);
        sh(&["ip", "netns", "add", &netns]);
        sh(&["ip", "-n", &netns, "link", "set", "lo", "up"]);
        // Strict reverse-path filtering, as distributions set it on hosts.
        for key in ["all", "default"] {
            let setting = format!("net.ipv4.conf.{key}.rp_filter=1");
            sh(&["ip", "netns", "exec", &netns, "sysctl", "-qw", &setting]);
        }
        let port = format!("n{index}");
        sh(&[
            "ip",
            "-n",
            &self.router,
            "link",
            "add",
            &port,
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            &netns,
        ]);
        sh(&[
            "ip",
            "-n",
            &self.router,
            "link",
            "set",
            &port,
            "master",
            &format!("br{subnet}"),
            "up",
        ]);
        sh(&[
            "ip",
            "-n",
            &netns,
            "addr",
            "add",
            &format!("{address}/24"),
            "dev",
            "eth0",
        ]);
        sh(&["ip", "-n", &netns, "link", "set", "eth0", "up"]);
        sh(&[
            "ip",
            "-n",
            &netns,
            "route",
            "add",
            "default",
            "via",
            &format!("10.{underlay}.{subnet}.1"),
        ]);

        let node: Node = serde_json::from_value(json!({
            "metadata": {"name": name, "labels": {"weft-test": format!("t{}", self.id)}},
        }))
        .unwrap();
        Api::<Node>::all(self.client.clone())
            .create(&PostParams::default(), &node)
            .await
            .expect("create the Node");
        let dir = self.dir.path().join(&name);
        let node = TestNode {
            name,
            netns,
            address,
            dir,
            health_port: free_port(),
            agent: None,
        };
        install_cni(&node);
        self.nodes.push(node);
        index
    }

    /// Starts the agent of node `index`.
    pub fn start_agent(&mut self, index: usize) {
        let node = &self.nodes[index];
        let mut command = Command::new(env!("CARGO_BIN_EXE_weft-agent"));
        command
            .arg("run")
            .env("KUBECONFIG", &self.kubeconfig)
            .env("NODE_NAME", &node.name)
            .env("WEFT_NETNS", format!("/run/netns/{}", node.netns))
            .env("WEFT_STATE_DIR", node.state_dir())
            .env("CNI_BIN_DIR", node.bin_dir())
            .env("CNI_CONF_DIR", node.conf_dir())
            .env("WEFT_HEALTH_ADDRESS", "127.0.0.1")
            .env("WEFT_HEALTH_PORT", node.health_port.to_string())
            .env("WEFT_LOG_LEVEL", "info")
            .stdout(Stdio::null())
            .stderr(
                std::fs::File::create(self.dir.path().join(format!("{}.log", node.name)))
                    .expect("agent log"),
            );
        for (key, value) in &self.extra_args {
            command.env(key, value);
        }
        // The agent dies with the test process.
        // SAFETY: prctl is async-signal-safe.
        unsafe {
            command.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child = command.spawn().expect("start weft-agent");
        self.nodes[index].agent = Some(child);
    }

    /// Starts every agent and waits until each is ready.
    pub async fn start_agents(&mut self) {
        for index in 0..self.nodes.len() {
            self.start_agent(index);
        }
        for index in 0..self.nodes.len() {
            self.wait_ready(index).await;
        }
    }

    /// The agent's log so far.
    pub fn agent_log(&self, index: usize) -> String {
        std::fs::read_to_string(
            self.dir
                .path()
                .join(format!("{}.log", self.nodes[index].name)),
        )
        .unwrap_or_default()
    }

    /// Waits until /readyz of node `index` answers 200.
    pub async fn wait_ready(&mut self, index: usize) {
        let port = self.nodes[index].health_port;
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if http_status(port, "/readyz") == Some(200) {
                return;
            }
            if let Some(child) = self.nodes[index].agent.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                panic!(
                    "agent of {} exited ({status}):\n{}",
                    self.nodes[index].name,
                    self.agent_log(index)
                );
            }
            assert!(
                Instant::now() < deadline,
                "agent of {} not ready after 60 s:\n{}",
                self.nodes[index].name,
                self.agent_log(index)
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Kills the agent of node `index` with `signal`, and waits for it to exit.
    pub fn stop_agent(&mut self, index: usize, signal: i32) {
        if let Some(mut child) = self.nodes[index].agent.take() {
            // SAFETY: kill on our own child's pid.
            unsafe { libc::kill(child.id() as i32, signal) };
            let _ = child.wait();
        }
    }

    /// Attaches a pod to node `index` as the kubelet does: its Pod object first, then the
    /// plugin's ADD (with the pod's names in `CNI_ARGS`), then the Pod's IP; waits until the
    /// node's agent has programmed the pod (until then the policy table drops its traffic).
    pub async fn add_pod(&mut self, index: usize, name: &str, labels: &[(&str, &str)]) -> TestPod {
        let pod = self.attach_pod(index, name, labels).await;
        if self.nodes[index].agent.is_some() {
            self.until_programmed(&pod).await;
        }
        pod
    }

    /// Like [`NodeCluster::add_pod`], without waiting for the agent.
    pub async fn attach_pod(
        &mut self,
        index: usize,
        name: &str,
        labels: &[(&str, &str)],
    ) -> TestPod {
        let node = &self.nodes[index];
        let netns = format!("{}-{name}", node.netns);
        sh(&["ip", "netns", "add", &netns]);
        sh(&["ip", "-n", &netns, "link", "set", "lo", "up"]);
        let container_id = format!("{}-{name}", self.namespace);
        let labels: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &self.namespace);
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": name, "labels": labels},
            "spec": {"nodeName": node.name, "containers": [{"name": "c", "image": "none:0"}],
                     "tolerations": [{"operator": "Exists"}]},
        }))
        .unwrap();
        pods.create(&PostParams::default(), &pod)
            .await
            .expect("create Pod");
        let args = format!("K8S_POD_NAMESPACE={};K8S_POD_NAME={name}", self.namespace);
        let result = cni_with_args(node, "ADD", &container_id, &netns, &args)
            .unwrap_or_else(|error| panic!("ADD of {name} on {}: {error}", node.name));
        let ip: Ipv4Addr = result["ips"][0]["address"]
            .as_str()
            .and_then(|text| text.split('/').next())
            .and_then(|text| text.parse().ok())
            .unwrap_or_else(|| panic!("no IPv4 address in {result}"));
        let status = json!({"status": {"phase": "Running", "podIP": ip.to_string(),
                                       "podIPs": [{"ip": ip.to_string()}]}});
        pods.patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
            .await
            .expect("set the Pod's IP");
        let pod = TestPod {
            name: name.to_owned(),
            namespace: self.namespace.clone(),
            netns,
            node: index,
            ip,
            container_id,
        };
        self.pods.push(pod.clone());
        pod
    }

    /// Whether the node's policy table binds the pod's address to an interface (the agent has
    /// programmed the pod); for a table without the workload guard, whether the table is there.
    pub fn is_programmed(&self, pod: &TestPod) -> bool {
        let netns = &self.nodes[pod.node].netns;
        let list = |what: &[&str]| {
            let mut args = vec!["ip", "netns", "exec", netns, "nft", "list"];
            args.extend_from_slice(what);
            try_sh(&args)
        };
        match list(&["set", "inet", "weft_policy", "endpoints_v4"]) {
            Some(set) => set.contains(&format!(" . {}", pod.ip)),
            None => list(&["table", "inet", "weft_policy"]).is_some(),
        }
    }

    /// Waits until the agent has programmed `pod`.
    pub async fn until_programmed(&self, pod: &TestPod) -> Duration {
        let what = format!("{} programmed on {}", pod.name, self.nodes[pod.node].name);
        self.until(&what, Duration::from_secs(10), || self.is_programmed(pod))
            .await
    }

    /// Deletes a Node object (the node namespace stays; its agent is stopped first).
    pub async fn delete_node(&mut self, index: usize) {
        self.stop_agent(index, libc::SIGKILL);
        Api::<Node>::all(self.client.clone())
            .delete(&self.nodes[index].name, &DeleteParams::default())
            .await
            .expect("delete Node");
    }

    /// Waits until `check` holds (polling every 50 ms), or panics with `what` after `limit`.
    pub async fn until(
        &self,
        what: &str,
        limit: Duration,
        mut check: impl FnMut() -> bool,
    ) -> Duration {
        let started = Instant::now();
        while !check() {
            assert!(started.elapsed() < limit, "{what}: not after {limit:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        started.elapsed()
    }
}

impl Drop for NodeCluster {
    fn drop(&mut self) {
        for index in 0..self.nodes.len() {
            self.stop_agent(index, libc::SIGKILL);
        }
        for pod in &self.pods {
            let _ = try_sh(&["ip", "netns", "del", &pod.netns]);
        }
        for node in &self.nodes {
            let _ = try_sh(&["ip", "netns", "del", &node.netns]);
        }
        let _ = try_sh(&["ip", "netns", "del", &self.outside]);
        let _ = try_sh(&["ip", "netns", "del", &self.router]);
    }
}

/// GET http://127.0.0.1:port/path → body.
pub fn http_body(port: u16, path: &str) -> String {
    use std::io::Read;
    let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return String::new();
    };
    let _ = write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    );
    let mut text = String::new();
    let _ = stream.read_to_string(&mut text);
    text
}

/// The path of a node's namespace.
pub fn netns_path(name: &str) -> PathBuf {
    Path::new("/run/netns").join(name)
}
