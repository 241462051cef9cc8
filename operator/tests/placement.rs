//! Where weft's workloads land, on a real control plane: a Windows node and a virtual-kubelet
//! node (neither can run the Linux agent: no kubelet here ever starts their pods) get no
//! `weft-node` pod, are not counted by the DaemonSet, and do not keep the Installation from
//! Available; the Installation's `nodeDaemonSet` overrides reach the live DaemonSet; a
//! `weft-system` created beforehand under a stricter Pod Security level is made privileged.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Context as _;
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use kube::Client;
use kube::api::{Api, ListParams, PostParams};
use serde_json::json;

use common::{Operator, apply_installation, cluster, wait_available};

const LIMIT: Duration = Duration::from_secs(90);

/// A Node no kwok manages: its pods are bound but never run, like a Linux image on Windows or
/// any pod on a virtual kubelet that cannot host it.
async fn create_foreign_node(
    client: &Client,
    name: &str,
    labels: serde_json::Value,
) -> anyhow::Result<()> {
    let node: Node = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": labels},
        "status": {"allocatable": {"cpu": "8", "memory": "32Gi", "pods": "110"},
                   "capacity": {"cpu": "8", "memory": "32Gi", "pods": "110"}},
    }))?;
    Api::<Node>::all(client.clone())
        .create(&PostParams::default(), &node)
        .await
        .with_context(|| format!("create Node {name}"))?;
    Ok(())
}

#[tokio::test]
async fn windows_and_virtual_kubelet_nodes_are_not_counted_and_overrides_apply()
-> anyhow::Result<()> {
    let cluster = cluster().await?;
    let client = cluster.client().await?;
    let linux = cluster.add_nodes(2, &BTreeMap::new()).await?;
    create_foreign_node(
        &client,
        "windows-node-0",
        json!({"kubernetes.io/os": "windows", "kubernetes.io/hostname": "windows-node-0"}),
    )
    .await?;
    create_foreign_node(
        &client,
        "virtual-kubelet-0",
        json!({"kubernetes.io/os": "linux", "type": "virtual-kubelet",
               "kubernetes.io/hostname": "virtual-kubelet-0"}),
    )
    .await?;
    // Someone created weft-system first, under the restricted Pod Security level, which refuses
    // the agent: the operator raises it to privileged before any workload is applied.
    let namespace: Namespace = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": "weft-system",
                     "labels": {"pod-security.kubernetes.io/enforce": "restricted"}},
    }))?;
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &namespace)
        .await?;
    let operator = Operator::start(cluster, "placement").await?;
    apply_installation(
        &client,
        json!({"nodeDaemonSet": {"spec": {"template": {"spec": {
            "initContainers": [{"name": "install-cni",
                "resources": {"requests": {"cpu": "10m", "memory": "16Mi"},
                              "limits": {"memory": "64Mi"}}}]}}}}}),
    )
    .await?;
    let installation = wait_available(&client, LIMIT).await?;

    let daemon_set = Api::<DaemonSet>::namespaced(client.clone(), "weft-system")
        .get("weft-node")
        .await?;
    let status = daemon_set.status.clone().context("DaemonSet status")?;
    assert_eq!(
        status.desired_number_scheduled,
        linux.len() as i32,
        "only the kwok Linux nodes are counted: {status:?}"
    );
    let node = installation
        .status
        .as_ref()
        .and_then(|status| status.components.iter().find(|c| c.name == "node"))
        .context("node component")?;
    assert_eq!(
        node.message.as_deref(),
        Some("DaemonSet weft-system/weft-node is available on 2 nodes")
    );
    let pod = daemon_set
        .spec
        .as_ref()
        .and_then(|spec| spec.template.spec.as_ref())
        .context("pod template")?;
    assert_eq!(
        pod.node_selector
            .as_ref()
            .and_then(|s| s.get("kubernetes.io/os")),
        Some(&"linux".to_owned())
    );
    let install = &pod.init_containers.as_ref().context("install-cni")?[0];
    let limits = install
        .resources
        .as_ref()
        .and_then(|r| r.limits.as_ref())
        .context("install-cni limits")?;
    assert_eq!(limits["memory"].0, "64Mi");

    let labels = Api::<Namespace>::all(client.clone())
        .get("weft-system")
        .await?
        .metadata
        .labels
        .unwrap_or_default();
    for mode in ["enforce", "audit", "warn"] {
        assert_eq!(
            labels
                .get(&format!("pod-security.kubernetes.io/{mode}"))
                .map(String::as_str),
            Some("privileged"),
            "{labels:?}"
        );
    }

    let pods = Api::<Pod>::namespaced(client.clone(), "weft-system")
        .list(&ListParams::default().labels("app.kubernetes.io/name=weft-node"))
        .await?;
    let placed: Vec<String> = pods
        .items
        .iter()
        .filter_map(|pod| pod.spec.as_ref()?.node_name.clone())
        .collect();
    for foreign in ["windows-node-0", "virtual-kubelet-0"] {
        assert!(
            !placed.iter().any(|node| node == foreign),
            "no weft-node pod on {foreign}: {placed:?}"
        );
    }
    operator.stop().await
}
