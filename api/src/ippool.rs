//! `network.weft.dev/v1` IPPool: a range of pod addresses cut into per-node blocks, and the
//! pool settings shared with the Installation's `spec.network.ipPools[]`.

// kube's repeated `printcolumn(type_ = ..)` arguments are distinct columns, not duplicates.
#![allow(clippy::duplicated_attributes)]

use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::cel;

/// Block size (prefix length) used when a pool does not set one.
pub const DEFAULT_BLOCK_SIZE_V4: i32 = 26;
/// Smallest and largest IPv4 block prefix lengths a pool may use.
pub const BLOCK_SIZE_RANGE_V4: std::ops::RangeInclusive<i32> = 20..=32;
/// Smallest and largest IPv6 block prefix lengths (IPv6 pools are refused until dual stack lands).
pub const BLOCK_SIZE_RANGE_V6: std::ops::RangeInclusive<i32> = 116..=128;
/// The selector that matches every node.
pub const SELECT_ALL: &str = "all()";

/// How pod traffic between nodes is carried.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
pub enum Encapsulation {
    /// Always encapsulate in VXLAN.
    #[serde(rename = "VXLAN")]
    Vxlan,
    /// Encapsulate in VXLAN only when the peer node is in another subnet.
    #[default]
    #[serde(rename = "VXLANCrossSubnet")]
    VxlanCrossSubnet,
    /// Route pod addresses natively (the underlying network must know the pod routes).
    None,
}

/// Whether traffic from pods to destinations outside every pool is source-NATed to the node address.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
pub enum NatOutgoing {
    #[default]
    Enabled,
    Disabled,
}

/// An IP pool: pods on the nodes its `nodeSelector` matches take addresses from its blocks.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[kube(
    group = "network.weft.dev",
    version = "v1",
    kind = "IPPool",
    root = "IpPool",
    plural = "ippools",
    status = "IpPoolStatus",
    derive = "PartialEq",
    doc = "A range of pod addresses, cut into blocks that are each affine to one node.",
    printcolumn(name = "CIDR", type_ = "string", json_path = ".spec.cidr"),
    printcolumn(name = "Block", type_ = "integer", json_path = ".spec.blockSize"),
    printcolumn(
        name = "Encapsulation",
        type_ = "string",
        json_path = ".spec.encapsulation"
    ),
    printcolumn(
        name = "Allocated",
        type_ = "integer",
        json_path = ".status.allocatedBlocks"
    ),
    printcolumn(name = "Total", type_ = "integer", json_path = ".status.totalBlocks"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[x_kube(validation = Rule::new(cel::IMMUTABLE_BLOCK_SIZE).message("blockSize is immutable").field_path(".blockSize"))]
#[x_kube(validation = Rule::new(cel::BLOCK_SIZE_IN_FAMILY).message(cel::BLOCK_SIZE_IN_FAMILY_MSG).field_path(".blockSize"))]
#[x_kube(validation = Rule::new(cel::BLOCK_SIZE_WITHIN_POOL).message(cel::BLOCK_SIZE_WITHIN_POOL_MSG).field_path(".blockSize"))]
#[serde(rename_all = "camelCase")]
pub struct IpPoolSpec {
    /// The pool's address range, e.g. 10.244.0.0/16. Immutable.
    #[schemars(length(max = 43))]
    #[x_kube(validation = Rule::new(cel::IS_CIDR).message(cel::IS_CIDR_MSG))]
    #[x_kube(validation = Rule::new(cel::CIDR_MASKED).message(cel::CIDR_MASKED_MSG))]
    #[x_kube(validation = Rule::new(cel::CIDR_IPV4).message(cel::CIDR_IPV4_MSG))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("cidr is immutable"))]
    pub cidr: String,
    /// Prefix length of the per-node blocks (IPv4: 20..32, default 26). Immutable.
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
    pub disabled: Option<bool>,
}

impl IpPoolSpec {
    /// The block size in use: the one set, else 26.
    pub fn block_size_or_default(&self) -> i32 {
        self.block_size.unwrap_or(DEFAULT_BLOCK_SIZE_V4)
    }

    /// The node selector in use: the one set, else `all()`.
    pub fn node_selector_or_default(&self) -> &str {
        self.node_selector.as_deref().unwrap_or(SELECT_ALL)
    }
}

/// What the IPAM controllers observed about a pool.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IpPoolStatus {
    /// Blocks of this pool currently claimed by nodes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allocated_blocks: Option<i64>,
    /// Blocks the pool can hold (2^(blockSize - prefix length)).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_blocks: Option<i64>,
}
