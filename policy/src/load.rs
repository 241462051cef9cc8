//! Reads multi-document YAML (Namespaces, Pods, Kubernetes NetworkPolicies, weft NetworkPolicies
//! and GlobalNetworkPolicies) into a [`Cluster`], naming the document, kind, name and field of
//! anything invalid. Unknown kinds are errors, not silently skipped.

use std::collections::BTreeMap;
use std::net::IpAddr;

use k8s_openapi::api::core::v1::{Namespace as KubeNamespace, Pod};
use k8s_openapi::api::networking::v1::NetworkPolicy as KubeNetworkPolicy;
use serde::de::DeserializeOwned;
use serde_json::Value;
use weft_api::{GlobalNetworkPolicy, NetworkPolicy as WeftNetworkPolicy};

use crate::model::{
    Cluster, Endpoint, ModelError, NAMESPACE_NAME_LABEL, NamedPort, Namespace, kubernetes, weft,
};

/// The kinds a document may have, as `apiVersion kind`.
pub const KNOWN_KINDS: &str = "v1 Namespace, v1 Pod, networking.k8s.io/v1 NetworkPolicy, \
     network.weft.dev/v1 NetworkPolicy, network.weft.dev/v1 GlobalNetworkPolicy";

/// Why input could not be loaded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LoadError {
    #[error("{source_name}: not valid YAML: {message}")]
    Yaml {
        source_name: String,
        message: String,
    },
    #[error(transparent)]
    Invalid(Box<InvalidDocument>),
}

/// A document that does not convert: where it is, which field, and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{source_name}: document {index} ({kind} {name}): {field}: {message}")]
pub struct InvalidDocument {
    pub source_name: String,
    /// 1-based position of the document in its source.
    pub index: usize,
    pub kind: String,
    pub name: String,
    pub field: String,
    pub message: String,
}

/// Loads every document of every source (a name for messages, and the YAML text).
pub fn load(sources: &[(String, String)]) -> Result<Cluster, LoadError> {
    let mut cluster = Cluster::default();
    let mut seen = BTreeMap::new();
    for (source_name, text) in sources {
        // YAML 1.2 booleans only, so a namespace called `y` or `no` stays a string.
        let mut options = serde_saphyr::Options::default();
        options.strict_booleans = true;
        let documents: Vec<Value> = serde_saphyr::from_multiple_with_options(text, options)
            .map_err(|error| LoadError::Yaml {
                source_name: source_name.clone(),
                message: error.to_string(),
            })?;
        for (offset, document) in documents.into_iter().enumerate() {
            let place = Place::of(source_name, offset + 1, &document);
            let key = (
                place.api_version.clone(),
                place.kind.clone(),
                place.namespaced_name(),
            );
            if let Some(first) = seen.insert(key, place.index) {
                return Err(place.error(
                    "metadata.name",
                    format!("the same object is already defined by document {first}"),
                ));
            }
            add_document(&mut cluster, &place, document)?;
        }
    }
    for endpoint in &cluster.endpoints {
        cluster
            .namespaces
            .entry(endpoint.namespace.clone())
            .or_insert_with(|| namespace(&endpoint.namespace, BTreeMap::new()));
    }
    cluster.endpoints.sort_by_key(Endpoint::key);
    Ok(cluster)
}

/// Where a document is, for messages.
struct Place {
    source_name: String,
    index: usize,
    api_version: String,
    kind: String,
    namespace: Option<String>,
    name: String,
}

impl Place {
    fn of(source_name: &str, index: usize, document: &Value) -> Self {
        let text = |pointer: &str| document.pointer(pointer).and_then(Value::as_str);
        Self {
            source_name: source_name.to_string(),
            index,
            api_version: text("/apiVersion").unwrap_or_default().to_string(),
            kind: text("/kind").unwrap_or_default().to_string(),
            namespace: text("/metadata/namespace").map(str::to_string),
            name: text("/metadata/name").unwrap_or_default().to_string(),
        }
    }

    fn namespaced_name(&self) -> String {
        match &self.namespace {
            Some(namespace) => format!("{namespace}/{}", self.name),
            None => self.name.clone(),
        }
    }

    fn error(&self, field: impl Into<String>, message: impl Into<String>) -> LoadError {
        LoadError::Invalid(Box::new(InvalidDocument {
            source_name: self.source_name.clone(),
            index: self.index,
            kind: if self.kind.is_empty() {
                "<no kind>".into()
            } else {
                self.kind.clone()
            },
            name: if self.name.is_empty() {
                "<no name>".into()
            } else {
                self.namespaced_name()
            },
            field: field.into(),
            message: message.into(),
        }))
    }

    fn model_error(&self, error: ModelError) -> LoadError {
        self.error(error.field, error.message)
    }

    fn decode<T: DeserializeOwned>(&self, document: Value) -> Result<T, LoadError> {
        serde_path_to_error::deserialize(document).map_err(|error| {
            let field = error.path().to_string();
            self.error(field, error.into_inner().to_string())
        })
    }
}

fn add_document(cluster: &mut Cluster, place: &Place, document: Value) -> Result<(), LoadError> {
    match (place.api_version.as_str(), place.kind.as_str()) {
        ("v1", "Namespace") => {
            let object: KubeNamespace = place.decode(document)?;
            let name = object.metadata.name.clone().unwrap_or_default();
            if name.is_empty() {
                return Err(place.error("metadata.name", "a Namespace needs a name"));
            }
            let labels = object.metadata.labels.unwrap_or_default();
            cluster
                .namespaces
                .insert(name.clone(), namespace(&name, labels));
        }
        ("v1", "Pod") => {
            let pod: Pod = place.decode(document)?;
            let endpoint = endpoint(&pod).map_err(|e| place.model_error(e))?;
            cluster.endpoints.push(endpoint);
        }
        ("networking.k8s.io/v1", "NetworkPolicy") => {
            let policy: KubeNetworkPolicy = place.decode(document)?;
            let policy = kubernetes::from_kubernetes(&policy).map_err(|e| place.model_error(e))?;
            cluster.policies.push(policy);
        }
        ("network.weft.dev/v1", "NetworkPolicy") => {
            let policy: WeftNetworkPolicy = place.decode(document)?;
            let policy = weft::from_weft_namespaced(&policy).map_err(|e| place.model_error(e))?;
            cluster.policies.push(policy);
        }
        ("network.weft.dev/v1", "GlobalNetworkPolicy") => {
            let policy: GlobalNetworkPolicy = place.decode(document)?;
            let policy = weft::from_weft_global(&policy).map_err(|e| place.model_error(e))?;
            cluster.policies.push(policy);
        }
        (api_version, kind) => {
            return Err(place.error(
                "kind",
                format!("unknown kind {api_version:?} {kind:?}: use one of {KNOWN_KINDS}"),
            ));
        }
    }
    Ok(())
}

fn namespace(name: &str, mut labels: BTreeMap<String, String>) -> Namespace {
    labels.insert(NAMESPACE_NAME_LABEL.to_string(), name.to_string());
    Namespace {
        name: name.to_string(),
        labels,
    }
}

/// The endpoint of a pod: labels, addresses (`status.podIPs`, else `status.podIP`), named
/// container ports and service account.
pub fn endpoint(pod: &Pod) -> Result<Endpoint, ModelError> {
    let name = pod.metadata.name.clone().unwrap_or_default();
    if name.is_empty() {
        return Err(ModelError::new("metadata.name", "a Pod needs a name"));
    }
    let status = pod.status.clone().unwrap_or_default();
    let mut texts: Vec<(String, String)> = status
        .pod_ips
        .iter()
        .flatten()
        .enumerate()
        .map(|(i, ip)| (format!("status.podIPs[{i}].ip"), ip.ip.clone()))
        .collect();
    if texts.is_empty()
        && let Some(ip) = status.pod_ip
    {
        texts.push(("status.podIP".into(), ip));
    }
    let ips = texts
        .into_iter()
        .map(|(field, text)| {
            text.parse::<IpAddr>()
                .map_err(|_| ModelError::new(field, format!("{text:?} is not an IP address")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let spec = pod.spec.clone().unwrap_or_default();
    let mut ports = Vec::new();
    for (c, container) in spec.containers.iter().enumerate() {
        for (p, port) in container.ports.iter().flatten().enumerate() {
            let at = format!("spec.containers[{c}].ports[{p}]");
            let number = u16::try_from(port.container_port)
                .ok()
                .filter(|n| *n >= 1)
                .ok_or_else(|| {
                    ModelError::new(
                        format!("{at}.containerPort"),
                        format!("{} is not a port: use 1..65535", port.container_port),
                    )
                })?;
            let protocol = match port.protocol.as_deref() {
                None => weft_api::Protocol::Tcp,
                Some(text) => match text {
                    "TCP" => Some(weft_api::Protocol::Tcp),
                    "UDP" => Some(weft_api::Protocol::Udp),
                    "SCTP" => Some(weft_api::Protocol::Sctp),
                    _ => None,
                }
                .ok_or_else(|| {
                    ModelError::new(
                        format!("{at}.protocol"),
                        format!("{text:?} is not a protocol here: use TCP, UDP or SCTP"),
                    )
                })?,
            };
            if let Some(port_name) = port.name.clone() {
                ports.push(NamedPort {
                    name: port_name,
                    protocol,
                    port: number,
                });
            }
        }
    }
    Ok(Endpoint {
        namespace: pod
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into()),
        name,
        labels: pod.metadata.labels.clone().unwrap_or_default(),
        ips,
        ports,
        service_account: spec
            .service_account_name
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "default".into()),
    })
}
