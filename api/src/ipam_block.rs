//! `network.weft.dev/v1` IPAMBlock: one block of a pool claimed by one node. The object's name
//! is derived from the block CIDR ([`block_name`]), so the API server's name uniqueness makes a
//! double claim of the same block impossible: the second create fails with AlreadyExists.

// kube's repeated `printcolumn(type_ = ..)` arguments are distinct columns, not duplicates.
#![allow(clippy::duplicated_attributes)]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use crate::cel;

/// A block of pod addresses affine to one node.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[kube(
    group = "network.weft.dev",
    version = "v1",
    kind = "IPAMBlock",
    root = "IpamBlock",
    plural = "ipamblocks",
    derive = "PartialEq",
    doc = "A block of a pool claimed by one node; its name is the block CIDR with '.', ':' and '/' replaced by '-'.",
    validation = Rule::new("!isCIDR(self.spec.cidr) || cidr(self.spec.cidr).ip().family() != 4 || self.metadata.name == self.spec.cidr.replace('.', '-').replace('/', '-')").message("metadata.name must be spec.cidr with '.' and '/' replaced by '-' (e.g. 10-244-1-64-26 for 10.244.1.64/26)"),
    printcolumn(name = "CIDR", type_ = "string", json_path = ".spec.cidr"),
    printcolumn(name = "Pool", type_ = "string", json_path = ".spec.pool"),
    printcolumn(name = "Node", type_ = "string", json_path = ".spec.node"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
pub struct IpamBlockSpec {
    /// The block's address range. Immutable.
    #[schemars(length(max = 43))]
    #[x_kube(validation = Rule::new(cel::IS_CIDR).message(cel::IS_CIDR_MSG))]
    #[x_kube(validation = Rule::new(cel::CIDR_MASKED).message(cel::CIDR_MASKED_MSG))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("cidr is immutable"))]
    pub cidr: String,
    /// Name of the IPPool the block was cut from. Immutable.
    #[schemars(length(min = 1, max = 253))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("pool is immutable"))]
    pub pool: String,
    /// Name of the node the block is affine to.
    #[schemars(length(min = 1, max = 253))]
    pub node: String,
}

impl IpamBlock {
    /// A block object for `cidr`, named by [`block_name`].
    pub fn for_cidr(cidr: IpNet, pool: &str, node: &str) -> Self {
        let cidr = cidr.trunc();
        IpamBlock::new(
            &block_name(cidr),
            IpamBlockSpec {
                cidr: cidr.to_string(),
                pool: pool.to_owned(),
                node: node.to_owned(),
            },
        )
    }
}

/// Why an object name is not the name of a block CIDR.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "IPAMBlock name {name:?} is not a block CIDR with '.', ':' and '/' replaced by '-' (e.g. 10-244-1-64-26): {reason}"
)]
pub struct BlockNameError {
    pub name: String,
    pub reason: &'static str,
}

/// Object name of the block `cidr` (host bits are cleared first): 10.244.1.64/26 becomes
/// `10-244-1-64-26`; an IPv6 block uses all eight groups in lower-case hex, then the prefix
/// length, e.g. fd00::40/122 becomes `fd00-0-0-0-0-0-0-40-122`.
pub fn block_name(cidr: IpNet) -> String {
    let cidr = cidr.trunc();
    match cidr.addr() {
        IpAddr::V4(addr) => {
            let [a, b, c, d] = addr.octets();
            format!("{a}-{b}-{c}-{d}-{}", cidr.prefix_len())
        }
        IpAddr::V6(addr) => {
            let groups: Vec<String> = addr.segments().iter().map(|g| format!("{g:x}")).collect();
            format!("{}-{}", groups.join("-"), cidr.prefix_len())
        }
    }
}

/// The block CIDR an object name stands for; the inverse of [`block_name`]. Only names exactly
/// as [`block_name`] writes them are accepted, so one block has one name.
pub fn block_cidr_from_name(name: &str) -> Result<IpNet, BlockNameError> {
    let fail = |reason| BlockNameError {
        name: name.to_owned(),
        reason,
    };
    let parts: Vec<&str> = name.split('-').collect();
    let cidr = match parts.len() {
        5 => {
            let mut octets = [0u8; 4];
            for (octet, part) in octets.iter_mut().zip(&parts[..4]) {
                *octet = parse_canonical(part, 10).ok_or_else(|| fail("bad IPv4 octet"))?;
            }
            let prefix = parse_canonical(parts[4], 10).ok_or_else(|| fail("bad prefix length"))?;
            IpNet::new(IpAddr::V4(Ipv4Addr::from(octets)), prefix)
                .map_err(|_| fail("IPv4 prefix length above 32"))?
        }
        9 => {
            let mut groups = [0u16; 8];
            for (group, part) in groups.iter_mut().zip(&parts[..8]) {
                *group = parse_canonical(part, 16).ok_or_else(|| fail("bad IPv6 group"))?;
            }
            let prefix = parse_canonical(parts[8], 10).ok_or_else(|| fail("bad prefix length"))?;
            IpNet::new(IpAddr::V6(Ipv6Addr::from(groups)), prefix)
                .map_err(|_| fail("IPv6 prefix length above 128"))?
        }
        _ => return Err(fail("expected 5 (IPv4) or 9 (IPv6) parts separated by '-'")),
    };
    if cidr.trunc() != cidr {
        return Err(fail("host bits are set"));
    }
    Ok(cidr)
}

/// Parses a number written without sign, leading zeros or upper case, so that names round-trip.
fn parse_canonical<T>(text: &str, radix: u32) -> Option<T>
where
    T: TryFrom<u32>,
{
    let canonical = !text.is_empty()
        && (text == "0" || !text.starts_with('0'))
        && text.chars().all(|c| {
            c.is_ascii_digit() || (radix == 16 && c.is_ascii_lowercase() && c.is_ascii_hexdigit())
        });
    if !canonical || text.len() > 4 {
        return None;
    }
    let value = u32::from_str_radix(text, radix).ok()?;
    T::try_from(value).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(text: &str) -> IpNet {
        text.parse().unwrap()
    }

    #[test]
    fn ipv4_block_names_round_trip() {
        for cidr in [
            "10.244.1.64/26",
            "0.0.0.0/0",
            "192.168.255.0/24",
            "10.0.0.7/32",
        ] {
            let name = block_name(net(cidr));
            assert_eq!(block_cidr_from_name(&name), Ok(net(cidr)), "{name}");
        }
        assert_eq!(block_name(net("10.244.1.64/26")), "10-244-1-64-26");
    }

    #[test]
    fn ipv6_block_names_round_trip() {
        let cidr = net("fd00::40/122");
        assert_eq!(block_name(cidr), "fd00-0-0-0-0-0-0-40-122");
        assert_eq!(block_cidr_from_name("fd00-0-0-0-0-0-0-40-122"), Ok(cidr));
    }

    #[test]
    fn host_bits_are_cleared_in_names() {
        assert_eq!(block_name(net("10.244.1.65/26")), "10-244-1-64-26");
    }

    #[test]
    fn non_canonical_names_are_refused() {
        for name in [
            "10-244-1-64",
            "10-244-1-064-26",
            "10-244-1-256-26",
            "10-244-1-64-33",
            "10-244-1-65-26",
            "a-b-c-d-e",
            "",
            "10-244-1--26",
            "FD00-0-0-0-0-0-0-40-122",
            "fd00-0-0-0-0-0-0-40-129",
        ] {
            assert!(block_cidr_from_name(name).is_err(), "{name} was accepted");
        }
    }

    #[test]
    fn for_cidr_names_the_object_after_the_block() {
        let block = IpamBlock::for_cidr(net("10.244.3.0/26"), "default-ipv4-ippool", "node-1");
        assert_eq!(block.metadata.name.as_deref(), Some("10-244-3-0-26"));
        assert_eq!(block.spec.cidr, "10.244.3.0/26");
        assert_eq!(block.spec.pool, "default-ipv4-ippool");
        assert_eq!(block.spec.node, "node-1");
    }
}
