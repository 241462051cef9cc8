//! Policy enforced by the agents between real pods on different nodes: the seed's blue policy
//! (weft NetworkPolicy), Kubernetes default-deny ingress and egress with allow-by-label, and
//! a pod's egress policy governing its traffic to its own node while the node always reaches
//! its pods, and policy that keeps following a pod whose address a deleted pod's object still
//! reports. Every deny is asserted on a path first shown open.

mod common;

use std::time::Duration;

use common::policy::*;
use common::*;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use serde_json::json;
use weft_api::NetworkPolicy;

/// Polls until `probe` gives `expected` (policy changes reach the nodes asynchronously).
async fn settles(nodes: &NodeCluster, what: &str, expected: bool, probe: impl Fn() -> bool) {
    nodes
        .until(what, Duration::from_secs(10), || probe() == expected)
        .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_blue_policy_holds_between_pods_on_different_nodes() {
    let mut nodes = NodeCluster::new(
        shared_cluster().await,
        &[1, 2, 1],
        "VXLANCrossSubnet",
        "Enabled",
    )
    .await;
    nodes.start_agents().await;
    let blue = nodes.add_pod(0, "blue", &[("color", "blue")]).await;
    nodes.add_pod(1, "red", &[("color", "red")]).await;
    nodes.add_pod(2, "green", &[("color", "green")]).await;
    for port in [80, 81] {
        serve_tcp(&blue.netns, port);
    }
    // Every path the policy will deny is shown open first, so a deny below is the policy's.
    assert!(
        tcp_probe_eventually(&nodes.pods[1].netns, blue.ip, 81, 25).is_some(),
        "red → blue:81 open before the policy"
    );
    assert!(
        tcp_probe_eventually(&nodes.pods[2].netns, blue.ip, 80, 25).is_some(),
        "green → blue:80 (same subnet, direct) open before the policy"
    );
    let policy: NetworkPolicy = serde_json::from_value(json!({
        "apiVersion": "network.weft.dev/v1", "kind": "NetworkPolicy",
        "metadata": {"name": "blue-policy", "namespace": nodes.namespace},
        "spec": {"selector": "color == 'blue'", "ingress": [{"action": "Allow", "protocol": "TCP",
                 "source": {"selector": "color == 'red'"}, "destination": {"ports": [80]}}]}
    }))
    .unwrap();
    Api::<NetworkPolicy>::namespaced(nodes.client.clone(), &nodes.namespace)
        .create(&PostParams::default(), &policy)
        .await
        .expect("create the blue policy");
    settles(&nodes, "red → blue:81 denied", false, || {
        open(&nodes, 1, 0, 81)
    })
    .await;
    assert!(
        open(&nodes, 1, 0, 80),
        "red → blue:80 (other subnet, VXLAN) is allowed"
    );
    assert!(
        !open(&nodes, 2, 0, 80),
        "green → blue:80 (same subnet, direct) is denied"
    );
    // The node still reaches its selected pod (kubelet probes are never filtered).
    let node = nodes.nodes[0].netns.clone();
    assert!(
        tcp_probe(&node, blue.ip, 81).is_some(),
        "node → its own pod"
    );
    Api::<NetworkPolicy>::namespaced(nodes.client.clone(), &nodes.namespace)
        .delete("blue-policy", &DeleteParams::default())
        .await
        .unwrap();
    settles(
        &nodes,
        "open again after the policy is deleted",
        true,
        || open(&nodes, 2, 0, 81),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn kubernetes_default_deny_and_allow_by_label_across_nodes() {
    let mut nodes = nodes_in_two_subnets().await;
    let server = nodes.add_pod(0, "server", &[("app", "server")]).await;
    nodes.add_pod(1, "client", &[("app", "client")]).await;
    nodes.add_pod(1, "other", &[("app", "other")]).await;
    serve_tcp(&server.netns, 8080);
    serve_tcp(&nodes.pods[1].netns, 8080);
    assert!(tcp_probe_eventually(&nodes.pods[2].netns, server.ip, 8080, 25).is_some());
    deny_all_ingress(&nodes).await;
    settles(&nodes, "default-deny ingress", false, || {
        open(&nodes, 2, 0, 8080)
    })
    .await;
    allow_client_to_server(&nodes).await;
    settles(&nodes, "client allowed by label", true, || {
        open(&nodes, 1, 0, 8080)
    })
    .await;
    assert!(!open(&nodes, 2, 0, 8080), "other is still denied");
    serve_tcp(&nodes.nodes[1].netns, 8081);
    let node_address = nodes.nodes[1].address;
    assert!(
        tcp_probe(&nodes.pods[1].netns, node_address, 8081).is_some(),
        "the client reaches its own node before its egress policy"
    );
    // Default-deny egress for the client: it can reach neither the server nor its own node.
    create_kube_policy(
        &nodes,
        "deny-egress",
        json!({"podSelector": {"matchLabels": {"app": "client"}}, "policyTypes": ["Egress"]}),
    )
    .await;
    settles(&nodes, "client egress denied", false, || {
        open(&nodes, 1, 0, 8080)
    })
    .await;
    assert!(
        tcp_probe(&nodes.pods[1].netns, node_address, 8081).is_none(),
        "egress policy governs a pod's traffic to its own node"
    );
    assert!(
        tcp_probe(&nodes.pods[2].netns, node_address, 8081).is_some(),
        "a pod without egress policy reaches its node"
    );
    assert!(
        tcp_probe(&nodes.nodes[1].netns, nodes.pods[1].ip, 8080).is_some(),
        "the node reaches its pod whatever the policy"
    );
}

/// A deleted pod's object can outlive its sandbox (held by a finalizer, or a slow kubelet) and
/// still report an address the node's IPAM has given to a new pod. Policy must keep being
/// programmed on that node, and follow the pod that holds the address now.
#[tokio::test(flavor = "multi_thread")]
async fn a_deleted_pods_leftover_address_neither_stalls_nor_steers_policy() {
    let mut nodes = nodes_in_two_subnets().await;
    let server = nodes.add_pod(0, "server", &[("app", "server")]).await;
    nodes.add_pod(1, "client", &[("app", "client")]).await;
    serve_tcp(&server.netns, 8080);
    assert!(tcp_probe_eventually(&nodes.pods[1].netns, server.ip, 8080, 25).is_some());

    let pods: Api<Pod> = Api::namespaced(nodes.client.clone(), &nodes.namespace);
    let leftover: Pod = serde_json::from_value(json!({
        "metadata": {"name": "leftover", "labels": {"app": "leftover"},
                     "finalizers": ["weft.dev/test-hold"]},
        "spec": {"nodeName": nodes.nodes[0].name, "containers": [{"name": "c", "image": "none:0"}],
                 "tolerations": [{"operator": "Exists"}]},
    }))
    .unwrap();
    pods.create(&PostParams::default(), &leftover)
        .await
        .unwrap();
    let status = json!({"status": {"phase": "Running", "podIP": server.ip.to_string(),
                                   "podIPs": [{"ip": server.ip.to_string()}]}});
    pods.patch_status("leftover", &PatchParams::default(), &Patch::Merge(&status))
        .await
        .unwrap();
    pods.delete("leftover", &DeleteParams::default())
        .await
        .unwrap();

    // Both pods are selected: each would get a dispatch entry for the one address.
    deny_all_ingress(&nodes).await;
    settles(&nodes, "default-deny ingress programmed", false, || {
        open(&nodes, 1, 0, 8080)
    })
    .await;
    // Allowed for the server only: the address must lead to the server's rules, not the
    // leftover's.
    allow_client_to_server(&nodes).await;
    settles(&nodes, "client allowed to the server", true, || {
        open(&nodes, 1, 0, 8080)
    })
    .await;
    let log = nodes.agent_log(0);
    assert!(
        !log.contains("sync failed"),
        "node 0's agent failed a sync:\n{log}"
    );

    let release = json!({"metadata": {"finalizers": null}});
    pods.patch("leftover", &PatchParams::default(), &Patch::Merge(&release))
        .await
        .unwrap();
}
