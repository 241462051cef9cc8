//! Status of an Installation: conditions, per-component health, the MTU in use and the fully
//! defaulted configuration (`computed`) the operator actually applies.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::DaemonSetUpdateStrategy;
use k8s_openapi::api::core::v1::{LocalObjectReference, Toleration};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::KubeSchema;
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};

use crate::installation::{
    CniType, ComponentResource, HostPorts, ImagePullPolicy, IpamType, KubernetesProvider,
    LinuxDataplane, LogLevel, NodeAddressAutodetection,
};
use crate::installation_overrides::ComputedPlacement;
use crate::ippool::{Encapsulation, NatOutgoing};

/// Condition types the operator sets on an Installation.
pub mod condition_type {
    pub const READY: &str = "Ready";
    pub const AVAILABLE: &str = "Available";
    pub const PROGRESSING: &str = "Progressing";
    pub const DEGRADED: &str = "Degraded";
}

/// Observed state of an Installation.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct InstallationStatus {
    /// The spec generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Ready, Available, Progressing and Degraded (standard conditions).
    #[x_kube(merge_strategy = kube::core::ListMerge::Map(vec!["type".into()]))]
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The weft version running: set to the operator's version once that version's rollout has
    /// completed (every workload updated and available), like the Tigera operator's
    /// `calicoVersion`. During an upgrade it still names the previous version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// The pod MTU in use (set or detected).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<i32>,
    /// The configuration in use: the spec with every default filled in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub computed: Option<ComputedInstallation>,
    /// Health of each component.
    #[x_kube(merge_strategy = kube::core::ListMerge::Map(vec!["name".into()]))]
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub components: Vec<ComponentStatus>,
}

/// Health of one component (a DaemonSet or Deployment the operator manages).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ComponentStatus {
    pub name: String,
    pub available: bool,
    pub progressing: bool,
    pub degraded: bool,
    /// What is going on, e.g. "DaemonSet weft-node is rolling out (3 of 5 updated)".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// An Installation spec with every default resolved: what the operator renders from.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ComputedInstallation {
    pub registry: String,
    /// Image tag of every weft image (the operator's own version).
    pub image_tag: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub image_pull_secrets: Vec<LocalObjectReference>,
    pub image_pull_policy: ImagePullPolicy,
    /// The provider set in spec, else the detected one (AutoDetect when detection found nothing).
    pub kubernetes_provider: KubernetesProvider,
    pub cni: ComputedCni,
    pub network: ComputedNetwork,
    pub control_plane_replicas: i32,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub control_plane_node_selector: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub control_plane_tolerations: Vec<Toleration>,
    pub node_update_strategy: DaemonSetUpdateStrategy,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub component_resources: Vec<ComponentResource>,
    pub log_level: LogLevel,
    /// The node agent's metrics port; absent means no metrics endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_metrics_port: Option<i32>,
    /// Where the node agent's pods run and their containers' resources.
    #[schemars(schema_with = "placement_schema")]
    #[serde(default)]
    pub node_placement: ComputedPlacement,
    /// Where the controllers' pods run and their container's resources.
    #[schemars(schema_with = "placement_schema")]
    #[serde(default)]
    pub controllers_placement: ComputedPlacement,
}

/// A placement in status is written only by the operator and read by people: its schema is left
/// open rather than repeating the Pod API's affinity and toleration schemas (hundreds of KiB).
fn placement_schema(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "description": "Node selector, affinity, tolerations and resources by container, as rendered.",
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true,
    })
}

/// CNI settings with defaults resolved.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ComputedCni {
    #[serde(rename = "type")]
    pub cni_type: CniType,
    pub ipam_type: IpamType,
    pub bin_dir: String,
    pub conf_dir: String,
}

/// Network settings with defaults resolved.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ComputedNetwork {
    /// The MTU set in spec; absent means the node agent detects it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<i32>,
    pub linux_dataplane: LinuxDataplane,
    pub host_ports: HostPorts,
    /// Pools to keep in sync (empty with HostLocal IPAM or an External CNI).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ip_pools: Vec<ComputedIpPool>,
    pub node_address_autodetection_v4: NodeAddressAutodetection,
}

/// A pool with defaults resolved.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ComputedIpPool {
    pub name: String,
    pub cidr: String,
    pub block_size: i32,
    pub encapsulation: Encapsulation,
    pub nat_outgoing: NatOutgoing,
    pub node_selector: String,
    pub disable_new_allocations: bool,
}
