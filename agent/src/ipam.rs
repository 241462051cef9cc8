//! The node side of IPAM: keeps the node state file the plugins read (podCIDRs, blocks, pod
//! MTU), claims this node's blocks ahead of need, releases empty ones after a grace period and
//! frees addresses whose pod is gone. The plugin's ADD never calls the API server: it reads
//! the file this module writes.
//!
//! Ahead of need: whenever fewer than half a block of addresses are free, the next block is
//! claimed, so a burst of pods finds addresses waiting. When every pool the node may use is
//! exhausted, the file says so (naming the pools) and ADD fails at once instead of waiting.
//!
//! Releasing a block is ordered against the plugin: under the allocation store's lock the
//! block is checked empty and dropped from the file; ADD reads the file under the same lock,
//! so no address can be handed out of a block being released.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use ipnet::{IpNet, Ipv4Net};
use kube::Client;
use weft_api::IpamType;
use weft_cni::claim::{self, ClaimError};
use weft_cni::env::Attachment;
use weft_cni::ipam::allocate::{AllocateError, allocate};
use weft_cni::ipam::range::Range;
use weft_cni::ipam::store::{LockedStore, StoreError};
use weft_cni::node_state::{NodeState, NodeStateError};

use crate::metrics::{Metrics, PoolLabel};
use crate::view::ClusterView;
use crate::watch::Shared;

/// The allocation that gives `weft.vxlan` its address: an address of the node's own range, so
/// traffic the node itself sends through the tunnel carries a source the peers route back
/// through the tunnel (symmetric, and accepted by strict reverse-path filtering).
pub fn tunnel_owner() -> Attachment {
    Attachment {
        container_id: "weft-vxlan-tunnel".into(),
        ifname: "weft.vxlan".into(),
    }
}

/// Why an IPAM step failed (it is retried on the next tick).
#[derive(Debug, thiserror::Error)]
pub enum IpamError {
    #[error(transparent)]
    Claim(#[from] ClaimError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    NodeState(#[from] NodeStateError),
}

/// Where the node's IPAM files are and how patient it is.
#[derive(Debug, Clone)]
pub struct IpamSettings {
    pub node: String,
    pub node_state_file: PathBuf,
    pub data_dir: PathBuf,
    /// The network name of the conflist: the allocation store's directory.
    pub network: String,
    /// How long a block stays empty before it is released.
    pub block_grace: Duration,
    /// How long an address stays without a pod before it is freed.
    pub address_grace: Duration,
}

/// The node's IPAM loop state.
pub struct NodeIpam {
    settings: IpamSettings,
    client: Client,
    metrics: Metrics,
    /// Blocks claimed but not yet seen through the watch.
    claimed: BTreeMap<Ipv4Net, String>,
    empty_since: HashMap<Ipv4Net, Instant>,
    orphan_since: HashMap<IpAddr, Instant>,
    written: Option<NodeState>,
    tunnel: Option<std::net::Ipv4Addr>,
}

fn size(block: &Ipv4Net) -> usize {
    1usize << (32 - u32::from(block.prefix_len()))
}

/// A snapshot of what this step needs from the view.
struct Inputs {
    ipam: IpamType,
    pod_cidrs: Vec<Ipv4Net>,
    /// Held blocks with their pool, and whether new pods may use them.
    held: BTreeMap<Ipv4Net, (String, bool)>,
    /// Pools this node may claim from, in order.
    pools: Vec<String>,
    pod_ips: Option<BTreeSet<IpAddr>>,
}

impl NodeIpam {
    pub fn new(settings: IpamSettings, client: Client, metrics: Metrics) -> Self {
        Self {
            settings,
            client,
            metrics,
            claimed: BTreeMap::new(),
            empty_since: HashMap::new(),
            orphan_since: HashMap::new(),
            written: None,
            tunnel: None,
        }
    }

    fn inputs(&mut self, view: &ClusterView) -> Option<Inputs> {
        let installation = view.installation()?;
        let node = view.nodes.get(&self.settings.node)?;
        let usable_pools: BTreeSet<&String> = view
            .pools_for(&node.labels)
            .into_iter()
            .filter(|(_, pool)| !pool.disabled)
            .map(|(name, _)| name)
            .collect();
        let mut held: BTreeMap<Ipv4Net, (String, bool)> = view
            .blocks
            .values()
            .filter(|block| block.node == self.settings.node)
            .map(|block| {
                (
                    block.cidr,
                    (block.pool.clone(), usable_pools.contains(&block.pool)),
                )
            })
            .collect();
        // A claim shows up in the watch a moment later; until then it is held all the same.
        self.claimed.retain(|cidr, _| !held.contains_key(cidr));
        for (cidr, pool) in &self.claimed {
            held.insert(*cidr, (pool.clone(), usable_pools.contains(pool)));
        }
        Some(Inputs {
            ipam: installation.ipam,
            pod_cidrs: node.pod_cidrs.clone(),
            held,
            pools: usable_pools.into_iter().cloned().collect(),
            pod_ips: view
                .synced
                .contains(&crate::view::Kind::Pod)
                .then(|| view.pod_ips_on(&self.settings.node)),
        })
    }

    fn open_store(&self) -> Result<LockedStore, StoreError> {
        LockedStore::open(&self.settings.data_dir, &self.settings.network)
    }

    /// One pass; `mtu` is the pod MTU to publish to the plugin.
    pub async fn step(&mut self, shared: &Shared, mtu: Option<u32>) -> Result<(), IpamError> {
        let Some(inputs) = ({
            let view = shared.view();
            if !view.all_synced() {
                return Ok(());
            }
            self.inputs(&view)
        }) else {
            return Ok(());
        };
        let mut state = NodeState {
            node_name: self.settings.node.clone(),
            pod_cidrs: inputs
                .pod_cidrs
                .iter()
                .map(|cidr| IpNet::V4(*cidr))
                .collect(),
            blocks: Vec::new(),
            mtu,
            exhausted: None,
        };
        if inputs.ipam == IpamType::Weft {
            self.keep_blocks(&inputs, &mut state).await?;
        }
        self.keep_tunnel_address(&state, inputs.ipam)?;
        self.free_orphans(&inputs)?;
        self.write(state)
    }

    /// The address of `weft.vxlan`, once allocated.
    pub fn tunnel_address(&self) -> Option<std::net::Ipv4Addr> {
        self.tunnel
    }

    /// Allocates (once) the tunnel address from the node's blocks or podCIDR, like a pod's.
    fn keep_tunnel_address(&mut self, state: &NodeState, ipam: IpamType) -> Result<(), IpamError> {
        let ranges: Vec<Range> = if ipam == IpamType::HostLocal {
            state
                .pod_cidrs
                .iter()
                .filter(|cidr| cidr.addr().is_ipv4())
                .filter_map(|cidr| Range::host_local(*cidr))
                .collect()
        } else {
            state
                .blocks
                .iter()
                .filter(|block| block.addr().is_ipv4())
                .map(|block| Range::whole_block(*block))
                .collect()
        };
        if ranges.is_empty() {
            return Ok(());
        }
        let store = self.open_store()?;
        match allocate(&store, &[ranges], &tunnel_owner()) {
            Ok(allocations) => {
                self.tunnel = allocations.iter().find_map(|a| match a.address.addr() {
                    IpAddr::V4(ip) => Some(ip),
                    IpAddr::V6(_) => None,
                });
            }
            // No free address yet: the next block brings one.
            Err(AllocateError::Exhausted { .. }) => {}
            Err(AllocateError::Store(error)) => return Err(error.into()),
        }
        Ok(())
    }

    /// Whether the node state file has been written since the start (readiness waits for it).
    pub fn has_written(&self) -> bool {
        self.written.is_some()
    }

    fn write(&mut self, state: NodeState) -> Result<(), IpamError> {
        if self.written.as_ref() != Some(&state) {
            state.write(&self.settings.node_state_file)?;
            self.written = Some(state);
        }
        Ok(())
    }

    async fn keep_blocks(
        &mut self,
        inputs: &Inputs,
        state: &mut NodeState,
    ) -> Result<(), IpamError> {
        // Addresses in use per held block, counted once per step.
        let used = records_by_block(&self.open_store()?.records()?, inputs);
        let used_in = |block: &Ipv4Net| used.get(block).copied().unwrap_or(0);
        let mut usable: Vec<Ipv4Net> = inputs
            .held
            .iter()
            .filter(|(_, (_, usable))| *usable)
            .map(|(cidr, _)| *cidr)
            .collect();
        let mut free: usize = usable.iter().map(|b| size(b) - used_in(b)).sum();
        let low_water = usable.first().map(|b| size(b) / 2).unwrap_or(1).max(1);
        let mut exhausted = Vec::new();
        if free < low_water {
            for pool in &inputs.pools {
                match claim::claim_block(&self.client, pool, &self.settings.node).await {
                    Ok(IpNet::V4(block)) => {
                        self.claimed.insert(block, pool.clone());
                        usable.push(block);
                        free += size(&block);
                        exhausted.clear();
                        break;
                    }
                    Ok(IpNet::V6(_)) => continue,
                    Err(error @ ClaimError::PoolExhausted { .. }) => {
                        exhausted.push(error.to_string())
                    }
                    Err(ClaimError::PoolDisabled { .. } | ClaimError::PoolNotFound { .. }) => {
                        continue;
                    }
                    Err(error) => return Err(error.into()),
                }
            }
        }
        if free == 0 {
            state.exhausted = Some(if inputs.pools.is_empty() {
                format!(
                    "no enabled IPPool selects node {:?} (check the pools' nodeSelector and disabled)",
                    self.settings.node
                )
            } else {
                exhausted.join("; ")
            });
        }
        self.release_empty(inputs, &mut usable, &used).await?;
        usable.sort();
        state.blocks = usable.iter().map(|block| IpNet::V4(*block)).collect();
        self.record_metrics(inputs, &used);
        Ok(())
    }

    /// Releases blocks that stayed empty for the grace period, keeping at least one usable block
    /// and half a block of free addresses.
    async fn release_empty(
        &mut self,
        inputs: &Inputs,
        usable: &mut Vec<Ipv4Net>,
        used: &BTreeMap<Ipv4Net, usize>,
    ) -> Result<(), IpamError> {
        let now = Instant::now();
        let empty: BTreeSet<Ipv4Net> = inputs
            .held
            .keys()
            .filter(|block| used.get(block).copied().unwrap_or(0) == 0)
            .copied()
            .collect();
        self.empty_since.retain(|block, _| empty.contains(block));
        for block in &empty {
            self.empty_since.entry(*block).or_insert(now);
        }
        for block in empty {
            let usable_block = usable.contains(&block);
            let spare: usize = usable
                .iter()
                .filter(|other| **other != block)
                .map(|other| size(other) - used.get(other).copied().unwrap_or(0))
                .sum();
            let keep = usable_block && (usable.len() <= 1 || spare < size(&block) / 2);
            let waited = self
                .empty_since
                .get(&block)
                .is_some_and(|since| now.duration_since(*since) >= self.settings.block_grace);
            if keep || !waited {
                continue;
            }
            {
                let store = self.open_store()?;
                let still_empty = !store.records()?.iter().any(|record| match record.ip {
                    IpAddr::V4(ip) => block.contains(&ip),
                    IpAddr::V6(_) => false,
                });
                if !still_empty {
                    continue;
                }
                usable.retain(|other| *other != block);
                let mut state = self.written.clone().unwrap_or_default();
                state.blocks.retain(|other| *other != IpNet::V4(block));
                self.write(state)?;
            }
            claim::release_block(&self.client, IpNet::V4(block), &self.settings.node).await?;
            self.claimed.remove(&block);
            self.empty_since.remove(&block);
            self.metrics.count_freed("block", 1);
            tracing::info!(%block, "released empty block");
        }
        Ok(())
    }

    /// Frees addresses held by no pod of this node for the address grace period.
    fn free_orphans(&mut self, inputs: &Inputs) -> Result<(), IpamError> {
        let Some(pod_ips) = &inputs.pod_ips else {
            return Ok(());
        };
        let now = Instant::now();
        let store = self.open_store()?;
        let records = store.records()?;
        let tunnel = tunnel_owner();
        let orphans: BTreeSet<IpAddr> = records
            .iter()
            .filter(|record| record.owner != tunnel)
            .map(|record| record.ip)
            .filter(|ip| !pod_ips.contains(ip))
            .collect();
        self.orphan_since.retain(|ip, _| orphans.contains(ip));
        for record in &records {
            if !orphans.contains(&record.ip) {
                continue;
            }
            let since = *self.orphan_since.entry(record.ip).or_insert(now);
            if now.duration_since(since) >= self.settings.address_grace {
                store.remove(record)?;
                self.orphan_since.remove(&record.ip);
                self.metrics.count_freed("address", 1);
                tracing::info!(ip = %record.ip, container = %record.owner.container_id, "freed an address no pod holds");
            }
        }
        Ok(())
    }

    fn record_metrics(&self, inputs: &Inputs, used: &BTreeMap<Ipv4Net, usize>) {
        let mut blocks: BTreeMap<&str, i64> = BTreeMap::new();
        let mut addresses: BTreeMap<&str, i64> = BTreeMap::new();
        for (cidr, (pool, _)) in &inputs.held {
            *blocks.entry(pool).or_default() += 1;
            *addresses.entry(pool).or_default() += used.get(cidr).copied().unwrap_or(0) as i64;
        }
        for (pool, count) in blocks {
            self.metrics
                .blocks
                .get_or_create(&PoolLabel { pool: pool.into() })
                .set(count);
        }
        for (pool, count) in addresses {
            self.metrics
                .addresses
                .get_or_create(&PoolLabel { pool: pool.into() })
                .set(count);
        }
    }
}

fn records_by_block(
    records: &[weft_cni::ipam::store::Record],
    inputs: &Inputs,
) -> BTreeMap<Ipv4Net, usize> {
    inputs
        .held
        .keys()
        .map(|block| {
            let used = records
                .iter()
                .filter(|record| matches!(record.ip, IpAddr::V4(ip) if block.contains(&ip)))
                .count();
            (*block, used)
        })
        .collect()
}
