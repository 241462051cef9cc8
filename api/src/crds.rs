//! The CustomResourceDefinitions generated from the Rust types, and their YAML form as checked
//! into `crds/` (one file per CRD) and printed by `weftctl crds`.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

use crate::{GlobalNetworkPolicy, Installation, IpPool, IpamBlock, NetworkPolicy};

/// Every weft CustomResourceDefinition, in a stable order.
pub fn crds() -> Vec<CustomResourceDefinition> {
    vec![
        Installation::crd(),
        IpPool::crd(),
        IpamBlock::crd(),
        NetworkPolicy::crd(),
        GlobalNetworkPolicy::crd(),
    ]
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
