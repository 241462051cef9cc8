//! Which tracked connections a node must cut after a policy change: those whose original
//! direction the node's own rules would now drop. A node enforces the egress of its pods and
//! the ingress of its pods, so a flow is cut here when its source is a local pod whose egress
//! denies it, or its destination is a local pod and the source is a pod whose connection the
//! policy now denies. Flows the node itself opened (its address is no pod's) are never cut:
//! the node's traffic to its pods is not filtered.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use weft_policy::eval::{Traffic, egress_to_address, verdict_with};
use weft_policy::model::{Cluster, Endpoint, Protocol};
use weft_policy::nft::CUT_MARK;

use super::conntrack::Flow;

/// What to do with the tracked flows after a change.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Cuts {
    /// Newly denied TCP connections: delete.
    pub delete: Vec<Flow>,
    /// Newly denied flows of other protocols: mark with `CUT_MARK`.
    pub mark: Vec<Flow>,
    /// Flows cut earlier that policy allows again: delete, so their next packet starts afresh.
    pub release: Vec<Flow>,
}

/// Sorts the flows of `flows` under `cluster`, given the keys of the local endpoints.
pub fn plan(cluster: &Cluster, local: &BTreeSet<String>, flows: &[Flow]) -> Cuts {
    let denied = denied(cluster, local, flows);
    let mut cuts = Cuts::default();
    for flow in flows {
        let cut = flow.mark & CUT_MARK != 0;
        match (denied.contains(flow), cut) {
            (true, false) if flow.protocol == TCP => cuts.delete.push(*flow),
            (true, false) => cuts.mark.push(*flow),
            (false, true) => cuts.release.push(*flow),
            _ => {}
        }
    }
    cuts
}

const TCP: u8 = 6;

/// The flows of `flows` the node's rules would now drop.
fn denied(cluster: &Cluster, local: &BTreeSet<String>, flows: &[Flow]) -> Vec<Flow> {
    let mut by_address: BTreeMap<IpAddr, &Endpoint> = BTreeMap::new();
    for endpoint in &cluster.endpoints {
        for ip in &endpoint.ips {
            by_address.entry(*ip).or_insert(endpoint);
        }
    }
    let is_local = |endpoint: &&Endpoint| local.contains(&endpoint.key());
    let ordered = cluster.ordered_policies();
    flows
        .iter()
        .filter(|flow| {
            let src = by_address.get(&flow.src).copied();
            let dst = by_address.get(&flow.dst).copied();
            let traffic = Traffic {
                protocol: Protocol::from_number(flow.protocol),
                port: flow.dport.unwrap_or(0),
            };
            match (src, dst) {
                (Some(src), Some(dst)) if is_local(&src) || is_local(&dst) => {
                    !verdict_with(cluster, &ordered, src, dst, traffic).allowed
                }
                (Some(src), None) if is_local(&src) => {
                    !egress_to_address(cluster, src, flow.dst, traffic)
                        .decision
                        .allows()
                }
                _ => false,
            }
        })
        .copied()
        .collect()
}
