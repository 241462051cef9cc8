//! Address GC on the node: frees an allocation whose pod is gone. "Gone" needs two witnesses,
//! for the whole address grace period: no pod of this node reports the address, and the pod's
//! host-side interface (named from container id and ifname, as the plugin named it) no longer
//! exists in the node's namespace. The pod view alone is not enough: the kubelet posts a new
//! pod's address seconds after ADD, and a watch that failed (lost rights, a cut connection)
//! leaves a view that misses pods; freeing on its word would hand a live pod's address to the
//! next pod. So GC also pauses while the pod view is stale, and the grace clock starts over
//! when it is current again.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::time::Instant;

use weft_cni::env::Attachment;
use weft_cni::naming::host_interface_name;

use super::{Inputs, IpamError, NodeIpam, tunnel_owner};
use crate::kernel::Kernel;

impl NodeIpam {
    /// Frees the addresses that have had neither a pod nor an interface for the grace period.
    pub(super) fn free_orphans(&mut self, inputs: &Inputs) -> Result<(), IpamError> {
        let Some(pod_ips) = &inputs.pod_ips else {
            if !self.orphan_since.is_empty() {
                tracing::info!("the pod view is not current: address GC waits for it");
            }
            self.orphan_since.clear();
            return Ok(());
        };
        let now = Instant::now();
        let store = self.open_store()?;
        let records = store.records()?;
        let tunnel = tunnel_owner();
        let mut orphans: BTreeSet<IpAddr> = BTreeSet::new();
        for record in &records {
            if record.owner == tunnel || pod_ips.contains(&record.ip) {
                continue;
            }
            if !self.interface_exists(&record.owner)? {
                orphans.insert(record.ip);
            }
        }
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

    /// Whether the host-side interface of `owner` exists in the node's namespace.
    fn interface_exists(&mut self, owner: &Attachment) -> Result<bool, IpamError> {
        let kernel = match &mut self.kernel {
            Some(kernel) => kernel,
            empty => empty.insert(Kernel::open(self.netns.as_deref())?),
        };
        let name = host_interface_name(owner);
        Ok(kernel
            .netlink(|netlink| netlink.link_by_name(&name))?
            .is_some())
    }
}
