//! Node IPAM through the agent: a burst of 200 ADDs on one node with /26 blocks all succeed with
//! distinct addresses (the agent claims blocks ahead of need; ADD never calls the API server),
//! an exhausted pool fails ADD at once naming the pool, empty blocks are released after the
//! grace period, and a deleted node's routes disappear everywhere and its blocks are released
//! by `weft-agent controllers`.

mod common;

use std::collections::BTreeSet;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use kube::Api;
use kube::api::ListParams;
use weft_api::IpamBlock;

async fn blocks_of(nodes: &NodeCluster, node: &str) -> Vec<String> {
    Api::<IpamBlock>::all(nodes.client.clone())
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|block| block.spec.node == node)
        .map(|block| block.spec.cidr)
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_burst_of_200_adds_gets_200_distinct_addresses() {
    let mut nodes =
        NodeCluster::new(shared_cluster().await, &[1], "VXLANCrossSubnet", "Enabled").await;
    nodes.start_agents().await;
    let node = &nodes.nodes[0];
    let names: Vec<String> = (0..200)
        .map(|i| format!("{}-burst-{i}", node.netns))
        .collect();
    for name in &names {
        sh(&["ip", "netns", "add", name]);
    }
    let started = Instant::now();
    let results: Vec<Result<String, String>> = std::thread::scope(|scope| {
        let workers: Vec<_> = names
            .chunks(25)
            .map(|chunk| {
                scope.spawn(move || {
                    chunk
                        .iter()
                        .map(|name| {
                            cni(node, "ADD", name, name).map(|result| {
                                result["ips"][0]["address"]
                                    .as_str()
                                    .unwrap_or_default()
                                    .to_owned()
                            })
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap())
            .collect()
    });
    let elapsed = started.elapsed();
    for name in &names {
        let _ = try_sh(&["ip", "netns", "del", name]);
    }
    let failures: Vec<&String> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    assert!(
        failures.is_empty(),
        "{} ADDs failed, first: {}",
        failures.len(),
        failures[0]
    );
    let addresses: BTreeSet<&String> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
    assert_eq!(addresses.len(), 200, "addresses must be distinct");
    let blocks = blocks_of(&nodes, &node.name).await;
    assert!(
        blocks.len() >= 4,
        "200 pods need at least 4 /26 blocks, the node holds {blocks:?}"
    );
    println!(
        "200 ADDs in {elapsed:?} (8 in parallel); the node holds {} blocks",
        blocks.len()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_exhausted_pool_fails_add_at_once_naming_the_pool() {
    let mut nodes = NodeCluster::new(shared_cluster().await, &[1, 1], "VXLAN", "Enabled").await;
    // Shrink the pool to one block before any node claims: only one node can hold it.
    let pools: Api<weft_api::IpPool> = Api::all(nodes.client.clone());
    let name = format!("wt-{}", nodes.id);
    let mut pool = pools.get(&name).await.unwrap();
    pools.delete(&name, &Default::default()).await.unwrap();
    let small = format!("172.{}.0.0/26", 16 + nodes.id);
    pool.spec.cidr = small.clone();
    pool.metadata = kube::api::ObjectMeta {
        name: Some(name.clone()),
        ..Default::default()
    };
    pools.create(&Default::default(), &pool).await.unwrap();
    nodes.start_agent(0);
    nodes.wait_ready(0).await;
    nodes
        .until(
            "node 0 holds the only block",
            Duration::from_secs(10),
            || {
                nodes.nodes[0].node_state()["blocks"]
                    .as_array()
                    .is_some_and(|b| b.len() == 1)
            },
        )
        .await;
    nodes.start_agent(1);
    nodes.wait_ready(1).await;
    nodes
        .until(
            "node 1 says its pools are exhausted",
            Duration::from_secs(10),
            || {
                std::fs::read_to_string(nodes.nodes[1].state_dir().join("node-state.json"))
                    .is_ok_and(|text| text.contains("exhausted"))
            },
        )
        .await;
    sh(&["ip", "netns", "add", &format!("{}-x", nodes.nodes[1].netns)]);
    let started = Instant::now();
    let error = cni(
        &nodes.nodes[1],
        "ADD",
        "exhausted-1",
        &format!("{}-x", nodes.nodes[1].netns),
    )
    .expect_err("no address can be given");
    let elapsed = started.elapsed();
    let _ = try_sh(&["ip", "netns", "del", &format!("{}-x", nodes.nodes[1].netns)]);
    assert!(
        error.contains(&format!("IPPool \\\"{name}\\\""))
            || error.contains(&format!("IPPool \"{name}\"")),
        "{error}"
    );
    assert!(error.contains("exhausted"), "{error}");
    assert!(
        elapsed < Duration::from_secs(2),
        "ADD waited {elapsed:?} although the pool is exhausted"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn empty_blocks_are_released_after_the_grace_period() {
    let mut nodes = NodeCluster::new(shared_cluster().await, &[1], "VXLAN", "Enabled").await;
    nodes
        .extra_args
        .push(("WEFT_BLOCK_RELEASE_SECONDS".into(), "1".into()));
    nodes.start_agents().await;
    let node = &nodes.nodes[0];
    let names: Vec<String> = (0..70).map(|i| format!("{}-g{i}", node.netns)).collect();
    for name in &names {
        sh(&["ip", "netns", "add", name]);
        cni(node, "ADD", name, name).expect("ADD");
    }
    let held = blocks_of(&nodes, &node.name).await.len();
    assert!(held >= 2, "70 pods need 2 blocks, held {held}");
    for name in &names {
        cni(node, "DEL", name, name).expect("DEL");
        let _ = try_sh(&["ip", "netns", "del", name]);
    }
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let left = blocks_of(&nodes, &node.name).await.len();
        if left == 1 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "still {left} blocks 15 s after every pod left"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_deleted_node_loses_its_routes_everywhere_and_its_blocks() {
    let mut nodes = NodeCluster::new(
        shared_cluster().await,
        &[1, 1, 2],
        "VXLANCrossSubnet",
        "Enabled",
    )
    .await;
    nodes.start_agents().await;
    for node in 0..3 {
        nodes.add_pod(node, &format!("p{node}"), &[]).await;
    }
    let gone_block = loop {
        if let Some(block) = nodes.nodes[2].node_state()["blocks"][0].as_str() {
            break block.to_owned();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    nodes
        .until(
            "every node routes to node 2's block",
            Duration::from_secs(5),
            || (0..2).all(|n| nodes.nodes[n].weft_routes().contains(&gone_block)),
        )
        .await;
    let mut controllers = Command::new(env!("CARGO_BIN_EXE_weft-agent"))
        .arg("controllers")
        .env("KUBECONFIG", &nodes.kubeconfig)
        .env("POD_NAMESPACE", "default")
        .env("POD_NAME", format!("controllers-{}", nodes.id))
        .env("WEFT_BLOCK_RELEASE_SECONDS", "2")
        .env("WEFT_GC_INTERVAL_SECONDS", "1")
        .env("WEFT_HEALTH_PORT", "0")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start weft-agent controllers");
    nodes.delete_node(2).await;
    let converged = nodes
        .until(
            "routes to the deleted node's block are gone",
            Duration::from_secs(5),
            || (0..2).all(|n| !nodes.nodes[n].weft_routes().contains(&gone_block)),
        )
        .await;
    println!("routes gone {converged:?} after the Node was deleted");
    let deadline = Instant::now() + Duration::from_secs(30);
    let gone_node = nodes.nodes[2].name.clone();
    while !blocks_of(&nodes, &gone_node).await.is_empty() {
        assert!(
            Instant::now() < deadline,
            "the deleted node's blocks were not released"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let _ = controllers.kill();
    let _ = controllers.wait();
}

#[tokio::test(flavor = "multi_thread")]
async fn addresses_no_pod_holds_are_freed_after_the_grace_period() {
    let mut nodes = NodeCluster::new(shared_cluster().await, &[1], "VXLAN", "Enabled").await;
    nodes
        .extra_args
        .push(("WEFT_ADDRESS_RELEASE_SECONDS".into(), "1".into()));
    nodes.start_agents().await;
    // A pod with its Pod object keeps its address; an attachment no Pod stands for loses it.
    let kept = nodes.add_pod(0, "kept", &[]).await;
    let node = &nodes.nodes[0];
    let orphan = format!("{}-orphan", node.netns);
    sh(&["ip", "netns", "add", &orphan]);
    cni(node, "ADD", &orphan, &orphan).expect("ADD without a Pod object");
    let store = node.state_dir().join("ipam").join("weft");
    let held = |needle: &str| {
        std::fs::read_dir(&store)
            .unwrap()
            .filter_map(|entry| entry.ok())
            .any(|entry| entry.file_name().to_string_lossy().contains(needle))
    };
    assert!(held(&orphan) && held(&kept.container_id));
    nodes
        .until(
            "the orphaned address is freed",
            Duration::from_secs(10),
            || !held(&orphan),
        )
        .await;
    assert!(
        held(&kept.container_id),
        "the address of a live pod was freed"
    );
    let _ = try_sh(&["ip", "netns", "del", &orphan]);
}
