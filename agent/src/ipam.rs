//! The node side of IPAM: keeps the node state file the plugins read (podCIDRs, blocks, pod
//! MTU), claims this node's blocks ahead of need, releases empty ones after a grace period and
//! frees addresses whose pod is gone. The plugin's ADD never calls the API server: it reads
//! the file this module writes.
//!
//! Ahead of need: whenever fewer than half a block of addresses are free, the next block is
//! claimed, so a burst of pods finds addresses waiting. When every pool the node may use is
//! exhausted, the file says so (naming the pools) and ADD fails at once instead of waiting.
//!
//! Empty blocks are released in [`release`], ordered against the plugin and kept out of the
//! file while a lagging view still shows them. Every step checks that every allocated address
//! lies in a block this node holds and names any that does not.
//!
//! Addresses are freed in [`orphans`] (only when no pod reports them and their interface is
//! gone, and never on a stale pod view); the tunnel's address is kept in [`tunnel`]. Each API
//! call (block claim and release) is bounded by [`API_TIMEOUT`], so a stuck API server costs a
//! step an error, never a hang.

mod orphans;
mod release;
mod tunnel;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use ipnet::{IpNet, Ipv4Net};
use kube::Client;
use weft_api::IpamType;
use weft_cni::claim::{self, ClaimError};
use weft_cni::ipam::store::{LockedStore, Record, StoreError};
use weft_cni::node_state::{NodeState, NodeStateError};

use crate::kernel::{Kernel, KernelError};
use crate::metrics::{Metrics, PoolLabel};
use crate::view::{ClusterView, Kind};
use crate::watch::Shared;

pub use weft_cni::ipam::tunnel_owner;

/// How long one API call of a step (a block claim or release) may take.
pub const API_TIMEOUT: Duration = Duration::from_secs(10);

/// Why an IPAM step failed (it is retried on the next tick).
#[derive(Debug, thiserror::Error)]
pub enum IpamError {
    #[error(transparent)]
    Claim(#[from] ClaimError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    NodeState(#[from] NodeStateError),
    #[error("{action}: no answer from the API server within {after:?}")]
    Timeout { action: String, after: Duration },
    #[error("looking up pod interfaces in the node's network namespace: {0}")]
    Kernel(#[from] KernelError),
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

/// How long a released block the watch never showed stays remembered: a watch that lags its
/// creation as well may still show it, briefly, before its deletion.
const UNSEEN_RELEASE_MEMORY: Duration = Duration::from_secs(600);

/// A block this node released: kept out of the node state file while the view still shows it
/// as this node's.
struct Released {
    /// Whether the IPAMBlock is known to be deleted (else the release is retried).
    deleted: bool,
    /// Whether the view has shown the block as this node's since the release.
    seen: bool,
    at: Instant,
}

impl Released {
    fn new() -> Self {
        Self {
            deleted: false,
            seen: false,
            at: Instant::now(),
        }
    }
}

/// The node's IPAM loop state.
pub struct NodeIpam {
    settings: IpamSettings,
    client: Client,
    metrics: Metrics,
    api_timeout: Duration,
    /// The node's network namespace, where the pods' host-side interfaces are (the agent's own
    /// when `None`).
    netns: Option<PathBuf>,
    /// Blocks claimed but not yet seen through the watch.
    claimed: BTreeMap<Ipv4Net, String>,
    /// Blocks released but maybe still shown as this node's by the watch.
    released: BTreeMap<Ipv4Net, Released>,
    empty_since: HashMap<Ipv4Net, Instant>,
    orphan_since: HashMap<IpAddr, Instant>,
    /// Allocated addresses outside every held block, as last reported.
    outside: BTreeSet<IpAddr>,
    /// The node's namespace, opened on first use (to look up pod interfaces).
    kernel: Option<Kernel>,
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
    /// Blocks of other nodes, to name the holder of an address found outside this node's.
    foreign: BTreeMap<Ipv4Net, String>,
    /// The addresses the pods of this node report; `None` while the pod view is not current.
    pod_ips: Option<BTreeSet<IpAddr>>,
}

impl NodeIpam {
    pub fn new(settings: IpamSettings, client: Client, metrics: Metrics) -> Self {
        Self {
            settings,
            client,
            metrics,
            api_timeout: API_TIMEOUT,
            netns: None,
            claimed: BTreeMap::new(),
            released: BTreeMap::new(),
            empty_since: HashMap::new(),
            orphan_since: HashMap::new(),
            outside: BTreeSet::new(),
            kernel: None,
            written: None,
            tunnel: None,
        }
    }

    /// Looks up the pods' host-side interfaces in the namespace at `netns` (the node's, when the
    /// agent programs a namespace other than its own).
    pub fn with_netns(mut self, netns: Option<PathBuf>) -> Self {
        self.netns = netns;
        self
    }

    /// Bounds each API call of a step by `timeout` instead of [`API_TIMEOUT`].
    pub fn with_api_timeout(mut self, timeout: Duration) -> Self {
        self.api_timeout = timeout;
        self
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
        let node_name = &self.settings.node;
        let shown: BTreeSet<Ipv4Net> = view
            .blocks
            .values()
            .filter(|block| &block.node == node_name)
            .map(|block| block.cidr)
            .collect();
        // A release is over once the watch no longer shows the block as this node's; until
        // then the view is older than the release and its word on that block does not count.
        self.released.retain(|cidr, released| {
            released.seen |= shown.contains(cidr);
            shown.contains(cidr)
                || (!released.seen && released.at.elapsed() < UNSEEN_RELEASE_MEMORY)
        });
        // A block anyone could have written (0.0.0.0/1 naming this node) is held but never
        // allocated from: only blocks the dataplane would route are usable.
        let (trusted, _) = crate::trust::trusted_blocks(view, node_name);
        let trusted: BTreeSet<&String> = trusted.iter().collect();
        let mut held: BTreeMap<Ipv4Net, (String, bool)> = view
            .blocks
            .iter()
            .filter(|(_, block)| {
                &block.node == node_name && !self.released.contains_key(&block.cidr)
            })
            .map(|(name, block)| {
                let usable = usable_pools.contains(&block.pool) && trusted.contains(name);
                (block.cidr, (block.pool.clone(), usable))
            })
            .collect();
        let foreign = view
            .blocks
            .values()
            .filter(|block| &block.node != node_name)
            .map(|block| (block.cidr, block.node.clone()))
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
            foreign,
            pod_ips: view
                .fresh(Kind::Pod)
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
            self.retry_releases().await;
            self.keep_blocks(&inputs, &mut state).await?;
            self.check_addresses(&inputs)?;
        }
        self.keep_tunnel_address(&state, inputs.ipam)?;
        self.write(state)?;
        // Last: a failed interface lookup must not keep the node state file from being written.
        self.free_orphans(&inputs)
    }

    /// The address of `weft.vxlan`, once allocated.
    pub fn tunnel_address(&self) -> Option<std::net::Ipv4Addr> {
        self.tunnel
    }

    /// Allocated addresses that lie in no block this node holds, as of the last step (pool
    /// mode). Each one is a fault: another node may be handed the same address.
    pub fn addresses_outside_blocks(&self) -> &BTreeSet<IpAddr> {
        &self.outside
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
                let claimed = tokio::time::timeout(
                    self.api_timeout,
                    claim::claim_block(&self.client, pool, &self.settings.node),
                )
                .await
                .map_err(|_| IpamError::Timeout {
                    action: format!("claiming a block of IPPool {pool:?}"),
                    after: self.api_timeout,
                })?;
                match claimed {
                    Ok(IpNet::V4(block)) => {
                        self.released.remove(&block);
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

    /// Names, once each, every allocated address that lies in no block this node holds.
    fn check_addresses(&mut self, inputs: &Inputs) -> Result<(), IpamError> {
        let records = self.open_store()?.records()?;
        let outside: Vec<&Record> = records
            .iter()
            .filter(|record| match record.ip {
                IpAddr::V4(ip) => !inputs.held.keys().any(|block| block.contains(&ip)),
                IpAddr::V6(_) => false,
            })
            .collect();
        for record in &outside {
            if self.outside.contains(&record.ip) {
                continue;
            }
            let holder = inputs
                .foreign
                .iter()
                .find(|(block, _)| matches!(record.ip, IpAddr::V4(ip) if block.contains(&ip)))
                .map(|(block, node)| format!("block {block} of node {node:?}"));
            tracing::warn!(
                ip = %record.ip,
                container = %record.owner.container_id,
                ifname = %record.owner.ifname,
                block_holder = holder.as_deref().unwrap_or("no block"),
                "an allocated address lies in no block this node holds"
            );
        }
        self.outside = outside.iter().map(|record| record.ip).collect();
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_ipam_can_run_in_its_own_task() {
        fn is_send<T: Send + 'static>() {}
        is_send::<NodeIpam>();
    }
}
