//! The address of `weft.vxlan`: allocated from the node's own range like a pod's, and kept
//! inside the ranges the node may use. When its block's pool is disabled (a pool migration) or
//! the node's podCIDR changes, it moves to a usable range, so the old block can drain, be
//! released, and its pool be deleted. The move happens under the store lock (the old record is
//! dropped and a new one taken in one critical section); no ADD can get the old address
//! meanwhile, as it is outside every range the plugin reads.

use std::net::{IpAddr, Ipv4Addr};

use weft_api::IpamType;
use weft_cni::ipam::allocate::{AllocateError, allocate};
use weft_cni::ipam::range::Range;
use weft_cni::ipam::store::Record;
use weft_cni::node_state::NodeState;

use super::{IpamError, NodeIpam, tunnel_owner};

fn ipv4(ip: IpAddr) -> Option<Ipv4Addr> {
    match ip {
        IpAddr::V4(ip) => Some(ip),
        IpAddr::V6(_) => None,
    }
}

/// The ranges the tunnel may take its address from: the node's podCIDRs (host-local) or the
/// usable blocks the node state file lists.
fn ranges(state: &NodeState, ipam: IpamType) -> Vec<Range> {
    if ipam == IpamType::HostLocal {
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
    }
}

impl NodeIpam {
    /// Allocates the tunnel address once, and moves it when it lies outside the usable ranges.
    pub(super) fn keep_tunnel_address(
        &mut self,
        state: &NodeState,
        ipam: IpamType,
    ) -> Result<(), IpamError> {
        let ranges = ranges(state, ipam);
        let store = self.open_store()?;
        let owner = tunnel_owner();
        let held: Vec<Record> = store
            .records()?
            .into_iter()
            .filter(|record| record.owner == owner)
            .collect();
        let usable = |ip: IpAddr| ranges.iter().any(|range| range.contains(ip));
        if let Some(kept) = held.iter().find(|record| usable(record.ip)) {
            for other in held.iter().filter(|record| *record != kept) {
                store.remove(other)?;
            }
            self.tunnel = ipv4(kept.ip);
            return Ok(());
        }
        if ranges.is_empty() {
            // Nowhere to move to yet (no usable block): the tunnel keeps what it has.
            self.tunnel = held.iter().find_map(|record| ipv4(record.ip));
            return Ok(());
        }
        for record in &held {
            store.remove(record)?;
        }
        match allocate(&store, &[ranges], &owner) {
            Ok(allocations) => {
                let new = allocations
                    .iter()
                    .find_map(|allocation| ipv4(allocation.address.addr()));
                if let Some(old) = held.first() {
                    tracing::info!(from = %old.ip, to = ?new, "moved the tunnel address into a usable block");
                }
                self.tunnel = new;
                Ok(())
            }
            Err(error) => {
                // Put the old address back: a tunnel outside the ranges beats none.
                for record in &held {
                    store.insert(record)?;
                }
                self.tunnel = held.iter().find_map(|record| ipv4(record.ip));
                match error {
                    // No free address yet: the next block brings one.
                    AllocateError::Exhausted { .. } => Ok(()),
                    AllocateError::Store(error) => Err(error.into()),
                }
            }
        }
    }
}
