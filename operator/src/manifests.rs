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
    #[error("reading {kind} {name}: {source}")]
    Read {
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

/// What applying one CRD did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CrdOutcome {
    /// Applied (created, upgraded or unchanged) and served.
    Applied { name: String },
    /// Left as it is: the live CRD carries a newer release's schema than this operator's.
    KeptNewer {
        name: String,
        live: String,
        ours: String,
    },
}

/// Applies weft's CRDs and waits until the API server serves them; a CRD a newer release
/// installed is never downgraded (see [`apply_crds`]).
pub async fn install_crds(
    client: &Client,
    field_manager: &str,
) -> Result<Vec<CrdOutcome>, ManifestError> {
    apply_crds(client, field_manager, weft_api::crds()).await
}

/// Applies `crds` and waits until each is served, except a CRD whose live object names a newer
/// schema version (`operator.weft.dev/schema-version`) than the one to apply: an older operator
/// (a rollback) leaves that CRD alone and says so in a warning, since applying its older schema
/// would prune the newer fields from every stored object.
pub async fn apply_crds(
    client: &Client,
    field_manager: &str,
    crds: Vec<CustomResourceDefinition>,
) -> Result<Vec<CrdOutcome>, ManifestError> {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let params = PatchParams::apply(field_manager).force();
    let mut outcomes = Vec::new();
    for crd in crds {
        let name = crd.name_any();
        let live = api
            .get_opt(&name)
            .await
            .map_err(|source| ManifestError::Read {
                kind: "CustomResourceDefinition".into(),
                name: name.clone(),
                source,
            })?;
        if let Some((live, ours)) = live.as_ref().and_then(|live| newer_schema(live, &crd)) {
            tracing::warn!(
                crd = %name,
                live_schema = %live,
                this_operator = %ours,
                "not applying CustomResourceDefinition {name}: it carries the schema of weft \
                 {live}, newer than this operator's {ours}; downgrading it would drop the newer \
                 fields from every stored object (run the newer operator, or apply the older \
                 CRD by hand once no object uses those fields)"
            );
            outcomes.push(CrdOutcome::KeptNewer { name, live, ours });
            continue;
        }
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
        outcomes.push(CrdOutcome::Applied { name });
    }
    Ok(outcomes)
}

/// `(live, ours)` schema versions when the live CRD's is newer than the one to apply. A CRD
/// without the annotation (an older release's) or with one that is not a version is upgraded.
pub fn newer_schema(
    live: &CustomResourceDefinition,
    ours: &CustomResourceDefinition,
) -> Option<(String, String)> {
    let live = weft_api::crds::schema_version(live)?;
    let ours = weft_api::crds::schema_version(ours)?;
    let newer = semver::Version::parse(live).ok()? > semver::Version::parse(ours).ok()?;
    newer.then(|| (live.to_owned(), ours.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn crd_at(version: Option<&str>) -> CustomResourceDefinition {
        let mut crd = weft_api::crds().remove(1);
        match version {
            Some(version) => weft_api::crds::set_schema_version(&mut crd, version),
            None => crd.metadata.annotations = None,
        }
        crd
    }

    #[test]
    fn only_a_newer_live_schema_is_kept() {
        let ours = crd_at(Some("0.2.0"));
        let kept = |live: Option<&str>| newer_schema(&crd_at(live), &ours);
        assert_eq!(
            kept(Some("0.10.0")),
            Some(("0.10.0".into(), "0.2.0".into()))
        );
        assert_eq!(
            kept(Some("0.3.0-rc.1")),
            Some(("0.3.0-rc.1".into(), "0.2.0".into()))
        );
        assert_eq!(kept(Some("0.2.0")), None, "the same release is applied");
        assert_eq!(
            kept(Some("0.1.9")),
            None,
            "an older release's CRD is upgraded"
        );
        assert_eq!(
            kept(Some("0.2.0-rc.1")),
            None,
            "a pre-release of ours is upgraded"
        );
        assert_eq!(
            kept(None),
            None,
            "a CRD from before the annotation is upgraded"
        );
        assert_eq!(
            kept(Some("latest")),
            None,
            "a value that is no version is overwritten"
        );
    }

    #[test]
    fn every_crd_names_this_release_as_its_schema() {
        for crd in weft_api::crds() {
            assert_eq!(
                weft_api::crds::schema_version(&crd),
                Some(env!("CARGO_PKG_VERSION")),
                "{}",
                crd.name_any()
            );
        }
    }
}
