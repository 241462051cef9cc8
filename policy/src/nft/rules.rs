//! Translates the rules of one policy and direction into nft rule lines.
//!
//! A model rule can hold several peers (any of) and ports of several protocols, which nft cannot
//! say in one rule; the rule becomes one line per combination of source alternative,
//! destination alternative and port alternative, each with the rule's verdict. Alternatives
//! that constrain addresses are per address family, and combinations of different families are
//! dropped since they can never match.

use super::{Family, References, endpoint_set_key, named_port_set_name, policy_chain_name};
use super::{selector_set_name, short_hash};
use crate::model::{Action, Direction, Entity, Peer, Policy, PortMatch, PortSpec, Rule};

/// Conditions that together match, tied to one family or to none.
#[derive(Debug, Clone)]
struct Clause {
    family: Option<Family>,
    conditions: Vec<String>,
}

impl Clause {
    fn any() -> Self {
        Self {
            family: None,
            conditions: Vec::new(),
        }
    }

    /// Both clauses at once, or `None` when they need different families.
    fn and(&self, other: &Clause) -> Option<Clause> {
        let family = match (self.family, other.family) {
            (Some(a), Some(b)) if a != b => return None,
            (a, b) => a.or(b),
        };
        let mut conditions = self.conditions.clone();
        for condition in &other.conditions {
            if !conditions.contains(condition) {
                conditions.push(condition.clone());
            }
        }
        Some(Clause { family, conditions })
    }
}

/// The lines of a policy's chain for one direction.
pub(super) fn policy_chain(
    policy: &Policy,
    direction: Direction,
    rules: &[Rule],
    references: &mut References,
) -> Vec<String> {
    let chain = policy_chain_name(&policy.id, direction);
    let mut lines = Vec::new();
    for (index, rule) in rules.iter().enumerate() {
        let verdict = match rule.action {
            Action::Allow | Action::Pass => "accept".to_string(),
            Action::Deny => "drop".to_string(),
            Action::Log => format!(
                "log prefix \"weft {} {direction} {index}: \"",
                &short_hash(&chain)[..8]
            ),
        };
        let mut head = Vec::new();
        if let Some(protocol) = rule.protocol {
            head.push(format!("meta l4proto {}", protocol.number()));
        }
        if let Some(protocol) = rule.not_protocol {
            head.push(format!("meta l4proto != {}", protocol.number()));
        }
        let head = Clause {
            family: None,
            conditions: head,
        };
        let sources = peer_clauses(&rule.source, "saddr", references);
        let destinations = peer_clauses(&rule.destination, "daddr", references);
        let ports = port_clauses(&rule.destination, references);
        for source in &sources {
            for destination in &destinations {
                for port in &ports {
                    let Some(clause) = head
                        .and(source)
                        .and_then(|c| c.and(destination))
                        .and_then(|c| c.and(port))
                    else {
                        continue;
                    };
                    let mut parts = clause.conditions;
                    parts.push(verdict.clone());
                    lines.push(parts.join(" "));
                }
            }
        }
    }
    lines
}

fn peer_clauses(entity: &Entity, address: &str, references: &mut References) -> Vec<Clause> {
    if entity.peers.is_empty() {
        return vec![Clause::any()];
    }
    entity
        .peers
        .iter()
        .flat_map(|peer| {
            Family::BOTH
                .into_iter()
                .filter_map(|family| peer_clause(peer, family, address, references))
                .collect::<Vec<_>>()
        })
        .collect()
}

fn peer_clause(
    peer: &Peer,
    family: Family,
    address: &str,
    references: &mut References,
) -> Option<Clause> {
    let in_family = |nets: &[ipnet::IpNet]| -> Vec<String> {
        nets.iter()
            .filter(|net| Family::of(&net.addr()) == family)
            .map(ToString::to_string)
            .collect()
    };
    let nets = in_family(&peer.nets);
    if !peer.nets.is_empty() && nets.is_empty() {
        return None;
    }
    let keyword = family.keyword();
    let mut conditions = vec![format!(
        "meta nfproto {}",
        match family {
            Family::V4 => "ipv4",
            Family::V6 => "ipv6",
        }
    )];
    if !nets.is_empty() {
        conditions.push(format!("{keyword} {address} {{ {} }}", nets.join(", ")));
    }
    let not_nets = in_family(&peer.not_nets);
    if !not_nets.is_empty() {
        conditions.push(format!(
            "{keyword} {address} != {{ {} }}",
            not_nets.join(", ")
        ));
    }
    for (set, operator) in [(&peer.endpoints, ""), (&peer.not_endpoints, "!= ")] {
        if let Some(set) = set {
            references
                .endpoint_sets
                .insert(endpoint_set_key(set), set.clone());
            conditions.push(format!(
                "{keyword} {address} {operator}@{}",
                selector_set_name(set, family)
            ));
        }
    }
    Some(Clause {
        family: Some(family),
        conditions,
    })
}

/// Alternatives for the destination port, with the not-ports folded into each.
fn port_clauses(entity: &Entity, references: &mut References) -> Vec<Clause> {
    let mut alternatives = Vec::new();
    if entity.ports.is_empty() {
        alternatives.push(Clause::any());
    }
    let mut numbered: Vec<(String, Vec<String>)> = Vec::new();
    for spec in &entity.ports {
        let protocol = protocol_condition(spec);
        match &spec.port {
            None => alternatives.push(Clause {
                family: None,
                conditions: vec![protocol],
            }),
            Some(PortMatch::Named(name)) => {
                alternatives.extend(named_port_clauses(spec, name, "", references));
            }
            Some(port) => {
                let text = port_text(port);
                match numbered.iter_mut().find(|(p, _)| *p == protocol) {
                    Some((_, ports)) => ports.push(text),
                    None => numbered.push((protocol, vec![text])),
                }
            }
        }
    }
    for (protocol, ports) in numbered {
        alternatives.push(Clause {
            family: None,
            conditions: vec![protocol, format!("th dport {{ {} }}", ports.join(", "))],
        });
    }
    let plain_not_ports: Vec<String> = entity
        .not_ports
        .iter()
        .filter_map(|spec| {
            spec.port
                .as_ref()
                .filter(|p| !matches!(p, PortMatch::Named(_)))
        })
        .map(port_text)
        .collect();
    if !plain_not_ports.is_empty() {
        let condition = format!("th dport != {{ {} }}", plain_not_ports.join(", "));
        for alternative in &mut alternatives {
            alternative.conditions.push(condition.clone());
        }
    }
    for spec in &entity.not_ports {
        if let Some(PortMatch::Named(name)) = &spec.port {
            let exclusions = named_port_clauses(spec, name, "!= ", references);
            alternatives = alternatives
                .iter()
                .flat_map(|alternative| {
                    exclusions
                        .iter()
                        .filter_map(|exclusion| {
                            let mut exclusion = exclusion.clone();
                            exclusion.conditions.remove(0);
                            alternative.and(&exclusion)
                        })
                        .collect::<Vec<_>>()
                })
                .collect();
        }
    }
    alternatives
}

fn named_port_clauses(
    spec: &PortSpec,
    name: &str,
    operator: &str,
    references: &mut References,
) -> Vec<Clause> {
    let protocols = match spec.protocol {
        Some(protocol) => vec![protocol],
        None => [6, 17, 132, 136]
            .into_iter()
            .map(crate::model::Protocol::from_number)
            .collect(),
    };
    let mut clauses = Vec::new();
    for protocol in protocols {
        references
            .named_ports
            .insert((name.to_string(), protocol.number()));
        for family in Family::BOTH {
            clauses.push(Clause {
                family: Some(family),
                conditions: vec![
                    format!("meta l4proto {}", protocol.number()),
                    format!(
                        "{} daddr . th dport {operator}@{}",
                        family.keyword(),
                        named_port_set_name(name, protocol, family)
                    ),
                ],
            });
        }
    }
    clauses
}

fn protocol_condition(spec: &PortSpec) -> String {
    match spec.protocol {
        Some(protocol) => format!("meta l4proto {}", protocol.number()),
        None => "meta l4proto { 6, 17, 132, 136 }".to_string(),
    }
}

fn port_text(port: &PortMatch) -> String {
    match port {
        PortMatch::Number(n) => n.to_string(),
        PortMatch::Range(first, last) => format!("{first}-{last}"),
        PortMatch::Named(name) => name.clone(),
    }
}
