//! Teardown that cannot finish: a workload held by a foreign finalizer. The operator's finalizer
//! must still let the Installation go after the configured bound and say what it left behind.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::apps::v1::DaemonSet;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use serde_json::json;
use weft_api::Installation;
use weft_operator::context::Settings;

use common::{
    Operator, apply_installation, cluster, installation_events, installation_uid, wait_available,
    wait_for,
};

const LIMIT: Duration = Duration::from_secs(60);
const HOLD: &str = "test.weft.dev/hold";

#[tokio::test]
async fn a_stuck_teardown_lets_go_after_its_bound_and_reports_what_is_left() -> anyhow::Result<()> {
    let cluster = cluster().await?;
    let client = cluster.client().await?;
    cluster.add_nodes(1, &BTreeMap::new()).await?;
    let settings = Settings {
        teardown_timeout: Duration::from_secs(5),
        ..Settings::default()
    };
    let operator = Operator::start_with(cluster, "teardown", settings).await?;
    apply_installation(&client, json!({})).await?;
    wait_available(&client, LIMIT).await?;

    let daemon_sets: Api<DaemonSet> = Api::namespaced(client.clone(), "weft-system");
    let hold = json!({"metadata": {"finalizers": [HOLD]}});
    daemon_sets
        .patch("weft-node", &PatchParams::default(), &Patch::Merge(&hold))
        .await?;

    let uid = installation_uid(&client).await?;
    let since = jiff::Timestamp::now();
    let installations: Api<Installation> = Api::all(client.clone());
    installations
        .delete("default", &DeleteParams::default())
        .await?;
    wait_for("the Installation to be released", LIMIT, || async {
        Ok(installations
            .get_opt("default")
            .await?
            .is_none()
            .then_some(()))
    })
    .await?;
    let note = wait_for("a TeardownIncomplete Event", LIMIT, || async {
        let events = installation_events(&client, &uid, "TeardownIncomplete", since).await?;
        Ok(events.into_iter().find_map(|event| event.note))
    })
    .await?;
    assert!(note.contains("DaemonSet weft-node"), "{note}");

    let release = json!({"metadata": {"finalizers": null}});
    daemon_sets
        .patch(
            "weft-node",
            &PatchParams::default(),
            &Patch::Merge(&release),
        )
        .await?;
    operator.stop().await
}
