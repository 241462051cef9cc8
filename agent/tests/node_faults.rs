//! Fault isolation on a cluster of real node namespaces: objects another party can write (a
//! Node's address annotation, an IPAMBlock) cost only themselves. Bad peers and untrusted
//! blocks are refused by name (log, Event, metric) while every other route, NAT and all policy
//! are still programmed; a node's own state is repaired from the kernel and from the live Node.

mod common;

use std::time::Duration;

use common::policy::nodes_in_two_subnets_resyncing_every;
use common::*;

/// The tests of this file judge what an agent writes: one at a time, so that no other test's
/// nodes change what they see.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::api::networking::v1::NetworkPolicy as KubeNetworkPolicy;
use kube::Api;
use kube::api::{DeleteParams, ListParams, PostParams};
use serde_json::json;
use weft_api::IpamBlock;

/// Creates a Node object `name` announcing `address` and a VTEP MAC (no namespace behind it).
async fn create_node(nodes: &NodeCluster, name: &str, address: &str) {
    let node: Node = serde_json::from_value(json!({
        "metadata": {"name": name, "annotations": {
            "network.weft.dev/ipv4-address": address,
            "network.weft.dev/vxlan-mac": "02:00:00:00:00:99",
        }},
    }))
    .unwrap();
    Api::<Node>::all(nodes.client.clone())
        .create(&PostParams::default(), &node)
        .await
        .unwrap_or_else(|error| panic!("create Node {name}: {error}"));
}

/// Creates the IPAMBlock `cidr` of the test pool for `node`, as any node's agent could.
async fn create_block(nodes: &NodeCluster, cidr: &str, node: &str) -> String {
    let block = IpamBlock::for_cidr(cidr.parse().unwrap(), &format!("wt-{}", nodes.id), node);
    let name = block.metadata.name.clone().unwrap();
    Api::<IpamBlock>::all(nodes.client.clone())
        .create(&PostParams::default(), &block)
        .await
        .unwrap_or_else(|error| panic!("create IPAMBlock {cidr}: {error}"));
    name
}

async fn delete_nodes(nodes: &NodeCluster, names: &[&str]) {
    for name in names {
        let _ = Api::<Node>::all(nodes.client.clone())
            .delete(name, &DeleteParams::default())
            .await;
    }
}

fn open(nodes: &NodeCluster, from: usize, to: usize) -> bool {
    tcp_probe(&nodes.pods[from].netns, nodes.pods[to].ip, 80).is_some()
}

/// The third octet of the test pool's /16, for blocks of our own making.
fn pool_prefix(nodes: &NodeCluster) -> String {
    nodes.pool_cidr.trim_end_matches(".0.0/16").to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn one_bad_peer_costs_only_its_own_routes_and_policy_keeps_being_enforced() {
    let _serial = SERIAL.lock().await;
    let mut nodes = NodeCluster::new(
        shared_cluster().await,
        &[1, 2, 1],
        "VXLANCrossSubnet",
        "Enabled",
    )
    .await;
    nodes.start_agents().await;
    for index in 0..3 {
        let pod = nodes.add_pod(index, &format!("p{index}"), &[]).await;
        serve_tcp(&pod.netns, 80);
    }
    for (from, to) in [(0, 1), (1, 2), (2, 0)] {
        assert!(
            tcp_probe_eventually(&nodes.pods[from].netns, nodes.pods[to].ip, 80, 50).is_some(),
            "p{from} → p{to} must work before any bad object exists"
        );
    }

    // The reproduction: a Node whose address the kernel refuses as a gateway, with a block.
    let id = nodes.id;
    let prefix = pool_prefix(&nodes);
    let multicast = format!("wt-{id}-multicast");
    create_node(&nodes, &multicast, "224.0.0.1/24").await;
    let bad_block = create_block(&nodes, &format!("{prefix}.250.0/26"), &multicast).await;
    // Garbage, another node's address, and an address only node 0 holds (on a dummy
    // interface): the kernel of node 0 refuses it as a next hop, the others route by it.
    let garbage = format!("wt-{id}-garbage");
    create_node(&nodes, &garbage, "no-address").await;
    let copycat = format!("wt-{id}-copycat");
    create_node(&nodes, &copycat, &format!("{}/24", nodes.nodes[0].address)).await;
    let copycat_block = create_block(&nodes, &format!("{prefix}.251.0/26"), &copycat).await;
    let underlay = nodes.underlay();
    // In the other subnet, so node 0 reaches it through VXLAN: an on-link next hop must not
    // be a local address.
    let local_only = format!("10.{underlay}.2.99");
    sh(&[
        "ip",
        "-n",
        &nodes.nodes[0].netns,
        "link",
        "add",
        "d0",
        "type",
        "bridge",
    ]);
    sh(&[
        "ip",
        "-n",
        &nodes.nodes[0].netns,
        "addr",
        "add",
        &format!("{local_only}/32"),
        "dev",
        "d0",
    ]);
    let refused_here = format!("wt-{id}-local");
    create_node(&nodes, &refused_here, &format!("{local_only}/24")).await;
    let refused_block = create_block(&nodes, &format!("{prefix}.252.0/26"), &refused_here).await;
    // Blocks no node may route by: outside the pool, and naming a Node that does not exist.
    let outside_pool = create_block(&nodes, "0.0.0.0/1", &format!("wt-{id}-n1")).await;
    let orphan = create_block(&nodes, &format!("{prefix}.253.0/26"), "no-such-node").await;

    // A default-deny policy added afterwards is enforced on every node within 2 s.
    let policy: KubeNetworkPolicy = serde_json::from_value(json!({
        "metadata": {"name": "deny-ingress"},
        "spec": {"podSelector": {}, "policyTypes": ["Ingress"]},
    }))
    .unwrap();
    Api::<KubeNetworkPolicy>::namespaced(nodes.client.clone(), &nodes.namespace)
        .create(&PostParams::default(), &policy)
        .await
        .expect("create the deny policy");
    let took = nodes
        .until(
            "default-deny enforced on every node",
            Duration::from_secs(2),
            || {
                [(0, 1), (1, 2), (2, 0)]
                    .iter()
                    .all(|(from, to)| !open(&nodes, *from, *to))
            },
        )
        .await;
    println!("default-deny enforced everywhere after {took:?}");

    // A node added now is routed by every node.
    let added = nodes.add_node(2).await;
    nodes.start_agent(added);
    nodes.wait_ready(added).await;
    let added_block = nodes.nodes[added].first_block();
    let routed = |index: usize| nodes.nodes[index].weft_routes().contains(&added_block);
    for _ in 0..100 {
        if (0..3).all(routed) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for index in 0..3 {
        assert!(
            routed(index),
            "node {index} does not route the new node's block {added_block}:\n{}\n{}",
            nodes.nodes[index].weft_routes(),
            nodes.agent_log(index)
        );
    }

    // Only the bad peers' blocks are unreachable; the copycat and the node-0-only address
    // are routed where the kernel accepts them.
    let cidr_of = |name: &str| name.rsplitn(2, '-').collect::<Vec<_>>()[1].replace('-', ".");
    for index in 0..4 {
        let routes = nodes.nodes[index].weft_routes();
        for (block, why) in [
            (&bad_block, "a multicast next hop"),
            (&outside_pool, "a block outside every pool"),
            (&orphan, "a block of a Node that does not exist"),
            (
                &copycat_block,
                "a block of a Node announcing a taken address",
            ),
        ] {
            assert!(
                !routes.contains(&format!("{}/", cidr_of(block))),
                "node {index} routes {block} ({why}):\n{routes}"
            );
        }
        assert!(!routes.contains("0.0.0.0/1"), "node {index}:\n{routes}");
        for peer in 0..4 {
            if peer != index {
                let block = nodes.nodes[peer].first_block();
                assert!(
                    routes.contains(&block),
                    "node {index} lost {block}:\n{routes}"
                );
            }
        }
        let local_route = routes.contains(&format!("{}/", cidr_of(&refused_block)));
        assert_eq!(local_route, index != 0, "node {index}:\n{routes}");
        assert_eq!(
            http_status(nodes.nodes[index].health_port, "/readyz"),
            Some(200),
            "bad peers must not make node {index} unready"
        );
    }

    // Named in a metric, a log line (not one per retry) and an Event on the Node.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let metrics = http_body(nodes.nodes[0].health_port, "/metrics");
    assert!(
        metrics.contains("weft_agent_refused{kind=\"Node\"} 3"),
        "{metrics}"
    );
    assert!(
        metrics.contains("weft_agent_refused{kind=\"IPAMBlock\"} 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains("weft_agent_refused{kind=\"peer\"} 1"),
        "{metrics}"
    );
    let log = nodes.agent_log(0);
    let mentions = log
        .lines()
        .filter(|line| line.contains(&refused_here))
        .count();
    assert!(
        (1..=2).contains(&mentions),
        "the refused peer is logged once, then backs off ({mentions} lines):\n{log}"
    );
    let events = Api::<Event>::namespaced(nodes.client.clone(), "default")
        .list(&ListParams::default())
        .await
        .expect("list Events");
    for (name, reason) in [
        (&multicast, "WeftNodeRefused"),
        (&refused_here, "WeftPeerUnreachable"),
        (&orphan, "WeftBlockRefused"),
    ] {
        assert!(
            events.items.iter().any(|event| {
                event.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name.as_str())
                    && event.reason.as_deref() == Some(reason)
            }),
            "no {reason} Event about {name}"
        );
    }

    delete_nodes(&nodes, &[&multicast, &garbage, &copycat, &refused_here]).await;
    for block in [
        &bad_block,
        &copycat_block,
        &refused_block,
        &outside_pool,
        &orphan,
    ] {
        let _ = Api::<IpamBlock>::all(nodes.client.clone())
            .delete(block, &DeleteParams::default())
            .await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_converged_node_writes_nothing_and_repairs_what_others_changed() {
    let _serial = SERIAL.lock().await;
    let mut nodes = nodes_in_two_subnets_resyncing_every(Some(Duration::from_secs(1))).await;
    let server = nodes.add_pod(1, "server", &[]).await;
    serve_tcp(&server.netns, 80);
    nodes.add_pod(0, "client", &[]).await;
    let client = nodes.pods[1].netns.clone();
    assert!(
        tcp_probe_eventually(&client, server.ip, 80, 50).is_some(),
        "cross-subnet traffic before any change"
    );

    // Converged: several full resyncs write nothing.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = nodes.agent_log(0).matches("dataplane updated").count();
    tokio::time::sleep(Duration::from_secs(4)).await;
    let log = nodes.agent_log(0);
    assert_eq!(
        log.matches("dataplane updated").count(),
        before,
        "a converged node rewrote its dataplane on resync:\n{log}"
    );

    // The NAT table deleted by hand is back within the resync period.
    let netns = nodes.nodes[0].netns.clone();
    sh(&[
        "ip", "netns", "exec", &netns, "nft", "delete", "table", "inet", "weft_nat",
    ]);
    nodes
        .until("weft_nat re-created", Duration::from_secs(5), || {
            sh(&["ip", "netns", "exec", &netns, "nft", "list", "tables"]).contains("weft_nat")
        })
        .await;

    // The node's address changes: the VXLAN device is re-created on the new address and
    // cross-subnet traffic works again without a restart of the agent.
    let underlay = nodes.underlay();
    let old = format!("{}/24", nodes.nodes[0].address);
    let new = format!("10.{underlay}.1.77/24");
    // Deleting the primary address first: a secondary would go with it.
    sh(&["ip", "-n", &netns, "addr", "del", &old, "dev", "eth0"]);
    sh(&["ip", "-n", &netns, "addr", "add", &new, "dev", "eth0"]);
    sh(&[
        "ip",
        "-n",
        &netns,
        "route",
        "replace",
        "default",
        "via",
        &format!("10.{underlay}.1.1"),
    ]);
    nodes
        .until(
            "weft.vxlan on the new address",
            Duration::from_secs(10),
            || {
                try_sh(&["ip", "-d", "-n", &netns, "link", "show", "weft.vxlan"])
                    .is_some_and(|link| link.contains(&format!("local 10.{underlay}.1.77")))
            },
        )
        .await;
    assert!(
        tcp_probe_eventually(&client, server.ip, 80, 50).is_some(),
        "cross-subnet traffic after the node's address changed:\n{}",
        nodes.agent_log(0)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_recreated_node_gets_its_annotations_and_condition_back() {
    let _serial = SERIAL.lock().await;
    let mut nodes = NodeCluster::new(shared_cluster().await, &[1], "VXLAN", "Enabled").await;
    nodes.start_agents().await;
    let name = nodes.nodes[0].name.clone();
    let api = Api::<Node>::all(nodes.client.clone());
    let published = |node: &Node| {
        let address = node
            .metadata
            .annotations
            .as_ref()
            .and_then(|annotations| annotations.get("network.weft.dev/ipv4-address").cloned());
        let available = node
            .status
            .as_ref()
            .and_then(|status| status.conditions.as_ref())
            .and_then(|conditions| {
                conditions
                    .iter()
                    .find(|condition| condition.type_ == "NetworkUnavailable")
            })
            .map(|condition| condition.status == "False");
        (address, available)
    };
    let expected = (Some(format!("{}/24", nodes.nodes[0].address)), Some(true));
    let mut node = api.get(&name).await.unwrap();
    for _ in 0..100 {
        if published(&node) == expected {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        node = api.get(&name).await.unwrap();
    }
    assert_eq!(published(&node), expected);

    api.delete(&name, &DeleteParams::default()).await.unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        http_status(nodes.nodes[0].health_port, "/readyz"),
        Some(200),
        "the node keeps serving while its Node object is missing"
    );
    let again: Node = serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"weft-test": format!("t{}", nodes.id)}},
    }))
    .unwrap();
    api.create(&PostParams::default(), &again).await.unwrap();
    let mut back = false;
    for _ in 0..150 {
        node = api.get(&name).await.unwrap();
        if published(&node) == expected {
            back = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        back,
        "re-created Node still lacks {expected:?}: {:?}\n{}",
        published(&node),
        nodes.agent_log(0)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_node_that_cannot_route_is_unready_but_enforces_policy_and_keeps_its_condition() {
    let _serial = SERIAL.lock().await;
    let mut nodes = NodeCluster::new(shared_cluster().await, &[1, 1], "VXLAN", "Enabled").await;
    nodes.start_agent(0);
    nodes.wait_ready(0).await;
    // Node 1 has lost its address: it cannot tell peers where it is.
    let netns = nodes.nodes[1].netns.clone();
    let address = format!("{}/24", nodes.nodes[1].address);
    sh(&["ip", "-n", &netns, "addr", "del", &address, "dev", "eth0"]);
    nodes.start_agent(1);
    let port = nodes.nodes[1].health_port;
    nodes
        .until(
            "policy programmed on the unready node",
            Duration::from_secs(15),
            || {
                sh(&["ip", "netns", "exec", &netns, "nft", "list", "tables"])
                    .contains("weft_policy")
            },
        )
        .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(http_status(port, "/readyz"), Some(503));
    assert!(http_body(port, "/readyz").contains("address"));
    assert_eq!(
        http_status(port, "/healthz"),
        Some(200),
        "the loop is alive"
    );
    let node = Api::<Node>::all(nodes.client.clone())
        .get(&nodes.nodes[1].name)
        .await
        .unwrap();
    let condition = node
        .status
        .and_then(|status| status.conditions)
        .unwrap_or_default()
        .into_iter()
        .find(|condition| condition.type_ == "NetworkUnavailable");
    assert!(
        condition.is_none(),
        "an unready node claims a network: {condition:?}"
    );

    sh(&["ip", "-n", &netns, "addr", "add", &address, "dev", "eth0"]);
    nodes.wait_ready(1).await;
}
