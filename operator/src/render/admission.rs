//! ValidatingAdmissionPolicy `weft-node-scope` and its binding: the API server, not the agent,
//! keeps each node agent to its own node. RBAC cannot say "only your own Node" or "only blocks
//! whose `spec.node` is you", but the ServiceAccount token the kubelet mounts into the agent's pod
//! carries the pod's node (`authentication.kubernetes.io/node-name` in the user's extra), so a
//! CEL policy can compare it with the object written.
//!
//! It matches requests of the `weft-node` ServiceAccount alone (other users are not evaluated at
//! all) and allows exactly what the agent writes (`agent/src/node_status.rs`, the block claims
//! and releases of `cni/src/claim.rs`): a merge patch of the `network.weft.dev/*` annotations of
//! its own Node, a strategic merge patch of that Node's `NetworkUnavailable` condition, and the
//! creation and deletion of IPAMBlocks whose `spec.node` is its node. Each rule's message starts
//! with the rule's name, so a refusal says which rule refused it.

use k8s_openapi::api::admissionregistration::v1::{
    MatchCondition, MatchResources, NamedRuleWithOperations, ValidatingAdmissionPolicy,
    ValidatingAdmissionPolicyBinding, ValidatingAdmissionPolicyBindingSpec,
    ValidatingAdmissionPolicySpec, Validation, Variable,
};

use super::{Component, Meta};
use crate::labels::NAMESPACE;

/// The name of the policy and of its binding.
pub const NODE_SCOPE_POLICY: &str = "weft-node-scope";
/// The user extra key holding the node of the pod a token is bound to.
pub const NODE_NAME_EXTRA: &str = "authentication.kubernetes.io/node-name";
/// The annotation prefix the agent publishes under.
pub const AGENT_ANNOTATION_PREFIX: &str = "network.weft.dev/";
/// The one Node condition the agent sets.
pub const AGENT_CONDITION: &str = "NetworkUnavailable";

/// The names of the rules, as they start their messages.
pub mod rule {
    pub const TOKEN_BOUND_TO_NODE: &str = "token-bound-to-node";
    pub const OWN_NODE_ONLY: &str = "own-node-only";
    pub const NODE_LABELS_UNCHANGED: &str = "node-labels-unchanged";
    pub const NODE_WEFT_ANNOTATIONS_ONLY: &str = "node-weft-annotations-only";
    pub const NODE_METADATA_UNCHANGED: &str = "node-metadata-unchanged";
    pub const NODE_SPEC_UNCHANGED: &str = "node-spec-unchanged";
    pub const NODE_STATUS_NETWORK_CONDITION_ONLY: &str = "node-status-network-condition-only";
    pub const OWN_BLOCKS_ONLY: &str = "own-blocks-only";
}

/// Node status fields other than the conditions; none of them is the agent's to change.
const NODE_STATUS_FIELDS: [&str; 12] = [
    "addresses",
    "allocatable",
    "capacity",
    "config",
    "daemonEndpoints",
    "features",
    "images",
    "nodeInfo",
    "phase",
    "runtimeHandlers",
    "volumesAttached",
    "volumesInUse",
];

fn strings(items: &[&str]) -> Option<Vec<String>> {
    Some(items.iter().map(|item| (*item).to_owned()).collect())
}

fn resource_rule(group: &str, resources: &[&str]) -> NamedRuleWithOperations {
    NamedRuleWithOperations {
        api_groups: strings(&[group]),
        api_versions: strings(&["*"]),
        operations: strings(&["CREATE", "UPDATE", "DELETE"]),
        resources: strings(resources),
        ..Default::default()
    }
}

fn variable(name: &str, expression: &str) -> Variable {
    Variable {
        name: name.into(),
        expression: expression.into(),
    }
}

/// A rule: `expression` must hold; `message` explains it, prefixed with the rule's `name`.
fn validation(name: &str, expression: String, message: &str) -> Validation {
    Validation {
        expression,
        message: Some(format!("{name}: {message}")),
        reason: Some("Forbidden".into()),
        ..Default::default()
    }
}

fn variables() -> Vec<Variable> {
    let node_name = format!(
        "'{NODE_NAME_EXTRA}' in request.userInfo.extra && \
         size(request.userInfo.extra['{NODE_NAME_EXTRA}']) == 1 ? \
         request.userInfo.extra['{NODE_NAME_EXTRA}'][0] : ''"
    );
    let node_update = "request.resource.group == '' && request.resource.resource == 'nodes' && \
                       request.operation == 'UPDATE'";
    vec![
        variable("nodeName", &node_name),
        variable("nodeUpdate", node_update),
        variable(
            "block",
            "request.resource.group == 'network.weft.dev' && \
             request.resource.resource == 'ipamblocks'",
        ),
        variable(
            "oldAnnotations",
            "variables.nodeUpdate ? oldObject.metadata.?annotations.orValue({}) : {}",
        ),
        variable(
            "newAnnotations",
            "variables.nodeUpdate ? object.metadata.?annotations.orValue({}) : {}",
        ),
    ]
}

/// `object.<path>` equals `oldObject.<path>`, an absent field counting as `empty`.
fn unchanged(path: &str, empty: &str) -> String {
    format!("object.{path}.orValue({empty}) == oldObject.{path}.orValue({empty})")
}

fn validations() -> Vec<Validation> {
    let prefix = AGENT_ANNOTATION_PREFIX;
    let weft_annotations_only = format!(
        "!variables.nodeUpdate || (\
         variables.newAnnotations.all(key, key.startsWith('{prefix}') || \
         (key in variables.oldAnnotations && \
         variables.oldAnnotations[key] == variables.newAnnotations[key])) && \
         variables.oldAnnotations.all(key, key.startsWith('{prefix}') || \
         key in variables.newAnnotations))"
    );
    let other_conditions = |object: &str| {
        format!(
            "{object}.?status.?conditions.orValue([])\
             .filter(condition, condition.type != '{AGENT_CONDITION}')"
        )
    };
    let mut status_unchanged = vec![format!(
        "{} == {}",
        other_conditions("object"),
        other_conditions("oldObject")
    )];
    status_unchanged.extend(
        NODE_STATUS_FIELDS
            .iter()
            .map(|field| format!("object.?status.?{field} == oldObject.?status.?{field}")),
    );
    vec![
        validation(
            rule::TOKEN_BOUND_TO_NODE,
            "variables.nodeName != ''".into(),
            &format!(
                "weft-node writes only with a token bound to a pod on a node (the user's extra \
                 {NODE_NAME_EXTRA} is missing)"
            ),
        ),
        validation(
            rule::OWN_NODE_ONLY,
            "!(request.resource.group == '' && request.resource.resource == 'nodes') || \
             (request.operation == 'UPDATE' && request.name == variables.nodeName)"
                .into(),
            "weft-node may only update the Node its pod runs on",
        ),
        validation(
            rule::NODE_LABELS_UNCHANGED,
            format!(
                "!variables.nodeUpdate || {}",
                unchanged("metadata.?labels", "{}")
            ),
            "weft-node may not change a Node's labels",
        ),
        validation(
            rule::NODE_WEFT_ANNOTATIONS_ONLY,
            weft_annotations_only,
            &format!("weft-node may change only the {prefix}* annotations of a Node"),
        ),
        validation(
            rule::NODE_METADATA_UNCHANGED,
            format!(
                "!variables.nodeUpdate || ({} && {})",
                unchanged("metadata.?finalizers", "[]"),
                unchanged("metadata.?ownerReferences", "[]")
            ),
            "weft-node may not change a Node's finalizers or owner references",
        ),
        validation(
            rule::NODE_SPEC_UNCHANGED,
            format!("!variables.nodeUpdate || {}", unchanged("?spec", "{}")),
            "weft-node may not change a Node's spec (taints, podCIDR, unschedulable)",
        ),
        validation(
            rule::NODE_STATUS_NETWORK_CONDITION_ONLY,
            format!(
                "!variables.nodeUpdate || ({})",
                status_unchanged.join(" && ")
            ),
            &format!(
                "weft-node may change only the {AGENT_CONDITION} condition of a Node's status"
            ),
        ),
        validation(
            rule::OWN_BLOCKS_ONLY,
            "!variables.block || (\
             (request.operation == 'DELETE' || object.spec.node == variables.nodeName) && \
             (request.operation == 'CREATE' || oldObject.spec.node == variables.nodeName))"
                .into(),
            "weft-node may create, change and delete only IPAMBlocks whose spec.node is the \
             node its pod runs on",
        ),
    ]
}

pub fn policy(meta: &Meta) -> ValidatingAdmissionPolicy {
    let account = Component::Node.name();
    ValidatingAdmissionPolicy {
        metadata: meta.cluster(NODE_SCOPE_POLICY, Component::Node.label()),
        spec: Some(ValidatingAdmissionPolicySpec {
            failure_policy: Some("Fail".into()),
            match_constraints: Some(MatchResources {
                resource_rules: Some(vec![
                    resource_rule("", &["nodes", "nodes/status"]),
                    resource_rule("network.weft.dev", &["ipamblocks"]),
                ]),
                ..Default::default()
            }),
            match_conditions: Some(vec![MatchCondition {
                name: "weft-node-service-account".into(),
                expression: format!(
                    "request.userInfo.username == 'system:serviceaccount:{NAMESPACE}:{account}'"
                ),
            }]),
            variables: Some(variables()),
            validations: Some(validations()),
            ..Default::default()
        }),
        ..Default::default()
    }
}

pub fn binding(meta: &Meta) -> ValidatingAdmissionPolicyBinding {
    ValidatingAdmissionPolicyBinding {
        metadata: meta.cluster(NODE_SCOPE_POLICY, Component::Node.label()),
        spec: ValidatingAdmissionPolicyBindingSpec {
            policy_name: NODE_SCOPE_POLICY.into(),
            validation_actions: vec!["Deny".into()],
            ..Default::default()
        },
    }
}
