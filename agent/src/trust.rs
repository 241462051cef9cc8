//! Which objects written by other parties may shape this node's routing. Any node's agent (or a
//! user with write access) can create an IPAMBlock or annotate a Node; the agent routes a pod
//! range only when it is what weft itself would have written, and reaches a peer only through an
//! address that can be a next hop. Everything else is refused here, by name and with the reason,
//! so it costs only itself: the rest of the cluster is still routed and all policy programmed.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use ipnet::{IpNet, Ipv4Net};

use crate::routes::Peer;
use crate::view::{ClusterView, NodeView, annotations};

/// What kind of object was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum RefusedKind {
    Block,
    Node,
    /// A policy nft refused (named `namespace/name` when namespaced), programmed as deny-all.
    Policy(weft_policy::model::PolicyKind),
}

impl RefusedKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RefusedKind::Block => "IPAMBlock",
            RefusedKind::Node => "Node",
            RefusedKind::Policy(_) => "policy",
        }
    }
}

/// One object the agent does not route by, and why.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Refusal {
    pub kind: RefusedKind,
    pub name: String,
    pub reason: String,
}

/// The blocks that may be routed, by name, and the refused ones. A block is routed only when
/// its name is its CIDR's name, it lies inside the pool it names at that pool's block size, it
/// names a Node that exists (or this node, which keeps serving its blocks while its own Node
/// object is missing), and it overlaps no other block.
pub fn trusted_blocks(view: &ClusterView, this_node: &str) -> (Vec<String>, Vec<Refusal>) {
    let mut refused = Vec::new();
    let mut candidates: Vec<(&String, Ipv4Net)> = Vec::new();
    for (name, block) in &view.blocks {
        let reason = block_problem(view, this_node, name, block);
        match reason {
            Some(reason) => refused.push(Refusal {
                kind: RefusedKind::Block,
                name: name.clone(),
                reason,
            }),
            None => candidates.push((name, block.cidr)),
        }
    }
    // Blocks of one pool never overlap (one name per CIDR, one size per pool); an overlap means
    // overlapping pools or a forged block, and neither side can be told right from the other.
    let mut trusted = Vec::with_capacity(candidates.len());
    for (index, (name, cidr)) in candidates.iter().enumerate() {
        let other = candidates
            .iter()
            .enumerate()
            .find(|(other, (_, net))| *other != index && overlaps(cidr, net));
        match other {
            Some((_, (other_name, _))) => refused.push(Refusal {
                kind: RefusedKind::Block,
                name: (*name).clone(),
                reason: format!("spec.cidr {cidr} overlaps block {other_name}"),
            }),
            None => trusted.push((*name).clone()),
        }
    }
    (trusted, refused)
}

fn overlaps(a: &Ipv4Net, b: &Ipv4Net) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

fn block_problem(
    view: &ClusterView,
    this_node: &str,
    name: &str,
    block: &crate::view::BlockView,
) -> Option<String> {
    let canonical = weft_api::ipam_block::block_name(IpNet::V4(block.cidr));
    if name != canonical || block.cidr.trunc() != block.cidr {
        return Some(format!(
            "name is not the name of spec.cidr {} (expected {canonical})",
            block.cidr
        ));
    }
    let Some(pool) = view.pools.get(&block.pool) else {
        return Some(format!("spec.pool {:?} names no IPPool", block.pool));
    };
    if !pool.cidr.contains(&block.cidr) {
        return Some(format!(
            "spec.cidr {} is outside IPPool {} ({})",
            block.cidr, block.pool, pool.cidr
        ));
    }
    if block.cidr.prefix_len() != pool.block_size {
        return Some(format!(
            "spec.cidr {} is not a /{} block of IPPool {}",
            block.cidr, pool.block_size, block.pool
        ));
    }
    if block.node != this_node && !view.nodes.contains_key(&block.node) {
        return Some(format!("spec.node {:?} names no Node", block.node));
    }
    None
}

/// Pod ranges from Nodes' podCIDRs (HostLocal IPAM): those overlapping another node's range
/// are refused on both sides.
pub fn trusted_pod_cidrs(view: &ClusterView) -> (Vec<(String, Ipv4Net)>, Vec<Refusal>) {
    let all: Vec<(&String, Ipv4Net)> = view
        .nodes
        .iter()
        .flat_map(|(name, node)| node.pod_cidrs.iter().map(move |cidr| (name, *cidr)))
        .collect();
    let mut trusted = Vec::with_capacity(all.len());
    let mut refused = Vec::new();
    for (name, cidr) in &all {
        match all
            .iter()
            .find(|(other, net)| other != name && overlaps(cidr, net))
        {
            Some((other, _)) => refused.push(Refusal {
                kind: RefusedKind::Node,
                name: (*name).clone(),
                reason: format!("spec.podCIDRs {cidr} overlaps node {other}'s"),
            }),
            None => trusted.push(((*name).clone(), *cidr)),
        }
    }
    (trusted, refused)
}

/// The peers this node may route through, by node name, and the refused ones. A peer's
/// address must be a unicast address that can be a next hop, not this node's own, outside
/// every pool, and not claimed by an older Node.
pub fn trusted_peers(
    view: &ClusterView,
    this_node: &str,
    this_address: Ipv4Addr,
) -> (BTreeMap<String, Peer>, Vec<Refusal>) {
    let mut peers = BTreeMap::new();
    let mut refused = Vec::new();
    let mut by_address: BTreeMap<Ipv4Addr, Vec<(&String, &NodeView)>> = BTreeMap::new();
    for (name, node) in view.nodes.iter().filter(|(name, _)| *name != this_node) {
        let Some(text) = node.weft_annotations.get(annotations::ADDRESS) else {
            continue;
        };
        let refuse = |reason: String| Refusal {
            kind: RefusedKind::Node,
            name: name.clone(),
            reason: format!("annotation {} {text:?}: {reason}", annotations::ADDRESS),
        };
        let Some(address) = node.address else {
            refused.push(refuse("not an IPv4 address with a prefix length".into()));
            continue;
        };
        if let Some(reason) = next_hop_problem(view, address.addr(), this_address) {
            refused.push(refuse(reason));
            continue;
        }
        by_address
            .entry(address.addr())
            .or_default()
            .push((name, node));
    }
    for (address, mut claimants) in by_address {
        // The Node that had the address first keeps it: a later Node announcing a taken
        // address must not pull that node's traffic (or cut it off).
        claimants.sort_by(|(a_name, a), (b_name, b)| {
            (a.created.as_ref().map(|time| time.0), a_name)
                .cmp(&(b.created.as_ref().map(|time| time.0), b_name))
        });
        let (owner, node) = claimants[0];
        peers.insert(
            owner.clone(),
            Peer {
                address,
                vtep_mac: node.vxlan_mac,
            },
        );
        for (name, _) in &claimants[1..] {
            refused.push(Refusal {
                kind: RefusedKind::Node,
                name: (*name).clone(),
                reason: format!(
                    "annotation {}: {address} is already node {owner}'s address",
                    annotations::ADDRESS
                ),
            });
        }
    }
    (peers, refused)
}

fn next_hop_problem(view: &ClusterView, address: Ipv4Addr, this: Ipv4Addr) -> Option<String> {
    if address.is_unspecified()
        || address.is_loopback()
        || address.is_multicast()
        || address.is_broadcast()
        || address.is_link_local()
        || address.octets()[0] >= 240
    {
        return Some("not a unicast address a route can go through".into());
    }
    if address == this {
        return Some("it is this node's own address".into());
    }
    // Only the pools count: they are the admin's, while a block or a podCIDR may be forged
    // (and a forged 0.0.0.0/1 must not make every peer look inside the pod network).
    if view.pools.values().any(|pool| pool.cidr.contains(&address)) {
        return Some("it lies inside the pod network".into());
    }
    None
}

#[cfg(test)]
mod tests;
