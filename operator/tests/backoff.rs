//! Retries with backoff against a real API server that refuses the operator's writes for a while
//! (its ClusterRole loses the ConfigMap write verbs): the failures come further and further apart
//! (exponential, capped, with jitter), the Installation recovers once the writes are allowed
//! again, and the success resets the backoff so the next outage is retried quickly again.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ConfigMap;
use kube::Client;
use kube::api::{Api, Patch, PatchParams};
use serde_json::{Value, json};
use weft_operator::backoff::RetryPolicy;
use weft_operator::context::Settings;
use weft_operator::labels::NAMESPACE;

use common::{Operator, TEST_MANAGER, apply_installation, cluster, wait_available, wait_for};

const LIMIT: Duration = Duration::from_secs(60);
const POLICY: RetryPolicy = RetryPolicy {
    base: Duration::from_millis(400),
    cap: Duration::from_millis(3200),
};
/// The controller's debounce, added to every scheduled reconcile, plus room for the reconcile.
const OVERHEAD: Duration = Duration::from_millis(1200);

fn cluster_role() -> anyhow::Result<Value> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/rbac/cluster_role.yaml");
    let text = std::fs::read_to_string(&path)?;
    let documents: Vec<Value> = serde_saphyr::from_str_multiple(&text)?;
    documents
        .into_iter()
        .find(|document| document["kind"] == "ClusterRole")
        .ok_or_else(|| anyhow::anyhow!("{}: no ClusterRole", path.display()))
}

/// Applies the operator's ClusterRole, without the write verbs on ConfigMaps when `refuse`.
async fn set_config_map_writes(client: &Client, refuse: bool) -> anyhow::Result<()> {
    let mut role = cluster_role()?;
    if refuse {
        for rule in role["rules"].as_array_mut().into_iter().flatten() {
            let config_maps = rule["resources"]
                .as_array()
                .is_some_and(|resources| resources.iter().any(|r| r == "configmaps"));
            if config_maps {
                rule["resources"] = json!(["configmaps"]);
                rule["verbs"] = json!(["get", "list", "watch"]);
            }
        }
    }
    let text = serde_json::to_string(&role)?;
    weft_operator::manifests::apply_yaml(client, "cluster_role.yaml", &text, TEST_MANAGER).await?;
    Ok(())
}

/// Waits until the API server refuses the operator's ConfigMap writes (authorization caches
/// follow a role change within moments).
async fn wait_refused(cluster: &weft_e2e::LocalCluster) -> anyhow::Result<()> {
    let operator = cluster
        .client_as_service_account(common::OPERATOR_NAMESPACE, common::OPERATOR_ACCOUNT)
        .await?;
    let config_maps: Api<ConfigMap> = Api::namespaced(operator, NAMESPACE);
    let probe = json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "weft-cni-config", "namespace": NAMESPACE}});
    let mut params = PatchParams::apply("backoff-probe");
    params.dry_run = true;
    wait_for("the ConfigMap writes to be refused", LIMIT, || async {
        match config_maps
            .patch("weft-cni-config", &params, &Patch::Apply(&probe))
            .await
        {
            Err(kube::Error::Api(status)) if status.code == 403 => Ok(Some(())),
            _ => Ok(None),
        }
    })
    .await
}

/// Changes the MTU (so the CNI ConfigMap must be written) and records when each failed apply
/// finished, for `window`.
async fn failures_after_change(
    client: &Client,
    operator: &Operator,
    mtu: u32,
    window: Duration,
) -> anyhow::Result<Vec<Duration>> {
    let start = Instant::now();
    let mut seen = operator.failures("apply");
    apply_installation(client, json!({"network": {"mtu": mtu}})).await?;
    let mut times = Vec::new();
    while start.elapsed() < window {
        let now = operator.failures("apply");
        if now > seen {
            times.push(start.elapsed());
            seen = now;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(times)
}

fn gaps(times: &[Duration]) -> Vec<Duration> {
    times.windows(2).map(|pair| pair[1] - pair[0]).collect()
}

#[tokio::test]
async fn refused_writes_are_retried_with_growing_capped_delays_reset_by_success()
-> anyhow::Result<()> {
    let cluster = cluster().await?;
    let client = cluster.client().await?;
    cluster.add_nodes(1, &BTreeMap::new()).await?;
    let settings = Settings {
        retry: POLICY,
        ..Settings::default()
    };
    let operator = Operator::start_with(cluster, "backoff", settings).await?;
    apply_installation(&client, json!({"network": {"mtu": 1450}})).await?;
    wait_available(&client, LIMIT).await?;

    set_config_map_writes(&client, true).await?;
    wait_refused(cluster).await?;
    let times = failures_after_change(&client, &operator, 1400, Duration::from_secs(14)).await?;
    let first = gaps(&times);
    println!("refused writes: failures at {times:?}, gaps {first:?}");
    // Gap n is the n-th delay (between half and all of 0.4 s × 2^(n-1), capped at 3.2 s) plus
    // the debounce and the reconcile itself: the fourth exceeds the first by at least 1.2 s
    // less the difference in reconcile time. A fixed delay would give equal gaps.
    assert!(first.len() >= 4, "too few retries in 14 s: {times:?}");
    assert!(
        first[3] > first[0] + Duration::from_millis(600),
        "the delays grow: {first:?}"
    );
    assert!(
        first.iter().all(|gap| *gap <= POLICY.cap + OVERHEAD),
        "no delay exceeds the cap: {first:?}"
    );

    set_config_map_writes(&client, false).await?;
    wait_available(&client, LIMIT).await?;

    // The success reset the count: a new outage starts with short delays again.
    set_config_map_writes(&client, true).await?;
    wait_refused(cluster).await?;
    let times = failures_after_change(&client, &operator, 1300, Duration::from_secs(4)).await?;
    let second = gaps(&times);
    println!("after a success: failures at {times:?}, gaps {second:?}");
    // After the reset the first delay is at most 0.4 s again; without it the count would go on
    // from the first outage and the delay would be at least 1.6 s.
    assert!(
        !second.is_empty(),
        "retried quickly after the reset: {times:?}"
    );
    assert!(
        second[0] < POLICY.base + OVERHEAD,
        "the first retry after a reset uses the first step again: {second:?}"
    );
    set_config_map_writes(&client, false).await?;
    wait_available(&client, LIMIT).await?;
    operator.stop().await
}
