//! Objects another party wrote must cost only themselves, on real nodes.
//!
//! With a client and a server pod connected across nodes, the check creates what a careless
//! user or a compromised node could write: a Node whose address is a multicast one (which the
//! kernel refuses as a gateway) with a block of its own, a block `0.0.0.0/1` naming a real node,
//! a block wider than the pool's block size over a live node's block, and a block naming no
//! node. Then, while those exist:
//!
//! - a default-deny ingress policy added afterwards is enforced on every path (the server that
//!   existed, and a server created after the policy on a node of the other subnet);
//! - a pod created afterwards in a namespace without policy is reached (routes still follow);
//! - no node routes any of those blocks or through the multicast address, every agent stays
//!   ready, and the refusals are reported as Events on the objects;
//! - the agents' health port is not reachable from a pod on any node's address (while the
//!   kubelet's port on the same address is, so the path itself works).

use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use ipnet::{IpNet, Ipv4Net};
use k8s_openapi::api::core::v1::{Event, Namespace, Node, Pod};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use serde_json::json;
use weft_api::{IpPool, IpamBlock};

use super::{Suite, pod_ready, poll, run};

const NAMESPACE: &str = "weft-untrusted";
const OPEN_NAMESPACE: &str = "weft-untrusted-open";
const MULTICAST_NODE: &str = "weft-untrusted-multicast";
const NOBODY: &str = "weft-untrusted-nobody";
const PORT: u16 = 8080;
/// The agents' health port (localhost only).
const HEALTH_PORT: u16 = 9099;
/// The kubelet's port, listening on every address of the node.
const KUBELET_PORT: u16 = 10250;

/// Runs the check; returns its report lines.
pub async fn run_check(suite: &Suite) -> anyhow::Result<Vec<String>> {
    suite.wait_available(Duration::from_secs(180)).await?;
    for namespace in [NAMESPACE, OPEN_NAMESPACE] {
        suite.fresh_namespace(namespace).await?;
    }
    let workers = suite.workers();
    let client = start_pod(suite, NAMESPACE, "client", &workers[0]).await?;
    let server = start_pod(suite, NAMESPACE, "server", &workers[1]).await?;
    if !connects(&client, &server.ip, PORT)? {
        bail!("client cannot reach server:{PORT} before anything untrusted exists");
    }

    let hostile = Hostile::create(suite).await?;
    let result = with_hostile_objects(suite, &client, &server, &hostile).await;
    hostile.delete(suite).await;
    for namespace in [NAMESPACE, OPEN_NAMESPACE] {
        let namespaces: Api<Namespace> = Api::all(suite.client.clone());
        let _ = namespaces.delete(namespace, &DeleteParams::default()).await;
    }
    result
}

async fn with_hostile_objects(
    suite: &Suite,
    client: &TestPod,
    server: &TestPod,
    hostile: &Hostile,
) -> anyhow::Result<Vec<String>> {
    let mut report = Vec::new();
    // Every agent has seen the objects once one has refused the multicast Node.
    let events = poll("the refusals reported", Duration::from_secs(60), || async {
        let reasons = event_reasons(suite, &hostile.names()).await?;
        let wanted = ["WeftNodeRefused", "WeftBlockRefused"];
        Ok(if wanted.iter().all(|w| reasons.iter().any(|r| r == w)) {
            Ok(reasons)
        } else {
            Err(format!("events so far: {reasons:?}"))
        })
    })
    .await?;
    report.push(format!("PASS untrusted objects refused, Events {events:?}"));

    let policies: Api<NetworkPolicy> = Api::namespaced(suite.client.clone(), NAMESPACE);
    let deny: NetworkPolicy = serde_json::from_value(json!({
        "metadata": {"name": "default-deny-ingress"},
        "spec": {"podSelector": {}, "policyTypes": ["Ingress"]},
    }))?;
    policies.create(&PostParams::default(), &deny).await?;
    let applied = Instant::now();
    poll("default-deny enforced", Duration::from_secs(30), || async {
        Ok(if connects(client, &server.ip, PORT)? {
            Err("client still reaches server".to_owned())
        } else {
            Ok(())
        })
    })
    .await?;
    let enforced = applied.elapsed();
    let workers = suite.workers();
    let late = start_pod(suite, NAMESPACE, "late-server", &workers[2]).await?;
    let open = start_pod(suite, OPEN_NAMESPACE, "open-server", &workers[1]).await?;
    if !connects(client, &open.ip, PORT)? {
        bail!("a pod created beside the untrusted objects is not reached");
    }
    for attempt in 0..3 {
        if connects(client, &late.ip, PORT)? {
            bail!("a server created after the default-deny policy is reached (try {attempt})");
        }
    }
    report.push(format!(
        "PASS default-deny added beside them enforced within {:.1}s, on a server created later \
         ({}), and a new pod without policy reached ({})",
        enforced.as_secs_f64(),
        late.node,
        open.node
    ));

    for node in kind_nodes(suite)? {
        let routes = run(Command::new("docker").args(["exec", &node, "ip", "-4", "route"]))?;
        let routed: Vec<&String> = hostile
            .cidrs
            .iter()
            .filter(|cidr| {
                routes
                    .lines()
                    .any(|line| line.starts_with(&format!("{cidr} ")))
            })
            .collect();
        if !routed.is_empty() || routes.contains("224.0.0.1") {
            bail!("{node} routes untrusted blocks {routed:?} or via 224.0.0.1:\n{routes}");
        }
    }
    let agents: Api<Pod> = Api::namespaced(suite.client.clone(), "weft-system");
    let list = agents
        .list(&ListParams::default().labels("app.kubernetes.io/name=weft-node"))
        .await?;
    let unready: Vec<String> = list
        .items
        .iter()
        .filter(|pod| !pod_ready(pod))
        .filter_map(|pod| pod.metadata.name.clone())
        .collect();
    if !unready.is_empty() {
        bail!("agents not ready beside untrusted objects: {unready:?}");
    }
    report.push(format!(
        "PASS no node routes {:?} or via 224.0.0.1; {} agents ready",
        hostile.cidrs,
        list.items.len()
    ));

    let nodes: Api<Node> = Api::all(suite.client.clone());
    let mut checked = Vec::new();
    for node in nodes.list(&ListParams::default()).await?.items {
        let name = node.metadata.name.clone().unwrap_or_default();
        if name == MULTICAST_NODE {
            continue;
        }
        let address = internal_ip(&node).with_context(|| format!("{name} has no InternalIP"))?;
        if !connects(client, &address, KUBELET_PORT)? {
            bail!("the client cannot reach {name}'s kubelet at {address}:{KUBELET_PORT}");
        }
        if connects(client, &address, HEALTH_PORT)? {
            bail!("a pod reaches the agent health port at {address}:{HEALTH_PORT} ({name})");
        }
        checked.push(address);
    }
    report.push(format!(
        "PASS agent health port {HEALTH_PORT} closed to pods on {checked:?} (kubelet port open)"
    ));
    Ok(report)
}

/// A ready pod of the check.
struct TestPod {
    namespace: String,
    name: String,
    node: String,
    ip: String,
}

/// An agnhost netexec pod on `node`, ready.
async fn start_pod(
    suite: &Suite,
    namespace: &str,
    name: &str,
    node: &str,
) -> anyhow::Result<TestPod> {
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": namespace, "labels": {"app": name}},
        "spec": {
            "nodeSelector": {"kubernetes.io/hostname": node},
            "terminationGracePeriodSeconds": 1,
            "containers": [{
                "name": "agnhost", "image": suite.agnhost, "imagePullPolicy": "IfNotPresent",
                "args": ["netexec", format!("--http-port={PORT}")],
                "readinessProbe": {"tcpSocket": {"port": PORT}, "periodSeconds": 1},
            }],
        },
    }))?;
    let pods: Api<Pod> = Api::namespaced(suite.client.clone(), namespace);
    pods.create(&PostParams::default(), &pod).await?;
    let ready = suite.wait_pod_ready(namespace, name).await?;
    let ip = ready
        .status
        .and_then(|status| status.pod_ip)
        .with_context(|| format!("{namespace}/{name} has no IP"))?;
    Ok(TestPod {
        namespace: namespace.to_owned(),
        name: name.to_owned(),
        node: node.to_owned(),
        ip,
    })
}

/// Whether `from` connects to `to:port` (agnhost connect, 2 s); an error when the dial could
/// not be made at all.
fn connects(from: &TestPod, to: &str, port: u16) -> anyhow::Result<bool> {
    let target = format!("{to}:{port}");
    let output = Command::new("kubectl")
        .args(["exec", "-n", &from.namespace, &from.name, "--"])
        .args(["/agnhost", "connect", "--timeout=2s", &target])
        .output()
        .context("running kubectl exec")?;
    if output.status.success() {
        return Ok(true);
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    if stderr.contains("TIMEOUT") || stderr.contains("REFUSED") {
        return Ok(false);
    }
    bail!("dialing {target} from {}: {}", from.name, stderr.trim())
}

/// The objects the check creates, and the CIDRs no node may route.
struct Hostile {
    blocks: Vec<String>,
    cidrs: Vec<String>,
}

impl Hostile {
    async fn create(suite: &Suite) -> anyhow::Result<Self> {
        let pools: Api<IpPool> = Api::all(suite.client.clone());
        let pool = pools
            .list(&ListParams::default())
            .await?
            .items
            .into_iter()
            .find(|pool| pool.spec.disabled != Some(true))
            .context("no enabled IPPool")?;
        let pool_name = pool.metadata.name.clone().unwrap_or_default();
        let pool_cidr: Ipv4Net = pool.spec.cidr.parse().context("the pool's CIDR")?;
        let block_size = u8::try_from(pool.spec.block_size_or_default())?;
        let blocks: Api<IpamBlock> = Api::all(suite.client.clone());
        let existing = blocks.list(&ListParams::default()).await?.items;
        let taken: Vec<Ipv4Net> = existing
            .iter()
            .filter_map(|block| block.spec.cidr.parse().ok())
            .collect();
        let mut subnets: Vec<Ipv4Net> = pool_cidr.subnets(block_size)?.collect();
        subnets.reverse();
        let mut free = subnets
            .into_iter()
            .filter(|cidr| !taken.iter().any(|t| t.contains(cidr) || cidr.contains(t)));
        let multicast_block = free.next().context("no free block in the pool")?;
        let nobody_block = free.next().context("no second free block in the pool")?;
        let workers = suite.workers();
        let victim = existing
            .iter()
            .find(|block| block.spec.node == workers[1])
            .context("the second worker holds no block")?;
        let victim: Ipv4Net = victim.spec.cidr.parse()?;
        let over_victim = Ipv4Net::new(victim.addr(), block_size - 1)?.trunc();

        let nodes: Api<Node> = Api::all(suite.client.clone());
        let node: Node = serde_json::from_value(json!({
            "metadata": {"name": MULTICAST_NODE, "annotations": {
                "network.weft.dev/ipv4-address": "224.0.0.1/24",
                "network.weft.dev/vxlan-mac": "02:00:00:00:00:99",
            }},
        }))?;
        nodes.create(&PostParams::default(), &node).await?;
        let wanted = [
            (multicast_block, MULTICAST_NODE),
            (nobody_block, NOBODY),
            ("0.0.0.0/1".parse()?, workers[0].as_str()),
            (over_victim, workers[0].as_str()),
        ];
        let mut hostile = Hostile {
            blocks: Vec::new(),
            cidrs: Vec::new(),
        };
        for (cidr, node) in wanted {
            let block = IpamBlock::for_cidr(IpNet::V4(cidr), &pool_name, node);
            blocks.create(&PostParams::default(), &block).await?;
            hostile
                .blocks
                .push(block.metadata.name.clone().unwrap_or_default());
            hostile.cidrs.push(cidr.to_string());
        }
        Ok(hostile)
    }

    fn names(&self) -> Vec<String> {
        let mut names = self.blocks.clone();
        names.push(MULTICAST_NODE.to_owned());
        names
    }

    async fn delete(&self, suite: &Suite) {
        let blocks: Api<IpamBlock> = Api::all(suite.client.clone());
        for name in &self.blocks {
            let _ = blocks.delete(name, &DeleteParams::default()).await;
        }
        let nodes: Api<Node> = Api::all(suite.client.clone());
        let _ = nodes.delete(MULTICAST_NODE, &DeleteParams::default()).await;
    }
}

/// The reasons of the Events about the objects named `names`, in any namespace.
async fn event_reasons(suite: &Suite, names: &[String]) -> anyhow::Result<Vec<String>> {
    let events: Api<Event> = Api::all(suite.client.clone());
    let mut reasons: Vec<String> = events
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter(|event| {
            event
                .involved_object
                .name
                .as_ref()
                .is_some_and(|name| names.contains(name))
        })
        .filter_map(|event| event.reason)
        .collect();
    reasons.sort();
    reasons.dedup();
    Ok(reasons)
}

/// The kind cluster's node containers.
fn kind_nodes(suite: &Suite) -> anyhow::Result<Vec<String>> {
    let filter = format!("label=io.x-k8s.kind.cluster={}", suite.cluster);
    let names =
        run(Command::new("docker").args(["ps", "--filter", &filter, "--format", "{{.Names}}"]))?;
    Ok(names.lines().map(str::to_owned).collect())
}

fn internal_ip(node: &Node) -> Option<String> {
    node.status
        .as_ref()?
        .addresses
        .as_ref()?
        .iter()
        .find(|address| address.type_ == "InternalIP")
        .map(|address| address.address.clone())
}
