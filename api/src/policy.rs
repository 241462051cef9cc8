//! `network.weft.dev/v1` NetworkPolicy (namespaced) and GlobalNetworkPolicy (cluster-scoped), in
//! the shape of Calico's v3 policy API: ordered policies with a selector and ingress/egress rules
//! that Allow, Deny, Log or Pass. Typed views of protocols and ports are in
//! [`crate::policy_values`].

// kube's repeated `printcolumn(type_ = ..)` arguments are distinct columns, not duplicates.
#![allow(clippy::duplicated_attributes)]

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::{CustomResource, KubeSchema};
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};

use crate::policy_cel;

/// Most rules a policy may have in each direction.
pub const MAX_RULES: usize = 1024;

/// A namespaced policy: selects endpoints (pods) of its own namespace.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[kube(
    group = "network.weft.dev",
    version = "v1",
    kind = "NetworkPolicy",
    plural = "networkpolicies",
    shortname = "wnp",
    namespaced,
    derive = "PartialEq",
    doc = "Ordered network policy for the pods of one namespace (Calico v3 shape).",
    printcolumn(name = "Order", type_ = "number", json_path = ".spec.order"),
    printcolumn(name = "Selector", type_ = "string", json_path = ".spec.selector"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct NetworkPolicySpec {
    /// Lower orders apply first; a policy without order comes last; ties are broken by name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order: Option<f64>,
    /// Endpoints the policy applies to (default `all()`).
    #[schemars(length(max = 1024))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
    /// Directions the policy governs; absent means what its rules imply: Egress when it has only
    /// egress rules, else Ingress, plus Egress when egress rules exist.
    #[schemars(length(max = 2))]
    #[x_kube(merge_strategy = kube::core::ListMerge::Set)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub types: Option<Vec<PolicyType>>,
    /// Rules for traffic into selected endpoints, in order.
    #[schemars(length(max = 1024))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingress: Option<Vec<PolicyRule>>,
    /// Rules for traffic out of selected endpoints, in order.
    #[schemars(length(max = 1024))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub egress: Option<Vec<PolicyRule>>,
    /// Further restricts selected endpoints to those whose service account matches.
    #[schemars(length(max = 1024))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account_selector: Option<String>,
}

/// A cluster-wide policy: selects endpoints in every namespace (and host endpoints).
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[kube(
    group = "network.weft.dev",
    version = "v1",
    kind = "GlobalNetworkPolicy",
    plural = "globalnetworkpolicies",
    shortname = "gnp",
    derive = "PartialEq",
    doc = "Ordered network policy for endpoints of every namespace (Calico v3 shape).",
    printcolumn(name = "Order", type_ = "number", json_path = ".spec.order"),
    printcolumn(name = "Selector", type_ = "string", json_path = ".spec.selector"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct GlobalNetworkPolicySpec {
    /// Lower orders apply first; a policy without order comes last; ties are broken by name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order: Option<f64>,
    /// Endpoints the policy applies to (default `all()`).
    #[schemars(length(max = 1024))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
    /// Namespaces whose endpoints the policy applies to (matched against namespace labels).
    #[schemars(length(max = 1024))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<String>,
    /// Directions the policy governs; absent means what its rules imply: Egress when it has only
    /// egress rules, else Ingress, plus Egress when egress rules exist.
    #[schemars(length(max = 2))]
    #[x_kube(merge_strategy = kube::core::ListMerge::Set)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub types: Option<Vec<PolicyType>>,
    /// Rules for traffic into selected endpoints, in order.
    #[schemars(length(max = 1024))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingress: Option<Vec<PolicyRule>>,
    /// Rules for traffic out of selected endpoints, in order.
    #[schemars(length(max = 1024))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub egress: Option<Vec<PolicyRule>>,
    /// Further restricts selected endpoints to those whose service account matches.
    #[schemars(length(max = 1024))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account_selector: Option<String>,
    /// Also apply to traffic forwarded through host endpoints.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub apply_on_forward: Option<bool>,
    /// Apply to host-endpoint ingress before DNAT.
    #[serde(rename = "preDNAT", default, skip_serializing_if = "Option::is_none")]
    pub pre_dnat: Option<bool>,
    /// Apply without connection tracking (stateless).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub do_not_track: Option<bool>,
}

/// A traffic direction a policy governs.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
pub enum PolicyType {
    Ingress,
    Egress,
}

/// What a matching rule does.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
pub enum Action {
    /// Accept the packet; evaluation ends.
    #[default]
    Allow,
    /// Drop the packet; evaluation ends.
    Deny,
    /// Log the packet and continue with the next rule.
    Log,
    /// Skip the remaining policies of this tier.
    Pass,
}

/// One policy rule: when the packet matches every field set, the action applies.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[x_kube(validation = Rule::new(policy_cel::PORTS_NEED_PROTOCOL).message(policy_cel::PORTS_NEED_PROTOCOL_MSG).field_path(".protocol"))]
#[x_kube(validation = Rule::new(policy_cel::ICMP_NEEDS_PROTOCOL).message(policy_cel::ICMP_NEEDS_PROTOCOL_MSG).field_path(".icmp"))]
#[serde(rename_all = "camelCase")]
pub struct PolicyRule {
    /// Allow, Deny, Log or Pass.
    pub action: Action,
    /// TCP, UDP, ICMP, ICMPv6, SCTP, UDPLite or a protocol number 1..255.
    #[schemars(schema_with = "protocol_schema")]
    #[x_kube(validation = Rule::new(policy_cel::PROTOCOL).message(policy_cel::PROTOCOL_MSG))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<IntOrString>,
    /// Matches packets whose protocol is not this one.
    #[schemars(schema_with = "protocol_schema")]
    #[x_kube(validation = Rule::new(policy_cel::PROTOCOL).message(policy_cel::PROTOCOL_MSG))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_protocol: Option<IntOrString>,
    /// ICMP type and code (with protocol ICMP or ICMPv6).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub icmp: Option<IcmpMatch>,
    /// Matches ICMP packets of other type/code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_icmp: Option<IcmpMatch>,
    /// Where the packet comes from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<EntityRule>,
    /// Where the packet goes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination: Option<EntityRule>,
}

/// ICMP type and optional code.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[x_kube(validation = Rule::new("!has(self.code) || has(self.type)").message("icmp code requires an icmp type").field_path(".code"))]
#[serde(rename_all = "camelCase")]
pub struct IcmpMatch {
    #[schemars(range(min = 0, max = 254))]
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub icmp_type: Option<i32>,
    #[schemars(range(min = 0, max = 255))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<i32>,
}

/// One end of a connection; every field set must match.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct EntityRule {
    /// Addresses in any of these CIDRs (or single IPs).
    #[schemars(length(max = 64), inner(length(max = 43)))]
    #[x_kube(validation = Rule::new(policy_cel::NETS).message(policy_cel::NETS_MSG))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nets: Option<Vec<String>>,
    /// Addresses in none of these CIDRs (or single IPs).
    #[schemars(length(max = 64), inner(length(max = 43)))]
    #[x_kube(validation = Rule::new(policy_cel::NETS).message(policy_cel::NETS_MSG))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_nets: Option<Vec<String>>,
    /// Endpoints whose labels match this selector.
    #[schemars(length(max = 1024))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
    /// Endpoints whose labels do not match this selector.
    #[schemars(length(max = 1024))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_selector: Option<String>,
    /// Endpoints in namespaces whose labels match this selector.
    #[schemars(length(max = 1024))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<String>,
    /// Ports: numbers, ranges "1000:2000" or named ports.
    #[schemars(schema_with = "port_list_schema")]
    #[x_kube(validation = Rule::new(policy_cel::PORTS).message(policy_cel::PORTS_MSG))]
    #[x_kube(validation = Rule::new(policy_cel::PORT_RANGES_ORDERED).message(policy_cel::PORT_RANGES_ORDERED_MSG))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ports: Option<Vec<IntOrString>>,
    /// Ports that must not match: numbers, ranges "1000:2000" or named ports.
    #[schemars(schema_with = "port_list_schema")]
    #[x_kube(validation = Rule::new(policy_cel::PORTS).message(policy_cel::PORTS_MSG))]
    #[x_kube(validation = Rule::new(policy_cel::PORT_RANGES_ORDERED).message(policy_cel::PORT_RANGES_ORDERED_MSG))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_ports: Option<Vec<IntOrString>>,
    /// Endpoints running as matching service accounts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_accounts: Option<ServiceAccountMatch>,
}

/// Service accounts by name and/or label selector.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceAccountMatch {
    #[schemars(length(max = 64), inner(length(max = 253)))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub names: Option<Vec<String>>,
    #[schemars(length(max = 1024))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
}

/// Most ports (or ranges) one `ports` / `notPorts` list may hold.
pub const MAX_PORTS: usize = 32;

/// A protocol is a name or a number; its length bound keeps the CEL cost estimate small.
fn protocol_schema(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "description": "TCP, UDP, ICMP, ICMPv6, SCTP, UDPLite or a protocol number 1..255.",
        "x-kubernetes-int-or-string": true,
        "maxLength": 8,
    })
}

/// A list of ports: numbers, "first:last" ranges or port names (at most 15 characters).
fn port_list_schema(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "description": "Ports: numbers, ranges \"first:last\" or named ports.",
        "type": "array",
        "maxItems": MAX_PORTS,
        "items": { "x-kubernetes-int-or-string": true, "maxLength": 15 },
    })
}
