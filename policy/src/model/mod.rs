//! The policy model every source is converted into: endpoints, namespaces and ordered policies
//! whose rules match packets by protocol, peers and ports.
//!
//! Kubernetes NetworkPolicies ([`kubernetes`]) and weft NetworkPolicy / GlobalNetworkPolicy
//! ([`weft`]) both become [`Policy`] values; the evaluator and the nftables compiler only ever
//! see this model.

pub mod kubernetes;
mod label_selector;
pub mod weft;

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;
pub use weft_api::{Action, PortMatch, Protocol};

use crate::selector::Selector;

pub use label_selector::label_selector_to_selector;

/// The order Kubernetes NetworkPolicies take among weft policies of the same tier.
pub const KUBERNETES_POLICY_ORDER: f64 = 1000.0;

/// The label every namespace carries with its own name, as Kubernetes sets it.
pub const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

/// A namespace and its labels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Namespace {
    pub name: String,
    pub labels: BTreeMap<String, String>,
}

/// A container port with a name, which rules may refer to by that name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NamedPort {
    pub name: String,
    pub protocol: Protocol,
    pub port: u16,
}

/// A workload endpoint: one pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub namespace: String,
    pub name: String,
    pub labels: BTreeMap<String, String>,
    /// The pod's addresses; the first one is the address its connections use.
    pub ips: Vec<IpAddr>,
    pub ports: Vec<NamedPort>,
    pub service_account: String,
}

impl Endpoint {
    /// `namespace/name`.
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    /// The address this endpoint's connections come from and go to.
    pub fn primary_ip(&self) -> Option<IpAddr> {
        self.ips.first().copied()
    }

    /// The number of the named port for a protocol, if the endpoint declares it.
    pub fn named_port(&self, name: &str, protocol: Protocol) -> Option<u16> {
        self.ports
            .iter()
            .find(|p| p.name == name && p.protocol.number() == protocol.number())
            .map(|p| p.port)
    }
}

/// Which API a policy came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PolicyKind {
    /// `networking.k8s.io/v1` NetworkPolicy.
    Kubernetes,
    /// `network.weft.dev/v1` NetworkPolicy.
    Namespaced,
    /// `network.weft.dev/v1` GlobalNetworkPolicy.
    Global,
}

/// Names a policy in messages: kind, namespace (when namespaced) and name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PolicyId {
    pub kind: PolicyKind,
    pub namespace: Option<String>,
    pub name: String,
}

impl fmt::Display for PolicyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            PolicyKind::Kubernetes => "kubernetes NetworkPolicy",
            PolicyKind::Namespaced => "weft NetworkPolicy",
            PolicyKind::Global => "weft GlobalNetworkPolicy",
        };
        match &self.namespace {
            Some(namespace) => write!(f, "{kind} {namespace}/{}", self.name),
            None => write!(f, "{kind} {}", self.name),
        }
    }
}

/// Direction of traffic relative to the endpoint a policy applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Direction {
    Ingress,
    Egress,
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Direction::Ingress => "ingress",
            Direction::Egress => "egress",
        })
    }
}

/// One policy in model form.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    pub id: PolicyId,
    /// Lower first; `None` sorts after every order; ties by name.
    pub order: Option<f64>,
    /// Only endpoints of this namespace are selected, when set.
    pub namespace: Option<String>,
    pub selector: Selector,
    /// Only endpoints in namespaces whose labels match, when set.
    pub namespace_selector: Option<Selector>,
    /// Rules for traffic into selected endpoints; `None` when the policy does not govern ingress.
    pub ingress: Option<Vec<Rule>>,
    /// Rules for traffic out of selected endpoints; `None` when it does not govern egress.
    pub egress: Option<Vec<Rule>>,
}

impl Policy {
    pub fn rules(&self, direction: Direction) -> Option<&[Rule]> {
        match direction {
            Direction::Ingress => self.ingress.as_deref(),
            Direction::Egress => self.egress.as_deref(),
        }
    }

    /// The evaluation order key: order (missing last), then name, then the rest of the id.
    pub fn sort_key(&self) -> (OrderKey, &str, &PolicyId) {
        (OrderKey(self.order), &self.id.name, &self.id)
    }
}

/// Total order over optional policy orders, `None` last.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OrderKey(pub Option<f64>);

impl Eq for OrderKey {}

impl PartialOrd for OrderKey {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for OrderKey {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        let key = |o: Option<f64>| o.unwrap_or(f64::INFINITY);
        key(self.0).total_cmp(&key(other.0))
    }
}

/// One rule: when a packet matches every part, the action applies.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    pub action: Action,
    pub protocol: Option<Protocol>,
    pub not_protocol: Option<Protocol>,
    pub source: Entity,
    pub destination: Entity,
}

/// One end of a connection.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Entity {
    /// The end must match one of these; empty matches anything.
    pub peers: Vec<Peer>,
    /// The port must match one of these; empty matches any port (and portless protocols).
    pub ports: Vec<PortSpec>,
    /// The port must match none of these.
    pub not_ports: Vec<PortSpec>,
}

/// Conditions on an address and the endpoint behind it; all set conditions must hold.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Peer {
    /// The address is in one of these; empty means any address.
    pub nets: Vec<IpNet>,
    /// The address is in none of these.
    pub not_nets: Vec<IpNet>,
    /// The address belongs to an endpoint of this set.
    pub endpoints: Option<EndpointSet>,
    /// The address belongs to no endpoint of this set.
    pub not_endpoints: Option<EndpointSet>,
}

/// Endpoints chosen by namespace, labels and service account.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EndpointSet {
    pub namespaces: NamespaceScope,
    pub selector: Selector,
    /// When set, the endpoint's service account must be one of these.
    pub service_accounts: Option<Vec<String>>,
}

/// Which namespaces an [`EndpointSet`] looks in.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum NamespaceScope {
    Any,
    Named(String),
    Matching(Selector),
}

/// A port condition: protocol (any port-carrying one when `None`) and port (any when `None`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PortSpec {
    pub protocol: Option<Protocol>,
    pub port: Option<PortMatch>,
}

/// A policy source that cannot be converted: the field (a path like
/// `spec.ingress[0].from[1].podSelector`) and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ModelError {
    pub field: String,
    pub message: String,
}

impl ModelError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// Everything the evaluator and compiler need: namespaces, endpoints and policies.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Cluster {
    pub namespaces: BTreeMap<String, Namespace>,
    pub endpoints: Vec<Endpoint>,
    pub policies: Vec<Policy>,
}

impl Cluster {
    /// The labels of a namespace; a namespace never declared has only its name label.
    pub fn namespace_labels(&self, namespace: &str) -> Cow<'_, BTreeMap<String, String>> {
        match self.namespaces.get(namespace) {
            Some(declared) => Cow::Borrowed(&declared.labels),
            None => Cow::Owned(BTreeMap::from([(
                NAMESPACE_NAME_LABEL.to_string(),
                namespace.to_string(),
            )])),
        }
    }

    pub fn endpoint(&self, key: &str) -> Option<&Endpoint> {
        self.endpoints.iter().find(|e| e.key() == key)
    }

    /// Policies in evaluation order.
    pub fn ordered_policies(&self) -> Vec<&Policy> {
        let mut policies: Vec<&Policy> = self.policies.iter().collect();
        policies.sort_by(|a, b| a.sort_key().cmp(&b.sort_key()));
        policies
    }
}
