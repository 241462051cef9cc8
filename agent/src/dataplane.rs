//! Programs the node from the view: the VXLAN device, routes, neighbour and FDB entries, the
//! NAT table and the policy table. Each part is desired state computed purely, compared with
//! what the kernel (or the last apply) holds, and changed by the difference only.
//!
//! Faults are isolated: each part is programmed whatever happened to the others (policy is
//! never held back by a route the kernel refuses), an object that cannot be trusted is refused
//! by itself (see [`crate::trust`]) and a peer whose routes the kernel refuses costs only its
//! own routes (see [`crate::route_sync`]). What failed is in the [`SyncReport`].

use std::collections::BTreeMap;
use std::time::Instant;

use ipnet::Ipv4Net;
use weft_api::{Encapsulation, IpamType};

use crate::detect::{self, AddressMethod};
use crate::kernel::netlink as nl;
use crate::kernel::{Kernel, KernelError};
use crate::metrics::Metrics;
use crate::nat::{self, NatState};
use crate::policy_sync::PolicySync;
use crate::route_sync::{self, Owners, PeerRetry};
use crate::routes::{self, LocalNode, PodRange, VXLAN_DEVICE, VXLAN_OVERHEAD};
use crate::trust::{self, Refusal, RefusedKind};
use crate::view::ClusterView;
use crate::vxlan;

pub use crate::policy_sync::POLICY_TABLE;

/// Why a step of the node's own dataplane failed.
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

/// A part of this node's own dataplane; a fault in one leaves the others programmed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Part {
    Address,
    Forwarding,
    Vxlan,
    Routes,
    Nat,
    Policy,
}

impl Part {
    pub fn as_str(self) -> &'static str {
        match self {
            Part::Address => "address",
            Part::Forwarding => "forwarding",
            Part::Vxlan => "vxlan",
            Part::Routes => "routes",
            Part::Nat => "nat",
            Part::Policy => "policy",
        }
    }
}

/// What one sync did and what it could not do, for logs, Events, metrics and readiness.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncReport {
    pub routes_changed: usize,
    pub entries_changed: usize,
    pub policy_lines: usize,
    pub unreachable: Vec<(Ipv4Net, String)>,
    /// Objects the agent does not route by (untrusted blocks, Nodes with a bad address).
    pub refused: Vec<Refusal>,
    /// Peers (by node name) whose routes or entries the kernel refused: only theirs are missing.
    pub peer_faults: BTreeMap<String, String>,
    /// Parts of this node's own dataplane that could not be programmed.
    pub node_faults: BTreeMap<Part, String>,
}

impl SyncReport {
    /// Whether the node's own dataplane is programmed (refused objects and peers aside).
    pub fn node_healthy(&self) -> bool {
        self.node_faults.is_empty()
    }
}

/// The agent's handle on the node's dataplane and what it last applied.
pub struct Dataplane {
    pub kernel: Kernel,
    /// The address `weft.vxlan` carries (allocated by node IPAM from the node's own range).
    pub tunnel: Option<std::net::Ipv4Addr>,
    node: String,
    policy: PolicySync,
    applied_nat: Option<NatState>,
    peer_retries: BTreeMap<String, PeerRetry>,
    /// What the last routing pass refused or could not do, carried into policy-only reports.
    last_routing: SyncReport,
    metrics: Metrics,
}

/// Whether any pool uses VXLAN (then every node needs the device to receive).
pub fn encapsulates(view: &ClusterView) -> bool {
    view.pools
        .values()
        .any(|pool| pool.encapsulation != Encapsulation::None)
}

/// The pod ranges of every node that may be routed: trusted blocks with Weft IPAM, podCIDRs
/// with HostLocal; and the objects refused on the way.
pub fn pod_ranges(view: &ClusterView, this_node: &str) -> (Vec<PodRange>, Vec<Refusal>) {
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
        IpamType::Weft => {
            let (trusted, refused) = trust::trusted_blocks(view, this_node);
            let ranges = trusted
                .iter()
                .filter_map(|name| view.blocks.get(name))
                .map(|block| PodRange {
                    cidr: block.cidr,
                    node: block.node.clone(),
                    encapsulation: view
                        .pools
                        .get(&block.pool)
                        .map(|pool| pool.encapsulation)
                        .unwrap_or_else(|| encapsulation_of(&block.cidr)),
                })
                .collect();
            (ranges, refused)
        }
        IpamType::HostLocal => {
            let (trusted, refused) = trust::trusted_pod_cidrs(view);
            let ranges = trusted
                .into_iter()
                .map(|(node, cidr)| PodRange {
                    cidr,
                    node,
                    encapsulation: encapsulation_of(&cidr),
                })
                .collect();
            (ranges, refused)
        }
    }
}

impl Dataplane {
    pub fn new(kernel: Kernel, node: &str, metrics: Metrics) -> Self {
        Self {
            kernel,
            tunnel: None,
            node: node.to_owned(),
            policy: PolicySync::default(),
            applied_nat: None,
            peer_retries: BTreeMap::new(),
            last_routing: SyncReport::default(),
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

    /// When a peer waiting for its retry is due: the loop must run a routing pass then.
    pub fn next_peer_retry(&self) -> Option<Instant> {
        route_sync::next_retry(&self.peer_retries)
    }

    /// One pass over the parts in `scope`: what they should hold, changed where it differs.
    /// Without `facts` (the node's address was never detected) routing is skipped and policy
    /// is still programmed.
    pub fn sync(
        &mut self,
        view: &ClusterView,
        facts: Option<&NodeFacts>,
        scope: Scope,
    ) -> SyncReport {
        let mut report = SyncReport::default();
        if scope.routing {
            match facts {
                Some(facts) => self.sync_routing(view, facts, &mut report),
                None => {
                    report
                        .node_faults
                        .insert(Part::Address, "the node's address is not known yet".into());
                }
            }
            let started = Instant::now();
            if let Err(error) = self.sync_nat(view) {
                report.node_faults.insert(Part::Nat, error.to_string());
            }
            self.metrics.observe_apply("nat", started.elapsed());
            self.last_routing = SyncReport {
                unreachable: report.unreachable.clone(),
                refused: report.refused.clone(),
                peer_faults: report.peer_faults.clone(),
                node_faults: report.node_faults.clone(),
                ..SyncReport::default()
            };
        } else {
            // A policy-only pass leaves routing as it was: so are its faults.
            report.unreachable = self.last_routing.unreachable.clone();
            report.refused = self.last_routing.refused.clone();
            report.peer_faults = self.last_routing.peer_faults.clone();
            report.node_faults = self.last_routing.node_faults.clone();
        }
        if scope.policy {
            let started = Instant::now();
            match self.policy.sync(&self.kernel, view, &self.node) {
                Ok(lines) => report.policy_lines = lines,
                Err(error) => {
                    report.node_faults.insert(Part::Policy, error.to_string());
                }
            }
            self.metrics.observe_apply("policy", started.elapsed());
        }
        report
            .refused
            .extend(self.policy.refused().iter().map(|(id, error)| Refusal {
                kind: RefusedKind::Policy(id.kind),
                name: match &id.namespace {
                    Some(namespace) => format!("{namespace}/{}", id.name),
                    None => id.name.clone(),
                },
                reason: format!("nft refused it, so it denies all it governs: {error}"),
            }));
        report
    }

    fn sync_routing(&mut self, view: &ClusterView, facts: &NodeFacts, report: &mut SyncReport) {
        let started = Instant::now();
        if let Err(error) = self.kernel.sysctl("net/ipv4/ip_forward", "1") {
            report
                .node_faults
                .insert(Part::Forwarding, error.to_string());
        }
        let wanted = encapsulates(view).then(|| vxlan::spec(&self.node, facts));
        let vxlan = match vxlan::ensure(&self.kernel, wanted.as_ref(), self.tunnel) {
            Ok(index) => index,
            Err(error) => {
                report.node_faults.insert(Part::Vxlan, error.to_string());
                // Without the device, VXLAN peers are unreachable; direct routes still work.
                self.kernel
                    .netlink(nl::links)
                    .ok()
                    .and_then(|links| {
                        links
                            .into_iter()
                            .find(|link| link.name == VXLAN_DEVICE)
                            .map(|link| link.index)
                    })
                    .filter(|_| wanted.is_some())
            }
        };
        let local = LocalNode {
            name: self.node.clone(),
            address: facts.address,
            uplink: facts.uplink,
            vxlan,
        };
        let (peers, mut refused) = trust::trusted_peers(view, &self.node, facts.address.addr());
        let (ranges, refused_ranges) = pod_ranges(view, &self.node);
        refused.extend(refused_ranges);
        let desired = routes::desired(&local, &peers, &ranges);
        let owners = Owners {
            routes: ranges
                .iter()
                .filter(|range| range.node != self.node)
                .map(|range| (range.cidr, range.node.clone()))
                .collect(),
            peers: peers
                .iter()
                .map(|(name, peer)| (peer.address, name.clone()))
                .collect(),
        };
        let outcome = route_sync::apply(
            &self.kernel,
            &desired,
            &owners,
            vxlan,
            &mut self.peer_retries,
            Instant::now(),
        );
        report.routes_changed = outcome.routes_changed;
        report.entries_changed = outcome.entries_changed;
        report.peer_faults = outcome.peer_faults;
        if !outcome.node_errors.is_empty() {
            report
                .node_faults
                .insert(Part::Routes, outcome.node_errors.join("; "));
        }
        report.unreachable = desired.unreachable;
        refused.sort();
        report.refused = refused;
        self.metrics.observe_apply("routes", started.elapsed());
    }

    fn sync_nat(&mut self, view: &ClusterView) -> Result<(), KernelError> {
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

    /// The policy part (the loop attaches the endpoint records ADD writes to it).
    pub fn policy_mut(&mut self) -> &mut PolicySync {
        &mut self.policy
    }

    /// Forgets what the NAT and policy tables were last given when the kernel no longer holds
    /// it (a table deleted or flushed by hand), so the next pass writes them whole again.
    pub fn verify_tables(&mut self) {
        if let Some(state) = &self.applied_nat
            && !nat::present(&self.kernel, state)
        {
            tracing::warn!("the NAT table differs from what was applied; rewriting it");
            self.applied_nat = None;
        }
        // A difference is logged by verify, and the next pass replaces the table whole.
        if let Err(error) = self.policy.verify(&self.kernel) {
            tracing::warn!(%error, "reading the policy table back from the kernel");
        }
    }

    /// Removes everything the agent created in the kernel (after the Installation is deleted).
    pub fn remove_all(&mut self) -> Result<(), DataplaneError> {
        self.peer_retries.clear();
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
        self.policy.remove(&self.kernel)?;
        self.applied_nat = None;
        Ok(())
    }
}
