//! Smoke tests of the local control plane: it is the pinned Kubernetes, serves CRDs and
//! server-side apply, runs DaemonSets on kwok nodes with pod CIDRs, and enforces RBAC.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::json;
use weft_e2e::{LocalCluster, Versions};

async fn eventually<T, F, Fut>(what: &str, mut check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Option<T>>>,
{
    for _ in 0..600 {
        if let Some(value) = check().await? {
            return Ok(value);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    anyhow::bail!("{what} did not happen within 60s")
}

async fn create_namespace(client: &kube::Client, name: &str) -> anyhow::Result<()> {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": name}}))?;
    namespaces.create(&PostParams::default(), &ns).await?;
    Ok(())
}

#[tokio::test]
async fn server_version_is_the_pinned_version() -> anyhow::Result<()> {
    let cluster = LocalCluster::shared().await?;
    let version = cluster.client().await?.apiserver_version().await?;
    println!("server version: {}", version.git_version);
    assert_eq!(version.git_version, Versions::pinned().kubernetes);
    Ok(())
}

#[tokio::test]
async fn crd_is_served_and_custom_object_server_side_applied() -> anyhow::Result<()> {
    let cluster = LocalCluster::shared().await?;
    let client = cluster.client().await?;
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let crd: CustomResourceDefinition = serde_json::from_value(json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.smoke.weft.dev"},
        "spec": {
            "group": "smoke.weft.dev",
            "names": {"kind": "Widget", "plural": "widgets", "singular": "widget"},
            "scope": "Cluster",
            "versions": [{
                "name": "v1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                    "spec": {"type": "object", "properties": {"size": {"type": "integer"}}}
                }}}
            }]
        }
    }))?;
    crds.patch(
        "widgets.smoke.weft.dev",
        &PatchParams::apply("weft-smoke").force(),
        &Patch::Apply(&crd),
    )
    .await?;
    eventually("CRD Established", || async {
        let crd = crds.get("widgets.smoke.weft.dev").await?;
        let established = crd
            .status
            .and_then(|s| s.conditions)
            .unwrap_or_default()
            .iter()
            .any(|c| c.type_ == "Established" && c.status == "True");
        Ok(established.then_some(()))
    })
    .await?;

    let resource = ApiResource::from_gvk(&GroupVersionKind::gvk("smoke.weft.dev", "v1", "Widget"));
    let widgets: Api<DynamicObject> = Api::all_with(client, &resource);
    let widget = json!({"apiVersion": "smoke.weft.dev/v1", "kind": "Widget",
                        "metadata": {"name": "w1"}, "spec": {"size": 3}});
    // Discovery of a fresh CRD can lag its Established condition by a moment.
    eventually("server-side apply of a Widget", || async {
        Ok(widgets
            .patch(
                "w1",
                &PatchParams::apply("weft-smoke").force(),
                &Patch::Apply(&widget),
            )
            .await
            .ok())
    })
    .await?;
    let read = widgets.get("w1").await?;
    assert_eq!(read.data["spec"]["size"], 3);
    let managers: Vec<String> = read
        .metadata
        .managed_fields
        .unwrap_or_default()
        .into_iter()
        .filter_map(|m| m.manager)
        .collect();
    assert!(
        managers.contains(&"weft-smoke".to_string()),
        "field managers: {managers:?}"
    );
    Ok(())
}

#[tokio::test]
async fn daemonset_becomes_ready_on_three_kwok_nodes_with_pod_cidrs() -> anyhow::Result<()> {
    let cluster = LocalCluster::shared().await?;
    let client = cluster.client().await?;
    let labels = BTreeMap::from([("smoke.weft.dev/pool".to_string(), "ds".to_string())]);
    let names = cluster.add_nodes(3, &labels).await?;
    let nodes: Api<Node> = Api::all(client.clone());
    let cluster_cidr: ipnet::Ipv4Net = weft_e2e::CLUSTER_CIDR.parse()?;
    for name in &names {
        let cidr: ipnet::Ipv4Net = nodes
            .get(name)
            .await?
            .spec
            .and_then(|s| s.pod_cidr)
            .expect("podCIDR")
            .parse()?;
        println!("node {name}: podCIDR {cidr}");
        assert!(cluster_cidr.contains(&cidr) && cidr.prefix_len() == weft_e2e::NODE_CIDR_MASK);
    }

    create_namespace(&client, "smoke-ds").await?;
    let daemonsets: Api<DaemonSet> = Api::namespaced(client.clone(), "smoke-ds");
    let ds: DaemonSet = serde_json::from_value(json!({
        "metadata": {"name": "probe"},
        "spec": {
            "selector": {"matchLabels": {"app": "probe"}},
            "template": {
                "metadata": {"labels": {"app": "probe"}},
                "spec": {
                    "nodeSelector": {"smoke.weft.dev/pool": "ds"},
                    "tolerations": [{"operator": "Exists"}],
                    "containers": [{"name": "probe", "image": "registry.invalid/probe:1"}]
                }
            }
        }
    }))?;
    // The namespace's default ServiceAccount, which pods need, appears asynchronously.
    eventually("DaemonSet created", || async {
        Ok(daemonsets.create(&PostParams::default(), &ds).await.ok())
    })
    .await?;
    let (ready, desired) = eventually("DaemonSet 3/3 ready", || async {
        let status = daemonsets.get("probe").await?.status.unwrap_or_default();
        let counts = (status.number_ready, status.desired_number_scheduled);
        Ok((counts.1 == 3 && counts.0 == 3).then_some(counts))
    })
    .await?;
    println!("DaemonSet smoke-ds/probe: {ready}/{desired} ready");
    let pods: Api<Pod> = Api::namespaced(client, "smoke-ds");
    let running = pods
        .list(&ListParams::default().labels("app=probe"))
        .await?
        .items;
    let mut on_nodes: Vec<String> = running
        .iter()
        .filter_map(|p| p.spec.as_ref()?.node_name.clone())
        .collect();
    on_nodes.sort();
    assert_eq!(on_nodes, names);
    Ok(())
}

#[tokio::test]
async fn service_account_without_rbac_is_forbidden() -> anyhow::Result<()> {
    let cluster = LocalCluster::shared().await?;
    let nobody = cluster
        .client_as_service_account("default", "nobody")
        .await?;
    let nodes: Api<Node> = Api::all(nobody);
    match nodes.list(&ListParams::default()).await {
        Err(kube::Error::Api(status)) => {
            println!(
                "service account without RBAC: {} {}",
                status.code, status.message
            );
            assert_eq!(status.code, 403);
            assert!(
                status
                    .message
                    .contains("system:serviceaccount:default:nobody")
            );
        }
        other => panic!("expected 403 Forbidden, got {other:?}"),
    }
    Ok(())
}
