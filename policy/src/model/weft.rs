//! Converts weft `network.weft.dev/v1` NetworkPolicy and GlobalNetworkPolicy into model
//! [`Policy`] form.
//!
//! In a NetworkPolicy, rule selectors look in the policy's own namespace unless the rule sets a
//! namespaceSelector; in a GlobalNetworkPolicy they look in every namespace. Fields that would
//! need data the model does not have (service account labels, ICMP types, source ports, host
//! endpoints) are refused with an error naming them rather than silently ignored.

use weft_api::{
    EntityRule, GlobalNetworkPolicy, NetworkPolicy, PolicyRule, PolicyType, parse_port,
    parse_protocol,
};

use super::kubernetes::parse_net;
use super::{
    EndpointSet, Entity, ModelError, NamespaceScope, Peer, Policy, PolicyId, PolicyKind, PortSpec,
    Rule,
};
use crate::selector::Selector;

/// Converts a weft NetworkPolicy; the namespace defaults to `default`.
pub fn from_weft_namespaced(policy: &NetworkPolicy) -> Result<Policy, ModelError> {
    let name = object_name(policy.metadata.name.as_deref())?;
    let namespace = policy
        .metadata
        .namespace
        .clone()
        .unwrap_or_else(|| "default".into());
    let spec = &policy.spec;
    refuse_service_account_selector(spec.service_account_selector.as_deref())?;
    let scope = NamespaceScope::Named(namespace.clone());
    let (ingress, egress) = directions(
        spec.types.as_deref(),
        spec.ingress.as_deref(),
        spec.egress.as_deref(),
        &scope,
    )?;
    Ok(Policy {
        id: PolicyId {
            kind: PolicyKind::Namespaced,
            namespace: Some(namespace.clone()),
            name,
        },
        order: spec.order,
        namespace: Some(namespace),
        selector: selector(spec.selector.as_deref(), "spec.selector")?,
        namespace_selector: None,
        ingress,
        egress,
    })
}

/// Converts a weft GlobalNetworkPolicy.
pub fn from_weft_global(policy: &GlobalNetworkPolicy) -> Result<Policy, ModelError> {
    let name = object_name(policy.metadata.name.as_deref())?;
    let spec = &policy.spec;
    refuse_service_account_selector(spec.service_account_selector.as_deref())?;
    for (field, value) in [
        ("spec.preDNAT", spec.pre_dnat),
        ("spec.doNotTrack", spec.do_not_track),
    ] {
        if value == Some(true) {
            return Err(ModelError::new(
                field,
                "only applies to host endpoints, which weft policy does not manage: leave it unset or false",
            ));
        }
    }
    let (ingress, egress) = directions(
        spec.types.as_deref(),
        spec.ingress.as_deref(),
        spec.egress.as_deref(),
        &NamespaceScope::Any,
    )?;
    Ok(Policy {
        id: PolicyId {
            kind: PolicyKind::Global,
            namespace: None,
            name,
        },
        order: spec.order,
        namespace: None,
        selector: selector(spec.selector.as_deref(), "spec.selector")?,
        namespace_selector: spec
            .namespace_selector
            .as_deref()
            .map(|text| selector(Some(text), "spec.namespaceSelector"))
            .transpose()?,
        ingress,
        egress,
    })
}

fn object_name(name: Option<&str>) -> Result<String, ModelError> {
    name.filter(|n| !n.is_empty())
        .map(str::to_string)
        .ok_or_else(|| ModelError::new("metadata.name", "a policy needs a name"))
}

fn refuse_service_account_selector(value: Option<&str>) -> Result<(), ModelError> {
    match value {
        Some(text) if !text.trim().is_empty() => Err(ModelError::new(
            "spec.serviceAccountSelector",
            "selecting by service account labels is not supported: select endpoints with spec.selector",
        )),
        _ => Ok(()),
    }
}

fn selector(text: Option<&str>, field: &str) -> Result<Selector, ModelError> {
    match text {
        None => Ok(Selector::all()),
        Some(text) => {
            Selector::parse(text).map_err(|error| ModelError::new(field, error.to_string()))
        }
    }
}

type Directions = (Option<Vec<Rule>>, Option<Vec<Rule>>);

/// The rules per governed direction. Without `types` the directions follow the rules present, as
/// in Calico: egress rules only → Egress; ingress rules (with or without egress ones) → Ingress,
/// plus Egress when egress rules exist; no rules at all → Ingress.
fn directions(
    types: Option<&[PolicyType]>,
    ingress: Option<&[PolicyRule]>,
    egress: Option<&[PolicyRule]>,
    scope: &NamespaceScope,
) -> Result<Directions, ModelError> {
    let (governs_ingress, governs_egress) = match types.filter(|t| !t.is_empty()) {
        Some(types) => (
            types.contains(&PolicyType::Ingress),
            types.contains(&PolicyType::Egress),
        ),
        None => {
            let has_ingress = ingress.is_some_and(|rules| !rules.is_empty());
            let has_egress = egress.is_some_and(|rules| !rules.is_empty());
            (has_ingress || !has_egress, has_egress)
        }
    };
    let convert = |rules: Option<&[PolicyRule]>, field: &str| -> Result<Vec<Rule>, ModelError> {
        rules
            .unwrap_or_default()
            .iter()
            .enumerate()
            .map(|(index, rule)| convert_rule(rule, scope, &format!("{field}[{index}]")))
            .collect()
    };
    let ingress_rules = convert(ingress, "spec.ingress")?;
    let egress_rules = convert(egress, "spec.egress")?;
    Ok((
        governs_ingress.then_some(ingress_rules),
        governs_egress.then_some(egress_rules),
    ))
}

fn convert_rule(rule: &PolicyRule, scope: &NamespaceScope, at: &str) -> Result<Rule, ModelError> {
    let protocol = |value: &Option<_>, field: &str| {
        value
            .as_ref()
            .map(parse_protocol)
            .transpose()
            .map_err(|error| ModelError::new(format!("{at}.{field}"), error.to_string()))
    };
    let protocol_match = protocol(&rule.protocol, "protocol")?;
    let not_protocol = protocol(&rule.not_protocol, "notProtocol")?;
    for (field, value) in [("icmp", &rule.icmp), ("notICMP", &rule.not_icmp)] {
        if value.is_some() {
            return Err(ModelError::new(
                format!("{at}.{field}"),
                "matching ICMP types and codes is not supported: match the protocol alone",
            ));
        }
    }
    let source = rule.source.clone().unwrap_or_default();
    for (field, value) in [("ports", &source.ports), ("notPorts", &source.not_ports)] {
        if value.as_ref().is_some_and(|v| !v.is_empty()) {
            return Err(ModelError::new(
                format!("{at}.source.{field}"),
                "source ports are not supported: match destination ports",
            ));
        }
    }
    let source = entity(&source, scope, None, &format!("{at}.source"))?;
    let destination = entity(
        &rule.destination.clone().unwrap_or_default(),
        scope,
        protocol_match,
        &format!("{at}.destination"),
    )?;
    if (!destination.ports.is_empty() || !destination.not_ports.is_empty())
        && !protocol_match.is_some_and(|p| p.has_ports())
    {
        return Err(ModelError::new(
            format!("{at}.protocol"),
            "destination ports need protocol TCP, UDP, SCTP or UDPLite",
        ));
    }
    Ok(Rule {
        action: rule.action,
        protocol: protocol_match,
        not_protocol,
        source,
        destination,
    })
}

fn entity(
    rule: &EntityRule,
    scope: &NamespaceScope,
    protocol: Option<weft_api::Protocol>,
    at: &str,
) -> Result<Entity, ModelError> {
    let nets = |list: &Option<Vec<String>>, field: &str| {
        list.iter()
            .flatten()
            .enumerate()
            .map(|(i, text)| parse_net(text, &format!("{at}.{field}[{i}]")))
            .collect::<Result<Vec<_>, _>>()
    };
    let ports = |list: &Option<Vec<_>>, field: &str| {
        list.iter()
            .flatten()
            .enumerate()
            .map(|(i, value)| {
                parse_port(value)
                    .map(|port| PortSpec {
                        protocol,
                        port: Some(port),
                    })
                    .map_err(|e| ModelError::new(format!("{at}.{field}[{i}]"), e.to_string()))
            })
            .collect::<Result<Vec<_>, _>>()
    };
    let namespaces = match &rule.namespace_selector {
        Some(text) => {
            NamespaceScope::Matching(selector(Some(text), &format!("{at}.namespaceSelector"))?)
        }
        None => scope.clone(),
    };
    let service_accounts = match &rule.service_accounts {
        Some(accounts) if accounts.selector.is_some() => {
            return Err(ModelError::new(
                format!("{at}.serviceAccounts.selector"),
                "selecting service accounts by label is not supported: list them in serviceAccounts.names",
            ));
        }
        Some(accounts) => accounts.names.clone(),
        None => None,
    };
    let endpoints = (rule.selector.is_some()
        || rule.namespace_selector.is_some()
        || service_accounts.is_some())
    .then(|| -> Result<EndpointSet, ModelError> {
        Ok(EndpointSet {
            namespaces: namespaces.clone(),
            selector: selector(rule.selector.as_deref(), &format!("{at}.selector"))?,
            service_accounts: service_accounts.clone(),
        })
    })
    .transpose()?;
    let not_endpoints = rule
        .not_selector
        .as_deref()
        .map(|text| -> Result<EndpointSet, ModelError> {
            Ok(EndpointSet {
                namespaces: namespaces.clone(),
                selector: selector(Some(text), &format!("{at}.notSelector"))?,
                service_accounts: None,
            })
        })
        .transpose()?;
    let peer = Peer {
        nets: nets(&rule.nets, "nets")?,
        not_nets: nets(&rule.not_nets, "notNets")?,
        endpoints,
        not_endpoints,
    };
    Ok(Entity {
        peers: if peer == Peer::default() {
            Vec::new()
        } else {
            vec![peer]
        },
        ports: ports(&rule.ports, "ports")?,
        not_ports: ports(&rule.not_ports, "notPorts")?,
    })
}
