//! Converts a Kubernetes `networking.k8s.io/v1` NetworkPolicy into model [`Policy`] form.
//!
//! Semantics kept: policyTypes default to Ingress plus Egress when egress rules exist; a missing
//! or empty `from`/`to` allows every peer while `ingress: []` allows nothing; a peer with both
//! selectors needs both; ipBlock `except` carves out of `cidr`; ports default to TCP, `endPort`
//! makes a range and a named port resolves on the destination pod. Every rule is an Allow rule
//! at order [`KUBERNETES_POLICY_ORDER`].

use std::str::FromStr;

use ipnet::IpNet;
use k8s_openapi::api::networking::v1::{NetworkPolicy, NetworkPolicyPeer, NetworkPolicyPort};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{
    Action, EndpointSet, Entity, KUBERNETES_POLICY_ORDER, ModelError, NamespaceScope, Peer, Policy,
    PolicyId, PolicyKind, PortMatch, PortSpec, Protocol, Rule, label_selector_to_selector,
};
use crate::selector::Selector;

/// Converts one Kubernetes NetworkPolicy; the namespace defaults to `default`.
pub fn from_kubernetes(policy: &NetworkPolicy) -> Result<Policy, ModelError> {
    let name = policy
        .metadata
        .name
        .clone()
        .filter(|n| !n.is_empty())
        .ok_or_else(|| ModelError::new("metadata.name", "a NetworkPolicy needs a name"))?;
    let namespace = policy
        .metadata
        .namespace
        .clone()
        .unwrap_or_else(|| "default".into());
    let spec = policy.spec.clone().unwrap_or_default();
    let selector = match &spec.pod_selector {
        Some(selector) => label_selector_to_selector(selector, "spec.podSelector")?,
        None => Selector::all(),
    };
    let (governs_ingress, governs_egress) = policy_types(
        spec.policy_types.as_deref(),
        spec.egress.as_ref().is_some_and(|e| !e.is_empty()),
    )?;

    let mut ingress = Vec::new();
    for (index, rule) in spec.ingress.iter().flatten().enumerate() {
        let at = format!("spec.ingress[{index}]");
        ingress.push(Rule {
            action: Action::Allow,
            protocol: None,
            not_protocol: None,
            source: Entity {
                peers: peers(rule.from.as_deref(), &namespace, &format!("{at}.from"))?,
                ..Entity::default()
            },
            destination: Entity {
                ports: ports(rule.ports.as_deref(), &format!("{at}.ports"))?,
                ..Entity::default()
            },
        });
    }
    let mut egress = Vec::new();
    for (index, rule) in spec.egress.iter().flatten().enumerate() {
        let at = format!("spec.egress[{index}]");
        egress.push(Rule {
            action: Action::Allow,
            protocol: None,
            not_protocol: None,
            source: Entity::default(),
            destination: Entity {
                peers: peers(rule.to.as_deref(), &namespace, &format!("{at}.to"))?,
                ports: ports(rule.ports.as_deref(), &format!("{at}.ports"))?,
                not_ports: Vec::new(),
            },
        });
    }

    Ok(Policy {
        id: PolicyId {
            kind: PolicyKind::Kubernetes,
            namespace: Some(namespace.clone()),
            name,
        },
        order: Some(KUBERNETES_POLICY_ORDER),
        namespace: Some(namespace),
        selector,
        namespace_selector: None,
        ingress: governs_ingress.then_some(ingress),
        egress: governs_egress.then_some(egress),
    })
}

/// Which directions the policy governs, from `policyTypes` or its defaults.
fn policy_types(types: Option<&[String]>, has_egress: bool) -> Result<(bool, bool), ModelError> {
    let Some(types) = types.filter(|t| !t.is_empty()) else {
        return Ok((true, has_egress));
    };
    let (mut ingress, mut egress) = (false, false);
    for (index, value) in types.iter().enumerate() {
        match value.as_str() {
            "Ingress" => ingress = true,
            "Egress" => egress = true,
            other => {
                return Err(ModelError::new(
                    format!("spec.policyTypes[{index}]"),
                    format!("{other:?} is not a policy type: use Ingress or Egress"),
                ));
            }
        }
    }
    Ok((ingress, egress))
}

fn peers(
    list: Option<&[NetworkPolicyPeer]>,
    namespace: &str,
    field: &str,
) -> Result<Vec<Peer>, ModelError> {
    let mut peers = Vec::new();
    for (index, peer) in list.unwrap_or_default().iter().enumerate() {
        let at = format!("{field}[{index}]");
        if let Some(block) = &peer.ip_block {
            if peer.pod_selector.is_some() || peer.namespace_selector.is_some() {
                return Err(ModelError::new(
                    at,
                    "ipBlock cannot be combined with podSelector or namespaceSelector",
                ));
            }
            let cidr = parse_net(&block.cidr, &format!("{at}.ipBlock.cidr"))?;
            let mut except = Vec::new();
            for (i, text) in block.except.iter().flatten().enumerate() {
                let field = format!("{at}.ipBlock.except[{i}]");
                let net = parse_net(text, &field)?;
                if !cidr.contains(&net) {
                    return Err(ModelError::new(
                        field,
                        format!("{net} is not inside the block's cidr {cidr}"),
                    ));
                }
                except.push(net);
            }
            peers.push(Peer {
                nets: vec![cidr],
                not_nets: except,
                ..Peer::default()
            });
            continue;
        }
        let pods = peer
            .pod_selector
            .as_ref()
            .map(|s| label_selector_to_selector(s, &format!("{at}.podSelector")))
            .transpose()?;
        let namespaces = peer
            .namespace_selector
            .as_ref()
            .map(|s| label_selector_to_selector(s, &format!("{at}.namespaceSelector")))
            .transpose()?;
        let scope = match (&pods, namespaces) {
            (None, None) => {
                return Err(ModelError::new(
                    at,
                    "a peer needs podSelector, namespaceSelector or ipBlock",
                ));
            }
            (_, Some(namespaces)) => NamespaceScope::Matching(namespaces),
            (Some(_), None) => NamespaceScope::Named(namespace.to_string()),
        };
        peers.push(Peer {
            endpoints: Some(EndpointSet {
                namespaces: scope,
                selector: pods.unwrap_or_default(),
                service_accounts: None,
            }),
            ..Peer::default()
        });
    }
    Ok(peers)
}

fn ports(list: Option<&[NetworkPolicyPort]>, field: &str) -> Result<Vec<PortSpec>, ModelError> {
    let mut specs = Vec::new();
    for (index, port) in list.unwrap_or_default().iter().enumerate() {
        let at = format!("{field}[{index}]");
        let protocol = match port.protocol.as_deref() {
            None | Some("TCP") => Protocol::Tcp,
            Some("UDP") => Protocol::Udp,
            Some("SCTP") => Protocol::Sctp,
            Some(other) => {
                return Err(ModelError::new(
                    format!("{at}.protocol"),
                    format!("{other:?} is not a protocol here: use TCP, UDP or SCTP"),
                ));
            }
        };
        let number = |value: i32, field: String| {
            u16::try_from(value)
                .ok()
                .filter(|n| *n >= 1)
                .ok_or_else(|| {
                    ModelError::new(field, format!("{value} is not a port: use 1..65535"))
                })
        };
        let matched = match (&port.port, port.end_port) {
            (None, None) => None,
            (None, Some(_)) => {
                return Err(ModelError::new(
                    format!("{at}.endPort"),
                    "endPort needs port",
                ));
            }
            (Some(IntOrString::String(name)), Some(_)) => {
                return Err(ModelError::new(
                    format!("{at}.endPort"),
                    format!("endPort needs a numeric port, not the named port {name:?}"),
                ));
            }
            (Some(value), None) => Some(
                weft_api::parse_port(value)
                    .ok()
                    .filter(|p| !matches!(p, PortMatch::Range(..)))
                    .ok_or_else(|| {
                        ModelError::new(
                            format!("{at}.port"),
                            format!(
                                "{} is not a port number 1..65535 or a port name",
                                show(value)
                            ),
                        )
                    })?,
            ),
            (Some(IntOrString::Int(first)), Some(last)) => {
                let first = number(*first, format!("{at}.port"))?;
                let last = number(last, format!("{at}.endPort"))?;
                if last < first {
                    return Err(ModelError::new(
                        format!("{at}.endPort"),
                        format!("endPort {last} is below port {first}"),
                    ));
                }
                Some(PortMatch::Range(first, last))
            }
        };
        specs.push(PortSpec {
            protocol: Some(protocol),
            port: matched,
        });
    }
    Ok(specs)
}

fn show(value: &IntOrString) -> String {
    match value {
        IntOrString::Int(n) => n.to_string(),
        IntOrString::String(s) => format!("{s:?}"),
    }
}

/// Parses a CIDR or a bare address (as a host-length prefix).
pub(crate) fn parse_net(text: &str, field: &str) -> Result<IpNet, ModelError> {
    IpNet::from_str(text)
        .or_else(|_| text.parse::<std::net::IpAddr>().map(IpNet::from))
        .map(|net| net.trunc())
        .map_err(|_| {
            ModelError::new(
                field,
                format!("{text:?} is not a CIDR such as 10.0.0.0/8 or an IP address"),
            )
        })
}
