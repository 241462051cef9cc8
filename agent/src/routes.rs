//! Routes to other nodes' pods, computed purely from what the API says, then applied as a diff
//! against the kernel's weft routes (protocol 81), VXLAN neighbours and FDB entries.
//!
//! Decisions:
//! - A remote block (or podCIDR) is routed directly via the peer's address when its pool's
//!   encapsulation is `None`, or `VXLANCrossSubnet` and the peer shares this node's subnet;
//!   otherwise through the VXLAN device, via the peer's address as an on-link next hop: the next
//!   hop is only a key for the neighbour entry (peer address → peer VTEP MAC), and the FDB entry
//!   (peer VTEP MAC → peer address) tells the device where to send the encapsulated frame. The
//!   device's own address (one address of the node's block, see `ipam`) is only the source of
//!   what the node itself sends through the tunnel, so replies come back through it.
//! - `None` across subnets cannot work without a router that knows the pod routes (weft does
//!   not speak BGP): such blocks get no route and are counted as unreachable.
//! - The node's own blocks get blackhole routes, so traffic to a free address of the node dies
//!   here instead of bouncing to the default gateway; the plugin's /32 pod routes are more
//!   specific.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use weft_api::Encapsulation;

use crate::kernel::netlink::{KernelRoute, RouteTarget, StaticEntry};

/// Name of the VXLAN device.
pub const VXLAN_DEVICE: &str = "weft.vxlan";
/// VXLAN network identifier of weft's overlay.
pub const VXLAN_VNI: u32 = 4096;
/// IANA VXLAN port.
pub const VXLAN_PORT: u16 = 4789;
/// VXLAN over IPv4 overhead: outer IPv4 (20) + UDP (8) + VXLAN (8) + inner Ethernet (14).
pub const VXLAN_OVERHEAD: u32 = 50;

/// This node, as routing needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalNode {
    pub name: String,
    /// The node address with the prefix of its subnet.
    pub address: Ipv4Net,
    /// The interface holding that address.
    pub uplink: u32,
    /// The VXLAN device, when it exists.
    pub vxlan: Option<u32>,
}

/// Another node, from its annotations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    pub address: Ipv4Addr,
    pub vtep_mac: Option<[u8; 6]>,
}

/// A pod range held by a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodRange {
    pub cidr: Ipv4Net,
    pub node: String,
    pub encapsulation: Encapsulation,
}

/// What the kernel should hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DesiredRoutes {
    pub routes: BTreeSet<KernelRoute>,
    pub neighbours: BTreeSet<StaticEntry>,
    pub fdb: BTreeSet<StaticEntry>,
    /// Remote ranges left without a route, with why.
    pub unreachable: Vec<(Ipv4Net, String)>,
}

/// Routes, neighbours and FDB entries for `ranges` as seen from `local`.
pub fn desired(
    local: &LocalNode,
    peers: &BTreeMap<String, Peer>,
    ranges: &[PodRange],
) -> DesiredRoutes {
    let mut desired = DesiredRoutes::default();
    for range in ranges {
        if range.node == local.name {
            desired.routes.insert(KernelRoute {
                destination: range.cidr,
                target: RouteTarget::Blackhole,
            });
            continue;
        }
        let Some(peer) = peers.get(&range.node) else {
            desired.unreachable.push((
                range.cidr,
                format!("node {} has published no address", range.node),
            ));
            continue;
        };
        let same_subnet = local.address.contains(&peer.address);
        let direct = match range.encapsulation {
            Encapsulation::None => true,
            Encapsulation::VxlanCrossSubnet => same_subnet,
            Encapsulation::Vxlan => false,
        };
        if direct {
            if !same_subnet {
                desired.unreachable.push((
                    range.cidr,
                    format!(
                        "encapsulation None and node {} ({}) is outside this node's subnet {}",
                        range.node,
                        peer.address,
                        local.address.trunc()
                    ),
                ));
                continue;
            }
            desired.routes.insert(KernelRoute {
                destination: range.cidr,
                target: RouteTarget::Via {
                    gateway: peer.address,
                    oif: local.uplink,
                    onlink: false,
                },
            });
            continue;
        }
        let (Some(vxlan), Some(mac)) = (local.vxlan, peer.vtep_mac) else {
            desired.unreachable.push((
                range.cidr,
                format!(
                    "VXLAN to node {} is not ready (device or peer MAC missing)",
                    range.node
                ),
            ));
            continue;
        };
        desired.routes.insert(KernelRoute {
            destination: range.cidr,
            target: RouteTarget::Via {
                gateway: peer.address,
                oif: vxlan,
                onlink: true,
            },
        });
        let entry = StaticEntry {
            ip: peer.address,
            mac,
        };
        desired.neighbours.insert(entry);
        desired.fdb.insert(entry);
    }
    desired
}

/// What to change so that `current` becomes `desired`: (to add or replace, to delete).
pub fn diff<T: Ord + Clone>(current: &BTreeSet<T>, desired: &BTreeSet<T>) -> (Vec<T>, Vec<T>) {
    let add = desired.difference(current).cloned().collect();
    let delete = current.difference(desired).cloned().collect();
    (add, delete)
}

/// Routes to delete: current routes whose destination is not desired at all (a changed target
/// is replaced in place, never deleted first, so traffic never sees a gap).
pub fn stale_routes(current: &[KernelRoute], desired: &BTreeSet<KernelRoute>) -> Vec<KernelRoute> {
    let wanted: BTreeSet<Ipv4Net> = desired.iter().map(|route| route.destination).collect();
    current
        .iter()
        .filter(|route| !wanted.contains(&route.destination))
        .copied()
        .collect()
}

/// The VXLAN device's MAC: a locally administered unicast address derived from the node name,
/// so it survives restarts and re-creation without being stored anywhere.
pub fn vtep_mac(node: &str) -> [u8; 6] {
    weft_cni::naming::local_mac(&[node, "vxlan"])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(text: &str) -> Ipv4Net {
        text.parse().unwrap()
    }

    fn local() -> LocalNode {
        LocalNode {
            name: "a".into(),
            address: net("10.99.1.2/24"),
            uplink: 2,
            vxlan: Some(9),
        }
    }

    fn peers() -> BTreeMap<String, Peer> {
        BTreeMap::from([
            (
                "b".to_owned(),
                Peer {
                    address: "10.99.1.3".parse().unwrap(),
                    vtep_mac: Some(vtep_mac("b")),
                },
            ),
            (
                "c".to_owned(),
                Peer {
                    address: "10.99.2.2".parse().unwrap(),
                    vtep_mac: Some(vtep_mac("c")),
                },
            ),
        ])
    }

    fn ranges(encapsulation: Encapsulation) -> Vec<PodRange> {
        [
            ("10.1.0.0/26", "a"),
            ("10.1.0.64/26", "b"),
            ("10.1.0.128/26", "c"),
        ]
        .into_iter()
        .map(|(cidr, node)| PodRange {
            cidr: net(cidr),
            node: node.into(),
            encapsulation,
        })
        .collect()
    }

    fn target_of(desired: &DesiredRoutes, cidr: &str) -> Option<RouteTarget> {
        desired
            .routes
            .iter()
            .find(|route| route.destination == net(cidr))
            .map(|route| route.target)
    }

    #[test]
    fn cross_subnet_routes_same_subnet_directly_and_others_through_vxlan() {
        let desired = desired(&local(), &peers(), &ranges(Encapsulation::VxlanCrossSubnet));
        assert_eq!(
            target_of(&desired, "10.1.0.0/26"),
            Some(RouteTarget::Blackhole)
        );
        assert_eq!(
            target_of(&desired, "10.1.0.64/26"),
            Some(RouteTarget::Via {
                gateway: "10.99.1.3".parse().unwrap(),
                oif: 2,
                onlink: false
            })
        );
        assert_eq!(
            target_of(&desired, "10.1.0.128/26"),
            Some(RouteTarget::Via {
                gateway: "10.99.2.2".parse().unwrap(),
                oif: 9,
                onlink: true
            })
        );
        assert_eq!(desired.fdb.len(), 1);
        assert_eq!(desired.neighbours.len(), 1);
        assert!(desired.unreachable.is_empty());
    }

    #[test]
    fn vxlan_encapsulates_every_peer() {
        let desired = desired(&local(), &peers(), &ranges(Encapsulation::Vxlan));
        assert_eq!(desired.fdb.len(), 2);
        assert!(matches!(
            target_of(&desired, "10.1.0.64/26"),
            Some(RouteTarget::Via {
                oif: 9,
                onlink: true,
                ..
            })
        ));
    }

    #[test]
    fn no_encapsulation_leaves_other_subnets_unreachable() {
        let desired = desired(&local(), &peers(), &ranges(Encapsulation::None));
        assert!(target_of(&desired, "10.1.0.128/26").is_none());
        assert_eq!(desired.unreachable.len(), 1);
        assert!(
            desired.unreachable[0]
                .1
                .contains("outside this node's subnet")
        );
        assert!(desired.fdb.is_empty());
    }

    #[test]
    fn a_changed_target_is_replaced_not_deleted() {
        let old = KernelRoute {
            destination: net("10.1.0.64/26"),
            target: RouteTarget::Blackhole,
        };
        let gone = KernelRoute {
            destination: net("10.1.9.0/26"),
            target: RouteTarget::Blackhole,
        };
        let desired = desired(&local(), &peers(), &ranges(Encapsulation::Vxlan));
        assert_eq!(stale_routes(&[old, gone], &desired.routes), vec![gone]);
    }

    #[test]
    fn vtep_macs_are_stable_local_unicast_and_distinct() {
        let mac = vtep_mac("node-1");
        assert_eq!(mac, vtep_mac("node-1"));
        assert_ne!(mac, vtep_mac("node-2"));
        assert_eq!(mac[0] & 0x03, 0x02);
    }
}
