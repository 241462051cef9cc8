//! The operator's whole life on a real control plane with kwok nodes, acting under its own
//! ClusterRole: fresh install to Available with the DaemonSet N/N, applied objects equal to the
//! rendered ones, zero writes across a restart, a hand edit reverted with an Event, foreign items
//! in keyed lists left alone, an MTU change rolling the nodes, and deletion removing everything
//! behind the finalizer.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Context as _;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, ServiceAccount};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use kube::{Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use weft_api::{Installation, IpPool};
use weft_operator::drift::first_difference;
use weft_operator::labels::{NAMESPACE, controller_owner_ref, managed_selector};
use weft_operator::prepare::prepare;
use weft_operator::render::{Rendered, render};

use common::{
    Operator, apply_installation, cluster, installation_events, installation_uid, wait_available,
    wait_for,
};

const LIMIT: Duration = Duration::from_secs(60);

async fn versions_of<K>(api: Api<K>, into: &mut BTreeMap<String, String>) -> anyhow::Result<()>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
{
    let params = ListParams::default().labels(&managed_selector());
    for item in api.list(&params).await?.items {
        let key = format!("{}/{}", K::kind(&()), item.name_any());
        into.insert(key, item.resource_version().unwrap_or_default());
    }
    Ok(())
}

/// `Kind/name -> resourceVersion` of every managed object and of the Installation.
async fn versions(client: &Client) -> anyhow::Result<BTreeMap<String, String>> {
    let mut all = managed_versions(client).await?;
    let installation = Api::<Installation>::all(client.clone())
        .get("default")
        .await?;
    all.insert(
        "Installation/default".into(),
        installation.resource_version().unwrap_or_default(),
    );
    Ok(all)
}

/// `Kind/name -> resourceVersion` of every object carrying the operator's managed-by label.
async fn managed_versions(client: &Client) -> anyhow::Result<BTreeMap<String, String>> {
    let mut all = BTreeMap::new();
    versions_of(Api::<Namespace>::all(client.clone()), &mut all).await?;
    versions_of(
        Api::<ServiceAccount>::namespaced(client.clone(), NAMESPACE),
        &mut all,
    )
    .await?;
    versions_of(Api::<ClusterRole>::all(client.clone()), &mut all).await?;
    versions_of(Api::<ClusterRoleBinding>::all(client.clone()), &mut all).await?;
    versions_of(
        Api::<ConfigMap>::namespaced(client.clone(), NAMESPACE),
        &mut all,
    )
    .await?;
    versions_of(
        Api::<DaemonSet>::namespaced(client.clone(), NAMESPACE),
        &mut all,
    )
    .await?;
    versions_of(
        Api::<Deployment>::namespaced(client.clone(), NAMESPACE),
        &mut all,
    )
    .await?;
    versions_of(
        Api::<PodDisruptionBudget>::namespaced(client.clone(), NAMESPACE),
        &mut all,
    )
    .await?;
    versions_of(Api::<IpPool>::all(client.clone()), &mut all).await?;
    Ok(all)
}

async fn assert_matches_render<K>(api: Api<K>, rendered: &[K]) -> anyhow::Result<()>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Serialize + std::fmt::Debug,
{
    for object in rendered {
        let live = api.get(&object.name_any()).await?;
        let difference = first_difference(
            &serde_json::to_value(object)?,
            &serde_json::to_value(&live)?,
        );
        assert_eq!(
            difference,
            None,
            "{} {} differs from its render",
            K::kind(&()),
            object.name_any()
        );
    }
    Ok(())
}

/// Every rendered object is live with exactly the rendered fields (server-populated ones aside).
async fn assert_applied_equals_rendered(client: &Client) -> anyhow::Result<()> {
    let installation = Api::<Installation>::all(client.clone())
        .get("default")
        .await?;
    let mut nodes = weft_operator::facts::Nodes::new(client);
    let facts = weft_operator::facts::gather(client, &installation, &mut nodes).await?;
    let networks = weft_operator::validate::ClusterNetworks::default();
    let computed = prepare(&installation, &facts, &networks)?;
    let Rendered {
        namespace,
        service_accounts,
        cluster_roles,
        cluster_role_bindings,
        validating_admission_policies,
        validating_admission_policy_bindings,
        config_maps,
        daemon_sets,
        deployments,
        pod_disruption_budgets,
        ip_pools,
    } = render(&computed, &facts, controller_owner_ref(&installation));
    assert_matches_render(Api::all(client.clone()), &[namespace]).await?;
    assert_matches_render(
        Api::namespaced(client.clone(), NAMESPACE),
        &service_accounts,
    )
    .await?;
    assert_matches_render(Api::all(client.clone()), &cluster_roles).await?;
    assert_matches_render(Api::all(client.clone()), &cluster_role_bindings).await?;
    assert_matches_render(Api::all(client.clone()), &validating_admission_policies).await?;
    assert_matches_render(
        Api::all(client.clone()),
        &validating_admission_policy_bindings,
    )
    .await?;
    assert_matches_render(Api::namespaced(client.clone(), NAMESPACE), &config_maps).await?;
    assert_matches_render(Api::namespaced(client.clone(), NAMESPACE), &daemon_sets).await?;
    assert_matches_render(Api::namespaced(client.clone(), NAMESPACE), &deployments).await?;
    assert_matches_render(
        Api::namespaced(client.clone(), NAMESPACE),
        &pod_disruption_budgets,
    )
    .await?;
    assert_matches_render(Api::all(client.clone()), &ip_pools).await?;
    Ok(())
}

async fn node_daemon_set(client: &Client) -> anyhow::Result<DaemonSet> {
    Ok(Api::<DaemonSet>::namespaced(client.clone(), NAMESPACE)
        .get("weft-node")
        .await?)
}

fn config_hash(daemon_set: &DaemonSet) -> Option<String> {
    daemon_set
        .spec
        .as_ref()?
        .template
        .metadata
        .as_ref()?
        .annotations
        .as_ref()?
        .get("operator.weft.dev/cni-config-hash")
        .cloned()
}

async fn conflist(client: &Client) -> anyhow::Result<String> {
    let config = Api::<ConfigMap>::namespaced(client.clone(), NAMESPACE)
        .get("weft-cni-config")
        .await?;
    config
        .data
        .and_then(|data| data.get("10-weft.conflist").cloned())
        .context("the CNI ConfigMap has no conflist")
}

async fn steady_state_makes_no_writes(
    cluster: &weft_e2e::LocalCluster,
    client: &Client,
) -> anyhow::Result<()> {
    let before = versions(client).await?;
    let operator = Operator::start(cluster, "restarted").await?;
    // The count moves when a reconcile has finished: the one the restart starts ran to its end.
    wait_for("the restarted operator to reconcile", LIMIT, || async {
        Ok((operator.reconciles() >= 1).then_some(()))
    })
    .await?;
    let after = versions(client).await?;
    assert_eq!(before, after, "a restart changed resourceVersions");
    assert_eq!(
        operator.writes(),
        0,
        "the restarted operator wrote to the API server"
    );
    operator.stop().await
}

async fn hand_edit_is_reverted(client: &Client) -> anyhow::Result<()> {
    let uid = installation_uid(client).await?;
    let since = jiff::Timestamp::now();
    let rendered = conflist(client).await?;
    let edit = serde_json::json!({"data": {"10-weft.conflist": "{\"edited\": true}"}});
    Api::<ConfigMap>::namespaced(client.clone(), NAMESPACE)
        .patch(
            "weft-cni-config",
            &PatchParams::apply("hand-edit").force(),
            &Patch::Apply(serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": "weft-cni-config", "namespace": NAMESPACE},
                "data": edit["data"]})),
        )
        .await?;
    wait_for("the edited conflist to be reverted", LIMIT, || async {
        Ok((conflist(client).await? == rendered).then_some(()))
    })
    .await?;
    let event = wait_for("a DriftReverted Event", LIMIT, || async {
        let events = installation_events(client, &uid, "DriftReverted", since).await?;
        Ok(events.into_iter().find(|event| {
            event
                .note
                .as_deref()
                .is_some_and(|note| note.contains("weft-cni-config"))
        }))
    })
    .await?;
    let note = event.note.unwrap_or_default();
    assert!(
        note.contains("hand-edit"),
        "the Event names the editing field manager: {note}"
    );
    Ok(())
}

/// Server-side applies `object` to DaemonSet weft-node as field manager `manager`.
async fn apply_to_node_daemon_set(
    client: &Client,
    manager: &str,
    object: serde_json::Value,
) -> anyhow::Result<()> {
    Api::<DaemonSet>::namespaced(client.clone(), NAMESPACE)
        .patch(
            "weft-node",
            &PatchParams::apply(manager),
            &Patch::Apply(&object),
        )
        .await?;
    Ok(())
}

/// An env var and a sidecar container another field manager adds to the node DaemonSet: they
/// sit in keyed lists, which server-side apply merges by key, so the operator's apply would never
/// remove them. The operator leaves them alone (no correction, no Event), and once the rollout
/// they cause has settled a reconcile that provably ran writes nothing.
async fn foreign_list_items_are_left_alone(
    client: &Client,
    operator: &Operator,
) -> anyhow::Result<()> {
    let uid = installation_uid(client).await?;
    let since = jiff::Timestamp::now();
    let writes_before = operator.writes();
    let addition = serde_json::json!({
        "apiVersion": "apps/v1", "kind": "DaemonSet",
        "metadata": {"name": "weft-node", "namespace": NAMESPACE},
        "spec": {"template": {"spec": {"containers": [
            {"name": "weft-agent", "env": [{"name": "EXTRA_SETTING", "value": "1"}]},
            {"name": "log-shipper", "image": "registry.example/log-shipper:1"},
        ]}}},
    });
    apply_to_node_daemon_set(client, "sidecar-injector", addition).await?;
    wait_for("the rollout of the foreign additions", LIMIT, || async {
        let daemon_set = node_daemon_set(client).await?;
        let rolled = daemon_set.status.as_ref().is_some_and(|status| {
            status.observed_generation == daemon_set.metadata.generation
                && status.updated_number_scheduled == Some(status.desired_number_scheduled)
                && status.number_available == Some(status.desired_number_scheduled)
        });
        Ok(rolled.then_some(()))
    })
    .await?;
    wait_available(client, LIMIT).await?;
    // A reconcile that starts after everything settled: a foreign annotation on the DaemonSet
    // triggers it, and the reconcile count moves once it has finished.
    let settled_writes = operator.writes();
    let reconciles = operator.reconciles();
    let versions_before = managed_versions(client).await?;
    let poke = serde_json::json!({
        "apiVersion": "apps/v1", "kind": "DaemonSet",
        "metadata": {"name": "weft-node", "namespace": NAMESPACE,
            "annotations": {"example.com/poked": "1"}},
    });
    apply_to_node_daemon_set(client, "poker", poke).await?;
    wait_for("a reconcile after the poke", LIMIT, || async {
        Ok((operator.reconciles() > reconciles).then_some(()))
    })
    .await?;
    assert_eq!(
        operator.writes(),
        settled_writes,
        "a no-op reconcile wrote to the API server"
    );
    let mut versions_after = managed_versions(client).await?;
    let poked = "DaemonSet/weft-node";
    versions_after.insert(poked.into(), versions_before[poked].clone());
    assert_eq!(
        versions_before, versions_after,
        "a no-op reconcile changed objects"
    );
    let reverted = installation_events(client, &uid, "DriftReverted", since).await?;
    assert_eq!(
        common::occurrences(&reverted),
        0,
        "foreign list items are not drift: {reverted:?}"
    );
    let daemon_set = node_daemon_set(client).await?;
    let pod = daemon_set
        .spec
        .and_then(|spec| spec.template.spec)
        .context("pod template")?;
    let names: Vec<&str> = pod.containers.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["weft-agent", "log-shipper"], "the sidecar stays");
    println!(
        "foreign additions: {} writes until settled (status), then 0 per no-op reconcile",
        settled_writes - writes_before
    );
    // Leave the DaemonSet as rendered for the steps that follow.
    let nothing = serde_json::json!({"apiVersion": "apps/v1", "kind": "DaemonSet",
        "metadata": {"name": "weft-node", "namespace": NAMESPACE}});
    apply_to_node_daemon_set(client, "sidecar-injector", nothing).await?;
    Ok(())
}

async fn mtu_change_rolls_the_nodes(client: &Client, nodes: i32) -> anyhow::Result<()> {
    let hash_before = config_hash(&node_daemon_set(client).await?);
    apply_installation(client, serde_json::json!({"network": {"mtu": 1400}})).await?;
    wait_for("the conflist to carry mtu 1400", LIMIT, || async {
        Ok(conflist(client)
            .await?
            .contains("\"mtu\": 1400")
            .then_some(()))
    })
    .await?;
    let daemon_set = node_daemon_set(client).await?;
    assert_ne!(
        config_hash(&daemon_set),
        hash_before,
        "the pod template hash changed"
    );
    let installation = wait_available(client, LIMIT).await?;
    assert_eq!(
        installation.status.as_ref().and_then(|status| status.mtu),
        Some(1400)
    );
    let rolled = node_daemon_set(client).await?;
    let status = rolled.status.context("DaemonSet status")?;
    assert_eq!(status.updated_number_scheduled, Some(nodes));
    assert_eq!(status.number_available, Some(nodes));
    Ok(())
}

async fn deletion_removes_everything(client: &Client) -> anyhow::Result<()> {
    let installations: Api<Installation> = Api::all(client.clone());
    installations
        .delete("default", &DeleteParams::default())
        .await?;
    wait_for("the Installation to be gone", LIMIT, || async {
        Ok(installations
            .get_opt("default")
            .await?
            .is_none()
            .then_some(()))
    })
    .await?;
    let left = managed_versions(client).await?;
    let expected: Vec<&String> = left
        .keys()
        .filter(|key| !key.starts_with("IPPool/"))
        .collect();
    assert!(expected.is_empty(), "left behind: {expected:?}");
    assert!(
        Api::<Namespace>::all(client.clone())
            .get_opt(NAMESPACE)
            .await?
            .is_none(),
        "namespace {NAMESPACE} is gone"
    );
    assert!(
        Api::<IpPool>::all(client.clone())
            .get_opt("default-ipv4-ippool")
            .await?
            .is_some(),
        "pools survive the Installation"
    );
    Ok(())
}

#[tokio::test]
async fn install_drift_restart_mtu_change_and_delete() -> anyhow::Result<()> {
    let cluster = cluster().await?;
    let client = cluster.client().await?;
    let nodes = cluster.add_nodes(3, &BTreeMap::new()).await?;
    let operator = Operator::start(cluster, "first").await?;

    apply_installation(&client, serde_json::json!({"network": {"mtu": 1450}})).await?;
    let installation = wait_available(&client, LIMIT).await?;
    let daemon_set = node_daemon_set(&client).await?;
    let status = daemon_set.status.clone().context("DaemonSet status")?;
    assert_eq!(status.desired_number_scheduled, nodes.len() as i32);
    assert_eq!(status.number_available, Some(nodes.len() as i32));
    let components = &installation.status.as_ref().context("status")?.components;
    let node = components
        .iter()
        .find(|c| c.name == "node")
        .context("node component")?;
    assert!(node.available, "{node:?}");
    assert_eq!(
        node.message.as_deref(),
        Some("DaemonSet weft-system/weft-node is available on 3 nodes")
    );
    assert!(
        installation
            .finalizers()
            .iter()
            .any(|f| f == "operator.weft.dev/teardown")
    );
    assert_applied_equals_rendered(&client).await?;
    operator.stop().await?;

    steady_state_makes_no_writes(cluster, &client).await?;

    let operator = Operator::start(cluster, "second").await?;
    hand_edit_is_reverted(&client).await?;
    foreign_list_items_are_left_alone(&client, &operator).await?;
    mtu_change_rolls_the_nodes(&client, nodes.len() as i32).await?;
    deletion_removes_everything(&client).await?;
    operator.stop().await
}
