//! IP pools on a real control plane, the operator acting under its own ClusterRole: pools added
//! and removed with the Installation, a removed pool kept (disabled) while a block still
//! references it, an unmanaged differing pool reported with the way out then adopted once
//! identical, an invalid change reported as Degraded with nothing changed, and unschedulable
//! controllers pods named in the status.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Context as _;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::json;
use weft_api::{Installation, IpPool, IpamBlock};

use common::{
    Operator, apply_installation, cluster, condition, condition_is, installation_events,
    installation_uid, wait_available, wait_for,
};

const LIMIT: Duration = Duration::from_secs(60);

fn pool(name: &str, cidr: &str) -> serde_json::Value {
    json!({"name": name, "cidr": cidr})
}

async fn installation(client: &Client) -> anyhow::Result<Installation> {
    Ok(Api::<Installation>::all(client.clone())
        .get("default")
        .await?)
}

/// The status message of component `name` (`ip-pools`, `controllers`, `node`).
fn component_message(installation: &Installation, name: &str) -> String {
    installation
        .status
        .as_ref()
        .and_then(|status| status.components.iter().find(|c| c.name == name))
        .and_then(|component| component.message.clone())
        .unwrap_or_default()
}

async fn wait_status(
    client: &Client,
    what: &str,
    check: impl Fn(&Installation) -> bool,
) -> anyhow::Result<Installation> {
    wait_for(what, LIMIT, || async {
        let installation = installation(client).await?;
        let current = installation
            .status
            .as_ref()
            .and_then(|s| s.observed_generation)
            == installation.metadata.generation;
        Ok((current && check(&installation)).then_some(installation))
    })
    .await
}

async fn add_and_remove_pools(client: &Client) -> anyhow::Result<()> {
    let pools: Api<IpPool> = Api::all(client.clone());
    apply_installation(
        client,
        json!({"network": {"ipPools": [pool("pool-a", "10.10.0.0/16")]}}),
    )
    .await?;
    wait_available(client, LIMIT).await?;
    let pool_a = pools.get("pool-a").await?;
    assert_eq!(
        pool_a
            .labels()
            .get("app.kubernetes.io/managed-by")
            .map(String::as_str),
        Some("weft-operator")
    );
    assert!(
        pool_a.owner_references().is_empty(),
        "pools have no owner: they outlive the Installation"
    );

    apply_installation(
        client,
        json!({"network": {"ipPools": [pool("pool-a", "10.10.0.0/16"), pool("pool-b", "10.20.0.0/16")]}}),
    )
    .await?;
    wait_available(client, LIMIT).await?;
    assert_eq!(pools.get("pool-b").await?.spec.cidr, "10.20.0.0/16");

    // A block of pool-b is in use: removing pool-b disables it and says why it stays.
    let blocks: Api<IpamBlock> = Api::all(client.clone());
    let block = IpamBlock::for_cidr("10.20.0.0/26".parse()?, "pool-b", "kwok-node-0");
    blocks.create(&PostParams::default(), &block).await?;
    apply_installation(
        client,
        json!({"network": {"ipPools": [pool("pool-a", "10.10.0.0/16")]}}),
    )
    .await?;
    let draining = wait_status(client, "pool-b draining", |i| {
        component_message(i, "ip-pools").contains("pool pool-b still has 1 allocated block")
    })
    .await?;
    assert!(condition_is(&draining, "Progressing", "True"));
    assert_eq!(pools.get("pool-b").await?.spec.disabled, Some(true));

    // Once the block is released the pool goes.
    blocks
        .delete(&block.name_any(), &DeleteParams::default())
        .await?;
    wait_for("pool-b deleted", LIMIT, || async {
        Ok(pools.get_opt("pool-b").await?.is_none().then_some(()))
    })
    .await?;
    wait_available(client, LIMIT).await?;
    Ok(())
}

async fn unmanaged_pool_conflict_then_adoption(client: &Client) -> anyhow::Result<()> {
    let uid = installation_uid(client).await?;
    let since = jiff::Timestamp::now();
    let pools: Api<IpPool> = Api::all(client.clone());
    let foreign: IpPool = serde_json::from_value(json!({
        "apiVersion": "network.weft.dev/v1", "kind": "IPPool",
        "metadata": {"name": "pool-c"},
        "spec": {"cidr": "10.30.0.0/16"}
    }))?;
    pools.create(&PostParams::default(), &foreign).await?;
    let with_c = |cidr: &str| json!({"network": {"ipPools": [pool("pool-a", "10.10.0.0/16"), pool("pool-c", cidr)]}});
    apply_installation(client, with_c("10.31.0.0/16")).await?;
    let degraded = wait_status(client, "Degraded by the pool-c conflict", |i| {
        condition_is(i, "Degraded", "True")
    })
    .await?;
    let message = &condition(&degraded, "Degraded")
        .context("Degraded")?
        .message;
    assert!(
        message.contains("IPPool pool-c exists, was not created by the operator"),
        "{message}"
    );
    assert!(
        message.contains("spec.cidr is \"10.30.0.0/16\""),
        "{message}"
    );
    assert!(message.contains("delete IPPool pool-c"), "{message}");
    assert_eq!(
        pools.get("pool-c").await?.spec.cidr,
        "10.30.0.0/16",
        "the foreign pool is untouched"
    );
    wait_for("a Degraded Event naming pool-c", LIMIT, || async {
        let events = installation_events(client, &uid, "Degraded", since).await?;
        Ok(events
            .iter()
            .any(|event| {
                event
                    .note
                    .as_deref()
                    .is_some_and(|note| note.contains("IPPool pool-c"))
            })
            .then_some(()))
    })
    .await?;

    apply_installation(client, with_c("10.30.0.0/16")).await?;
    wait_available(client, LIMIT).await?;
    let adopted = pools.get("pool-c").await?;
    assert_eq!(
        adopted
            .labels()
            .get("app.kubernetes.io/managed-by")
            .map(String::as_str),
        Some("weft-operator")
    );
    Ok(())
}

/// resourceVersions of the node DaemonSet, the CNI ConfigMap and the controllers Deployment.
async fn workload_versions(client: &Client) -> anyhow::Result<Vec<String>> {
    let daemon_set = Api::<DaemonSet>::namespaced(client.clone(), "weft-system")
        .get("weft-node")
        .await?;
    let config = Api::<ConfigMap>::namespaced(client.clone(), "weft-system")
        .get("weft-cni-config")
        .await?;
    let deployment = Api::<Deployment>::namespaced(client.clone(), "weft-system")
        .get("weft-controllers")
        .await?;
    Ok(vec![
        daemon_set.resource_version().unwrap_or_default(),
        config.resource_version().unwrap_or_default(),
        deployment.resource_version().unwrap_or_default(),
    ])
}

async fn invalid_change_changes_nothing(
    client: &Client,
    operator: &Operator,
) -> anyhow::Result<()> {
    let uid = installation_uid(client).await?;
    let since = jiff::Timestamp::now();
    let invalid_before = operator.failures("invalid");
    let workloads_before = workload_versions(client).await?;
    let pools: Api<IpPool> = Api::all(client.clone());
    let before: BTreeMap<String, String> = pools
        .list(&ListParams::default())
        .await?
        .items
        .iter()
        .map(|p| (p.name_any(), p.resource_version().unwrap_or_default()))
        .collect();
    apply_installation(
        client,
        json!({"network": {"ipPools": [
            {"name": "pool-a", "cidr": "10.10.0.0/16", "nodeSelector": "zone == "},
            pool("pool-c", "10.30.0.0/16"), pool("pool-d", "10.40.0.0/16")]}}),
    )
    .await?;
    let invalid = wait_status(client, "Degraded InvalidConfiguration", |i| {
        condition(i, "Degraded")
            .is_some_and(|c| c.status == "True" && c.reason == "InvalidConfiguration")
    })
    .await?;
    let message = &condition(&invalid, "Degraded").context("Degraded")?.message;
    assert!(
        message.contains("nodeSelector"),
        "the message names the field: {message}"
    );
    // The reconcile that found the change invalid has finished (the failure is counted when it
    // ends), and an invalid Installation waits for the next change: nothing else runs.
    wait_for("the invalid reconcile to finish", LIMIT, || async {
        Ok((operator.failures("invalid") > invalid_before).then_some(()))
    })
    .await?;
    let after: BTreeMap<String, String> = pools
        .list(&ListParams::default())
        .await?
        .items
        .iter()
        .map(|p| (p.name_any(), p.resource_version().unwrap_or_default()))
        .collect();
    assert_eq!(before, after, "an invalid Installation changed the pools");
    assert_eq!(
        workloads_before,
        workload_versions(client).await?,
        "an invalid Installation changed a workload or the CNI config"
    );
    let events = installation_events(client, &uid, "InvalidConfiguration", since).await?;
    assert!(
        events.iter().any(|event| event
            .note
            .as_deref()
            .is_some_and(|note| note.contains("nodeSelector"))),
        "an InvalidConfiguration Event about this Installation, since the change: {events:?}"
    );

    apply_installation(client, json!({"network": {"ipPools": [pool("pool-a", "10.10.0.0/16"), pool("pool-c", "10.30.0.0/16")]}}))
        .await?;
    let fixed = wait_available(client, LIMIT).await?;
    assert!(condition_is(&fixed, "Degraded", "False"));
    Ok(())
}

/// Controllers pods that cannot be scheduled (no node matches the Installation's
/// controlPlaneNodeSelector): the controllers component names a pod and why.
async fn unschedulable_pods_are_named_in_the_status(client: &Client) -> anyhow::Result<()> {
    let pools = json!([
        pool("pool-a", "10.10.0.0/16"),
        pool("pool-c", "10.30.0.0/16")
    ]);
    apply_installation(
        client,
        json!({"network": {"ipPools": pools},
            "controlPlaneNodeSelector": {"weft.test/no-such-node": "true"}}),
    )
    .await?;
    let stuck = wait_status(client, "the controllers' unschedulable pod named", |i| {
        component_message(i, "controllers").contains(": pod weft-system/weft-controllers-")
    })
    .await?;
    let message = component_message(&stuck, "controllers");
    assert!(
        message.contains(" (not scheduled): unschedulable ("),
        "the message says why: {message}"
    );
    apply_installation(client, json!({"network": {"ipPools": pools}})).await?;
    wait_available(client, LIMIT).await?;
    Ok(())
}

#[tokio::test]
async fn pools_follow_the_installation() -> anyhow::Result<()> {
    let cluster = cluster().await?;
    let client = cluster.client().await?;
    cluster.add_nodes(1, &BTreeMap::new()).await?;
    let operator = Operator::start(cluster, "pools").await?;
    add_and_remove_pools(&client).await?;
    unmanaged_pool_conflict_then_adoption(&client).await?;
    invalid_change_changes_nothing(&client, &operator).await?;
    unschedulable_pods_are_named_in_the_status(&client).await?;
    operator.stop().await
}
