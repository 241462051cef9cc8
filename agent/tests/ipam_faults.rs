//! Node IPAM when the cluster misbehaves, on the real API server: the agent loses the right to
//! list pods (its pod watch fails) and no pod's address is freed meanwhile; the block watch
//! lags a release and the released block stays out of the node state file; the API server
//! stops answering and a block claim fails within the step's timeout instead of hanging.
//!
//! The API server is reached through [`ApiProxy`], a TCP relay the test can cut or stall, to
//! make real connections fail the way a restarting API server or a dead load balancer makes
//! them fail.

mod common;
mod ipam_support;

use std::net::IpAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use futures::StreamExt;
use ipam_support::{AgentIdentity, ApiProxy, api_server};
use ipnet::{IpNet, Ipv4Net};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client, ResourceExt};
use serde_json::json;
use weft_agent::ipam::{IpamError, IpamSettings, NodeIpam};
use weft_agent::metrics::Metrics;
use weft_agent::view::{self, Kind};
use weft_agent::watch::Shared;
use weft_api::{Installation, IpPool, IpamBlock};
use weft_cni::env::Attachment;
use weft_cni::ipam::store::{LockedStore, Record};
use weft_cni::node_state::NodeState;

/// Runs `weft-ipam` alone (no interface) for the node: an allocation no pod and no interface
/// stands for.
fn allocate_without_interface(node: &TestNode, container_id: &str) -> String {
    let mut process = Command::new(node.bin_dir().join("weft-ipam"));
    process
        .env_clear()
        .env("CNI_COMMAND", "ADD")
        .env("CNI_CONTAINERID", container_id)
        .env("CNI_IFNAME", "eth0")
        .env("CNI_NETNS", "/proc/self/ns/net")
        .env("CNI_PATH", node.bin_dir())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = process.spawn().expect("run weft-ipam");
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(plugin_config(node).to_string().as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(output.status.success(), "weft-ipam ADD: {stdout}");
    stdout
}

/// Attaches a pod to node 0 and creates its Pod object with the address, without waiting for
/// the agent (which may not see it); returns the container id.
async fn attach_pod(nodes: &NodeCluster, name: &str) -> String {
    let node = &nodes.nodes[0];
    let netns = format!("{}-{name}", node.netns);
    sh(&["ip", "netns", "add", &netns]);
    let container_id = format!("{}-{name}", nodes.namespace);
    let result = cni(node, "ADD", &container_id, &netns).expect("ADD");
    let ip = result["ips"][0]["address"]
        .as_str()
        .and_then(|text| text.split('/').next())
        .expect("an address")
        .to_owned();
    let pods: Api<Pod> = Api::namespaced(nodes.client.clone(), &nodes.namespace);
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {"nodeName": node.name, "containers": [{"name": "c", "image": "none:0"}]},
    }))
    .unwrap();
    pods.create(&PostParams::default(), &pod).await.unwrap();
    let status = json!({"status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}]}});
    pods.patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
        .await
        .unwrap();
    container_id
}

fn store_holds(node: &TestNode, needle: &str) -> bool {
    std::fs::read_dir(node.state_dir().join("ipam").join("weft"))
        .unwrap()
        .filter_map(|entry| entry.ok())
        .any(|entry| entry.file_name().to_string_lossy().contains(needle))
}

#[tokio::test(flavor = "multi_thread")]
async fn address_gc_waits_while_the_agent_may_not_list_pods() {
    let cluster = shared_cluster().await;
    let mut nodes = NodeCluster::new(cluster, &[1], "VXLAN", "Enabled").await;
    nodes
        .extra_args
        .push(("WEFT_ADDRESS_RELEASE_SECONDS".into(), "1".into()));
    let identity = AgentIdentity::grant(&nodes).await;
    let proxy = ApiProxy::start(api_server(cluster.kubeconfig())).await;
    let groups: Vec<&str> = identity.groups.iter().map(String::as_str).collect();
    let kubeconfig = proxy.kubeconfig(cluster.kubeconfig(), Some((&identity.user, &groups)));
    let path = nodes.nodes[0].dir.join("agent.kubeconfig");
    std::fs::create_dir_all(&nodes.nodes[0].dir).unwrap();
    std::fs::write(&path, serde_json::to_vec(&kubeconfig).unwrap()).unwrap();
    nodes.kubeconfig = path;
    nodes.start_agents().await;
    let seen = nodes.add_pod(0, "seen", &[]).await;

    identity.revoke_pods().await;
    while identity.may_list_pods(cluster.kubeconfig()).await {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Every connection drops, as when an API server restarts: the pod watch must start over,
    // and is refused.
    let log_before = nodes.agent_log(0).len();
    proxy.cut();
    nodes
        .until(
            "the agent's pod watch fails",
            Duration::from_secs(30),
            || {
                nodes.agent_log(0)[log_before..]
                    .lines()
                    .any(|line| line.contains("watch failed") && line.contains("Pod"))
            },
        )
        .await;
    // A pod started now is unknown to the agent; so is an allocation without an interface.
    let unseen = attach_pod(&nodes, "unseen").await;
    let bare = format!("{}-bare", nodes.namespace);
    allocate_without_interface(&nodes.nodes[0], &bare);
    tokio::time::sleep(Duration::from_secs(5)).await;
    let node = &nodes.nodes[0];
    assert!(
        store_holds(node, &unseen),
        "the address of a pod the agent could not see was freed after the grace period"
    );
    assert!(
        store_holds(node, &bare),
        "an address was freed while the pod view was stale"
    );
    assert!(store_holds(node, &seen.container_id));

    // With its rights back the watch resumes, and GC with it: only the bare allocation goes.
    identity.grant_pods().await;
    nodes
        .until(
            "the bare allocation is freed once the pod view is current",
            Duration::from_secs(60),
            || !store_holds(node, &bare),
        )
        .await;
    assert!(store_holds(node, &unseen));
    assert!(store_holds(node, &seen.container_id));
}

/// A view of the cluster for an in-process [`NodeIpam`]: everything but the blocks read once
/// from the API server, every kind marked listed.
async fn view_from_api(client: &Client) -> Arc<Shared> {
    let shared = Arc::new(Shared::default());
    let installations = Api::<Installation>::all(client.clone())
        .list(&ListParams::default())
        .await
        .unwrap()
        .items;
    let nodes = Api::<Node>::all(client.clone())
        .list(&ListParams::default())
        .await
        .unwrap()
        .items;
    let pools = Api::<IpPool>::all(client.clone())
        .list(&ListParams::default())
        .await
        .unwrap()
        .items;
    let mut view = shared.view();
    for installation in &installations {
        if let Some(value) = view::installation_view(installation) {
            view.installation.insert(installation.name_any(), value);
        }
    }
    for node in &nodes {
        if let Some(value) = view::node_view(node) {
            view.nodes.insert(node.name_any(), value);
        }
    }
    for pool in &pools {
        if let Some(value) = view::pool_view(pool) {
            view.pools.insert(pool.name_any(), value);
        }
    }
    view.synced.extend(Kind::ALL);
    drop(view);
    shared
}

/// Feeds the view's blocks from a watch of the API server: the initial list at once, every
/// later change `lag` after it happened.
fn lagging_block_watch(client: &Client, shared: Arc<Shared>, lag: Duration) {
    let api: Api<IpamBlock> = Api::all(client.clone());
    tokio::spawn(async move {
        let mut stream = std::pin::pin!(watcher::watcher(api, watcher::Config::default()));
        while let Some(event) = stream.next().await {
            let (block, delay, deleted) = match event {
                Ok(Event::InitApply(block)) => (block, Duration::ZERO, false),
                Ok(Event::Apply(block)) => (block, lag, false),
                Ok(Event::Delete(block)) => (block, lag, true),
                _ => continue,
            };
            let name = block.name_any();
            let value = view::block_view(&block);
            let shared = shared.clone();
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                let mut view = shared.view();
                match value {
                    Some(value) if !deleted => view.blocks.insert(name, value),
                    _ => view.blocks.remove(&name),
                };
            });
        }
    });
}

fn ipam_settings(nodes: &NodeCluster, dir: &Path, block_grace: Duration) -> IpamSettings {
    IpamSettings {
        node: nodes.nodes[0].name.clone(),
        node_state_file: dir.join("node-state.json"),
        data_dir: dir.join("ipam"),
        network: "weft".into(),
        block_grace,
        address_grace: Duration::from_secs(3600),
    }
}

fn state_blocks(path: &Path) -> Vec<IpNet> {
    NodeState::read(path).expect("node state").blocks
}

#[tokio::test(flavor = "multi_thread")]
async fn a_released_block_stays_out_of_the_node_state_while_the_block_watch_lags() {
    const LAG: Duration = Duration::from_secs(3);
    // Shorter than the lag: a block the lagging view shows again would wait out a new grace
    // period in the file.
    const GRACE: Duration = Duration::from_secs(1);
    let cluster = shared_cluster().await;
    let nodes = NodeCluster::new(cluster, &[1], "VXLAN", "Enabled").await;
    let client = nodes.client.clone();
    let node = nodes.nodes[0].name.clone();
    let pool = format!("wt-{}", nodes.id);
    // Two empty blocks held by the node: one of them is released after the grace period.
    for _ in 0..2 {
        weft_cni::claim::claim_block(&client, &pool, &node)
            .await
            .expect("claim");
    }
    let shared = view_from_api(&client).await;
    lagging_block_watch(&client, shared.clone(), LAG);
    let ours = |shared: &Shared| -> Vec<Ipv4Net> {
        let view = shared.view();
        view.blocks
            .values()
            .filter(|block| block.node == node)
            .map(|block| block.cidr)
            .collect()
    };
    let started = Instant::now();
    while ours(&shared).len() < 2 {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "no initial list"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let dir = tempfile::tempdir().unwrap();
    let settings = ipam_settings(&nodes, dir.path(), GRACE);
    let state_file = settings.node_state_file.clone();
    let mut ipam = NodeIpam::new(settings, client.clone(), Metrics::new());
    ipam.step(&shared, Some(1450)).await.expect("step");
    assert_eq!(state_blocks(&state_file).len(), 2);
    tokio::time::sleep(GRACE + Duration::from_millis(100)).await;
    ipam.step(&shared, Some(1450)).await.expect("step");
    let left = state_blocks(&state_file);
    assert_eq!(left.len(), 1, "one block is released: {left:?}");
    let released = ours(&shared)
        .into_iter()
        .find(|block| IpNet::V4(*block) != left[0])
        .expect("the view still shows the released block");
    assert!(
        weft_cni::claim::node_blocks(&client, &node)
            .await
            .unwrap()
            .iter()
            .all(|block| *block != IpNet::V4(released)),
        "{released} is still an IPAMBlock"
    );
    // While the view still shows the released block as this node's, steps must not bring it
    // back into the file the plugin allocates from.
    let mut steps = 0;
    while ours(&shared).contains(&released) {
        ipam.step(&shared, Some(1450)).await.expect("step");
        steps += 1;
        let blocks = state_blocks(&state_file);
        assert!(
            !blocks.contains(&IpNet::V4(released)),
            "step {steps}: the released block {released} is back in the node state {blocks:?}"
        );
        assert!(ipam.addresses_outside_blocks().is_empty());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(steps > 10, "the view did not lag ({steps} steps)");
    ipam.step(&shared, Some(1450)).await.expect("step");
    assert_eq!(state_blocks(&state_file), left);

    // An allocation in a block the node does not hold is named by the next step.
    let stray = IpAddr::V4(std::net::Ipv4Addr::from(u32::from(released.network()) + 5));
    LockedStore::open(&dir.path().join("ipam"), "weft")
        .unwrap()
        .insert(&Record {
            ip: stray,
            owner: Attachment {
                container_id: "stray".into(),
                ifname: "eth0".into(),
            },
        })
        .unwrap();
    ipam.step(&shared, Some(1450)).await.expect("step");
    assert!(
        ipam.addresses_outside_blocks().contains(&stray),
        "{:?}",
        ipam.addresses_outside_blocks()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_block_claim_gives_up_when_the_api_server_does_not_answer() {
    const TIMEOUT: Duration = Duration::from_secs(2);
    let cluster = shared_cluster().await;
    let nodes = NodeCluster::new(cluster, &[1], "VXLAN", "Enabled").await;
    let shared = view_from_api(&nodes.client).await;
    let proxy = ApiProxy::start(api_server(cluster.kubeconfig())).await;
    let client = proxy.client(cluster.kubeconfig()).await;
    let dir = tempfile::tempdir().unwrap();
    let settings = ipam_settings(&nodes, dir.path(), Duration::from_secs(300));
    let state_file = settings.node_state_file.clone();
    let mut ipam = NodeIpam::new(settings, client, Metrics::new()).with_api_timeout(TIMEOUT);
    proxy.stall();
    let started = Instant::now();
    let outcome = tokio::time::timeout(Duration::from_secs(30), ipam.step(&shared, None)).await;
    let elapsed = started.elapsed();
    let error = outcome
        .expect("the IPAM step hung on an API server that does not answer")
        .expect_err("no block can be claimed");
    assert!(matches!(error, IpamError::Timeout { .. }), "{error}");
    let text = error.to_string();
    assert!(
        text.contains(&format!("claiming a block of IPPool \"wt-{}\"", nodes.id))
            && text.contains("no answer from the API server"),
        "{text}"
    );
    assert!(elapsed < TIMEOUT + Duration::from_secs(2), "{elapsed:?}");
    // Answered again: the next step claims.
    proxy.relay();
    proxy.cut();
    ipam.step(&shared, None).await.expect("step");
    assert_eq!(state_blocks(&state_file).len(), 1);
}
