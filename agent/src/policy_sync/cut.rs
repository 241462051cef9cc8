//! Which tracked connections a node must cut after a policy change: those whose original
//! direction the node's own rules would now drop. A node enforces the egress of its pods and
//! the ingress of its pods, so a flow is cut here when its source is a local pod whose egress
//! denies it, or its destination is a local pod whose ingress now denies the source (a pod, or
//! an address outside the pods). Flows the node itself opened (from one of `own`, the node's
//! addresses) are never cut: the node's traffic to its pods is not filtered. Where the node's
//! addresses are not known (IPv6), flows from outside the pods are left alone.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use weft_policy::eval::{Traffic, egress_to_address, ingress_from_address, verdict_with};
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

/// Sorts the flows of `flows` under `cluster`, given the keys of the local endpoints and the
/// node's own IPv4 addresses.
pub fn plan(
    cluster: &Cluster,
    local: &BTreeSet<String>,
    own: &BTreeSet<IpAddr>,
    flows: &[Flow],
) -> Cuts {
    let denied = denied(cluster, local, own, flows);
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
fn denied(
    cluster: &Cluster,
    local: &BTreeSet<String>,
    own: &BTreeSet<IpAddr>,
    flows: &[Flow],
) -> Vec<Flow> {
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
                (None, Some(dst))
                    if is_local(&dst) && flow.src.is_ipv4() && !own.contains(&flow.src) =>
                {
                    !ingress_from_address(cluster, flow.src, dst, traffic)
                        .decision
                        .allows()
                }
                _ => false,
            }
        })
        .copied()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const CLUSTER: &str = "
apiVersion: v1
kind: Namespace
metadata: {name: ns}
---
apiVersion: v1
kind: Pod
metadata: {name: a, namespace: ns, labels: {app: a}}
spec: {containers: [{name: c}]}
status: {podIP: 10.0.0.1}
---
apiVersion: v1
kind: Pod
metadata: {name: b, namespace: ns, labels: {app: b}}
spec: {containers: [{name: c}]}
status: {podIP: 10.0.0.2}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: a-from-lan, namespace: ns}
spec:
  podSelector: {matchLabels: {app: a}}
  ingress: [{from: [{ipBlock: {cidr: 192.168.0.0/16}}]}]
";

    fn flow(protocol: u8, src: &str, dst: &str, dport: u16, mark: u32) -> Flow {
        Flow {
            protocol,
            src: src.parse().unwrap(),
            dst: dst.parse().unwrap(),
            sport: Some(40000),
            dport: Some(dport),
            mark,
            reply_src: Some(dst.parse().unwrap()),
        }
    }

    #[test]
    fn denied_flows_are_cut_by_protocol_and_allowed_cut_flows_released() {
        let cluster =
            weft_policy::load::load(&[("c.yaml".to_string(), CLUSTER.to_string())]).unwrap();
        let local = BTreeSet::from(["ns/a".to_string()]);
        let own = BTreeSet::from(["10.1.1.1".parse().unwrap()]);
        let pod_tcp = flow(6, "10.0.0.2", "10.0.0.1", 80, 0);
        let lan_udp = flow(17, "192.168.1.1", "10.0.0.1", 53, 0);
        let outside_udp = flow(17, "172.20.0.1", "10.0.0.1", 53, 0);
        let node_tcp = flow(6, "10.1.1.1", "10.0.0.1", 80, 0);
        let egress_cut = flow(17, "10.0.0.1", "10.0.0.2", 53, CUT_MARK);
        let remote_only = flow(6, "10.0.0.2", "172.20.0.1", 80, 0);
        let cuts = plan(
            &cluster,
            &local,
            &own,
            &[
                pod_tcp,
                lan_udp,
                outside_udp,
                node_tcp,
                egress_cut,
                remote_only,
            ],
        );
        assert_eq!(
            cuts,
            Cuts {
                delete: vec![pod_tcp],
                mark: vec![outside_udp],
                release: vec![egress_cut],
            }
        );
    }
}
