//! `weft-ipam`: the IPAM plugin. Host-local ranges, the node's podCIDR or the node's pool blocks as
//! address sources; a file-per-address store under a lock.

pub mod allocate;
pub mod command;
pub mod config;
pub mod range;
pub mod store;

use crate::env::Attachment;

/// The attachment that holds the address of the node's VXLAN device `weft.vxlan`. The node agent
/// allocates it from the node's range like a pod's, so traffic the node sends through the
/// tunnel has a source its peers route back through the tunnel. No container runtime knows
/// this attachment, so GC never frees it (see [`allocate::collect_garbage`]).
pub fn tunnel_owner() -> Attachment {
    Attachment {
        container_id: "weft-vxlan-tunnel".into(),
        ifname: "weft.vxlan".into(),
    }
}
