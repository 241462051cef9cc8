//! Defaults live in `status.computed`, written through the status subresource: the spec an admin
//! applied stays exactly as written, `kubectl get installation` shows the status columns, and a
//! refused change leaves the object as it was.

mod support;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::api::{Api, Patch, PatchParams};
use weft_api::{ClusterFacts, Installation, InstallationStatus, defaults};

fn condition(type_: &str, status: &str) -> Condition {
    Condition {
        type_: type_.into(),
        status: status.into(),
        reason: "Test".into(),
        message: format!("{type_} is {status}"),
        observed_generation: Some(1),
        last_transition_time: Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH),
    }
}

#[tokio::test]
async fn computed_defaults_go_to_status_and_never_into_spec() -> anyhow::Result<()> {
    let cluster = weft_e2e::LocalCluster::shared().await?;
    let client = cluster.client().await?;
    support::install_crds(&client).await?;

    let written = support::yaml(
        "apiVersion: operator.weft.dev/v1\nkind: Installation\nmetadata: {name: default}\nspec: {network: {mtu: 1400}}\n",
    );
    support::apply(&client, &written).await?;

    let installations: Api<Installation> = Api::all(client.clone());
    let current = installations.get("default").await?;
    let facts = ClusterFacts {
        operator_version: "v0.1.0".into(),
        operator_registry: "ghcr.io/weft".into(),
        ..Default::default()
    };
    let computed = defaults(&current.spec, &facts);
    let status = InstallationStatus {
        observed_generation: current.metadata.generation,
        conditions: vec![
            condition("Available", "True"),
            condition("Progressing", "False"),
            condition("Degraded", "False"),
        ],
        version: Some("v0.1.0".into()),
        mtu: computed.network.mtu,
        computed: Some(computed.clone()),
        components: vec![],
    };
    let status_patch = serde_json::json!({
        "apiVersion": "operator.weft.dev/v1", "kind": "Installation", "status": status
    });
    installations
        .patch_status(
            "default",
            &PatchParams::apply("weft-operator").force(),
            &Patch::Apply(&status_patch),
        )
        .await?;

    let stored = installations.get("default").await?;
    assert_eq!(
        serde_json::to_value(&stored.spec)?,
        written["spec"],
        "the spec must stay as the admin wrote it"
    );
    assert_eq!(
        stored.status.as_ref().and_then(|s| s.computed.clone()),
        Some(computed)
    );
    assert_eq!(
        stored.metadata.generation, current.metadata.generation,
        "a status write is not a spec change"
    );

    // The admin re-applies the same spec: no conflict with the operator's status fields.
    support::apply(&client, &written).await?;

    let output = cluster
        .kubectl()
        .args(["get", "installation", "default", "--no-headers"])
        .output()?;
    let line = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "kubectl get failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let columns: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(
        &columns[..6],
        ["default", "True", "False", "False", "1400", "v0.1.0"],
        "columns: {line}"
    );

    // A bad change to the existing Installation is refused and changes nothing.
    let bad = support::yaml(
        "apiVersion: operator.weft.dev/v1\nkind: Installation\nmetadata: {name: default}\nspec: {network: {mtu: 1400, ipPools: [{name: p, cidr: 10.244.0.1/16}]}}\n",
    );
    let err = support::apply(&client, &bad)
        .await
        .expect_err("a pool with host bits set");
    assert!(
        err.to_string().contains("spec.network.ipPools[0].cidr"),
        "{err}"
    );
    let after = installations.get("default").await?;
    assert_eq!(
        after.spec, stored.spec,
        "a refused change must not alter the spec"
    );
    assert_eq!(
        after.status, stored.status,
        "a refused change must not alter the status"
    );
    assert_eq!(
        after.metadata.resource_version,
        stored.metadata.resource_version
    );
    Ok(())
}
