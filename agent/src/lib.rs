//! The weft per-node agent: installs the CNI plugins and config, keeps the node's IPAM state,
//! programs pod routes (direct or VXLAN), NAT and network policy on its node, and runs the
//! cluster-wide IPAM garbage collection as `weft-agent controllers`.

pub mod addresses;
pub mod controllers;
pub mod dataplane;
pub mod detect;
pub mod faults;
pub mod health;
pub mod install_cni;
pub mod ipam;
pub mod kernel;
pub mod metrics;
pub mod nat;
pub mod node_publisher;
pub mod node_status;
pub mod policy_isolation;
pub mod policy_sync;
pub mod route_sync;
pub mod routes;
pub mod run;
pub mod trust;
pub mod view;
pub mod vxlan;
pub mod watch;
