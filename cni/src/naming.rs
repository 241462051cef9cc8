//! Deterministic names and addresses: the host-side interface name and the MACs of both veth ends,
//! derived from the attachment so DEL, CHECK and a retried ADD find the same interface.

use crate::env::Attachment;

/// Prefix of every host-side pod interface.
pub const HOST_PREFIX: &str = "weft";

/// MAC of every host-side end: the pod's permanent neighbour entry for its gateway points here.
pub const HOST_MAC: [u8; 6] = [0xee; 6];

/// The pod's IPv4 default gateway: link-local, answered by the host end (proxy ARP and a
/// permanent neighbour entry in the pod).
pub const GATEWAY_V4: std::net::Ipv4Addr = std::net::Ipv4Addr::new(169, 254, 1, 1);

/// The pod's IPv6 default gateway: the host end's own EUI-64 link-local address, which follows
/// from [`HOST_MAC`].
pub const GATEWAY_V6: std::net::Ipv6Addr =
    std::net::Ipv6Addr::new(0xfe80, 0, 0, 0, 0xecee, 0xeeff, 0xfeee, 0xeeee);

/// FNV-1a, 64 bit: stable across builds and platforms, unlike the standard library's hasher.
pub fn fnv1a(parts: &[&str]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for byte in part.bytes().chain(std::iter::once(0)) {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    hash
}

/// `weft` + 11 hex digits of a hash of container id and interface name: 15 characters, the
/// Linux maximum.
pub fn host_interface_name(attachment: &Attachment) -> String {
    let hash = fnv1a(&[&attachment.container_id, &attachment.ifname]);
    format!("{HOST_PREFIX}{:011x}", hash & 0xfff_ffff_ffff)
}

/// A locally administered unicast MAC derived from `parts` (stable, so it needs no storing).
pub fn local_mac(parts: &[&str]) -> [u8; 6] {
    let hash = fnv1a(parts).to_be_bytes();
    [
        (hash[0] & 0xfc) | 0x02,
        hash[1],
        hash[2],
        hash[3],
        hash[4],
        hash[5],
    ]
}

/// A locally administered unicast MAC for the pod end.
pub fn pod_mac(attachment: &Attachment) -> [u8; 6] {
    local_mac(&[&attachment.container_id, &attachment.ifname, "mac"])
}

pub fn format_mac(mac: &[u8]) -> String {
    mac.iter()
        .map(|byte| format!("{byte:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attachment(id: &str, ifname: &str) -> Attachment {
        Attachment {
            container_id: id.into(),
            ifname: ifname.into(),
        }
    }

    #[test]
    fn host_names_are_stable_short_and_distinct() {
        let a = host_interface_name(&attachment("0123456789abcdef", "eth0"));
        assert_eq!(
            a,
            host_interface_name(&attachment("0123456789abcdef", "eth0"))
        );
        assert_eq!(a.len(), 15);
        assert!(a.starts_with("weft"));
        assert_ne!(
            a,
            host_interface_name(&attachment("0123456789abcdef", "eth1"))
        );
        assert_ne!(
            a,
            host_interface_name(&attachment("0123456789abcdeg", "eth0"))
        );
    }

    #[test]
    fn pod_macs_are_local_unicast() {
        let mac = pod_mac(&attachment("c1", "eth0"));
        assert_eq!(mac[0] & 0x03, 0x02);
        assert_eq!(format_mac(&HOST_MAC), "ee:ee:ee:ee:ee:ee");
    }

    #[test]
    fn ipv6_gateway_is_the_eui64_address_of_the_host_mac() {
        // EUI-64: flip the universal/local bit of the first byte, insert ff:fe in the middle.
        let mut interface_id = [0u8; 8];
        interface_id[..3].copy_from_slice(&HOST_MAC[..3]);
        interface_id[3] = 0xff;
        interface_id[4] = 0xfe;
        interface_id[5..].copy_from_slice(&HOST_MAC[3..]);
        interface_id[0] ^= 0x02;
        assert_eq!(&GATEWAY_V6.octets()[8..], &interface_id);
    }
}
