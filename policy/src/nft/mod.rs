//! The nftables compiler: turns a [`Cluster`] into one `inet` table that enforces the same
//! verdicts as [`crate::eval`].
//!
//! Layout of the table:
//! - two base chains on the forward hook, `egress` (priority 0) then `ingress` (priority 10),
//!   each accepting established/related traffic and IPv6 neighbour discovery, and dispatching
//!   through a verdict map keyed by the source (destination) address to the endpoint's chain.
//!   `accept` ends only the base chain it happens in, so an egress accept still meets the
//!   ingress base chain.
//! - one chain per endpoint and direction (`ep_*_in` / `ep_*_out`) that jumps to the chains of
//!   the policies selecting the endpoint, in policy order, and drops at the end (default deny).
//! - one chain per policy and direction (`po_*`) holding its rules: Allow and Pass accept, Deny
//!   drops, Log logs and falls through.
//! - named sets of addresses per endpoint selector (`sel_*_v4`/`_v6`) and of address . port per
//!   named port (`np_*`), so a pod joining a selector is one element add, not a reload.
//!
//! - for a node, the workload guard ([`Guard`], see `guard.rs`): traffic of a pod the agent has
//!   not programmed, or sent from an address that is not its own, is dropped first.
//!
//! [`Ruleset::full_script`] replaces the table in one transaction; [`diff`] gives the commands
//! from one state to the next, also one transaction.

mod guard;
mod rules;
mod script;

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

pub use guard::{CUT_MARK, Guard, endpoint_set_name};
pub use script::{Change, diff};

use crate::eval::{applies_to, set_contains};
use crate::model::{Cluster, Direction, EndpointSet, NamespaceScope, Policy, PolicyId, Protocol};

/// The default name of the table the compiler owns.
pub const DEFAULT_TABLE: &str = "weft_policy";

/// A named set or verdict map and its elements, in nft syntax.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamedSet {
    /// The declaration body, such as `type ipv4_addr;`.
    pub declaration: String,
    pub elements: BTreeSet<String>,
}

/// A chain: its base-chain declaration (when hooked) and its rules in order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Chain {
    pub hook: Option<String>,
    pub rules: Vec<String>,
}

/// A compiled `inet` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ruleset {
    pub table: String,
    pub sets: BTreeMap<String, NamedSet>,
    pub chains: BTreeMap<String, Chain>,
}

/// An address family of the dataplane.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    pub(crate) const BOTH: [Family; 2] = [Family::V4, Family::V6];

    pub(crate) fn suffix(self) -> &'static str {
        match self {
            Family::V4 => "v4",
            Family::V6 => "v6",
        }
    }

    /// The payload expression prefix: `ip` or `ip6`.
    pub(crate) fn keyword(self) -> &'static str {
        match self {
            Family::V4 => "ip",
            Family::V6 => "ip6",
        }
    }

    fn address_type(self) -> &'static str {
        match self {
            Family::V4 => "ipv4_addr",
            Family::V6 => "ipv6_addr",
        }
    }

    pub(crate) fn of(ip: &IpAddr) -> Family {
        if ip.is_ipv4() { Family::V4 } else { Family::V6 }
    }
}

/// FNV-1a, 64 bits: stable names across runs and versions, unlike the std hasher.
pub(crate) fn short_hash(text: &str) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in text.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{hash:016x}")
}

pub(crate) fn endpoint_set_key(set: &EndpointSet) -> String {
    let scope = match &set.namespaces {
        NamespaceScope::Any => "any".to_string(),
        NamespaceScope::Named(name) => format!("named:{name}"),
        NamespaceScope::Matching(selector) => format!("matching:{selector}"),
    };
    format!("{scope}|{}|{:?}", set.selector, set.service_accounts)
}

pub(crate) fn selector_set_name(set: &EndpointSet, family: Family) -> String {
    format!(
        "sel_{}_{}",
        short_hash(&endpoint_set_key(set)),
        family.suffix()
    )
}

pub(crate) fn named_port_set_name(name: &str, protocol: Protocol, family: Family) -> String {
    let key = format!("{name}|{}", protocol.number());
    format!("np_{}_{}", short_hash(&key), family.suffix())
}

pub(crate) fn policy_chain_name(id: &PolicyId, direction: Direction) -> String {
    let key = format!("{:?}|{:?}|{}", id.kind, id.namespace, id.name);
    format!("po_{}_{}", short_hash(&key), direction_suffix(direction))
}

/// The chain of endpoint `key` (`namespace/name`) for `direction`.
pub fn endpoint_chain_name(key: &str, direction: Direction) -> String {
    format!("ep_{}_{}", short_hash(key), direction_suffix(direction))
}

fn direction_suffix(direction: Direction) -> &'static str {
    match direction {
        Direction::Ingress => "in",
        Direction::Egress => "out",
    }
}

/// What the rules of all policies refer to, filled while compiling them.
#[derive(Default)]
pub(crate) struct References {
    pub endpoint_sets: BTreeMap<String, EndpointSet>,
    pub named_ports: BTreeSet<(String, u8)>,
}

/// Compiles the cluster into the table `table`: every endpoint gets its chains, hooked on
/// forward only (the shape the policy tests and benchmarks use).
pub fn compile(cluster: &Cluster, table: &str) -> Ruleset {
    compile_scoped(cluster, table, None)
}

/// Compiles what one node enforces: chains and dispatch entries only for the endpoints in
/// `local` (keys `namespace/name`; remote endpoints still fill the selector sets), hooked where
/// the node agent needs them:
/// - forward: pod to pod, on this node or across nodes (each node enforces its own pods'
///   egress on the way out and ingress on the way in);
/// - input: a local pod's traffic to its own node is its egress, so egress policy governs it.
///
/// Traffic the node itself sends to its pods (output hook) is never filtered: the kubelet's
/// probes must always reach them, and their replies are established traffic.
pub fn compile_for_node(cluster: &Cluster, table: &str, local: &BTreeSet<String>) -> Ruleset {
    let mut ruleset = compile_scoped(cluster, table, Some(local));
    add_host_chain(&mut ruleset.chains);
    ruleset
}

/// [`compile_for_node`] with the workload guard: only the pods bound in `guard` send or receive
/// anything on a workload interface, and only from and to their own addresses.
pub fn compile_guarded(
    cluster: &Cluster,
    table: &str,
    local: &BTreeSet<String>,
    guard: &Guard,
) -> Ruleset {
    let mut ruleset = compile_for_node(cluster, table, local);
    for (name, from, to) in [("egress", true, true), ("egress_host", true, false)] {
        if let Some(chain) = ruleset.chains.get_mut(name) {
            let mut rules = guard::entry_rules(guard, from, to);
            rules.append(&mut chain.rules);
            chain.rules = rules;
        }
    }
    guard::add_guard(guard, &mut ruleset.chains, &mut ruleset.sets);
    ruleset
}

fn compile_scoped(cluster: &Cluster, table: &str, local: Option<&BTreeSet<String>>) -> Ruleset {
    let mut ordered = cluster.ordered_policies();
    if let Some(keys) = local {
        // A node needs the chains (and the sets they refer to) only of the policies that select
        // one of its own pods: the others are enforced where their pods live.
        let local_endpoints: Vec<_> = cluster
            .endpoints
            .iter()
            .filter(|endpoint| keys.contains(&endpoint.key()))
            .collect();
        ordered.retain(|policy| {
            local_endpoints
                .iter()
                .any(|endpoint| applies_to(cluster, policy, endpoint))
        });
    }
    let mut references = References::default();
    let mut chains = BTreeMap::new();
    for policy in &ordered {
        for direction in [Direction::Ingress, Direction::Egress] {
            if let Some(rules) = policy.rules(direction)
                && !rules.is_empty()
            {
                let lines = rules::policy_chain(policy, direction, rules, &mut references);
                chains.insert(
                    policy_chain_name(&policy.id, direction),
                    Chain {
                        hook: None,
                        rules: lines,
                    },
                );
            }
        }
    }
    let mut sets = BTreeMap::new();
    add_selector_sets(cluster, &references, &mut sets);
    add_named_port_sets(cluster, &references, &mut sets);
    add_endpoint_chains(cluster, &ordered, local, &mut chains, &mut sets);
    add_base_chains(&mut chains);
    Ruleset {
        table: table.to_string(),
        sets,
        chains,
    }
}

fn add_selector_sets(
    cluster: &Cluster,
    references: &References,
    sets: &mut BTreeMap<String, NamedSet>,
) {
    for set in references.endpoint_sets.values() {
        let mut members: BTreeMap<Family, BTreeSet<String>> = BTreeMap::new();
        for endpoint in &cluster.endpoints {
            if set_contains(cluster, set, endpoint) {
                for ip in &endpoint.ips {
                    members
                        .entry(Family::of(ip))
                        .or_default()
                        .insert(ip.to_string());
                }
            }
        }
        for family in Family::BOTH {
            sets.insert(
                selector_set_name(set, family),
                NamedSet {
                    declaration: format!("type {};", family.address_type()),
                    elements: members.remove(&family).unwrap_or_default(),
                },
            );
        }
    }
}

fn add_named_port_sets(
    cluster: &Cluster,
    references: &References,
    sets: &mut BTreeMap<String, NamedSet>,
) {
    for (name, number) in &references.named_ports {
        let protocol = Protocol::from_number(*number);
        for family in Family::BOTH {
            let elements = cluster
                .endpoints
                .iter()
                .filter_map(|e| e.named_port(name, protocol).map(|port| (e, port)))
                .flat_map(|(e, port)| {
                    e.ips
                        .iter()
                        .filter(|ip| Family::of(ip) == family)
                        .map(move |ip| format!("{ip} . {port}"))
                })
                .collect();
            sets.insert(
                named_port_set_name(name, protocol, family),
                NamedSet {
                    declaration: format!("type {} . inet_service;", family.address_type()),
                    elements,
                },
            );
        }
    }
}

fn add_endpoint_chains(
    cluster: &Cluster,
    ordered: &[&Policy],
    local: Option<&BTreeSet<String>>,
    chains: &mut BTreeMap<String, Chain>,
    sets: &mut BTreeMap<String, NamedSet>,
) {
    let enforced = |endpoint: &&crate::model::Endpoint| {
        local.is_none_or(|keys| keys.contains(&endpoint.key()))
    };
    for direction in [Direction::Ingress, Direction::Egress] {
        // One entry per address: nft rejects a map transaction holding a key twice, and two
        // endpoints can report one address for a moment (a deleted pod's address handed out
        // again before its object is gone). The first endpoint in order keeps it.
        let mut dispatch: BTreeMap<IpAddr, String> = BTreeMap::new();
        for endpoint in cluster.endpoints.iter().filter(enforced) {
            let applying: Vec<&&Policy> = ordered
                .iter()
                .filter(|p| p.rules(direction).is_some() && applies_to(cluster, p, endpoint))
                .collect();
            if applying.is_empty() || endpoint.ips.is_empty() {
                continue;
            }
            let mut rules: Vec<String> = applying
                .iter()
                .filter(|p| p.rules(direction).is_some_and(|r| !r.is_empty()))
                .map(|p| format!("jump {}", policy_chain_name(&p.id, direction)))
                .collect();
            rules.push("drop".into());
            let chain = endpoint_chain_name(&endpoint.key(), direction);
            for ip in &endpoint.ips {
                dispatch.entry(*ip).or_insert_with(|| chain.clone());
            }
            chains.insert(chain, Chain { hook: None, rules });
        }
        for family in Family::BOTH {
            let elements = dispatch
                .iter()
                .filter(|(ip, _)| Family::of(ip) == family)
                .map(|(ip, chain)| format!("{ip} : jump {chain}"))
                .collect();
            sets.insert(
                dispatch_map_name(direction, family),
                NamedSet {
                    declaration: format!("type {} : verdict;", family.address_type()),
                    elements,
                },
            );
        }
    }
}

fn dispatch_map_name(direction: Direction, family: Family) -> String {
    let direction = match direction {
        Direction::Ingress => "ingress",
        Direction::Egress => "egress",
    };
    format!("{direction}_{}", family.suffix())
}

/// The first rules of every base chain: established traffic passes, and so does IPv6 neighbour
/// discovery, which is what IPv4's ARP is (ARP never reaches these chains; without this an
/// isolated pod would lose its IPv6 neighbours); then the dispatch of `direction` by `address`.
fn base_rules(direction: Direction, address: &str) -> Vec<String> {
    let mut rules = vec![
        "ct state established,related accept".to_string(),
        "icmpv6 type { nd-neighbor-solicit, nd-neighbor-advert, nd-router-solicit, \
         nd-router-advert } accept"
            .to_string(),
    ];
    for family in Family::BOTH {
        rules.push(format!(
            "{} {address} vmap @{}",
            family.keyword(),
            dispatch_map_name(direction, family)
        ));
    }
    rules
}

/// `egress_host`: on the input hook, a local pod's traffic to its node meets its egress chain.
fn add_host_chain(chains: &mut BTreeMap<String, Chain>) {
    chains.insert(
        "egress_host".to_string(),
        Chain {
            hook: Some("type filter hook input priority 0; policy accept;".to_string()),
            rules: base_rules(Direction::Egress, "saddr"),
        },
    );
}

fn add_base_chains(chains: &mut BTreeMap<String, Chain>) {
    for (name, direction, priority, address) in [
        ("egress", Direction::Egress, 0, "saddr"),
        ("ingress", Direction::Ingress, 10, "daddr"),
    ] {
        let rules = base_rules(direction, address);
        chains.insert(
            name.to_string(),
            Chain {
                hook: Some(format!(
                    "type filter hook forward priority {priority}; policy accept;"
                )),
                rules,
            },
        );
    }
}
