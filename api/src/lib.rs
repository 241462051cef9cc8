//! weft's custom resource types: `operator.weft.dev/v1` Installation and the `network.weft.dev/v1`
//! IPPool, IPAMBlock, NetworkPolicy and GlobalNetworkPolicy, with their defaults and validation.
//!
//! Admission-time validation lives in the generated schemas (OpenAPI plus CEL rules, see
//! [`cel`] and [`policy_cel`]); [`crds()`] returns every CustomResourceDefinition.

pub mod admission;
pub mod cel;
pub mod crds;
pub mod defaults;
pub mod installation;
pub mod installation_overrides;
pub mod installation_status;
pub mod ipam_block;
pub mod ippool;
pub mod policy;
pub mod policy_cel;
pub mod policy_values;

pub use crds::crds;
pub use defaults::{ClusterFacts, defaults, kubeadm_pod_subnet};
pub use installation::{
    CniSpec, CniType, ComponentName, ComponentResource, HostPorts, INSTALLATION_NAME,
    ImagePullPolicy, Installation, InstallationIpPool, InstallationSpec, IpamSpec, IpamType,
    KubernetesProvider, LinuxDataplane, LogLevel, Logging, NetworkSpec, NodeAddressAutodetection,
};
pub use installation_overrides::{
    ComputedPlacement, ControllersDeployment, ControllersPodOverrides, NodeDaemonSet,
    NodePodOverrides,
};
pub use installation_status::{
    ComponentStatus, ComputedCni, ComputedInstallation, ComputedIpPool, ComputedNetwork,
    InstallationStatus,
};
pub use ipam_block::{BlockNameError, IpamBlock, IpamBlockSpec, block_cidr_from_name, block_name};
pub use ippool::{Encapsulation, IpPool, IpPoolSpec, IpPoolStatus, NatOutgoing};
pub use policy::{
    Action, EntityRule, GlobalNetworkPolicy, GlobalNetworkPolicySpec, IcmpMatch, NetworkPolicy,
    NetworkPolicySpec, PolicyRule, PolicyType, ServiceAccountMatch,
};
pub use policy_values::{PortMatch, Protocol, ValueError, parse_port, parse_protocol};
