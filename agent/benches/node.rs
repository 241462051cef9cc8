//! The node agent at scale, on the local control plane and a real node namespace:
//!
//! - RSS of `weft-agent run` with 1,000 nodes (each with a block and published VTEP), 10,000
//!   pods with addresses and 1,000 policies in the API;
//! - a policy change (one pod's labels) → the change in the node's kernel ruleset (its
//!   endpoint chain appears or goes, read back with `nft list`), p50/p99 over repeated changes;
//! - pod ADD → the pod programmed (its interface and address in the policy table's guard set,
//!   which the agent writes in the same transaction as the pod's chains), p50/p99;
//! - a node added (Node with its annotations and an IPAMBlock) → its route in the kernel;
//! - pod ADD and DEL through the conflist install-cni wrote and the node state the agent wrote,
//!   against the reference `ptp` + `host-local` (Debian, /usr/lib/cni) in the same namespace.
//!
//! Run as root: `cargo bench -p weft-agent --bench node` (release build); it ends with PASS or
//! FAIL per goal. Sizes can be lowered with WEFT_BENCH_NODES / WEFT_BENCH_PODS /
//! WEFT_BENCH_POLICIES. `cargo test` runs it once at tiny sizes (a smoke run, goals not judged).

#[path = "../tests/common/mod.rs"]
mod common;

use std::io::Write as _;
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use futures::{StreamExt, stream};
use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use k8s_openapi::api::networking::v1::NetworkPolicy as KubeNetworkPolicy;
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::json;
use weft_api::{GlobalNetworkPolicy, IpamBlock, NetworkPolicy};
use weft_e2e::{ClusterOptions, LocalCluster};

const NAMESPACES: usize = 20;
const APPS: usize = 100;
const CONCURRENCY: usize = 32;

fn size(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

/// Blocks of the fake nodes: the upper half of the test pool (the real node claims anywhere
/// free; a claim that meets one of these moves on).
fn block_of(index: usize, id: u8) -> String {
    let base = u32::from(Ipv4Addr::new(172, 16 + id, 128, 0));
    format!("{}/26", Ipv4Addr::from(base + (index as u32) * 64))
}

async fn run_all<F>(futures: Vec<F>)
where
    F: std::future::Future<Output = ()>,
{
    stream::iter(futures)
        .buffer_unordered(CONCURRENCY)
        .collect::<Vec<()>>()
        .await;
}

async fn create_nodes(client: &Client, id: u8, count: usize) {
    let nodes: Api<Node> = Api::all(client.clone());
    let blocks: Api<IpamBlock> = Api::all(client.clone());
    let work = (1..=count).map(|index| {
        let (nodes, blocks) = (nodes.clone(), blocks.clone());
        async move {
            let name = format!("bench-node-{index}");
            let node: Node = serde_json::from_value(json!({"metadata": {
                "name": name, "labels": {"weft-test": format!("t{id}")},
                "annotations": {
                    "network.weft.dev/ipv4-address": format!("10.210.{}.{}/16", index / 250, index % 250 + 1),
                    "network.weft.dev/vxlan-mac": format!("02:00:00:00:{:02x}:{:02x}", index / 256, index % 256),
                    "network.weft.dev/mtu": "1450"}}}))
            .unwrap();
            nodes
                .create(&PostParams::default(), &node)
                .await
                .expect("create Node");
            let cidr: ipnet::IpNet = block_of(index, id).parse().unwrap();
            let block = IpamBlock::for_cidr(cidr, &format!("wt-{id}"), &name);
            blocks
                .create(&PostParams::default(), &block)
                .await
                .expect("create block");
        }
    });
    run_all(work.collect()).await;
}

fn pod_ip(index: usize) -> Ipv4Addr {
    Ipv4Addr::from(0x0AF0_0000u32 + index as u32 + 1)
}

async fn create_pods(client: &Client, count: usize, local_node: &str) {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    for n in 0..NAMESPACES {
        let namespace: Namespace = serde_json::from_value(json!({"metadata": {
            "name": format!("bench-{n}"), "labels": {"team": format!("team-{}", n % 5)}}}))
        .unwrap();
        let _ = namespaces.create(&PostParams::default(), &namespace).await;
    }
    let work = (0..count).map(|index| {
        let client = client.clone();
        let node = if index % 100 == 0 {
            local_node.to_owned()
        } else {
            format!("bench-node-{}", index % 1000 + 1)
        };
        async move {
            let namespace = format!("bench-{}", index % NAMESPACES);
            let pods: Api<Pod> = Api::namespaced(client, &namespace);
            let name = format!("pod-{index}");
            let tier = ["frontend", "backend", "db"][index % 3];
            let pod: Pod = serde_json::from_value(json!({
                "metadata": {"name": name, "labels": {"app": format!("app-{}", index % APPS),
                             "tier": tier}},
                "spec": {"nodeName": node, "containers": [{"name": "c", "image": "none:0",
                         "ports": [{"name": "http", "containerPort": 8080}]}],
                         "tolerations": [{"operator": "Exists"}]}}))
            .unwrap();
            pods.create(&PostParams::default(), &pod)
                .await
                .expect("create Pod");
            let ip = pod_ip(index).to_string();
            let status =
                json!({"status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}]}});
            pods.patch_status(&name, &PatchParams::default(), &Patch::Merge(&status))
                .await
                .expect("Pod status");
        }
    });
    run_all(work.collect()).await;
}

async fn create_policy(client: Client, i: usize) {
    let namespace = format!("bench-{}", i % NAMESPACES);
    let (app, peer) = (
        format!("app-{}", i % APPS),
        format!("app-{}", (i * 7 + 3) % APPS),
    );
    let created = match i % 10 {
        0..=5 => {
            let policy: KubeNetworkPolicy = serde_json::from_value(json!({
                "metadata": {"name": format!("k-{i}")},
                "spec": {"podSelector": {"matchLabels": {"app": app}},
                         "policyTypes": ["Ingress", "Egress"],
                         "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": peer}}}],
                                      "ports": [{"port": 8080}, {"port": "http"}]}],
                         "egress": [{"to": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.9.0.0/16"]}}]}]}}))
            .unwrap();
            Api::<KubeNetworkPolicy>::namespaced(client, &namespace)
                .create(&PostParams::default(), &policy)
                .await
                .map(drop)
        }
        6..=8 => {
            let policy: NetworkPolicy = serde_json::from_value(json!({
                "apiVersion": "network.weft.dev/v1", "kind": "NetworkPolicy",
                "metadata": {"name": format!("w-{i}"), "namespace": namespace},
                "spec": {"order": (i % 50) as f64, "selector": format!("app == '{app}'"),
                         "ingress": [{"action": "Deny", "protocol": "TCP", "destination": {"ports": ["9000:9100"]}},
                                     {"action": "Allow", "source": {"selector": format!("app in {{'{peer}', 'app-1'}}")}}]}}))
            .unwrap();
            Api::<NetworkPolicy>::namespaced(client, &namespace)
                .create(&PostParams::default(), &policy)
                .await
                .map(drop)
        }
        _ => {
            let policy: GlobalNetworkPolicy = serde_json::from_value(json!({
                "apiVersion": "network.weft.dev/v1", "kind": "GlobalNetworkPolicy",
                "metadata": {"name": format!("g-{i}")},
                "spec": {"selector": format!("tier == 'db' && app == '{app}'"),
                         "namespaceSelector": format!("team == 'team-{}'", i % 5),
                         "ingress": [{"action": "Log"}, {"action": "Pass"}]}}))
            .unwrap();
            Api::<GlobalNetworkPolicy>::all(client)
                .create(&PostParams::default(), &policy)
                .await
                .map(drop)
        }
    };
    created.unwrap_or_else(|error| panic!("create policy {i}: {error}"));
}

async fn create_policies(client: &Client, count: usize) {
    run_all(
        (0..count)
            .map(|i| create_policy(client.clone(), i))
            .collect(),
    )
    .await;
}

fn status_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|line| {
            line.strip_prefix(field)?
                .trim()
                .strip_suffix("kB")?
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or(0)
}

fn memory(pid: u32) -> String {
    format!(
        "VmRSS {:.1} MiB, VmHWM (peak) {:.1} MiB",
        status_kib(pid, "VmRSS:") as f64 / 1024.0,
        status_kib(pid, "VmHWM:") as f64 / 1024.0
    )
}

/// (sum, count) of the agent's dataplane apply histogram for one part.
fn apply_seconds(port: u16, part: &str) -> (f64, f64) {
    let text = http_body(port, "/metrics");
    let value = |suffix: &str| {
        let prefix = format!("weft_agent_dataplane_apply_seconds_{suffix}{{part=\"{part}\"}} ");
        text.lines()
            .find_map(|line| line.strip_prefix(&prefix)?.trim().parse().ok())
            .unwrap_or(0.0)
    };
    (value("sum"), value("count"))
}

/// Prints p50/p99/max of `samples` and returns the p99 in milliseconds.
fn report(what: &str, samples: &mut [Duration]) -> f64 {
    samples.sort();
    let at = |quantile: f64| {
        let index = ((samples.len() as f64 - 1.0) * quantile).round() as usize;
        samples[index].as_secs_f64() * 1e3
    };
    println!(
        "{what}: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms ({} samples)",
        at(0.5),
        at(0.99),
        at(1.0),
        samples.len()
    );
    at(0.99)
}

/// Runs the reference `ptp` (with `host-local`) inside the node namespace; returns its duration.
fn reference_call(
    node_netns: &str,
    command: &str,
    container: &str,
    pod_netns: &str,
    config: &str,
) -> Duration {
    let started = Instant::now();
    let mut process = Command::new("/usr/lib/cni/ptp");
    process
        .env_clear()
        .env("CNI_COMMAND", command)
        .env("CNI_CONTAINERID", container)
        .env("CNI_NETNS", format!("/run/netns/{pod_netns}"))
        .env("CNI_IFNAME", "eth0")
        .env("CNI_PATH", "/usr/lib/cni")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let _netns = in_netns(&mut process, node_netns);
    let mut child = process.spawn().expect("run /usr/lib/cni/ptp");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(config.as_bytes())
        .unwrap();
    assert!(
        child.wait().unwrap().success(),
        "reference {command} failed"
    );
    started.elapsed()
}

/// 100 pods ADDed then DELeted (with their namespaces) by weft and by the reference.
fn add_del_comparison(nodes: &NodeCluster, pods: usize) {
    let node = &nodes.nodes[0];
    let data_dir = node.dir.join("reference-ipam");
    let reference = json!({"cniVersion": "1.0.0", "name": "reference", "type": "ptp", "mtu": 1450,
        "ipam": {"type": "host-local", "subnet": "10.199.0.0/16", "dataDir": data_dir}})
    .to_string();
    // [weft, reference] × [ADD, DEL]
    let mut totals = [[Duration::ZERO; 2]; 2];
    for (side, total) in totals.iter_mut().enumerate() {
        let names: Vec<String> = (0..pods)
            .map(|i| format!("{}-c{side}-{i}", node.netns))
            .collect();
        for name in &names {
            sh(&["ip", "netns", "add", name]);
        }
        for name in &names {
            total[0] += if side == 0 {
                let started = Instant::now();
                cni(node, "ADD", name, name).expect("weft ADD");
                started.elapsed()
            } else {
                reference_call(&node.netns, "ADD", name, name, &reference)
            };
        }
        for name in &names {
            let started = Instant::now();
            if side == 0 {
                cni(node, "DEL", name, name).expect("weft DEL");
            } else {
                reference_call(&node.netns, "DEL", name, name, &reference);
            }
            sh(&["ip", "netns", "del", name]);
            total[1] += started.elapsed();
        }
    }
    let per_pod = |total: Duration| total.as_secs_f64() * 1e3 / pods as f64;
    for (index, what) in ["ADD", "DEL (with namespace deletion)"].iter().enumerate() {
        println!(
            "{what} per pod: weft {:.2} ms, ptp+host-local {:.2} ms, ratio {:.2}",
            per_pod(totals[0][index]),
            per_pod(totals[1][index]),
            totals[0][index].as_secs_f64() / totals[1][index].as_secs_f64()
        );
    }
}

/// `nft list` of one object of the policy table in the node's namespace (`None`: absent).
fn nft_list(node: &TestNode, kind: &str, name: &str) -> Option<String> {
    try_sh(&[
        "ip",
        "netns",
        "exec",
        &node.netns,
        "nft",
        "list",
        kind,
        "inet",
        "weft_policy",
        name,
    ])
}

/// Relabels a local pod back and forth between a label that policies select (its ingress
/// chain exists) and one none selects (the chain goes); each sample is API write → the chain's
/// presence flipped in the kernel's ruleset.
async fn policy_changes(client: &Client, node: &TestNode, rounds: usize) -> Vec<Duration> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), "bench-0");
    let chain = weft_policy::nft::endpoint_chain_name(
        "bench-0/pod-0",
        weft_policy::model::Direction::Ingress,
    );
    assert!(
        nft_list(node, "chain", &chain).is_some(),
        "pod-0 (app-0) starts isolated"
    );
    let mut samples = Vec::new();
    for round in 0..rounds {
        let isolated = round % 2 == 1;
        let app = format!("app-{}", if isolated { 0 } else { 7 });
        let patch = json!({"metadata": {"labels": {"app": app}}});
        let started = Instant::now();
        pods.patch("pod-0", &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .unwrap();
        while nft_list(node, "chain", &chain).is_some() != isolated {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        samples.push(started.elapsed());
    }
    samples
}

/// Wires new pods on the node as the kubelet does (Pod object, then ADD with the pod's names);
/// each sample is ADD started → the pod's interface and address in the guard set (the pod's
/// chains and dispatch entries land in the same transaction).
async fn adds_programmed(nodes: &mut NodeCluster, client: &Client, rounds: usize) -> Vec<Duration> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), "bench-0");
    let mut samples = Vec::new();
    for round in 0..rounds {
        let node = &nodes.nodes[0];
        let name = format!("fresh-{round}");
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": name, "labels": {"app": "app-0", "tier": "db"}},
            "spec": {"nodeName": node.name, "containers": [{"name": "c", "image": "none:0",
                     "ports": [{"name": "http", "containerPort": 8080}]}],
                     "tolerations": [{"operator": "Exists"}]}}))
        .unwrap();
        pods.create(&PostParams::default(), &pod).await.unwrap();
        let netns = format!("{}-{name}", node.netns);
        sh(&["ip", "netns", "add", &netns]);
        let args = format!("K8S_POD_NAMESPACE=bench-0;K8S_POD_NAME={name}");
        let started = Instant::now();
        let result = cni_with_args(node, "ADD", &name, &netns, &args).expect("weft ADD");
        let ip = result["ips"][0]["address"]
            .as_str()
            .and_then(|text| text.split('/').next())
            .expect("an address")
            .to_owned();
        let element = format!(" . {ip}");
        while !nft_list(node, "set", "endpoints_v4").is_some_and(|set| set.contains(&element)) {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        samples.push(started.elapsed());
        nodes.pods.push(TestPod {
            name,
            namespace: "bench-0".into(),
            netns,
            node: 0,
            ip: ip.parse().unwrap(),
            container_id: String::new(),
        });
    }
    samples
}

/// Adds nodes with a block each; each sample is API write → the route in the node's kernel.
async fn nodes_added(nodes: &NodeCluster, first: usize, rounds: usize) -> Vec<Duration> {
    let kernel =
        weft_agent::kernel::Kernel::open(Some(&netns_path(&nodes.nodes[0].netns))).unwrap();
    let nodes_api: Api<Node> = Api::all(nodes.client.clone());
    let blocks: Api<IpamBlock> = Api::all(nodes.client.clone());
    let mut samples = Vec::new();
    for round in 0..rounds {
        let index = first + round;
        let name = format!("bench-node-{index}");
        let node: Node = serde_json::from_value(json!({"metadata": {"name": name,
            "annotations": {"network.weft.dev/ipv4-address": format!("10.211.0.{}/16", round + 1),
                            "network.weft.dev/vxlan-mac": format!("02:00:00:01:00:{round:02x}")}}}))
        .unwrap();
        let cidr = block_of(index, nodes.id);
        let destination: ipnet::Ipv4Net = cidr.parse().unwrap();
        let block = IpamBlock::for_cidr(destination.into(), &format!("wt-{}", nodes.id), &name);
        let started = Instant::now();
        nodes_api
            .create(&PostParams::default(), &node)
            .await
            .unwrap();
        blocks.create(&PostParams::default(), &block).await.unwrap();
        loop {
            let routes = kernel
                .netlink(weft_agent::kernel::netlink::weft_routes)
                .unwrap();
            if routes.iter().any(|route| route.destination == destination) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        samples.push(started.elapsed());
    }
    samples
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    // `cargo bench` passes --bench; `cargo test --all-targets` runs this binary without it, as a
    // smoke run at tiny sizes that catches a broken benchmark (its figures are not measurements
    // and its goals are not judged).
    let benchmarking = std::env::args().any(|arg| arg == "--bench");
    let at_size = |bench: usize, smoke: usize| if benchmarking { bench } else { smoke };
    if !benchmarking {
        println!("smoke run of the benchmark (cargo test): the numbers below are not measurements");
    }
    let (node_count, pod_count, policy_count) = (
        size("WEFT_BENCH_NODES", at_size(1000, 5)),
        size("WEFT_BENCH_PODS", at_size(10_000, 200)),
        size("WEFT_BENCH_POLICIES", at_size(1000, 20)),
    );
    let cluster = LocalCluster::start(ClusterOptions::default())
        .await
        .expect("local control plane");
    let client = cluster.client().await.unwrap();
    weft_e2e::install_crds(&client, weft_api::crds(), "weft-agent-bench")
        .await
        .unwrap();
    let mut nodes = NodeCluster::new(&cluster, &[1], "VXLANCrossSubnet", "Enabled").await;
    let started = Instant::now();
    create_nodes(&client, nodes.id, node_count).await;
    create_pods(&client, pod_count, &nodes.nodes[0].name).await;
    create_policies(&client, policy_count).await;
    println!(
        "API filled in {:.0?}: {node_count} nodes with a block each, {pod_count} pods ({} on the measured node), {policy_count} policies",
        started.elapsed(),
        pod_count.div_ceil(100)
    );
    let started = Instant::now();
    nodes.start_agents().await;
    let pid = nodes.nodes[0].agent.as_ref().unwrap().id();
    println!(
        "agent ready (every watch listed, first full sync programmed) in {:.2?}",
        started.elapsed()
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    println!("agent memory after the first sync: {}", memory(pid));
    let routes = nodes.nodes[0].weft_routes().lines().count();
    println!("weft routes on the node: {routes}");
    let port = nodes.nodes[0].health_port;
    let before = apply_seconds(port, "policy");
    let policy_p99 = report(
        "policy change (local pod relabelled) → the change in the node's ruleset",
        &mut policy_changes(&client, &nodes.nodes[0], at_size(60, 4)).await,
    );
    let after = apply_seconds(port, "policy");
    println!(
        "  of which compile + diff + nft apply on the node (the agent's histogram): mean {:.1} ms over {} syncs",
        (after.0 - before.0) * 1e3 / (after.1 - before.1).max(1.0),
        after.1 - before.1
    );
    let add_p99 = report(
        "pod ADD → programmed (guard set holds its interface and address)",
        &mut adds_programmed(&mut nodes, &client, at_size(100, 3)).await,
    );
    // The fake nodes' blocks fill the upper half of the test pool (512 blocks): a node added
    // beyond it would get a block outside the pool, which no agent routes.
    let nodes_to_add = at_size(40, 3);
    if node_count + nodes_to_add <= 512 {
        report(
            "node added → its route on the measured node",
            &mut nodes_added(&nodes, node_count + 1, nodes_to_add).await,
        );
    } else {
        println!("node added: skipped ({node_count} fake nodes leave no block of the pool free)");
    }
    println!("agent memory at the end: {}", memory(pid));
    add_del_comparison(&nodes, at_size(100, 3));
    if benchmarking {
        println!("goals ({pod_count} pods, {policy_count} policies, {node_count} nodes):");
        goal(
            "policy change → the node's ruleset, p99 < 100 ms",
            policy_p99,
            100.0,
        );
        goal("pod ADD → programmed, p99 < 100 ms", add_p99, 100.0);
    }
}

/// Prints whether a measured figure (ms) meets its goal (strictly below `limit`).
fn goal(what: &str, figure: f64, limit: f64) {
    let verdict = if figure < limit { "PASS" } else { "FAIL" };
    println!("  {verdict} {what}: {figure:.1} ms");
}
