//! The pure render step: from a validated, defaulted Installation and facts about the cluster to
//! every object the operator applies. No API calls happen here, so `weftctl render` prints exactly
//! what the operator applies and fixtures test it.

mod admission;
mod cni;
mod controllers;
mod node;
mod pools;
mod rbac;
mod yaml;

use std::collections::BTreeMap;

use k8s_openapi::api::admissionregistration::v1::{
    ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding,
};
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, ServiceAccount};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::Resource;
use serde::Serialize;
use sha2::{Digest, Sha256};
use weft_api::{ClusterFacts, CniType, ComputedInstallation, IpPool};

pub use admission::{
    AGENT_ANNOTATION_PREFIX, AGENT_CONDITION, NODE_NAME_EXTRA, NODE_SCOPE_POLICY,
    rule as node_scope_rule,
};
pub use cni::{CNI_CONFIG_KEY, CNI_CONFIG_NAME, conflist};
pub use controllers::CONTROLLERS_NAME;
pub use node::{CNI_CONFIG_HASH_ANNOTATION, NODE_AGENT_NAME};
pub use pools::pool_spec;
pub use yaml::{RenderYamlError, to_yaml};

use crate::labels::{NAMESPACE, standard_labels};

/// Annotation on every rendered object holding a hash of what was rendered, so a changed render
/// is told apart from a hand edit of the live object.
pub const RENDERED_HASH_ANNOTATION: &str = "operator.weft.dev/rendered-hash";

/// weft's workloads, each with its own identity.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Component {
    Node,
    Controllers,
}

impl Component {
    pub const ALL: [Component; 2] = [Component::Node, Component::Controllers];

    /// The name of the component's workload, ServiceAccount and ClusterRole.
    pub fn name(self) -> &'static str {
        match self {
            Component::Node => NODE_AGENT_NAME,
            Component::Controllers => controllers::CONTROLLERS_NAME,
        }
    }

    /// The value of its `app.kubernetes.io/component` label.
    pub fn label(self) -> &'static str {
        match self {
            Component::Node => "node",
            Component::Controllers => "controllers",
        }
    }
}

/// Every object the operator applies, in apply order. Pools are not owned by the Installation
/// (they outlive it) and are reconciled by their own rules.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Rendered {
    pub namespace: Namespace,
    pub service_accounts: Vec<ServiceAccount>,
    pub cluster_roles: Vec<ClusterRole>,
    pub cluster_role_bindings: Vec<ClusterRoleBinding>,
    /// What the API server allows the node agent to write (before the agent exists).
    pub validating_admission_policies: Vec<ValidatingAdmissionPolicy>,
    pub validating_admission_policy_bindings: Vec<ValidatingAdmissionPolicyBinding>,
    pub config_maps: Vec<ConfigMap>,
    pub daemon_sets: Vec<DaemonSet>,
    pub deployments: Vec<Deployment>,
    pub pod_disruption_budgets: Vec<PodDisruptionBudget>,
    pub ip_pools: Vec<IpPool>,
}

/// Metadata shared by everything rendered for one Installation.
pub(crate) struct Meta {
    owner: Option<OwnerReference>,
}

impl Meta {
    fn object(&self, name: &str, namespace: Option<&str>, component: &str) -> ObjectMeta {
        ObjectMeta {
            name: Some(name.to_owned()),
            namespace: namespace.map(str::to_owned),
            labels: Some(standard_labels(name, component)),
            owner_references: self.owner.clone().map(|owner| vec![owner]),
            ..Default::default()
        }
    }

    pub(crate) fn cluster(&self, name: &str, component: &str) -> ObjectMeta {
        self.object(name, None, component)
    }

    pub(crate) fn namespaced(&self, name: &str, component: &str) -> ObjectMeta {
        self.object(name, Some(NAMESPACE), component)
    }
}

/// Hex SHA-256 of `bytes`.
pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// Records the hash of `object` (as rendered, before the annotation) in its annotations.
fn stamp<K: Resource + Serialize>(mut object: K) -> K {
    // Serializing the API types to JSON cannot fail: they hold only strings, numbers and maps.
    let json = serde_json::to_vec(&object).unwrap_or_default();
    let hash = sha256_hex(&json);
    object
        .meta_mut()
        .annotations
        .get_or_insert_with(BTreeMap::new)
        .insert(RENDERED_HASH_ANNOTATION.to_owned(), hash[..16].to_owned());
    object
}

fn stamp_all<K: Resource + Serialize>(objects: Vec<K>) -> Vec<K> {
    objects.into_iter().map(stamp).collect()
}

/// Renders every object for `computed` (the Installation with defaults resolved). `owner` is the
/// controller owner reference to the live Installation; offline rendering has none.
pub fn render(
    computed: &ComputedInstallation,
    _facts: &ClusterFacts,
    owner: Option<OwnerReference>,
) -> Rendered {
    let meta = Meta { owner };
    let cni_config = match computed.cni.cni_type {
        CniType::Weft => Some(cni::config_map(&meta, computed)),
        CniType::External => None,
    };
    let node = node::daemon_set(&meta, computed, cni_config.as_ref());
    let (deployment, budget) = controllers::deployment(&meta, computed);
    Rendered {
        namespace: stamp(rbac::namespace(&meta)),
        service_accounts: stamp_all(
            Component::ALL
                .map(|component| rbac::service_account(&meta, component))
                .into(),
        ),
        cluster_roles: stamp_all(
            Component::ALL
                .map(|component| rbac::cluster_role(&meta, component))
                .into(),
        ),
        cluster_role_bindings: stamp_all(
            Component::ALL
                .map(|component| rbac::cluster_role_binding(&meta, component))
                .into(),
        ),
        validating_admission_policies: vec![stamp(admission::policy(&meta))],
        validating_admission_policy_bindings: vec![stamp(admission::binding(&meta))],
        config_maps: stamp_all(cni_config.into_iter().collect()),
        daemon_sets: vec![stamp(node)],
        deployments: vec![stamp(deployment)],
        pod_disruption_budgets: vec![stamp(budget)],
        ip_pools: pools::ip_pools(computed),
    }
}
