//! The node's VXLAN device: created when a pool encapsulates, removed when none does, and
//! adopted after a restart only when every setting that decides where its frames go (VNI, local
//! address, port, uplink, MAC) is what the node needs now. A device left from another node
//! address or uplink is re-created, so a node whose address changed carries cross-subnet
//! traffic again without a restart of the agent.

use crate::dataplane::NodeFacts;
use crate::kernel::netlink::{self as nl, LinkInfoSummary, VxlanSettings, VxlanSpec};
use crate::kernel::{Kernel, KernelError, ethtool};
use crate::routes::{self, VXLAN_DEVICE};

/// The device `node` needs on a node with `facts`.
pub fn spec(node: &str, facts: &NodeFacts) -> VxlanSpec {
    VxlanSpec {
        name: VXLAN_DEVICE.to_owned(),
        vni: routes::VXLAN_VNI,
        port: routes::VXLAN_PORT,
        mac: routes::vtep_mac(node),
        mtu: facts.pod_mtu(true),
        local: facts.address.addr(),
        parent: facts.uplink,
    }
}

/// Whether `link` can be kept as the device `spec` describes (the MTU is set in place).
pub fn adoptable(link: &LinkInfoSummary, spec: &VxlanSpec) -> bool {
    let wanted = VxlanSettings {
        vni: spec.vni,
        local: Some(spec.local),
        port: spec.port,
        parent: spec.parent,
    };
    link.kind.as_deref() == Some("vxlan")
        && link.mac == spec.mac
        && link.vxlan.as_ref() == Some(&wanted)
}

/// Makes the device match `wanted` (`None`: no device); returns its index when it exists.
pub fn ensure(
    kernel: &Kernel,
    wanted: Option<&VxlanSpec>,
    tunnel: Option<std::net::Ipv4Addr>,
) -> Result<Option<u32>, KernelError> {
    let links = kernel.netlink(nl::links)?;
    let existing = links.iter().find(|link| link.name == VXLAN_DEVICE);
    let Some(spec) = wanted else {
        if let Some(link) = existing {
            let index = link.index;
            kernel.netlink(|netlink| nl::delete_link(netlink, index))?;
        }
        return Ok(None);
    };
    let index = match existing {
        Some(link) if adoptable(link, spec) => {
            if link.mtu != spec.mtu {
                let (index, mtu) = (link.index, spec.mtu);
                kernel.netlink(|netlink| nl::set_mtu(netlink, index, mtu))?;
            }
            link.index
        }
        other => {
            if let Some(link) = other {
                tracing::info!(
                    device = VXLAN_DEVICE,
                    found = ?link.vxlan,
                    "re-creating the VXLAN device: its settings differ from this node's"
                );
                let index = link.index;
                kernel.netlink(|netlink| nl::delete_link(netlink, index))?;
            }
            kernel.netlink(|netlink| nl::create_vxlan(netlink, spec))?;
            let links = kernel.netlink(nl::links)?;
            links
                .iter()
                .find(|link| link.name == VXLAN_DEVICE)
                .map(|link| link.index)
                .ok_or_else(|| {
                    KernelError::Nft(format!("{VXLAN_DEVICE} vanished after creation"))
                })?
        }
    };
    kernel.netlink(|netlink| nl::set_up(netlink, index))?;
    keep_tunnel_address(kernel, index, tunnel)?;
    kernel
        .inside(|| {
            if ethtool::tx_checksum(VXLAN_DEVICE)? {
                ethtool::set_tx_checksum(VXLAN_DEVICE, false)?;
            }
            Ok::<_, std::io::Error>(())
        })?
        .map_err(|source| KernelError::Ethtool {
            device: VXLAN_DEVICE.into(),
            source,
        })?;
    Ok(Some(index))
}

/// Puts the tunnel address (a /32) on the device and removes any other address.
fn keep_tunnel_address(
    kernel: &Kernel,
    index: u32,
    tunnel: Option<std::net::Ipv4Addr>,
) -> Result<(), KernelError> {
    let present: Vec<ipnet::Ipv4Net> = kernel
        .netlink(nl::ipv4_addresses)?
        .into_iter()
        .filter(|(link, _)| *link == index)
        .map(|(_, address)| address)
        .collect();
    let wanted = tunnel.and_then(|ip| ipnet::Ipv4Net::new(ip, 32).ok());
    for address in &present {
        if Some(*address) != wanted {
            let stale = ipnet::IpNet::V4(*address);
            kernel.netlink(|netlink| netlink.delete_address(index, stale))?;
        }
    }
    if let Some(address) = wanted.filter(|wanted| !present.contains(wanted)) {
        kernel.netlink(|netlink| netlink.add_address(index, ipnet::IpNet::V4(address)))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(address: &str, uplink: u32) -> NodeFacts {
        NodeFacts {
            address: address.parse().unwrap(),
            uplink,
            host_mtu: 1500,
        }
    }

    fn device(spec: &VxlanSpec) -> LinkInfoSummary {
        LinkInfoSummary {
            index: 7,
            name: VXLAN_DEVICE.into(),
            mtu: spec.mtu,
            up: true,
            mac: spec.mac.to_vec(),
            kind: Some("vxlan".into()),
            loopback: false,
            vxlan: Some(VxlanSettings {
                vni: spec.vni,
                local: Some(spec.local),
                port: spec.port,
                parent: spec.parent,
            }),
        }
    }

    #[test]
    fn a_device_is_adopted_only_with_every_setting_the_node_needs() {
        let spec = spec("a", &facts("10.99.1.2/24", 2));
        let link = device(&spec);
        assert!(adoptable(&link, &spec));
        for changed in [
            spec_with(&spec, |s| s.local = "10.99.1.9".parse().unwrap()),
            spec_with(&spec, |s| s.parent = 3),
            spec_with(&spec, |s| s.vni = 1),
            spec_with(&spec, |s| s.port = 8472),
            spec_with(&spec, |s| s.mac = routes::vtep_mac("b")),
        ] {
            assert!(!adoptable(&link, &changed), "{changed:?}");
        }
        let mut not_vxlan = link.clone();
        not_vxlan.kind = Some("dummy".into());
        assert!(!adoptable(&not_vxlan, &spec));
    }

    fn spec_with(spec: &VxlanSpec, change: impl FnOnce(&mut VxlanSpec)) -> VxlanSpec {
        let mut spec = spec.clone();
        change(&mut spec);
        spec
    }
}
