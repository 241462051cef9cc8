//! An operator never downgrades a CRD a newer release installed: after a rollback, the older
//! operator's `--manage-crds` leaves a CRD whose `operator.weft.dev/schema-version` is newer as
//! it is (applying its older schema would prune the newer fields from every stored object),
//! and still upgrades a CRD of an older release. Run on a copy of a weft CRD under a test-only
//! API group, applied by one field manager as successive operator versions do.

mod common;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceDefinition, JSONSchemaProps,
};
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use weft_api::crds::{SCHEMA_VERSION, schema_version, set_schema_version};
use weft_operator::manifests::{CrdOutcome, apply_crds};

use common::cluster;

const GROUP: &str = "crd-schema-test.weft.dev";
const MANAGER: &str = "weft-operator-crd-schema-test";
const NEWER_FIELD: &str = "newerField";

/// weft's IPPool CRD under the test group, at schema `version`, with the field only a newer
/// release has when `newer_field`.
fn test_crd(version: &str, newer_field: bool) -> CustomResourceDefinition {
    let mut crd = weft_api::crds()
        .into_iter()
        .find(|crd| crd.spec.names.kind == "IPPool")
        .expect("weft's IPPool CRD");
    crd.spec.group = GROUP.into();
    crd.metadata.name = Some(format!("{}.{GROUP}", crd.spec.names.plural));
    set_schema_version(&mut crd, version);
    if newer_field {
        for version in &mut crd.spec.versions {
            let spec = version
                .schema
                .as_mut()
                .and_then(|schema| schema.open_api_v3_schema.as_mut())
                .and_then(|root| root.properties.as_mut())
                .and_then(|properties| properties.get_mut("spec"))
                .expect("the IPPool schema has spec");
            spec.properties.get_or_insert_with(Default::default).insert(
                NEWER_FIELD.into(),
                JSONSchemaProps {
                    type_: Some("string".into()),
                    ..Default::default()
                },
            );
        }
    }
    crd
}

fn has_newer_field(crd: &CustomResourceDefinition) -> bool {
    crd.spec.versions.iter().all(|version| {
        version
            .schema
            .as_ref()
            .and_then(|schema| schema.open_api_v3_schema.as_ref())
            .and_then(|root| root.properties.as_ref()?.get("spec")?.properties.as_ref())
            .is_some_and(|properties| properties.contains_key(NEWER_FIELD))
    })
}

#[tokio::test]
async fn an_older_operator_keeps_a_newer_crd_and_upgrades_an_older_one() -> anyhow::Result<()> {
    let cluster = cluster().await?;
    let client = cluster.client().await?;
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let ours = test_crd(SCHEMA_VERSION, false);
    let name = ours.metadata.name.clone().unwrap();
    let apply_as_release = |crd: CustomResourceDefinition| {
        let api = api.clone();
        async move {
            let name = crd.metadata.name.clone().unwrap();
            api.patch(
                &name,
                &PatchParams::apply(MANAGER).force(),
                &Patch::Apply(&crd),
            )
            .await
        }
    };

    // A newer release installed the CRD with a field this release does not know.
    apply_as_release(test_crd("99.0.0", true)).await?;
    let outcomes = apply_crds(&client, MANAGER, vec![ours.clone()]).await?;
    assert_eq!(
        outcomes,
        [CrdOutcome::KeptNewer {
            name: name.clone(),
            live: "99.0.0".into(),
            ours: SCHEMA_VERSION.into(),
        }]
    );
    let live = api.get(&name).await?;
    assert_eq!(schema_version(&live), Some("99.0.0"));
    assert!(
        has_newer_field(&live),
        "the newer release's field was pruned from the CRD by an older operator"
    );

    // An older release's CRD (and one from before the annotation) is upgraded.
    apply_as_release(test_crd("0.0.1", true)).await?;
    let outcomes = apply_crds(&client, MANAGER, vec![ours.clone()]).await?;
    assert_eq!(outcomes, [CrdOutcome::Applied { name: name.clone() }]);
    let live = api.get(&name).await?;
    assert_eq!(schema_version(&live), Some(SCHEMA_VERSION));
    assert!(!has_newer_field(&live), "the CRD is this release's schema");

    api.delete(&name, &DeleteParams::default()).await?;
    Ok(())
}
