//! The MTU column: `status.mtu` is the smallest pod MTU the nodes' agents publish when the spec
//! sets none; a configured MTU larger than a node carries leaves the node component Degraded
//! with a message naming the node; lowering it clears that.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;
use weft_api::Installation;

use common::{Operator, apply_installation, cluster, wait_available, wait_for};

const LIMIT: Duration = Duration::from_secs(60);

#[tokio::test]
async fn status_mtu_follows_the_nodes_and_a_too_large_setting_is_reported() -> anyhow::Result<()> {
    let cluster = cluster().await?;
    let client = cluster.client().await?;
    let names = cluster.add_nodes(2, &BTreeMap::new()).await?;
    let nodes: Api<Node> = Api::all(client.clone());
    for (name, mtu) in names.iter().zip(["1450", "8950"]) {
        let patch = json!({"metadata": {"annotations": {"network.weft.dev/mtu": mtu}}});
        nodes
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
    }
    let operator = Operator::start(cluster, "mtu").await?;
    apply_installation(&client, json!({})).await?;
    wait_available(&client, LIMIT).await?;
    let installations: Api<Installation> = Api::all(client.clone());
    let status_mtu = || async {
        let installation = installations.get("default").await?;
        Ok::<_, anyhow::Error>(installation.status.and_then(|status| status.mtu))
    };
    wait_for("status.mtu from the nodes", LIMIT, || async {
        Ok((status_mtu().await? == Some(1450)).then_some(()))
    })
    .await?;

    apply_installation(&client, json!({"network": {"mtu": 9000}})).await?;
    let message = wait_for(
        "a Degraded node component naming the node",
        LIMIT,
        || async {
            let installation = installations.get("default").await?;
            let status = installation.status.unwrap_or_default();
            Ok(status
                .components
                .into_iter()
                .find(|component| component.name == "node" && component.degraded)
                .and_then(|component| component.message))
        },
    )
    .await?;
    assert!(
        message.contains("spec.network.mtu 9000") && message.contains(&names[0]),
        "{message}"
    );
    assert_eq!(status_mtu().await?, Some(9000));

    apply_installation(&client, json!({"network": {"mtu": 1400}})).await?;
    wait_available(&client, LIMIT).await?;
    assert_eq!(status_mtu().await?, Some(1400));
    operator.stop().await
}
