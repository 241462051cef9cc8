//! Node IPAM through the agent: a burst of 200 ADDs on one node with /26 blocks all succeed with
//! distinct addresses (the agent claims blocks ahead of need; ADD never calls the API server),
//! an exhausted pool fails ADD at once naming the pool, empty blocks are released after the
//! grace period, a deleted node's routes disappear everywhere and its blocks are released
//! by `weft-agent controllers`, an address is freed only once neither a pod nor an interface
//! holds it, and a pool migration moves the tunnel's address so the old pool can be deleted.

mod common;

use std::collections::BTreeSet;
use std::io::Write;
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use ipnet::Ipv4Net;
use kube::Api;
use kube::api::ListParams;
use weft_api::{IpPool, IpPoolSpec, IpamBlock};
use weft_operator::ippools::PoolManager;

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
async fn addresses_are_freed_only_without_a_pod_and_an_interface() {
    let mut nodes = NodeCluster::new(shared_cluster().await, &[1], "VXLAN", "Enabled").await;
    nodes
        .extra_args
        .push(("WEFT_ADDRESS_RELEASE_SECONDS".into(), "1".into()));
    nodes.start_agents().await;
    // A pod with its Pod object keeps its address; an attachment no Pod stands for keeps it
    // while its interface exists (the kubelet may not have posted the address yet), and loses
    // it once the interface is gone too.
    let kept = nodes.add_pod(0, "kept", &[]).await;
    let node = &nodes.nodes[0];
    let orphan = format!("{}-orphan", node.netns);
    sh(&["ip", "netns", "add", &orphan]);
    cni(node, "ADD", &orphan, &orphan).expect("ADD without a Pod object");
    let held = |needle: &str| store_holds(node, needle);
    assert!(held(&orphan) && held(&kept.container_id));
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(
        held(&orphan),
        "an address whose interface still exists was freed"
    );
    // Deleting the namespace destroys the veth pair, host end included.
    sh(&["ip", "netns", "del", &orphan]);
    nodes
        .until(
            "the orphaned address is freed once its interface is gone",
            Duration::from_secs(10),
            || !held(&orphan),
        )
        .await;
    assert!(
        held(&kept.container_id),
        "the address of a live pod was freed"
    );
}

/// Whether the node's allocation store holds a record whose name contains `needle`.
fn store_holds(node: &TestNode, needle: &str) -> bool {
    std::fs::read_dir(node.state_dir().join("ipam").join("weft"))
        .unwrap()
        .filter_map(|entry| entry.ok())
        .any(|entry| entry.file_name().to_string_lossy().contains(needle))
}

/// The IPv4 address of the node's `weft.vxlan`, if it has one.
fn tunnel_address(node: &TestNode) -> Option<Ipv4Addr> {
    let text = try_sh(&[
        "ip",
        "-n",
        &node.netns,
        "-4",
        "-o",
        "addr",
        "show",
        "dev",
        "weft.vxlan",
    ])?;
    text.split_whitespace()
        .skip_while(|word| *word != "inet")
        .nth(1)
        .and_then(|address| address.split('/').next())
        .and_then(|ip| ip.parse().ok())
}

/// Runs the `weft` plugin's GC for the node with `cni.dev/valid-attachments` empty: a runtime
/// that knows no container on this node.
fn gc_with_no_container(node: &TestNode) -> Result<(), String> {
    let mut config = plugin_config(node);
    config["cni.dev/valid-attachments"] = serde_json::json!([]);
    let mut process = Command::new(node.bin_dir().join("weft"));
    process
        .env_clear()
        .env("CNI_COMMAND", "GC")
        .env("CNI_PATH", node.bin_dir())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = process.spawn().map_err(|e| e.to_string())?;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(config.to_string().as_bytes())
        .map_err(|e| e.to_string())?;
    let output = child.wait_with_output().map_err(|e| e.to_string())?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ))
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pool_migration_moves_the_tunnel_address_and_gc_keeps_it() {
    let mut nodes = NodeCluster::new(shared_cluster().await, &[1], "VXLAN", "Enabled").await;
    nodes
        .extra_args
        .push(("WEFT_BLOCK_RELEASE_SECONDS".into(), "1".into()));
    nodes.start_agents().await;
    let node = &nodes.nodes[0];
    let old_cidr: Ipv4Net = nodes.pool_cidr.parse().unwrap();
    let before = nodes
        .until("weft.vxlan has an address", Duration::from_secs(10), || {
            tunnel_address(node).is_some()
        })
        .await;
    let old_tunnel = tunnel_address(node).unwrap();
    assert!(
        old_cidr.contains(&old_tunnel),
        "{old_tunnel} after {before:?}"
    );

    // The operator's pool step, as for an Installation whose pool A is replaced by pool B:
    // A is adopted, then B created and A disabled, drained and deleted.
    let pools: Api<IpPool> = Api::all(nodes.client.clone());
    let old_name = format!("wt-{}", nodes.id);
    let new_name = format!("wt-{}-b", nodes.id);
    let new_cidr: Ipv4Net = format!("100.{}.0.0/16", 64 + nodes.id).parse().unwrap();
    let managed = |name: &str, spec: IpPoolSpec| IpPool {
        metadata: kube::api::ObjectMeta {
            name: Some(name.to_owned()),
            labels: Some(weft_operator::labels::standard_labels(name, "ip-pool")),
            ..Default::default()
        },
        spec,
        status: None,
    };
    let old_spec = pools.get(&old_name).await.unwrap().spec;
    let pool_a = managed(&old_name, old_spec.clone());
    let pool_b = managed(
        &new_name,
        IpPoolSpec {
            cidr: new_cidr.to_string(),
            ..old_spec
        },
    );
    let manager = PoolManager::new(nodes.client.clone());
    manager.sync(&[pool_a]).await.expect("adopt pool A");
    let started = Instant::now();
    loop {
        let report = manager
            .sync(std::slice::from_ref(&pool_b))
            .await
            .expect("pool step");
        if pools.get_opt(&old_name).await.unwrap().is_none() {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "pool A is not deleted 30 s after the migration began: {:?}; node state {}; tunnel {:?}",
            report.draining,
            node.node_state(),
            tunnel_address(node)
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    println!(
        "pool A deleted {:?} after the migration began",
        started.elapsed()
    );
    let new_tunnel = nodes
        .until(
            "weft.vxlan has an address of pool B",
            Duration::from_secs(5),
            || tunnel_address(node).is_some_and(|ip| new_cidr.contains(&ip)),
        )
        .await;
    let new_tunnel = tunnel_address(node).unwrap_or_else(|| panic!("after {new_tunnel:?}"));
    assert!(store_holds(
        node,
        &format!("{new_tunnel}~weft-vxlan-tunnel~weft.vxlan")
    ));
    assert!(
        blocks_of(&nodes, &node.name)
            .await
            .iter()
            .all(|block| new_cidr.contains(&block.parse::<Ipv4Net>().unwrap())),
        "the node still holds a block outside pool B"
    );

    // The runtime's GC knows only its containers: the tunnel's address is not one of them.
    gc_with_no_container(node).expect("GC");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        store_holds(node, &format!("{new_tunnel}~weft-vxlan-tunnel~weft.vxlan")),
        "GC freed the tunnel's address"
    );
    assert_eq!(tunnel_address(node), Some(new_tunnel));
}
