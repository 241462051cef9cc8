//! The namespace and the least-privilege identities of weft's components: one ServiceAccount,
//! ClusterRole and ClusterRoleBinding per component, no wildcards, a reason for every rule.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, RoleRef, Subject};

use super::{Component, Meta};
use crate::labels::NAMESPACE;

/// `weft-system`. The node agent runs on the host network with host directories mounted and
/// `NET_ADMIN` (it creates pod interfaces, routes and nftables rules), which only the
/// `privileged` Pod Security level admits, so the namespace admits it explicitly; audit and warn
/// are set to the same level so admission logs stay quiet about the expected privilege.
pub fn namespace(meta: &Meta) -> Namespace {
    let mut metadata = meta.cluster(NAMESPACE, "namespace");
    let labels = metadata.labels.get_or_insert_with(BTreeMap::new);
    for mode in ["enforce", "audit", "warn"] {
        labels.insert(
            format!("pod-security.kubernetes.io/{mode}"),
            "privileged".into(),
        );
        labels.insert(
            format!("pod-security.kubernetes.io/{mode}-version"),
            "latest".into(),
        );
    }
    Namespace {
        metadata,
        ..Default::default()
    }
}

fn rule(groups: &[&str], resources: &[&str], verbs: &[&str]) -> PolicyRule {
    let strings = |items: &[&str]| Some(items.iter().map(|item| (*item).to_owned()).collect());
    PolicyRule {
        api_groups: strings(groups),
        resources: strings(resources),
        verbs: verbs.iter().map(|verb| (*verb).to_owned()).collect(),
        ..Default::default()
    }
}

const READ: &[&str] = &["get", "list", "watch"];

/// What the agent reads and writes. RBAC cannot limit the writes to the agent's own node; the
/// ValidatingAdmissionPolicy `weft-node-scope` (see `admission.rs`) does.
fn node_rules() -> Vec<PolicyRule> {
    vec![
        // The agent reads its own Node (podCIDR, labels) and the other nodes (routes to their
        // blocks); it publishes its address, VTEP MAC and MTU as annotations on its Node.
        rule(&[""], &["nodes"], &["get", "list", "watch", "patch"]),
        // NetworkUnavailable=False once the node's network is programmed.
        rule(&[""], &["nodes/status"], &["patch"]),
        // The Installation says how to find the node address and which IPAM is in use; on stop
        // the agent checks whether weft is being uninstalled.
        rule(&["operator.weft.dev"], &["installations"], READ),
        // Pod and namespace labels, pod IPs and service account names (from the pod spec)
        // decide which policies apply to each endpoint.
        rule(&[""], &["pods", "namespaces"], READ),
        // Kubernetes NetworkPolicies are enforced alongside weft's own.
        rule(&["networking.k8s.io"], &["networkpolicies"], READ),
        // weft's policies.
        rule(
            &["network.weft.dev"],
            &["networkpolicies", "globalnetworkpolicies"],
            READ,
        ),
        // Pools say which ranges this node may take blocks from.
        rule(&["network.weft.dev"], &["ippools"], READ),
        // The node claims (creates) and releases (deletes) its own address blocks; it never
        // changes a block.
        rule(
            &["network.weft.dev"],
            &["ipamblocks"],
            &["get", "list", "watch", "create", "delete"],
        ),
        // Events on Nodes and blocks the agent refuses to route.
        rule(&["events.k8s.io"], &["events"], &["create", "patch"]),
    ]
}

fn controllers_rules() -> Vec<PolicyRule> {
    vec![
        // Blocks of deleted nodes are garbage collected.
        rule(&[""], &["nodes"], READ),
        // Blocks are read and released.
        rule(
            &["network.weft.dev"],
            &["ipamblocks"],
            &["get", "list", "watch", "update", "patch", "delete"],
        ),
        // Pools are read; their status counts allocated blocks.
        rule(&["network.weft.dev"], &["ippools"], READ),
        rule(
            &["network.weft.dev"],
            &["ippools/status"],
            &["get", "update", "patch"],
        ),
        // One replica acts at a time (leader Lease).
        rule(
            &["coordination.k8s.io"],
            &["leases"],
            &["get", "list", "watch", "create", "update", "patch"],
        ),
        // An Event for every block released.
        rule(&["events.k8s.io"], &["events"], &["create", "patch"]),
    ]
}

/// Rules per component.
fn rules(component: Component) -> Vec<PolicyRule> {
    match component {
        Component::Node => node_rules(),
        Component::Controllers => controllers_rules(),
    }
}

pub fn service_account(meta: &Meta, component: Component) -> ServiceAccount {
    ServiceAccount {
        metadata: meta.namespaced(component.name(), component.label()),
        ..Default::default()
    }
}

pub fn cluster_role(meta: &Meta, component: Component) -> ClusterRole {
    ClusterRole {
        metadata: meta.cluster(component.name(), component.label()),
        rules: Some(rules(component)),
        ..Default::default()
    }
}

pub fn cluster_role_binding(meta: &Meta, component: Component) -> ClusterRoleBinding {
    ClusterRoleBinding {
        metadata: meta.cluster(component.name(), component.label()),
        role_ref: RoleRef {
            api_group: Some("rbac.authorization.k8s.io".into()),
            kind: "ClusterRole".into(),
            name: component.name().into(),
        },
        subjects: Some(vec![Subject {
            kind: "ServiceAccount".into(),
            name: component.name().into(),
            namespace: Some(NAMESPACE.into()),
            ..Default::default()
        }]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_rule_uses_a_wildcard() {
        for component in Component::ALL {
            for rule in rules(component) {
                let all = rule
                    .verbs
                    .iter()
                    .chain(rule.resources.iter().flatten())
                    .chain(rule.api_groups.iter().flatten());
                for item in all {
                    assert_ne!(item, "*", "{component:?} has a wildcard");
                }
            }
        }
    }
}
