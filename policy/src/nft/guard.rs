//! The workload guard: what makes the node's policy fail closed.
//!
//! A node's table holds the (interface . address) pairs of the local pods whose policy the agent
//! has programmed, in `endpoints_v4` / `endpoints_v6`. Every packet from a workload interface
//! whose `iifname . saddr` is not in the set is dropped, and so is every packet to a workload
//! interface whose `oifname . daddr` is not: a pod the agent has not programmed yet sends and
//! receives nothing (the way Calico treats workload interfaces it does not know), and a pod can
//! only send from its own address on its own interface, whatever the host's `rp_filter` says
//! (anti-spoofing). The guard runs before the established-traffic accept, so a spoofed packet
//! cannot ride on another pod's connection either, and it covers the input and output hooks:
//! a pod cannot reach its node with a forged address, and an unprogrammed pod gets nothing from
//! the node. Once a pod is programmed, traffic its node sends it stays unfiltered (kubelet
//! probes).
//!
//! The rules match workload interfaces by name prefix, so a pod whose interface appeared after
//! the agent last ran (or while it is down) is dropped by the table installed earlier: nothing
//! needs to run for a new interface to be closed.
//!
//! Connections cut by a policy change must not come back in the reverse orientation, where
//! another policy may allow them, from a packet the other side happens to send next (a reply
//! in flight). A cut TCP connection's entry is deleted, and a TCP packet that opens an entry
//! without SYN or RST to or from a workload is answered with a reset, so both ends learn the
//! connection is gone at their next packet rather than after their retransmission timeout;
//! a cut connection of any other protocol
//! keeps its entry, marked with [`CUT_MARK`], and every packet of a marked entry is dropped
//! (the agent deletes the entry once policy allows the flow again).

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use super::{Chain, Family, NamedSet};

/// What the guard needs from the agent: which interfaces are workloads, and which of them
/// (with which addresses) are programmed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Guard {
    /// Prefix of every workload interface's name (nft matches `prefix*`).
    pub interface_prefix: String,
    /// Interfaces with that prefix that are not workloads (the VXLAN device).
    pub exempt: Vec<String>,
    /// (host interface, address) of every programmed local pod.
    pub bindings: BTreeSet<(String, IpAddr)>,
}

/// Name of the set of programmed (interface . address) pairs of `family`.
pub fn endpoint_set_name(family: Family) -> String {
    format!("endpoints_{}", family.suffix())
}

/// The conntrack mark bit of connections a policy change cut (non-TCP).
pub const CUT_MARK: u32 = 0x1000_0000;

const FROM_WORKLOAD: &str = "from_workload";
const TO_WORKLOAD: &str = "to_workload";

/// Matches on `iifname`/`oifname` (`side`) for a workload interface.
fn workload_match(guard: &Guard, side: &str) -> String {
    let mut text = format!("{side} \"{}*\"", guard.interface_prefix);
    if !guard.exempt.is_empty() {
        let names: Vec<String> = guard.exempt.iter().map(|n| format!("\"{n}\"")).collect();
        text.push_str(&format!(" {side} != {{ {} }}", names.join(", ")));
    }
    text
}

/// The rules to put first in a base chain: traffic from (and, with `to`, to) a workload goes
/// through the guard chains.
pub(super) fn entry_rules(guard: &Guard, from: bool, to: bool) -> Vec<String> {
    let mut rules = Vec::new();
    if from {
        rules.push(format!(
            "{} jump {FROM_WORKLOAD}",
            workload_match(guard, "iifname")
        ));
    }
    if to {
        rules.push(format!(
            "{} jump {TO_WORKLOAD}",
            workload_match(guard, "oifname")
        ));
    }
    rules
}

fn guard_chain(side: &str, address: &str) -> Chain {
    let mut rules = vec![
        // IPv6 neighbour discovery uses link-local and unspecified sources: it is what ARP is
        // to IPv4, and ARP never meets these chains.
        "icmpv6 type { nd-neighbor-solicit, nd-neighbor-advert, nd-router-solicit, \
         nd-router-advert } return"
            .to_string(),
        // A mid-stream TCP packet that finds no entry belongs to a connection a policy change
        // cut: its sender is told at once (a reset), instead of retransmitting into silence
        // until its own timeout (a keep-alive connection of the API server's pod proxy hung
        // for minutes so).
        "ct state new meta l4proto tcp tcp flags & (syn | rst) == 0 reject with tcp reset"
            .to_string(),
        format!("ct mark & {CUT_MARK:#x} == {CUT_MARK:#x} drop"),
    ];
    for family in Family::BOTH {
        rules.push(format!(
            "meta nfproto {} {side} . {} {address} @{} return",
            match family {
                Family::V4 => "ipv4",
                Family::V6 => "ipv6",
            },
            family.keyword(),
            endpoint_set_name(family)
        ));
    }
    rules.push("drop".to_string());
    Chain { hook: None, rules }
}

/// Adds the guard's sets, its two chains and the output hook's chain.
pub(super) fn add_guard(
    guard: &Guard,
    chains: &mut BTreeMap<String, Chain>,
    sets: &mut BTreeMap<String, NamedSet>,
) {
    for family in Family::BOTH {
        let elements = guard
            .bindings
            .iter()
            .filter(|(_, ip)| Family::of(ip) == family)
            .map(|(interface, ip)| format!("\"{interface}\" . {ip}"))
            .collect();
        sets.insert(
            endpoint_set_name(family),
            NamedSet {
                declaration: format!("type ifname . {};", family.address_type()),
                elements,
            },
        );
    }
    chains.insert(FROM_WORKLOAD.into(), guard_chain("iifname", "saddr"));
    chains.insert(TO_WORKLOAD.into(), guard_chain("oifname", "daddr"));
    chains.insert(
        "to_pods".into(),
        Chain {
            hook: Some("type filter hook output priority 0; policy accept;".into()),
            rules: entry_rules(guard, false, true),
        },
    );
}
