//! Shared helpers of the API-server tests: install the CRDs into the local cluster and apply
//! objects with server-side apply.

// Each test binary compiles this module and uses only some of the helpers.
#![allow(dead_code)]

use anyhow::Context;
use k8s_openapi::api::core::v1::Namespace;
use kube::Client;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::core::{ApiResource, GroupVersionKind};

pub const FIELD_MANAGER: &str = "weft-api-tests";

/// Applies every weft CRD and waits until the API server serves them.
pub async fn install_crds(client: &Client) -> anyhow::Result<()> {
    weft_e2e::install_crds(client, weft_api::crds(), FIELD_MANAGER).await?;
    Ok(())
}

/// Creates a namespace when it does not exist yet.
pub async fn ensure_namespace(client: &Client, name: &str) -> anyhow::Result<()> {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let namespace: Namespace = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}
    }))?;
    namespaces
        .patch(
            name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&namespace),
        )
        .await
        .with_context(|| format!("creating namespace {name}"))?;
    Ok(())
}

/// A dynamic API for the kind of `object` (its apiVersion and kind), in its namespace if any.
pub fn api_for(
    client: &Client,
    object: &serde_json::Value,
) -> anyhow::Result<(Api<DynamicObject>, String)> {
    let api_version = object["apiVersion"]
        .as_str()
        .context("object has no apiVersion")?;
    let kind = object["kind"].as_str().context("object has no kind")?;
    let (group, version) = api_version
        .split_once('/')
        .context("apiVersion without group")?;
    let gvk = GroupVersionKind::gvk(group, version, kind);
    let plural = weft_api::crds()
        .into_iter()
        .find(|crd| crd.spec.group == group && crd.spec.names.kind == kind)
        .map(|crd| crd.spec.names.plural)
        .with_context(|| format!("no weft CRD for {api_version} {kind}"))?;
    let resource = ApiResource::from_gvk_with_plural(&gvk, &plural);
    let name = object["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let api = match object["metadata"]["namespace"].as_str() {
        Some(namespace) => Api::namespaced_with(client.clone(), namespace, &resource),
        None => Api::all_with(client.clone(), &resource),
    };
    Ok((api, name))
}

/// Server-side applies `object` (JSON form of any weft kind).
pub async fn apply(
    client: &Client,
    object: &serde_json::Value,
) -> Result<DynamicObject, kube::Error> {
    let (api, name) = api_for(client, object).expect("object names a weft kind");
    api.patch(
        &name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(object),
    )
    .await
}

/// Parses a YAML document into JSON.
pub fn yaml(text: &str) -> serde_json::Value {
    serde_saphyr::from_str(text).unwrap_or_else(|e| panic!("test YAML does not parse: {e}\n{text}"))
}
