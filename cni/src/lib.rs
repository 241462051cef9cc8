//! weft's CNI plugins: `weft` (pod interfaces) and `weft-ipam` (host-local and pool-block IPAM),
//! and the pieces they share: CNI environment, config and result types, a synchronous netlink
//! client, network namespace helpers and the allocation store.

#[cfg(feature = "claim")]
pub mod claim;
pub mod cli;
pub mod config;
pub mod endpoint;
pub mod env;
pub mod error;
pub mod ipam;
pub mod naming;
pub mod netlink;
pub mod netns;
pub mod node_state;
pub mod plugin;
pub mod result;
pub mod sysctl;
