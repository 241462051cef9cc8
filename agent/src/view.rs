//! What the agent knows about the cluster: a compact copy of the objects it watches, reduced on
//! arrival to the fields it uses (a Node is a few addresses and labels here, not its images and
//! conditions), so memory stays small with thousands of nodes and pods.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use ipnet::Ipv4Net;
use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use k8s_openapi::api::networking::v1::NetworkPolicy as KubeNetworkPolicy;
use kube::ResourceExt;
use weft_api::{
    Encapsulation, GlobalNetworkPolicy, Installation, IpPool, IpamBlock, IpamType, NatOutgoing,
    NetworkPolicy, NodeAddressAutodetection,
};
use weft_policy::model::{Endpoint, Policy};
use weft_policy::selector::Selector;

use crate::addresses::AddressClaim;

/// Annotation keys the agent publishes on its Node and reads on its peers'.
pub mod annotations {
    /// The prefix of every annotation weft owns on a Node.
    pub const PREFIX: &str = "network.weft.dev/";
    /// The node's IPv4 address with its subnet prefix, e.g. `10.99.1.2/24`.
    pub const ADDRESS: &str = "network.weft.dev/ipv4-address";
    /// The MAC of the node's VXLAN device (its VTEP; the VTEP address is the node address).
    pub const VXLAN_MAC: &str = "network.weft.dev/vxlan-mac";
    /// The largest pod MTU this node carries (host MTU minus encapsulation overhead).
    pub const MTU: &str = "network.weft.dev/mtu";
}

/// The kinds the agent watches; the first sync of each gates the first dataplane apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    Installation,
    Node,
    Pool,
    Block,
    Pod,
    Namespace,
    KubernetesPolicy,
    WeftPolicy,
    GlobalPolicy,
}

impl Kind {
    /// Whether objects of this kind shape routes, VXLAN, NAT or IPAM (else only policy).
    pub fn shapes_routing(self) -> bool {
        matches!(
            self,
            Kind::Installation | Kind::Node | Kind::Pool | Kind::Block
        )
    }

    pub const ALL: [Kind; 9] = [
        Kind::Installation,
        Kind::Node,
        Kind::Pool,
        Kind::Block,
        Kind::Pod,
        Kind::Namespace,
        Kind::KubernetesPolicy,
        Kind::WeftPolicy,
        Kind::GlobalPolicy,
    ];
}

/// The Installation's fields the agent uses.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct InstallationView {
    pub ipam: IpamType,
    pub mtu: Option<u32>,
    pub autodetection: Option<NodeAddressAutodetection>,
    pub deleting: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeView {
    pub labels: BTreeMap<String, String>,
    pub pod_cidrs: Vec<Ipv4Net>,
    pub address: Option<Ipv4Net>,
    pub vxlan_mac: Option<[u8; 6]>,
    pub mtu: Option<u32>,
    /// The `network.weft.dev/*` annotations as written, so a value that does not parse can be
    /// named and this node's own can be compared with what it should publish.
    pub weft_annotations: BTreeMap<String, String>,
    /// Status of the NetworkUnavailable condition, when the Node has one.
    pub network_unavailable: Option<String>,
    pub created: Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PoolView {
    pub cidr: Ipv4Net,
    pub block_size: u8,
    pub encapsulation: Encapsulation,
    pub nat_outgoing: bool,
    pub node_selector: Option<Selector>,
    pub disabled: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockView {
    pub cidr: Ipv4Net,
    pub pool: String,
    pub node: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodView {
    pub node: String,
    pub endpoint: Endpoint,
    pub claim: AddressClaim,
}

/// Everything watched, keyed by name (`namespace/name` for namespaced kinds).
#[derive(Debug, Default)]
pub struct ClusterView {
    pub installation: BTreeMap<String, InstallationView>,
    pub nodes: BTreeMap<String, NodeView>,
    pub pools: BTreeMap<String, PoolView>,
    pub blocks: BTreeMap<String, BlockView>,
    pub pods: BTreeMap<String, PodView>,
    pub namespaces: BTreeMap<String, BTreeMap<String, String>>,
    pub kubernetes_policies: BTreeMap<String, Policy>,
    pub weft_policies: BTreeMap<String, Policy>,
    pub global_policies: BTreeMap<String, Policy>,
    pub synced: BTreeSet<Kind>,
    /// The Installation has been seen (so its absence later is a deletion the watch saw).
    pub installation_seen: bool,
    /// Kinds whose watch failed and has delivered nothing since: their map may miss changes
    /// (set on a watch error, cleared by the next list or event that reaches the view).
    pub stale: BTreeSet<Kind>,
    /// Bumped on every change of a kind that shapes routing (see [`Kind::shapes_routing`]).
    pub routing_generation: u64,
    /// Bumped on every change of a kind that only policy reads.
    pub policy_generation: u64,
}

impl ClusterView {
    pub fn all_synced(&self) -> bool {
        Kind::ALL.iter().all(|kind| self.synced.contains(kind))
    }

    /// Whether the map of `kind` is complete and current: listed once, no watch error since.
    pub fn fresh(&self, kind: Kind) -> bool {
        self.synced.contains(&kind) && !self.stale.contains(&kind)
    }

    pub fn installation(&self) -> Option<&InstallationView> {
        self.installation.get(weft_api::INSTALLATION_NAME)
    }

    /// Whether the watch has seen the Installation being deleted: with a deletionTimestamp, or
    /// gone after it was seen. Never true from a failed read: a watch that cannot list keeps
    /// what it last saw.
    pub fn installation_deletion_seen(&self) -> bool {
        self.synced.contains(&Kind::Installation)
            && match self.installation() {
                Some(installation) => installation.deleting,
                None => self.installation_seen,
            }
    }

    /// The IP addresses of the pods scheduled on `node`.
    pub fn pod_ips_on(&self, node: &str) -> BTreeSet<IpAddr> {
        self.pods
            .values()
            .filter(|pod| pod.node == node)
            .flat_map(|pod| pod.endpoint.ips.iter().copied())
            .collect()
    }

    /// The pools `node` may take blocks from, in name order.
    pub fn pools_for(&self, labels: &BTreeMap<String, String>) -> Vec<(&String, &PoolView)> {
        self.pools
            .iter()
            .filter(|(_, pool)| {
                pool.node_selector
                    .as_ref()
                    .is_some_and(|selector| selector.matches(labels))
            })
            .collect()
    }

    /// The pool holding `cidr`.
    pub fn pool_containing(&self, cidr: &Ipv4Net) -> Option<&PoolView> {
        self.pools.values().find(|pool| pool.cidr.contains(cidr))
    }
}

fn parse_mac(text: &str) -> Option<[u8; 6]> {
    let bytes: Vec<u8> = text
        .split(':')
        .map(|part| u8::from_str_radix(part, 16))
        .collect::<Result<_, _>>()
        .ok()?;
    bytes.try_into().ok()
}

pub fn installation_view(installation: &Installation) -> Option<InstallationView> {
    let spec = &installation.spec;
    let network = spec.network.clone().unwrap_or_default();
    Some(InstallationView {
        ipam: spec
            .cni
            .as_ref()
            .and_then(|cni| cni.ipam.as_ref())
            .and_then(|ipam| ipam.ipam_type)
            .unwrap_or_default(),
        mtu: network.mtu.and_then(|mtu| u32::try_from(mtu).ok()),
        autodetection: network.node_address_autodetection_v4,
        deleting: installation.metadata.deletion_timestamp.is_some(),
    })
}

pub fn node_view(node: &Node) -> Option<NodeView> {
    let annotations = node.annotations();
    let spec = node.spec.clone().unwrap_or_default();
    let mut pod_cidrs: Vec<Ipv4Net> = spec
        .pod_cidrs
        .iter()
        .flatten()
        .filter_map(|cidr| cidr.parse().ok())
        .collect();
    if pod_cidrs.is_empty()
        && let Some(cidr) = spec.pod_cidr.and_then(|cidr| cidr.parse().ok())
    {
        pod_cidrs.push(cidr);
    }
    Some(NodeView {
        labels: node.labels().clone(),
        pod_cidrs,
        address: annotations
            .get(annotations::ADDRESS)
            .and_then(|text| text.parse().ok()),
        vxlan_mac: annotations
            .get(annotations::VXLAN_MAC)
            .and_then(|text| parse_mac(text)),
        mtu: annotations
            .get(annotations::MTU)
            .and_then(|text| text.parse().ok()),
        weft_annotations: annotations
            .iter()
            .filter(|(key, _)| key.starts_with(annotations::PREFIX))
            .map(|(key, value)| (key.clone(), value.clone()))
            .collect(),
        network_unavailable: node
            .status
            .as_ref()
            .and_then(|status| status.conditions.as_ref())
            .and_then(|conditions| {
                conditions
                    .iter()
                    .find(|condition| condition.type_ == "NetworkUnavailable")
            })
            .map(|condition| condition.status.clone()),
        created: node.metadata.creation_timestamp.clone(),
    })
}

pub fn pool_view(pool: &IpPool) -> Option<PoolView> {
    let cidr = pool.spec.cidr.parse::<Ipv4Net>().ok()?.trunc();
    let selector_text = pool
        .spec
        .node_selector
        .clone()
        .unwrap_or_else(|| weft_api::ippool::SELECT_ALL.to_owned());
    let node_selector = match Selector::parse(&selector_text) {
        Ok(selector) => Some(selector),
        Err(error) => {
            tracing::warn!(pool = %pool.name_any(), %error, "spec.nodeSelector does not parse; no node uses this pool");
            None
        }
    };
    Some(PoolView {
        cidr,
        block_size: u8::try_from(pool.spec.block_size_or_default()).ok()?,
        encapsulation: pool.spec.encapsulation.unwrap_or_default(),
        nat_outgoing: pool.spec.nat_outgoing.unwrap_or_default() == NatOutgoing::Enabled,
        node_selector,
        disabled: pool.spec.disabled == Some(true),
    })
}

pub fn block_view(block: &IpamBlock) -> Option<BlockView> {
    Some(BlockView {
        cidr: block.spec.cidr.parse::<Ipv4Net>().ok()?,
        pool: block.spec.pool.clone(),
        node: block.spec.node.clone(),
    })
}

pub fn pod_view(pod: &Pod) -> Option<PodView> {
    let spec = pod.spec.as_ref()?;
    if spec.host_network == Some(true) {
        return None;
    }
    let node = spec.node_name.clone()?;
    // Kept without an IP too: a local pod is programmed from ADD's record (with the labels
    // of its Pod object) before the kubelet posts the IP.
    let endpoint = weft_policy::load::endpoint(pod).ok()?;
    let claim = AddressClaim {
        live: pod.metadata.deletion_timestamp.is_none(),
        created: pod.metadata.creation_timestamp.clone(),
    };
    Some(PodView {
        node,
        endpoint,
        claim,
    })
}

pub fn namespace_view(namespace: &Namespace) -> Option<BTreeMap<String, String>> {
    Some(namespace.labels().clone())
}

fn policy_or_warn(
    name: String,
    result: Result<Policy, weft_policy::model::ModelError>,
) -> Option<Policy> {
    result
        .inspect_err(|error| tracing::warn!(policy = %name, %error, "policy not enforced: it does not convert"))
        .ok()
}

pub fn kubernetes_policy_view(policy: &KubeNetworkPolicy) -> Option<Policy> {
    policy_or_warn(
        policy.name_any(),
        weft_policy::model::kubernetes::from_kubernetes(policy),
    )
}

pub fn weft_policy_view(policy: &NetworkPolicy) -> Option<Policy> {
    policy_or_warn(
        policy.name_any(),
        weft_policy::model::weft::from_weft_namespaced(policy),
    )
}

pub fn global_policy_view(policy: &GlobalNetworkPolicy) -> Option<Policy> {
    policy_or_warn(
        policy.name_any(),
        weft_policy::model::weft::from_weft_global(policy),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn installation(deleting: bool) -> InstallationView {
        InstallationView {
            deleting,
            ..InstallationView::default()
        }
    }

    #[test]
    fn only_a_deletion_the_watch_saw_counts_as_uninstall() {
        let mut view = ClusterView::default();
        // Never listed (a missing CRD, a wrong API group): nothing is known, nothing deleted.
        assert!(!view.installation_deletion_seen());
        view.synced.insert(Kind::Installation);
        // Listed and absent from the start: never seen, so not seen deleted either.
        assert!(!view.installation_deletion_seen());
        view.installation
            .insert(weft_api::INSTALLATION_NAME.into(), installation(false));
        view.installation_seen = true;
        assert!(!view.installation_deletion_seen());
        view.installation
            .insert(weft_api::INSTALLATION_NAME.into(), installation(true));
        assert!(view.installation_deletion_seen());
        view.installation.clear();
        assert!(view.installation_deletion_seen());
    }
}
