//! Applying plain YAML manifests and weft's CRDs with server-side apply: what the demo and the
//! integration tests use to install the operator's RBAC (`config/rbac`) and the CRDs before
//! running the operator.

use std::time::Duration;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::core::GroupVersionKind;
use kube::discovery::pinned_kind;
use kube::{Client, ResourceExt};

#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("{source_name}: not valid YAML manifests: {message}")]
    Parse {
        source_name: String,
        message: String,
    },
    #[error("{source_name}: document {index} has no apiVersion/kind")]
    NoKind { source_name: String, index: usize },
    #[error("{source_name}: looking up {kind}: {source}")]
    Discovery {
        source_name: String,
        kind: String,
        #[source]
        source: kube::Error,
    },
    #[error("{source_name}: applying {kind} {name}: {source}")]
    Apply {
        source_name: String,
        kind: String,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("CustomResourceDefinition {name} was not Established within {seconds}s")]
    NotEstablished { name: String, seconds: u64 },
}

/// Applies every document of `text` (multi-document YAML) with `field_manager`, in order.
/// Returns `Kind/name` of each applied object.
pub async fn apply_yaml(
    client: &Client,
    source_name: &str,
    text: &str,
    field_manager: &str,
) -> Result<Vec<String>, ManifestError> {
    let documents: Vec<Option<DynamicObject>> =
        serde_saphyr::from_str_multiple(text).map_err(|error| ManifestError::Parse {
            source_name: source_name.to_owned(),
            message: error.to_string(),
        })?;
    let params = PatchParams::apply(field_manager).force();
    let mut applied = Vec::new();
    for (index, object) in documents.into_iter().flatten().enumerate() {
        let Some(types) = object.types.clone() else {
            return Err(ManifestError::NoKind {
                source_name: source_name.to_owned(),
                index,
            });
        };
        let gvk = GroupVersionKind::try_from(&types).map_err(|_| ManifestError::NoKind {
            source_name: source_name.to_owned(),
            index,
        })?;
        let (resource, _) =
            pinned_kind(client, &gvk)
                .await
                .map_err(|source| ManifestError::Discovery {
                    source_name: source_name.to_owned(),
                    kind: types.kind.clone(),
                    source,
                })?;
        let name = object.name_any();
        let api: Api<DynamicObject> = match object.namespace() {
            Some(namespace) => Api::namespaced_with(client.clone(), &namespace, &resource),
            None => Api::all_with(client.clone(), &resource),
        };
        api.patch(&name, &params, &Patch::Apply(&object))
            .await
            .map_err(|source| ManifestError::Apply {
                source_name: source_name.to_owned(),
                kind: types.kind.clone(),
                name: name.clone(),
                source,
            })?;
        applied.push(format!("{}/{name}", types.kind));
    }
    Ok(applied)
}

/// Applies weft's CRDs and waits until the API server serves them.
pub async fn install_crds(client: &Client, field_manager: &str) -> Result<(), ManifestError> {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let params = PatchParams::apply(field_manager).force();
    for crd in weft_api::crds() {
        let name = crd.name_any();
        api.patch(&name, &params, &Patch::Apply(&crd))
            .await
            .map_err(|source| ManifestError::Apply {
                source_name: "weft CRDs".into(),
                kind: "CustomResourceDefinition".into(),
                name: name.clone(),
                source,
            })?;
        const WAIT: Duration = Duration::from_secs(30);
        let established = kube::runtime::wait::await_condition(
            api.clone(),
            &name,
            kube::runtime::wait::conditions::is_crd_established(),
        );
        if !matches!(tokio::time::timeout(WAIT, established).await, Ok(Ok(_))) {
            return Err(ManifestError::NotEstablished {
                name,
                seconds: WAIT.as_secs(),
            });
        }
    }
    Ok(())
}
