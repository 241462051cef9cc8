//! The CustomResourceDefinitions generated from the Rust types, and their YAML form as checked
//! into `crds/` (one file per CRD) and printed by `weftctl crds`.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceDefinition, JSON,
};
use kube::CustomResourceExt;

use crate::{GlobalNetworkPolicy, Installation, IpPool, IpamBlock, NetworkPolicy};

/// The annotation on each CRD naming the weft release whose schema it carries, so that an
/// older operator (after a rollback) can tell a CRD a newer one installed and leave it alone:
/// downgrading a schema prunes the fields only the newer one has from every stored object.
pub const SCHEMA_VERSION_ANNOTATION: &str = "operator.weft.dev/schema-version";

/// The release whose schema `crds()` are.
pub const SCHEMA_VERSION: &str = env!("CARGO_PKG_VERSION");

/// Every weft CustomResourceDefinition, in a stable order. Install these rather than
/// `Kind::crd()`: they carry the adjustments below.
pub fn crds() -> Vec<CustomResourceDefinition> {
    [
        with_empty_spec_default(Installation::crd()),
        IpPool::crd(),
        IpamBlock::crd(),
        with_empty_spec_default(NetworkPolicy::crd()),
        with_empty_spec_default(GlobalNetworkPolicy::crd()),
    ]
    .into_iter()
    .map(|mut crd| {
        set_schema_version(&mut crd, SCHEMA_VERSION);
        crd
    })
    .collect()
}

/// Names `version` as the release whose schema `crd` carries.
pub fn set_schema_version(crd: &mut CustomResourceDefinition, version: &str) {
    crd.metadata
        .annotations
        .get_or_insert_with(Default::default)
        .insert(SCHEMA_VERSION_ANNOTATION.into(), version.into());
}

/// The schema version a CRD's annotation names (`None`: no annotation, an older release's CRD).
pub fn schema_version(crd: &CustomResourceDefinition) -> Option<&str> {
    crd.metadata
        .annotations
        .as_ref()?
        .get(SCHEMA_VERSION_ANNOTATION)
        .map(String::as_str)
}

/// For kinds whose spec fields are all optional: `spec` defaults to `{}`. When an apply drops
/// every spec field a manager owned, server-side apply leaves `spec: null`, which the schema
/// would refuse; the default turns it back into an empty spec.
fn with_empty_spec_default(mut crd: CustomResourceDefinition) -> CustomResourceDefinition {
    for version in &mut crd.spec.versions {
        let spec = version
            .schema
            .as_mut()
            .and_then(|s| s.open_api_v3_schema.as_mut())
            .and_then(|root| root.properties.as_mut())
            .and_then(|properties| properties.get_mut("spec"));
        if let Some(spec) = spec {
            spec.default = Some(JSON(serde_json::json!({})));
        }
    }
    crd
}

/// Why a CRD could not be written as YAML.
#[derive(Debug, thiserror::Error)]
#[error("serializing CRD {name} to YAML: {source}")]
pub struct RenderError {
    name: String,
    source: serde_saphyr::SerializeError,
}

/// File name of a CRD in `crds/`: `<metadata.name>.yaml`, e.g. `ippools.network.weft.dev.yaml`.
pub fn crd_file_name(crd: &CustomResourceDefinition) -> String {
    format!("{}.yaml", crd.metadata.name.as_deref().unwrap_or_default())
}

/// One CRD as a YAML document (starting with `---`).
pub fn render_crd(crd: &CustomResourceDefinition) -> Result<String, RenderError> {
    let yaml = serde_saphyr::to_string(crd).map_err(|source| RenderError {
        name: crd.metadata.name.clone().unwrap_or_default(),
        source,
    })?;
    Ok(format!("---\n{yaml}"))
}

/// Every CRD as one multi-document YAML stream.
pub fn render_all() -> Result<String, RenderError> {
    crds().iter().map(render_crd).collect()
}
