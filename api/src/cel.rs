//! CEL expressions shared by several CRD schemas (`x-kubernetes-validations`), with their
//! messages. Every rule guards with `isCIDR` first so one bad value yields one clear message
//! instead of an evaluation error from a later rule.

/// On a CIDR string: it parses as a CIDR.
pub const IS_CIDR: &str = "isCIDR(self)";
pub const IS_CIDR_MSG: &str = "must be a CIDR such as 10.244.0.0/16";

/// On a CIDR string: no host bits are set.
pub const CIDR_MASKED: &str = "!isCIDR(self) || cidr(self) == cidr(self).masked()";
pub const CIDR_MASKED_MSG: &str =
    "must be a network address with no host bits set (e.g. 10.244.0.0/16, not 10.244.0.1/16)";

/// On `nodeMetricsPort`: not the node agent's health port
/// ([`crate::installation::NODE_HEALTH_PORT`]).
pub const NOT_NODE_HEALTH_PORT: &str = "self != 9099";
pub const NOT_NODE_HEALTH_PORT_MSG: &str =
    "nodeMetricsPort must not be 9099, the node agent's health port";

/// On a pool CIDR string: IPv4 only for now.
pub const CIDR_IPV4: &str = "!isCIDR(self) || cidr(self).ip().family() == 4";
pub const CIDR_IPV4_MSG: &str = "IPv6 pools are not supported yet";

/// On a pool object: the block size fits its address family.
pub const BLOCK_SIZE_IN_FAMILY: &str = "!has(self.blockSize) || !isCIDR(self.cidr) || \
     (cidr(self.cidr).ip().family() == 4 ? (self.blockSize >= 20 && self.blockSize <= 32) \
     : (self.blockSize >= 116 && self.blockSize <= 128))";
pub const BLOCK_SIZE_IN_FAMILY_MSG: &str =
    "blockSize must be between 20 and 32 for an IPv4 pool (116 to 128 for IPv6)";

/// On a pool object: a block is not larger than its pool (unset: 26 for IPv4, 122 for IPv6).
pub const BLOCK_SIZE_WITHIN_POOL: &str = "!isCIDR(self.cidr) || \
     (has(self.blockSize) ? self.blockSize : (cidr(self.cidr).ip().family() == 4 ? 26 : 122)) \
     >= cidr(self.cidr).prefixLength()";
pub const BLOCK_SIZE_WITHIN_POOL_MSG: &str = "blockSize (default 26) must not be smaller than the pool's prefix length: a block cannot be larger than its pool";

/// On an IPPool spec (transition rule): blockSize cannot be added, removed or changed.
pub const IMMUTABLE_BLOCK_SIZE: &str = "has(self.blockSize) == has(oldSelf.blockSize) && \
     (!has(self.blockSize) || self.blockSize == oldSelf.blockSize)";

/// On a list of pools: no two CIDRs are equal.
pub const POOL_CIDRS_UNIQUE: &str = "self.all(a, self.exists_one(b, b.cidr == a.cidr))";
pub const POOL_CIDRS_UNIQUE_MSG: &str = "ipPools must have unique cidr values";

/// On a list of pools: no two valid IPv4 CIDRs overlap.
pub const POOLS_DISJOINT: &str = "self.all(a, self.all(b, a.name == b.name || a.cidr == b.cidr || \
     !isCIDR(a.cidr) || !isCIDR(b.cidr) || \
     cidr(a.cidr).ip().family() != cidr(b.cidr).ip().family() || \
     !(cidr(a.cidr).containsCIDR(b.cidr) || cidr(b.cidr).containsCIDR(a.cidr))))";
pub const POOLS_DISJOINT_MSG: &str = "ipPools must not overlap each other";

/// On a workload's node selector: weft's images are Linux images.
pub const OS_IS_LINUX: &str =
    "!('kubernetes.io/os' in self) || self['kubernetes.io/os'] == 'linux'";
pub const OS_IS_LINUX_MSG: &str =
    "kubernetes.io/os may only be linux: weft's workloads run only on Linux nodes";
