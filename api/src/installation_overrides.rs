//! Placement and resource overrides of weft's workloads, shaped like the Tigera operator's
//! `calicoNodeDaemonSet` / `calicoKubeControllersDeployment`: `spec.template.spec` holds the
//! pod fields an admin may set (node selector, affinity, tolerations, per-container resources).
//! Everything else the operator renders stays the operator's.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Affinity, ResourceRequirements, Toleration};
use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::cel;

/// The node label saying which operating system a node runs.
pub const OS_LABEL: &str = "kubernetes.io/os";
/// The only operating system weft's workloads run on.
pub const LINUX: &str = "linux";

/// Overrides of the DaemonSet `weft-node` (the per-node agent).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
pub struct NodeDaemonSet {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spec: Option<NodeDaemonSetSpec>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
pub struct NodeDaemonSetSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<NodeDaemonSetTemplate>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
pub struct NodeDaemonSetTemplate {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spec: Option<NodePodOverrides>,
}

/// What may be set on the node agent's pods.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct NodePodOverrides {
    /// Added to the default `kubernetes.io/os: linux`, which cannot be changed.
    #[x_kube(validation = Rule::new(cel::OS_IS_LINUX).message(cel::OS_IS_LINUX_MSG))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_selector: Option<BTreeMap<String, String>>,
    /// Replaces the default affinity (which keeps the agent off virtual-kubelet and EKS Fargate
    /// nodes, where it cannot run).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Affinity>,
    /// Replaces the default (tolerate every taint: without the agent no pod of that node gets a
    /// network).
    #[schemars(length(max = 64))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tolerations: Option<Vec<Toleration>>,
    /// Resources of the agent container `weft-agent` (over `componentResources` Node).
    #[schemars(length(max = 1))]
    #[x_kube(merge_strategy = kube::core::ListMerge::Map(vec!["name".into()]))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub containers: Option<Vec<NodeContainer>>,
    /// Resources of the init container `install-cni`.
    #[schemars(length(max = 1))]
    #[x_kube(merge_strategy = kube::core::ListMerge::Map(vec!["name".into()]))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init_containers: Option<Vec<NodeInitContainer>>,
}

/// Resources of the node agent's container.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
pub struct NodeContainer {
    pub name: NodeContainerName,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum NodeContainerName {
    #[default]
    #[serde(rename = "weft-agent")]
    WeftAgent,
}

/// Resources of the node agent's init container.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
pub struct NodeInitContainer {
    pub name: NodeInitContainerName,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum NodeInitContainerName {
    #[default]
    #[serde(rename = "install-cni")]
    InstallCni,
}

/// Overrides of the Deployment `weft-controllers`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
pub struct ControllersDeployment {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spec: Option<ControllersDeploymentSpec>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
pub struct ControllersDeploymentSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<ControllersDeploymentTemplate>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
pub struct ControllersDeploymentTemplate {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spec: Option<ControllersPodOverrides>,
}

/// What may be set on the controllers' pods.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct ControllersPodOverrides {
    /// Added to the default `kubernetes.io/os: linux` (which cannot be changed) and to
    /// `controlPlaneNodeSelector`; a key set here wins.
    #[x_kube(validation = Rule::new(cel::OS_IS_LINUX).message(cel::OS_IS_LINUX_MSG))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_selector: Option<BTreeMap<String, String>>,
    /// Replaces the default affinity (replicas prefer distinct nodes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Affinity>,
    /// Replaces `controlPlaneTolerations`.
    #[schemars(length(max = 64))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tolerations: Option<Vec<Toleration>>,
    /// Resources of the container `weft-controllers` (over `componentResources` Controllers).
    #[schemars(length(max = 1))]
    #[x_kube(merge_strategy = kube::core::ListMerge::Map(vec!["name".into()]))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub containers: Option<Vec<ControllersContainer>>,
}

/// Resources of the controllers' container.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
pub struct ControllersContainer {
    pub name: ControllersContainerName,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum ControllersContainerName {
    #[default]
    #[serde(rename = "weft-controllers")]
    WeftControllers,
}

impl NodeDaemonSet {
    /// The pod overrides, if any were written.
    pub fn pod(&self) -> Option<&NodePodOverrides> {
        self.spec.as_ref()?.template.as_ref()?.spec.as_ref()
    }
}

impl ControllersDeployment {
    /// The pod overrides, if any were written.
    pub fn pod(&self) -> Option<&ControllersPodOverrides> {
        self.spec.as_ref()?.template.as_ref()?.spec.as_ref()
    }
}

/// Where a workload's pods run and what each container may use, with defaults resolved
/// (`status.computed`).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ComputedPlacement {
    /// Always holds `kubernetes.io/os: linux`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
    /// The admin's affinity; absent means the workload's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Affinity>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,
    /// Requests and limits by container name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub resources: BTreeMap<String, ResourceRequirements>,
}
