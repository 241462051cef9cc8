//! Programs the node from the view: the VXLAN device, routes, neighbour and FDB entries, the
//! NAT table and the policy table. Each part is desired state computed purely, compared with
//! what the kernel (or the last apply) holds, and changed by the difference only.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use ipnet::Ipv4Net;
use weft_api::{Encapsulation, IpamType};
use weft_policy::model::{Cluster, NAMESPACE_NAME_LABEL, Namespace};
use weft_policy::nft::{Ruleset, compile_for_node, diff as policy_diff};

use crate::addresses;
use crate::detect::{self, AddressMethod};
use crate::kernel::netlink::{self as nl, EntryTable, KernelRoute, StaticEntry, VxlanSpec};
use crate::kernel::{Kernel, KernelError, ethtool};
use crate::metrics::Metrics;
use crate::nat::{self, NatState};
use crate::routes::{self, LocalNode, Peer, PodRange, VXLAN_DEVICE, VXLAN_OVERHEAD};
use crate::view::ClusterView;

/// The table the agent's policy lives in.
pub const POLICY_TABLE: &str = "weft_policy";

/// Why a sync failed.
#[derive(Debug, thiserror::Error)]
pub enum DataplaneError {
    #[error(transparent)]
    Kernel(#[from] KernelError),
    #[error("node address: {0}")]
    Address(#[from] detect::DetectError),
}

/// What this node is, as detected from its interfaces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeFacts {
    pub address: Ipv4Net,
    pub uplink: u32,
    pub host_mtu: u32,
}

impl NodeFacts {
    /// The largest pod MTU the node carries with `encapsulates` pools.
    pub fn pod_mtu(&self, encapsulates: bool) -> u32 {
        if encapsulates {
            self.host_mtu.saturating_sub(VXLAN_OVERHEAD)
        } else {
            self.host_mtu
        }
    }
}

/// Which parts a sync covers: a pod's new labels need no route work, a new node no policy work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scope {
    pub routing: bool,
    pub policy: bool,
}

impl Scope {
    pub const ALL: Scope = Scope {
        routing: true,
        policy: true,
    };
}

/// What one sync did, for logs and tests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncReport {
    pub routes_changed: usize,
    pub entries_changed: usize,
    pub policy_lines: usize,
    pub unreachable: Vec<(Ipv4Net, String)>,
}

/// The agent's handle on the node's dataplane and what it last applied.
pub struct Dataplane {
    pub kernel: Kernel,
    /// The address `weft.vxlan` carries (allocated by node IPAM from the node's own range).
    pub tunnel: Option<std::net::Ipv4Addr>,
    node: String,
    applied_policy: Option<Ruleset>,
    applied_nat: Option<NatState>,
    metrics: Metrics,
}

/// Whether any pool uses VXLAN (then every node needs the device to receive).
pub fn encapsulates(view: &ClusterView) -> bool {
    view.pools
        .values()
        .any(|pool| pool.encapsulation != Encapsulation::None)
}

/// The pod ranges of every node: blocks with Weft IPAM, podCIDRs with HostLocal.
pub fn pod_ranges(view: &ClusterView) -> Vec<PodRange> {
    let ipam = view
        .installation()
        .map(|installation| installation.ipam)
        .unwrap_or_default();
    let encapsulation_of = |cidr: &Ipv4Net| {
        view.pool_containing(cidr)
            .map(|pool| pool.encapsulation)
            .unwrap_or_default()
    };
    match ipam {
        IpamType::Weft => view
            .blocks
            .values()
            .map(|block| PodRange {
                cidr: block.cidr,
                node: block.node.clone(),
                encapsulation: view
                    .pools
                    .get(&block.pool)
                    .map(|pool| pool.encapsulation)
                    .unwrap_or_else(|| encapsulation_of(&block.cidr)),
            })
            .collect(),
        IpamType::HostLocal => view
            .nodes
            .iter()
            .flat_map(|(name, node)| {
                node.pod_cidrs.iter().map(move |cidr| PodRange {
                    cidr: *cidr,
                    node: name.clone(),
                    encapsulation: encapsulation_of(cidr),
                })
            })
            .collect(),
    }
}

/// The policy model of the whole cluster and the keys of this node's endpoints.
pub fn policy_cluster(view: &ClusterView, node: &str) -> (Cluster, BTreeSet<String>) {
    let mut namespaces: BTreeMap<String, Namespace> = view
        .namespaces
        .iter()
        .map(|(name, labels)| {
            let mut labels = labels.clone();
            labels.insert(NAMESPACE_NAME_LABEL.to_owned(), name.clone());
            (
                name.clone(),
                Namespace {
                    name: name.clone(),
                    labels,
                },
            )
        })
        .collect();
    let holders = addresses::holders(&view.pods);
    let mut local = BTreeSet::new();
    let mut endpoints = Vec::with_capacity(view.pods.len());
    for (key, pod) in &view.pods {
        if pod.node == node {
            local.insert(key.clone());
        }
        namespaces
            .entry(pod.endpoint.namespace.clone())
            .or_insert_with(|| Namespace {
                name: pod.endpoint.namespace.clone(),
                labels: BTreeMap::from([(
                    NAMESPACE_NAME_LABEL.to_owned(),
                    pod.endpoint.namespace.clone(),
                )]),
            });
        let mut endpoint = pod.endpoint.clone();
        endpoint
            .ips
            .retain(|ip| holders.get(ip).is_some_and(|holder| holder == key));
        endpoints.push(endpoint);
    }
    let policies = view
        .kubernetes_policies
        .values()
        .chain(view.weft_policies.values())
        .chain(view.global_policies.values())
        .cloned()
        .collect();
    (
        Cluster {
            namespaces,
            endpoints,
            policies,
        },
        local,
    )
}

impl Dataplane {
    pub fn new(kernel: Kernel, node: &str, metrics: Metrics) -> Self {
        Self {
            kernel,
            tunnel: None,
            node: node.to_owned(),
            applied_policy: None,
            applied_nat: None,
            metrics,
        }
    }

    /// Detects the node address (by `method`) and the host MTU.
    pub fn detect(&self, method: &AddressMethod) -> Result<NodeFacts, DataplaneError> {
        let links = self.kernel.netlink(nl::links)?;
        let addresses = self.kernel.netlink(nl::ipv4_addresses)?;
        let (uplink, address) = detect::node_address(method, &links, &addresses, |target| {
            self.kernel
                .netlink(|netlink| nl::source_for(netlink, target))
                .ok()
                .flatten()
        })?;
        Ok(NodeFacts {
            address,
            uplink,
            host_mtu: detect::host_mtu(&links, Some(uplink)),
        })
    }

    /// One pass over the parts in `scope`: what they should hold, changed where it differs.
    pub fn sync(
        &mut self,
        view: &ClusterView,
        facts: &NodeFacts,
        scope: Scope,
    ) -> Result<SyncReport, DataplaneError> {
        let mut report = SyncReport::default();
        if scope.routing {
            self.kernel.sysctl("net/ipv4/ip_forward", "1")?;
            let started = Instant::now();
            let vxlan = self.ensure_vxlan(encapsulates(view), facts)?;
            self.sync_routes(view, facts, vxlan, &mut report)?;
            self.metrics.observe_apply("routes", started.elapsed());
            let started = Instant::now();
            self.sync_nat(view)?;
            self.metrics.observe_apply("nat", started.elapsed());
        }
        if scope.policy {
            let started = Instant::now();
            report.policy_lines = self.sync_policy(view)?;
            self.metrics.observe_apply("policy", started.elapsed());
        }
        Ok(report)
    }

    /// Creates the VXLAN device when pools encapsulate (and removes it when none does).
    fn ensure_vxlan(&self, wanted: bool, facts: &NodeFacts) -> Result<Option<u32>, DataplaneError> {
        let links = self.kernel.netlink(nl::links)?;
        let existing = links.iter().find(|link| link.name == VXLAN_DEVICE);
        if !wanted {
            if let Some(link) = existing {
                let index = link.index;
                self.kernel
                    .netlink(|netlink| nl::delete_link(netlink, index))?;
            }
            return Ok(None);
        }
        let spec = VxlanSpec {
            name: VXLAN_DEVICE.to_owned(),
            vni: routes::VXLAN_VNI,
            port: routes::VXLAN_PORT,
            mac: routes::vtep_mac(&self.node),
            mtu: facts.pod_mtu(true),
            local: facts.address.addr(),
            parent: facts.uplink,
        };
        let index = match existing {
            // Adopted as is when its MAC is ours; a device of ours from another address or
            // uplink is recreated (the FDB entries go with it and are re-added below).
            Some(link) if link.mac == spec.mac => {
                if link.mtu != spec.mtu {
                    let (index, mtu) = (link.index, spec.mtu);
                    self.kernel
                        .netlink(|netlink| nl::set_mtu(netlink, index, mtu))?;
                }
                link.index
            }
            other => {
                if let Some(link) = other {
                    let index = link.index;
                    self.kernel
                        .netlink(|netlink| nl::delete_link(netlink, index))?;
                }
                self.kernel
                    .netlink(|netlink| nl::create_vxlan(netlink, &spec))?;
                let links = self.kernel.netlink(nl::links)?;
                links
                    .iter()
                    .find(|link| link.name == VXLAN_DEVICE)
                    .map(|link| link.index)
                    .ok_or_else(|| {
                        KernelError::Nft(format!("{VXLAN_DEVICE} vanished after creation"))
                    })?
            }
        };
        self.kernel.netlink(|netlink| nl::set_up(netlink, index))?;
        self.keep_tunnel_address(index)?;
        self.kernel
            .inside(|| {
                if ethtool::tx_checksum(VXLAN_DEVICE)? {
                    ethtool::set_tx_checksum(VXLAN_DEVICE, false)?;
                }
                Ok::<_, std::io::Error>(())
            })?
            .map_err(|source| KernelError::Ethtool {
                device: VXLAN_DEVICE.into(),
                source,
            })?;
        Ok(Some(index))
    }

    /// Puts the tunnel address (a /32) on the device and removes any other address.
    fn keep_tunnel_address(&self, index: u32) -> Result<(), DataplaneError> {
        let present: Vec<ipnet::Ipv4Net> = self
            .kernel
            .netlink(nl::ipv4_addresses)?
            .into_iter()
            .filter(|(link, _)| *link == index)
            .map(|(_, address)| address)
            .collect();
        let wanted = self.tunnel.and_then(|ip| ipnet::Ipv4Net::new(ip, 32).ok());
        for address in &present {
            if Some(*address) != wanted {
                let stale = ipnet::IpNet::V4(*address);
                self.kernel
                    .netlink(|netlink| netlink.delete_address(index, stale))?;
            }
        }
        if let Some(address) = wanted.filter(|wanted| !present.contains(wanted)) {
            self.kernel
                .netlink(|netlink| netlink.add_address(index, ipnet::IpNet::V4(address)))?;
        }
        Ok(())
    }

    fn sync_routes(
        &self,
        view: &ClusterView,
        facts: &NodeFacts,
        vxlan: Option<u32>,
        report: &mut SyncReport,
    ) -> Result<(), DataplaneError> {
        let local = LocalNode {
            name: self.node.clone(),
            address: facts.address,
            uplink: facts.uplink,
            vxlan,
        };
        let peers: BTreeMap<String, Peer> = view
            .nodes
            .iter()
            .filter(|(name, _)| **name != self.node)
            .filter_map(|(name, node)| {
                Some((
                    name.clone(),
                    Peer {
                        address: node.address?.addr(),
                        vtep_mac: node.vxlan_mac,
                    },
                ))
            })
            .collect();
        let desired = routes::desired(&local, &peers, &pod_ranges(view));
        report.unreachable = desired.unreachable.clone();
        let current = self.kernel.netlink(nl::weft_routes)?;
        let current_set: BTreeSet<KernelRoute> = current.iter().copied().collect();
        if let Some(index) = vxlan {
            for (table, wanted) in [
                (EntryTable::Neighbour, &desired.neighbours),
                (EntryTable::Fdb, &desired.fdb),
            ] {
                let present: BTreeSet<StaticEntry> = self
                    .kernel
                    .netlink(|netlink| nl::static_entries(netlink, table, index))?
                    .into_iter()
                    .collect();
                let (add, delete) = routes::diff(&present, wanted);
                report.entries_changed += add.len() + delete.len();
                for entry in &add {
                    self.kernel
                        .netlink(|netlink| nl::add_entry(netlink, table, index, entry))?;
                }
                for entry in &delete {
                    self.kernel
                        .netlink(|netlink| nl::delete_entry(netlink, table, index, entry))?;
                }
            }
        }
        for route in desired.routes.difference(&current_set) {
            self.kernel
                .netlink(|netlink| nl::replace_route(netlink, route))?;
            report.routes_changed += 1;
        }
        for route in routes::stale_routes(&current, &desired.routes) {
            self.kernel
                .netlink(|netlink| nl::delete_route(netlink, &route))?;
            report.routes_changed += 1;
        }
        Ok(())
    }

    fn sync_nat(&mut self, view: &ClusterView) -> Result<(), DataplaneError> {
        let state = NatState {
            all_pools: view.pools.values().map(|pool| pool.cidr).collect(),
            masquerade: view
                .pools
                .values()
                .filter(|pool| pool.nat_outgoing)
                .map(|pool| pool.cidr)
                .collect(),
        };
        if self.applied_nat.as_ref() == Some(&state) {
            return Ok(());
        }
        self.applied_nat = None;
        self.kernel.nft(&nat::script(&state))?;
        self.applied_nat = Some(state);
        Ok(())
    }

    /// Applies the policy table; returns the number of nft lines sent.
    fn sync_policy(&mut self, view: &ClusterView) -> Result<usize, DataplaneError> {
        let (cluster, local) = policy_cluster(view, &self.node);
        let compiled = compile_for_node(&cluster, POLICY_TABLE, &local);
        let script = match &self.applied_policy {
            Some(applied) if *applied == compiled => return Ok(0),
            Some(applied) => policy_diff(applied, &compiled).script,
            // First apply after a start: the table is replaced whole in one transaction, so
            // packets see the old rules or the new, never none.
            None => compiled.full_script(),
        };
        self.applied_policy = None;
        self.kernel.nft(&script)?;
        self.applied_policy = Some(compiled);
        Ok(script.lines().count())
    }

    /// Removes everything the agent created in the kernel (after the Installation is deleted).
    pub fn remove_all(&mut self) -> Result<(), DataplaneError> {
        for route in self.kernel.netlink(nl::weft_routes)? {
            self.kernel
                .netlink(|netlink| nl::delete_route(netlink, &route))?;
        }
        let links = self.kernel.netlink(nl::links)?;
        if let Some(link) = links.iter().find(|link| link.name == VXLAN_DEVICE) {
            let index = link.index;
            self.kernel
                .netlink(|netlink| nl::delete_link(netlink, index))?;
        }
        self.kernel.nft(&nat::delete_script())?;
        self.kernel.nft(&format!(
            "add table inet {POLICY_TABLE}\ndelete table inet {POLICY_TABLE}\n"
        ))?;
        self.applied_nat = None;
        self.applied_policy = None;
        Ok(())
    }
}
