//! Stop and uninstall: an agent stopped while weft is installed (a rolling update) leaves the
//! node's network in place; once the Installation is deleted, a stopped agent removes its CNI
//! config and plugins, its routes, VXLAN device, nft tables and node state. Its own test binary:
//! it deletes the cluster's Installation.

mod common;

use std::time::Duration;

use common::*;
use kube::Api;
use weft_api::Installation;

#[tokio::test(flavor = "multi_thread")]
async fn the_network_stays_on_restart_and_goes_with_the_installation() {
    let cluster = shared_cluster().await;
    let client = cluster.client().await.unwrap();
    let mut nodes = NodeCluster::new(cluster, &[1, 2], "VXLAN", "Enabled").await;
    nodes.start_agents().await;
    let node = &nodes.nodes[0];
    let files = [
        node.conf_dir().join("10-weft.conflist"),
        node.bin_dir().join("weft"),
        node.bin_dir().join("weft-ipam"),
        node.state_dir().join("node-state.json"),
    ];
    let kernel_state = |netns: &str| {
        (
            sh(&["ip", "-n", netns, "route", "show", "proto", "81"]),
            try_sh(&["ip", "-n", netns, "link", "show", "weft.vxlan"]).is_some(),
            sh(&["ip", "netns", "exec", netns, "nft", "list", "tables"]),
        )
    };
    let peer_block = nodes.nodes[1].first_block();
    nodes
        .until(
            "node 0 routes to node 1's block",
            Duration::from_secs(10),
            || nodes.nodes[0].weft_routes().contains(&peer_block),
        )
        .await;
    nodes.stop_agent(0, libc::SIGTERM);
    let netns = nodes.nodes[0].netns.clone();
    let (routes, vxlan, tables) = kernel_state(&netns);
    assert!(
        files.iter().all(|file| file.exists()),
        "a stopped agent keeps the CNI files"
    );
    assert!(
        !routes.is_empty() && vxlan,
        "a stopped agent keeps routes and VXLAN:\n{routes}"
    );
    assert!(
        tables.contains("weft_policy") && tables.contains("weft_nat"),
        "{tables}"
    );

    nodes.start_agent(0);
    nodes.wait_ready(0).await;
    Api::<Installation>::all(client.clone())
        .delete("default", &Default::default())
        .await
        .expect("delete the Installation");
    // The agent tears down only a deletion its watch has seen: give the event time to arrive.
    tokio::time::sleep(Duration::from_secs(2)).await;
    nodes.stop_agent(0, libc::SIGTERM);
    let (routes, vxlan, tables) = kernel_state(&netns);
    for file in &files {
        assert!(
            !file.exists(),
            "{} remains after uninstall:\n{}",
            file.display(),
            nodes.agent_log(0)
        );
    }
    assert!(routes.is_empty(), "routes remain:\n{routes}");
    assert!(!vxlan, "weft.vxlan remains");
    assert!(!tables.contains("weft_"), "tables remain: {tables}");
}
