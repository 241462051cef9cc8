//! `weft-ipam`: the IPAM plugin. Host-local ranges, the node's podCIDR or the node's pool blocks as
//! address sources; a file-per-address store under a lock.

pub mod allocate;
pub mod command;
pub mod config;
pub mod range;
pub mod store;
