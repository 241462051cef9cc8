//! The agent on a cluster of network namespaces: pods on one node, on another node of the same
//! subnet and on a node of another subnet reach each other for each encapsulation; the node
//! reaches its pods; natOutgoing masquerades exactly when enabled; the node publishes its
//! address, VTEP MAC and MTU, is marked NetworkUnavailable=False, and the MTU reaches the pods.

mod common;

use std::time::Duration;

use common::*;
use k8s_openapi::api::core::v1::Node;
use kube::Api;

/// Three nodes (two on subnet 1, one on subnet 2), agents ready, four pods:
/// a and b on node 0, c on node 1 (same subnet), d on node 2 (other subnet).
async fn four_pods(encapsulation: &str, nat: &str) -> NodeCluster {
    let mut nodes = NodeCluster::new(shared_cluster().await, &[1, 1, 2], encapsulation, nat).await;
    nodes.start_agents().await;
    for (node, name) in [(0, "a"), (0, "b"), (1, "c"), (2, "d")] {
        let pod = nodes.add_pod(node, name, &[("app", name)]).await;
        serve_tcp(&pod.netns, 8080);
    }
    nodes
}

fn reach(nodes: &NodeCluster, from: usize, to: usize) -> Option<String> {
    let (source, target) = (&nodes.pods[from], &nodes.pods[to]);
    tcp_probe_eventually(&source.netns, target.ip, 8080, 25)
}

#[tokio::test(flavor = "multi_thread")]
async fn vxlan_cross_subnet_routes_directly_in_the_subnet_and_encapsulates_across() {
    let nodes = four_pods("VXLANCrossSubnet", "Enabled").await;
    let a = &nodes.pods[0];
    assert_eq!(
        reach(&nodes, 0, 1).as_deref(),
        Some(a.ip.to_string().as_str()),
        "same node"
    );
    assert_eq!(
        reach(&nodes, 0, 2).as_deref(),
        Some(a.ip.to_string().as_str()),
        "same subnet"
    );
    assert_eq!(
        reach(&nodes, 0, 3).as_deref(),
        Some(a.ip.to_string().as_str()),
        "other subnet"
    );
    assert_eq!(
        reach(&nodes, 3, 0).as_deref(),
        Some(nodes.pods[3].ip.to_string().as_str())
    );
    let routes = nodes.nodes[0].weft_routes();
    let c_block = nodes.nodes[1].first_block();
    let d_block = nodes.nodes[2].first_block();
    let line = |block: &str| {
        routes
            .lines()
            .find(|line| line.starts_with(block))
            .unwrap_or_else(|| panic!("no route to {block} in:\n{routes}"))
            .to_owned()
    };
    assert!(line(&c_block).contains("dev eth0"), "{}", line(&c_block));
    assert!(line(&d_block).contains("dev weft.vxlan") && line(&d_block).contains("onlink"));
    let own = nodes.nodes[0].first_block();
    assert!(routes.contains(&format!("blackhole {own}")), "{routes}");
    // The node reaches a pod behind VXLAN through strict reverse-path filters: it sends from the
    // tunnel address (an address of its own block), and the reply comes back through the tunnel.
    let d = &nodes.pods[3];
    let seen = tcp_probe_eventually(&nodes.nodes[0].netns, d.ip, 8080, 25)
        .expect("node 0 reaches a pod on a node of the other subnet");
    let own_block: ipnet::Ipv4Net = own.parse().unwrap();
    assert!(
        own_block.contains(&seen.parse::<std::net::Ipv4Addr>().unwrap()),
        "node 0 sent from {seen}, not from its tunnel address in {own}"
    );
    // The node reaches its own pods (kubelet probes).
    let node_seen = tcp_probe_eventually(&nodes.nodes[0].netns, a.ip, 8080, 5);
    assert_eq!(node_seen, Some(nodes.nodes[0].address.to_string()));
    // Checksum offload is off on the VXLAN device.
    let features = sh(&[
        "ip",
        "netns",
        "exec",
        &nodes.nodes[0].netns,
        "ethtool",
        "-k",
        "weft.vxlan",
    ]);
    assert!(features.contains("tx-checksumming: off"), "{features}");
}

#[tokio::test(flavor = "multi_thread")]
async fn vxlan_encapsulates_every_peer() {
    let nodes = four_pods("VXLAN", "Enabled").await;
    for (from, to) in [(0, 1), (0, 2), (0, 3), (2, 3)] {
        assert_eq!(
            reach(&nodes, from, to).as_deref(),
            Some(nodes.pods[from].ip.to_string().as_str()),
            "{} -> {}",
            nodes.pods[from].name,
            nodes.pods[to].name
        );
    }
    let routes = nodes.nodes[0].weft_routes();
    let c_block = nodes.nodes[1].first_block();
    assert!(
        routes
            .lines()
            .any(|l| l.starts_with(&c_block) && l.contains("weft.vxlan")),
        "{routes}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn no_encapsulation_routes_the_subnet_directly_and_cannot_cross_subnets() {
    let nodes = four_pods("None", "Enabled").await;
    assert!(reach(&nodes, 0, 1).is_some(), "same node");
    assert!(reach(&nodes, 0, 2).is_some(), "same subnet, direct");
    let routes = nodes.nodes[0].weft_routes();
    let d_block = nodes.nodes[2].first_block();
    assert!(
        !routes.contains(&d_block),
        "no route may point across subnets without encapsulation:\n{routes}"
    );
    let c_block = nodes.nodes[1].first_block();
    assert!(
        routes
            .lines()
            .any(|l| l.starts_with(&c_block) && l.contains("dev eth0")),
        "{routes}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn nat_outgoing_masquerades_to_outside_only_when_enabled() {
    for (nat, masquerades) in [("Enabled", true), ("Disabled", false)] {
        let nodes = four_pods("VXLANCrossSubnet", nat).await;
        let outside = nodes.outside_address();
        let seen = udp_sink(&nodes.outside, 9999);
        for pod in [0, 3] {
            udp_send(&nodes.pods[pod].netns, outside, 9999);
        }
        nodes
            .until(
                "both datagrams seen outside",
                Duration::from_secs(5),
                || seen.lock().unwrap().len() >= 2,
            )
            .await;
        let mut sources = seen.lock().unwrap().clone();
        sources.sort();
        let mut expected: Vec<String> = if masquerades {
            vec![
                nodes.nodes[0].address.to_string(),
                nodes.nodes[2].address.to_string(),
            ]
        } else {
            vec![nodes.pods[0].ip.to_string(), nodes.pods[3].ip.to_string()]
        };
        expected.sort();
        assert_eq!(sources, expected, "natOutgoing {nat}");
        // Pod-to-pod traffic is never translated, whatever the pool says.
        assert_eq!(
            reach(&nodes, 0, 3),
            Some(nodes.pods[0].ip.to_string()),
            "natOutgoing {nat}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn node_publishes_address_mtu_and_network_available() {
    let nodes = four_pods("VXLANCrossSubnet", "Enabled").await;
    let api: Api<Node> = Api::all(nodes.client.clone());
    let node = api.get(&nodes.nodes[0].name).await.unwrap();
    let annotations = node.metadata.annotations.unwrap_or_default();
    assert_eq!(
        annotations
            .get("network.weft.dev/ipv4-address")
            .map(String::as_str),
        Some(format!("{}/24", nodes.nodes[0].address).as_str())
    );
    assert_eq!(
        annotations.get("network.weft.dev/mtu").map(String::as_str),
        Some("1450")
    );
    assert!(annotations.contains_key("network.weft.dev/vxlan-mac"));
    // The condition is written right after the first sync; poll for it.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let node = api.get(&nodes.nodes[0].name).await.unwrap();
        let conditions = node
            .status
            .unwrap_or_default()
            .conditions
            .unwrap_or_default();
        let network = conditions.iter().find(|c| c.type_ == "NetworkUnavailable");
        if let Some(network) = network {
            assert_eq!(
                (network.status.as_str(), network.reason.as_deref()),
                ("False", Some("WeftIsUp"))
            );
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no NetworkUnavailable condition"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(nodes.nodes[0].node_state()["mtu"], 1450);
    let link = sh(&["ip", "-n", &nodes.pods[0].netns, "link", "show", "eth0"]);
    assert!(
        link.contains("mtu 1450"),
        "the pod got the detected MTU: {link}"
    );
    let vxlan = sh(&[
        "ip",
        "-d",
        "-n",
        &nodes.nodes[0].netns,
        "link",
        "show",
        "weft.vxlan",
    ]);
    assert!(
        vxlan.contains("mtu 1450") && vxlan.contains("id 4096") && vxlan.contains("dstport 4789"),
        "{vxlan}"
    );
    let metrics = http_body(nodes.nodes[0].health_port, "/metrics");
    assert!(
        metrics.contains("weft_agent_dataplane_apply_seconds"),
        "{metrics}"
    );
    assert!(
        metrics.contains("weft_agent_blocks{pool=\"wt-"),
        "{metrics}"
    );
}
