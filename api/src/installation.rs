//! `operator.weft.dev/v1` Installation: the one object (named `default`) an admin writes to
//! install and configure weft. Field names follow the Tigera operator's where the meaning is the
//! same. Defaults are never written into this spec; the operator records them in
//! `status.computed` (see [`crate::defaults`]).

// kube's repeated `printcolumn(type_ = ..)` arguments are distinct columns, not duplicates.
#![allow(clippy::duplicated_attributes)]

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::DaemonSetUpdateStrategy;
use k8s_openapi::api::core::v1::{LocalObjectReference, ResourceRequirements, Toleration};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::cel;
use crate::installation_status::InstallationStatus;
use crate::ippool::{Encapsulation, NatOutgoing};

/// The only accepted name of an Installation.
pub const INSTALLATION_NAME: &str = "default";
/// Allowed MTU range (inclusive).
pub const MTU_RANGE: std::ops::RangeInclusive<i32> = 576..=9216;
/// Most pools an Installation may list.
pub const MAX_IP_POOLS: usize = 16;
/// The node agent's health port (`/healthz`, `/readyz`) on the host's loopback address.
pub const NODE_HEALTH_PORT: i32 = 9099;

/// Desired state of weft in this cluster.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[kube(
    group = "operator.weft.dev",
    version = "v1",
    kind = "Installation",
    plural = "installations",
    status = "InstallationStatus",
    derive = "PartialEq",
    doc = "How weft is installed and configured in this cluster; only the name `default` is accepted.",
    validation = Rule::new("self.metadata.name == 'default'").message("metadata.name must be 'default': only one Installation, named default, is accepted"),
    printcolumn(name = "Available", type_ = "string", json_path = ".status.conditions[?(@.type==\"Available\")].status"),
    printcolumn(name = "Progressing", type_ = "string", json_path = ".status.conditions[?(@.type==\"Progressing\")].status"),
    printcolumn(name = "Degraded", type_ = "string", json_path = ".status.conditions[?(@.type==\"Degraded\")].status"),
    printcolumn(name = "MTU", type_ = "integer", json_path = ".status.mtu"),
    printcolumn(name = "Version", type_ = "string", json_path = ".status.version"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
pub struct InstallationSpec {
    /// Registry (with optional path) images are pulled from; default: the operator's registry.
    #[schemars(length(max = 253))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registry: Option<String>,
    /// Secrets used to pull weft's images.
    #[schemars(length(max = 16))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_secrets: Option<Vec<LocalObjectReference>>,
    /// Pull policy of weft's images (default IfNotPresent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_policy: Option<ImagePullPolicy>,
    /// The Kubernetes distribution; absent or "" means detect it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubernetes_provider: Option<KubernetesProvider>,
    /// CNI plugin and IPAM settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cni: Option<CniSpec>,
    /// Pod network settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<NetworkSpec>,
    /// Replicas of the control-plane Deployment (default 2).
    #[schemars(range(min = 1, max = 20))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub control_plane_replicas: Option<i32>,
    /// Node labels the control-plane pods must match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub control_plane_node_selector: Option<BTreeMap<String, String>>,
    /// Tolerations of the control-plane pods.
    #[schemars(length(max = 32))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub control_plane_tolerations: Option<Vec<Toleration>>,
    /// Placement and resources of the node agent's DaemonSet `weft-node` (like the Tigera
    /// operator's `calicoNodeDaemonSet`); it always runs only on `kubernetes.io/os: linux` nodes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_daemon_set: Option<crate::installation_overrides::NodeDaemonSet>,
    /// Placement and resources of the Deployment `weft-controllers`; Linux nodes only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub controllers_deployment: Option<crate::installation_overrides::ControllersDeployment>,
    /// Update strategy of the per-node DaemonSet (default RollingUpdate, maxUnavailable 1).
    /// The agent runs on the host network and binds a fixed port on each node, so `maxSurge`
    /// (two agents on one node) is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_update_strategy: Option<DaemonSetUpdateStrategy>,
    /// Resource requests and limits per component.
    #[schemars(length(max = 2))]
    #[x_kube(merge_strategy = kube::core::ListMerge::Map(vec!["componentName".into()]))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub component_resources: Option<Vec<ComponentResource>>,
    /// Logging of weft's components.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logging: Option<Logging>,
    /// Port on every node's addresses where the node agent serves Prometheus `/metrics`; absent
    /// means no metrics endpoint. The agent runs on the host network, so the port is reachable
    /// from the pod network unless a host firewall or policy restricts it. Must not be 9099, the
    /// agent's health port.
    #[schemars(range(min = 1, max = 65535))]
    #[x_kube(validation = Rule::new(cel::NOT_NODE_HEALTH_PORT).message(cel::NOT_NODE_HEALTH_PORT_MSG))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_metrics_port: Option<i32>,
}

/// Image pull policy, as in a container spec.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum ImagePullPolicy {
    Always,
    #[default]
    IfNotPresent,
    Never,
}

/// Kubernetes distributions weft knows how to fit into.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
pub enum KubernetesProvider {
    /// Detect the distribution from the cluster.
    #[default]
    #[serde(rename = "")]
    AutoDetect,
    Kind,
    #[serde(rename = "EKS")]
    Eks,
    #[serde(rename = "GKE")]
    Gke,
    #[serde(rename = "AKS")]
    Aks,
    K3s,
    #[serde(rename = "RKE2")]
    Rke2,
    OpenShift,
}

/// CNI plugin settings.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CniSpec {
    /// Weft (weft does pod networking) or External (another plugin does; weft enforces policy).
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub cni_type: Option<CniType>,
    /// Address management.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipam: Option<IpamSpec>,
    /// Host directory of CNI binaries (default /opt/cni/bin).
    #[schemars(length(min = 1, max = 4096), regex(pattern = r"^/"))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bin_dir: Option<String>,
    /// Host directory of CNI network configurations (default /etc/cni/net.d).
    #[schemars(length(min = 1, max = 4096), regex(pattern = r"^/"))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conf_dir: Option<String>,
}

/// Which plugin provides pod networking.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum CniType {
    #[default]
    Weft,
    External,
}

/// Address management settings.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IpamSpec {
    /// Weft (blocks from IP pools) or HostLocal (the node's spec.podCIDR).
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub ipam_type: Option<IpamType>,
}

/// Which IPAM assigns pod addresses.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum IpamType {
    #[default]
    Weft,
    HostLocal,
}

/// Pod network settings.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct NetworkSpec {
    /// MTU of pod interfaces; absent means detect it from the node's interfaces.
    #[schemars(range(min = 576, max = 9216))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<i32>,
    /// The Linux dataplane (Nftables, the only one today).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub linux_dataplane: Option<LinuxDataplane>,
    /// Whether pods' `hostPort`s are served (default Enabled): the conflist then chains the
    /// standard `portmap` plugin, which the node agent installs beside weft's own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_ports: Option<HostPorts>,
    /// Pools the operator creates and owns; absent means one default pool (with Weft IPAM).
    #[schemars(length(max = 16))]
    #[x_kube(merge_strategy = kube::core::ListMerge::Map(vec!["name".into()]))]
    #[x_kube(validation = Rule::new(cel::POOL_CIDRS_UNIQUE).message(cel::POOL_CIDRS_UNIQUE_MSG))]
    #[x_kube(validation = Rule::new(cel::POOLS_DISJOINT).message(cel::POOLS_DISJOINT_MSG))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_pools: Option<Vec<InstallationIpPool>>,
    /// How each node's IPv4 address is found (default firstFound).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_address_autodetection_v4: Option<NodeAddressAutodetection>,
}

/// The Linux dataplane implementation.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum LinuxDataplane {
    #[default]
    Nftables,
}

/// Whether `hostPort`s of pods are mapped on their node.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum HostPorts {
    #[default]
    Enabled,
    Disabled,
}

/// An IP pool the operator keeps in sync with this Installation.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[x_kube(validation = Rule::new(cel::BLOCK_SIZE_IN_FAMILY).message(cel::BLOCK_SIZE_IN_FAMILY_MSG).field_path(".blockSize"))]
#[x_kube(validation = Rule::new(cel::BLOCK_SIZE_WITHIN_POOL).message(cel::BLOCK_SIZE_WITHIN_POOL_MSG).field_path(".blockSize"))]
#[serde(rename_all = "camelCase")]
pub struct InstallationIpPool {
    /// Name of the IPPool object (a DNS label), unique in the list.
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub name: String,
    /// The pool's address range, e.g. 10.244.0.0/16.
    #[schemars(length(max = 43))]
    #[x_kube(validation = Rule::new(cel::IS_CIDR).message(cel::IS_CIDR_MSG))]
    #[x_kube(validation = Rule::new(cel::CIDR_MASKED).message(cel::CIDR_MASKED_MSG))]
    #[x_kube(validation = Rule::new(cel::CIDR_IPV4).message(cel::CIDR_IPV4_MSG))]
    pub cidr: String,
    /// Prefix length of the per-node blocks (IPv4: 20..32, default 26).
    #[schemars(range(min = 20, max = 128))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub block_size: Option<i32>,
    /// Encapsulation between nodes (default VXLANCrossSubnet).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encapsulation: Option<Encapsulation>,
    /// SNAT of traffic leaving the pools (default Enabled).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nat_outgoing: Option<NatOutgoing>,
    /// Nodes that take blocks from this pool, in weft selector syntax (default `all()`).
    #[schemars(length(max = 1024))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_selector: Option<String>,
    /// When true no new blocks are cut from this pool; existing ones stay in use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disable_new_allocations: Option<bool>,
}

/// How a node's address is chosen; at most one method may be set.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[x_kube(validation = Rule::new("[has(self.firstFound) && self.firstFound, has(self.interface), has(self.cidrs), has(self.canReach)].filter(x, x).size() <= 1").message("set at most one of firstFound, interface, cidrs, canReach"))]
#[serde(rename_all = "camelCase")]
pub struct NodeAddressAutodetection {
    /// Use the first valid address on the first usable interface.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_found: Option<bool>,
    /// Use the first address of the first interface whose name matches this regular expression.
    #[schemars(length(min = 1, max = 256))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<String>,
    /// Use the first address inside one of these CIDRs.
    #[schemars(length(min = 1, max = 16))]
    #[x_kube(validation = Rule::new("self.all(c, isCIDR(c))").message("cidrs entries must be CIDRs such as 10.0.0.0/8"))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cidrs: Option<Vec<String>>,
    /// Use the address of the interface that routes to this destination IP.
    #[schemars(length(max = 45))]
    #[x_kube(validation = Rule::new("isIP(self)").message("canReach must be an IP address"))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub can_reach: Option<String>,
}

/// Resources of one weft component.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ComponentResource {
    /// The component: Node (per-node agent) or Controllers (control plane).
    pub component_name: ComponentName,
    /// Requests and limits of its containers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_requirements: Option<ResourceRequirements>,
}

/// weft's components whose resources can be set.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
pub enum ComponentName {
    #[default]
    Node,
    Controllers,
}

/// Logging settings.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Logging {
    /// Least severe level logged (default Info).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub level: Option<LogLevel>,
}

/// Log levels.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum LogLevel {
    Error,
    Warn,
    #[default]
    Info,
    Debug,
    Trace,
}

impl Installation {
    /// Whether the operator has reported on the current spec (`observedGeneration` equals
    /// `metadata.generation`) and found it Available.
    pub fn is_available(&self) -> bool {
        self.status.as_ref().is_some_and(|status| {
            status.observed_generation == self.metadata.generation
                && status
                    .conditions
                    .iter()
                    .any(|c| c.type_ == "Available" && c.status == "True")
        })
    }
}
