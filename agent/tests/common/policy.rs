//! The policies the agent tests apply and the two-node cluster most of them apply them to.

use std::time::Duration;

use k8s_openapi::api::networking::v1::NetworkPolicy as KubeNetworkPolicy;
use kube::Api;
use kube::api::PostParams;
use serde_json::json;

use weft_agent::policy_sync::POLICY_TABLE;

use super::{NodeCluster, shared_cluster, tcp_probe, try_sh};

/// Two nodes, one per underlay subnet, with their agents running (VXLANCrossSubnet, NAT on).
pub async fn nodes_in_two_subnets() -> NodeCluster {
    nodes_in_two_subnets_resyncing_every(None).await
}

/// [`nodes_in_two_subnets`] whose agents resync fully every `resync` (their default if `None`).
pub async fn nodes_in_two_subnets_resyncing_every(resync: Option<Duration>) -> NodeCluster {
    let mut nodes = NodeCluster::new(
        shared_cluster().await,
        &[1, 2],
        "VXLANCrossSubnet",
        "Enabled",
    )
    .await;
    if let Some(resync) = resync {
        nodes.extra_args.push((
            "WEFT_RESYNC_SECONDS".to_owned(),
            resync.as_secs().to_string(),
        ));
    }
    nodes.start_agents().await;
    nodes
}

/// Creates the Kubernetes NetworkPolicy `name` with `spec` in the test namespace.
pub async fn create_kube_policy(nodes: &NodeCluster, name: &str, spec: serde_json::Value) {
    let policy: KubeNetworkPolicy =
        serde_json::from_value(json!({"metadata": {"name": name}, "spec": spec})).unwrap();
    Api::<KubeNetworkPolicy>::namespaced(nodes.client.clone(), &nodes.namespace)
        .create(&PostParams::default(), &policy)
        .await
        .unwrap_or_else(|error| panic!("create NetworkPolicy {name}: {error}"));
}

/// Kubernetes default-deny ingress for every pod of the test namespace.
pub async fn deny_all_ingress(nodes: &NodeCluster) {
    create_kube_policy(
        nodes,
        "deny-ingress",
        json!({"podSelector": {}, "policyTypes": ["Ingress"]}),
    )
    .await;
}

/// Lets pods labelled app=client into pods labelled app=server.
pub async fn allow_client_to_server(nodes: &NodeCluster) {
    create_kube_policy(
        nodes,
        "allow-client",
        json!({"podSelector": {"matchLabels": {"app": "server"}},
            "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "client"}}}]}]}),
    )
    .await;
}

/// Whether pod `from` of `nodes` connects to pod `to` on TCP `port`.
pub fn open(nodes: &NodeCluster, from: usize, to: usize, port: u16) -> bool {
    tcp_probe(&nodes.pods[from].netns, nodes.pods[to].ip, port).is_some()
}

/// `nft list table inet weft_policy` inside `netns`, `None` when the table is missing.
pub fn policy_table(netns: &str) -> Option<String> {
    try_sh(&[
        "ip",
        "netns",
        "exec",
        netns,
        "nft",
        "list",
        "table",
        "inet",
        POLICY_TABLE,
    ])
}
