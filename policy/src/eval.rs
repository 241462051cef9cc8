//! The verdict evaluator: decides whether a connection between two endpoints is allowed, and
//! which policy and rule decided.
//!
//! A connection needs egress allowed at the source and ingress allowed at the destination. In
//! each direction the policies that select the endpoint are tried in order (order, then name);
//! the first rule that matches with Allow, Deny or Pass decides (Pass ends the tier and, there
//! being no later tier, lets the packet through); Log rules are noted and evaluation goes on.
//! If policies select the endpoint and none decides, the packet is denied. An endpoint that no
//! policy selects in a direction is not isolated in it, and a pod may always reach itself.

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;

use crate::model::{
    Action, Cluster, Direction, Endpoint, EndpointSet, Entity, NamespaceScope, Peer, Policy,
    PolicyId, PortSpec, Protocol, Rule,
};
use weft_api::PortMatch;

/// A packet's protocol and destination port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Traffic {
    pub protocol: Protocol,
    pub port: u16,
}

/// What decided one direction.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// No policy selects the endpoint in this direction.
    NotIsolated,
    /// A rule matched: `rule` is its index in the policy's rules of this direction.
    Rule {
        policy: PolicyId,
        rule: usize,
        action: Action,
    },
    /// Policies select the endpoint but no rule decided.
    DefaultDeny { policies: Vec<PolicyId> },
}

impl Decision {
    pub fn allows(&self) -> bool {
        match self {
            Decision::NotIsolated => true,
            Decision::Rule { action, .. } => matches!(action, Action::Allow | Action::Pass),
            Decision::DefaultDeny { .. } => false,
        }
    }
}

/// The outcome of one direction at one endpoint.
#[derive(Debug, Clone, PartialEq)]
pub struct DirectionVerdict {
    pub direction: Direction,
    pub endpoint: String,
    pub decision: Decision,
    /// Log rules that matched before the decision, as (policy, rule index).
    pub logged: Vec<(PolicyId, usize)>,
}

/// The outcome for a connection.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    pub allowed: bool,
    /// `None` when source and destination are the same endpoint.
    pub egress: Option<DirectionVerdict>,
    /// `None` when egress already denied, or for a pod reaching itself.
    pub ingress: Option<DirectionVerdict>,
}

/// Decides a connection from `src` to `dst`.
pub fn verdict(cluster: &Cluster, src: &Endpoint, dst: &Endpoint, traffic: Traffic) -> Verdict {
    let ordered = cluster.ordered_policies();
    verdict_with(cluster, &ordered, src, dst, traffic)
}

/// Like [`verdict`], with the policies already in evaluation order (for many verdicts in a row).
pub fn verdict_with<'a>(
    cluster: &'a Cluster,
    ordered: &[&'a Policy],
    src: &'a Endpoint,
    dst: &'a Endpoint,
    traffic: Traffic,
) -> Verdict {
    if src.namespace == dst.namespace && src.name == dst.name {
        return Verdict {
            allowed: true,
            egress: None,
            ingress: None,
        };
    }
    let selecting = |endpoint: &'a Endpoint, direction: Direction| {
        ordered.iter().copied().filter(move |policy| {
            policy.rules(direction).is_some() && applies_to(cluster, policy, endpoint)
        })
    };
    decide_both(
        cluster,
        selecting(src, Direction::Egress),
        selecting(dst, Direction::Ingress),
        (src, dst),
        Packet {
            src: Target::Endpoint(src),
            dst: Target::Endpoint(dst),
            traffic,
        },
    )
}

fn decide_both<'p>(
    cluster: &Cluster,
    egress_policies: impl Iterator<Item = &'p Policy>,
    ingress_policies: impl Iterator<Item = &'p Policy>,
    (src, dst): (&Endpoint, &Endpoint),
    packet: Packet<'_>,
) -> Verdict {
    let egress = decide(cluster, egress_policies, src, Direction::Egress, &packet);
    if !egress.decision.allows() {
        return Verdict {
            allowed: false,
            egress: Some(egress),
            ingress: None,
        };
    }
    let ingress = decide(cluster, ingress_policies, dst, Direction::Ingress, &packet);
    Verdict {
        allowed: ingress.decision.allows(),
        egress: Some(egress),
        ingress: Some(ingress),
    }
}

/// Answers many verdicts over one cluster: which policies select each endpoint in each
/// direction is worked out once, up front.
pub struct Evaluator<'a> {
    cluster: &'a Cluster,
    /// Per endpoint key: the selecting policies for (ingress, egress), in order.
    selecting: HashMap<String, (Vec<&'a Policy>, Vec<&'a Policy>)>,
}

impl<'a> Evaluator<'a> {
    pub fn new(cluster: &'a Cluster) -> Self {
        let ordered = cluster.ordered_policies();
        let select = |endpoint: &Endpoint, direction: Direction| -> Vec<&'a Policy> {
            ordered
                .iter()
                .copied()
                .filter(|p| p.rules(direction).is_some() && applies_to(cluster, p, endpoint))
                .collect()
        };
        let selecting = cluster
            .endpoints
            .iter()
            .map(|e| {
                let lists = (select(e, Direction::Ingress), select(e, Direction::Egress));
                (e.key(), lists)
            })
            .collect();
        Self { cluster, selecting }
    }

    /// Same answer as [`verdict`] for endpoints of the cluster given to [`Evaluator::new`].
    pub fn verdict(&self, src: &Endpoint, dst: &Endpoint, traffic: Traffic) -> Verdict {
        if src.namespace == dst.namespace && src.name == dst.name {
            return Verdict {
                allowed: true,
                egress: None,
                ingress: None,
            };
        }
        let (Some(from), Some(to)) = (
            self.selecting.get(&src.key()),
            self.selecting.get(&dst.key()),
        ) else {
            let ordered = self.cluster.ordered_policies();
            return verdict_with(self.cluster, &ordered, src, dst, traffic);
        };
        decide_both(
            self.cluster,
            from.1.iter().copied(),
            to.0.iter().copied(),
            (src, dst),
            Packet {
                src: Target::Endpoint(src),
                dst: Target::Endpoint(dst),
                traffic,
            },
        )
    }
}

/// Decides the egress of `src` towards an address that belongs to no endpoint, such as the
/// node the pod runs on: only address peers (`nets`, `ipBlock`) can match it, selector peers
/// and named ports never do, and there is no ingress side to ask.
pub fn egress_to_address(
    cluster: &Cluster,
    src: &Endpoint,
    address: IpAddr,
    traffic: Traffic,
) -> DirectionVerdict {
    let ordered = cluster.ordered_policies();
    let selecting = ordered.iter().copied().filter(|policy| {
        policy.rules(Direction::Egress).is_some() && applies_to(cluster, policy, src)
    });
    let packet = Packet {
        src: Target::Endpoint(src),
        dst: Target::Address(address),
        traffic,
    };
    decide(cluster, selecting, src, Direction::Egress, &packet)
}

/// Decides the ingress of `dst` from an address that belongs to no endpoint (outside the
/// cluster's pods, another node): as for [`egress_to_address`], only address peers can match
/// it, and there is no egress side to ask.
pub fn ingress_from_address(
    cluster: &Cluster,
    address: IpAddr,
    dst: &Endpoint,
    traffic: Traffic,
) -> DirectionVerdict {
    let ordered = cluster.ordered_policies();
    let selecting = ordered.iter().copied().filter(|policy| {
        policy.rules(Direction::Ingress).is_some() && applies_to(cluster, policy, dst)
    });
    let packet = Packet {
        src: Target::Address(address),
        dst: Target::Endpoint(dst),
        traffic,
    };
    decide(cluster, selecting, dst, Direction::Ingress, &packet)
}

struct Packet<'a> {
    src: Target<'a>,
    dst: Target<'a>,
    traffic: Traffic,
}

/// One end of a packet: an endpoint of the cluster, or an address outside it.
#[derive(Clone, Copy)]
enum Target<'a> {
    Endpoint(&'a Endpoint),
    Address(IpAddr),
}

impl Target<'_> {
    fn ip(self) -> Option<IpAddr> {
        match self {
            Target::Endpoint(endpoint) => endpoint.primary_ip(),
            Target::Address(address) => Some(address),
        }
    }

    fn in_set(self, cluster: &Cluster, set: &EndpointSet) -> bool {
        match self {
            Target::Endpoint(endpoint) => set_contains(cluster, set, endpoint),
            Target::Address(_) => false,
        }
    }

    fn named_port(self, name: &str, protocol: Protocol) -> Option<u16> {
        match self {
            Target::Endpoint(endpoint) => endpoint.named_port(name, protocol),
            Target::Address(_) => None,
        }
    }
}

/// Decides one direction given the policies that select the endpoint in it, in order.
fn decide<'p>(
    cluster: &Cluster,
    selecting: impl Iterator<Item = &'p Policy>,
    endpoint: &Endpoint,
    direction: Direction,
    packet: &Packet<'_>,
) -> DirectionVerdict {
    let mut applying = Vec::new();
    let mut logged = Vec::new();
    let mut decision = None;
    'policies: for policy in selecting {
        let rules = policy.rules(direction).unwrap_or_default();
        applying.push(policy.id.clone());
        for (index, rule) in rules.iter().enumerate() {
            if !rule_matches(cluster, rule, packet) {
                continue;
            }
            if rule.action == Action::Log {
                logged.push((policy.id.clone(), index));
                continue;
            }
            decision = Some(Decision::Rule {
                policy: policy.id.clone(),
                rule: index,
                action: rule.action,
            });
            break 'policies;
        }
    }
    let decision = decision.unwrap_or(if applying.is_empty() {
        Decision::NotIsolated
    } else {
        Decision::DefaultDeny { policies: applying }
    });
    DirectionVerdict {
        direction,
        endpoint: endpoint.key(),
        decision,
        logged,
    }
}

/// Whether a policy selects an endpoint (namespace, namespace labels, endpoint labels).
pub fn applies_to(cluster: &Cluster, policy: &Policy, endpoint: &Endpoint) -> bool {
    if policy
        .namespace
        .as_ref()
        .is_some_and(|ns| *ns != endpoint.namespace)
    {
        return false;
    }
    if let Some(namespaces) = &policy.namespace_selector
        && !namespaces.matches(&cluster.namespace_labels(&endpoint.namespace).as_ref())
    {
        return false;
    }
    policy.selector.matches(&endpoint.labels)
}

/// Whether an endpoint belongs to a set.
pub fn set_contains(cluster: &Cluster, set: &EndpointSet, endpoint: &Endpoint) -> bool {
    let in_scope = match &set.namespaces {
        NamespaceScope::Any => true,
        NamespaceScope::Named(name) => *name == endpoint.namespace,
        NamespaceScope::Matching(selector) => {
            selector.matches(&cluster.namespace_labels(&endpoint.namespace).as_ref())
        }
    };
    in_scope
        && set
            .service_accounts
            .as_ref()
            .is_none_or(|names| names.contains(&endpoint.service_account))
        && set.selector.matches(&endpoint.labels)
}

fn rule_matches(cluster: &Cluster, rule: &Rule, packet: &Packet<'_>) -> bool {
    let protocol = packet.traffic.protocol.number();
    rule.protocol.is_none_or(|p| p.number() == protocol)
        && rule.not_protocol.is_none_or(|p| p.number() != protocol)
        && entity_matches(cluster, &rule.source, packet.src, None)
        && entity_matches(cluster, &rule.destination, packet.dst, Some(packet))
}

/// Matches one end; ports are checked only for the destination end (`packet` given).
fn entity_matches(
    cluster: &Cluster,
    entity: &Entity,
    end: Target<'_>,
    packet: Option<&Packet<'_>>,
) -> bool {
    let peers_ok = entity.peers.is_empty()
        || entity
            .peers
            .iter()
            .any(|peer| peer_matches(cluster, peer, end));
    let ports_ok = match packet {
        None => true,
        Some(packet) => {
            (entity.ports.is_empty() || entity.ports.iter().any(|p| port_matches(p, packet)))
                && !entity.not_ports.iter().any(|p| port_matches(p, packet))
        }
    };
    peers_ok && ports_ok
}

fn peer_matches(cluster: &Cluster, peer: &Peer, end: Target<'_>) -> bool {
    let ip: Option<IpAddr> = end.ip();
    let in_nets = |nets: &[ipnet::IpNet]| ip.is_some_and(|ip| nets.iter().any(|n| n.contains(&ip)));
    (peer.nets.is_empty() || in_nets(&peer.nets))
        && !in_nets(&peer.not_nets)
        && peer
            .endpoints
            .as_ref()
            .is_none_or(|set| end.in_set(cluster, set))
        && !peer
            .not_endpoints
            .as_ref()
            .is_some_and(|set| end.in_set(cluster, set))
}

fn port_matches(spec: &PortSpec, packet: &Packet<'_>) -> bool {
    let protocol = packet.traffic.protocol;
    if !protocol.has_ports()
        || spec
            .protocol
            .is_some_and(|p| p.number() != protocol.number())
    {
        return false;
    }
    let port = packet.traffic.port;
    match &spec.port {
        None => true,
        Some(PortMatch::Number(n)) => *n == port,
        Some(PortMatch::Range(first, last)) => (*first..=*last).contains(&port),
        Some(PortMatch::Named(name)) => packet.dst.named_port(name, protocol) == Some(port),
    }
}

impl fmt::Display for DirectionVerdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (direction, end) = match self.direction {
            Direction::Egress => ("egress", "source"),
            Direction::Ingress => ("ingress", "destination"),
        };
        write!(f, "{direction} at {}: ", self.endpoint)?;
        match &self.decision {
            Decision::NotIsolated => write!(f, "allowed, no policy selects the {end}")?,
            Decision::Rule {
                policy,
                rule,
                action,
            } => {
                let verb = match action {
                    Action::Allow => "allowed",
                    Action::Deny => "denied",
                    Action::Pass | Action::Log => "passed (no later tier, so allowed)",
                };
                write!(f, "{verb} by {policy} {direction} rule {rule} ({action:?})")?;
            }
            Decision::DefaultDeny { policies } => {
                let names: Vec<String> = policies.iter().map(ToString::to_string).collect();
                write!(
                    f,
                    "denied by default deny because policies {} select the {end}",
                    names.join(", ")
                )?;
            }
        }
        for (policy, rule) in &self.logged {
            write!(f, "; logged by {policy} {direction} rule {rule}")?;
        }
        Ok(())
    }
}
