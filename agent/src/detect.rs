//! The node's address and MTU, detected from its interfaces.
//!
//! Address (IPv4), by the Installation's `nodeAddressAutodetectionV4`:
//! - `firstFound` (the default): the first address, by interface index, of an up interface
//!   that is not loopback and not one of the virtual devices of container networking;
//! - `interface`: the first address of an interface whose name matches the regular expression;
//! - `cidrs`: the first address inside one of the CIDRs;
//! - `canReach`: the source address the kernel picks to reach that address.
//!
//! Host MTU: the smallest MTU of the up uplink interfaces (names like eth*, en*, wl*, bond*),
//! or of the interface carrying the node address when none matches. Pod MTU: the host MTU minus
//! the encapsulation overhead when any pool this node uses encapsulates.

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use weft_api::NodeAddressAutodetection;

use crate::kernel::netlink::LinkInfoSummary;

/// Name prefixes of devices that never carry the node address: pod veths and other networking
/// stacks' devices.
const VIRTUAL_PREFIXES: &[&str] = &[
    "weft", "docker", "cni", "veth", "cali", "flannel", "vxlan", "kube-", "virbr", "br-", "tunl",
    "cilium", "lxc", "genev", "wg",
];

/// Name prefixes of uplink devices, for the MTU.
const UPLINK_PREFIXES: &[&str] = &["eth", "en", "wl", "ww", "sl", "ib", "bond", "team"];

/// Why the node address could not be chosen.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DetectError {
    #[error(
        "spec.network.nodeAddressAutodetectionV4.interface: {pattern:?} is not a valid regular expression: {message}"
    )]
    BadPattern { pattern: String, message: String },
    #[error("spec.network.nodeAddressAutodetectionV4.cidrs: {cidr:?} is not a CIDR")]
    BadCidr { cidr: String },
    #[error("spec.network.nodeAddressAutodetectionV4.canReach: {address:?} is not an IPv4 address")]
    BadCanReach { address: String },
    #[error("no IPv4 address found by {method}")]
    NotFound { method: String },
}

/// How to choose, validated.
#[derive(Debug, Clone)]
pub enum AddressMethod {
    FirstFound,
    Interface(regex_lite::Regex),
    Cidrs(Vec<Ipv4Net>),
    CanReach(Ipv4Addr),
}

impl AddressMethod {
    pub fn from_spec(spec: Option<&NodeAddressAutodetection>) -> Result<Self, DetectError> {
        let Some(spec) = spec else {
            return Ok(Self::FirstFound);
        };
        if let Some(pattern) = &spec.interface {
            let anchored = format!("^(?:{pattern})$");
            return regex_lite::Regex::new(&anchored)
                .map(Self::Interface)
                .map_err(|error| DetectError::BadPattern {
                    pattern: pattern.clone(),
                    message: error.to_string(),
                });
        }
        if let Some(cidrs) = &spec.cidrs {
            return cidrs
                .iter()
                .map(|cidr| {
                    cidr.parse::<Ipv4Net>()
                        .map_err(|_| DetectError::BadCidr { cidr: cidr.clone() })
                })
                .collect::<Result<_, _>>()
                .map(Self::Cidrs);
        }
        if let Some(address) = &spec.can_reach {
            return address
                .parse()
                .map(Self::CanReach)
                .map_err(|_| DetectError::BadCanReach {
                    address: address.clone(),
                });
        }
        Ok(Self::FirstFound)
    }

    fn describe(&self) -> String {
        match self {
            Self::FirstFound => "firstFound".into(),
            Self::Interface(pattern) => format!("interface {}", pattern.as_str()),
            Self::Cidrs(cidrs) => format!("cidrs {cidrs:?}"),
            Self::CanReach(address) => format!("canReach {address}"),
        }
    }
}

fn is_candidate(link: &LinkInfoSummary) -> bool {
    link.up
        && !link.loopback
        && !VIRTUAL_PREFIXES
            .iter()
            .any(|prefix| link.name.starts_with(prefix))
}

/// Chooses the node address among `addresses` (link index, address). `route_source` answers
/// `canReach`.
pub fn node_address(
    method: &AddressMethod,
    links: &[LinkInfoSummary],
    addresses: &[(u32, Ipv4Net)],
    route_source: impl FnOnce(Ipv4Addr) -> Option<Ipv4Addr>,
) -> Result<(u32, Ipv4Net), DetectError> {
    let link = |index: u32| links.iter().find(|link| link.index == index);
    let mut ordered: Vec<&(u32, Ipv4Net)> = addresses
        .iter()
        .filter(|(_, net)| !net.addr().is_loopback() && !net.addr().is_link_local())
        .collect();
    ordered.sort_by_key(|(index, _)| *index);
    let found = match method {
        AddressMethod::FirstFound => ordered
            .into_iter()
            .find(|(index, _)| link(*index).is_some_and(is_candidate)),
        AddressMethod::Interface(pattern) => ordered.into_iter().find(|(index, _)| {
            link(*index).is_some_and(|link| link.up && pattern.is_match(&link.name))
        }),
        AddressMethod::Cidrs(cidrs) => ordered
            .into_iter()
            .find(|(_, net)| cidrs.iter().any(|cidr| cidr.contains(&net.addr()))),
        AddressMethod::CanReach(destination) => {
            let source = route_source(*destination);
            ordered
                .into_iter()
                .find(|(_, net)| Some(net.addr()) == source)
        }
    };
    found.copied().ok_or_else(|| DetectError::NotFound {
        method: method.describe(),
    })
}

/// The host MTU: smallest MTU of the up uplinks, else of the node address's interface, else 1500.
pub fn host_mtu(links: &[LinkInfoSummary], node_link: Option<u32>) -> u32 {
    let uplinks = links.iter().filter(|link| {
        link.up
            && !link.loopback
            && link.kind.is_none()
            && UPLINK_PREFIXES
                .iter()
                .any(|prefix| link.name.starts_with(prefix))
    });
    uplinks
        .map(|link| link.mtu)
        .min()
        .or_else(|| {
            node_link
                .and_then(|index| links.iter().find(|link| link.index == index))
                .map(|link| link.mtu)
        })
        .unwrap_or(1500)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(index: u32, name: &str, mtu: u32, kind: Option<&str>) -> LinkInfoSummary {
        LinkInfoSummary {
            index,
            name: name.into(),
            mtu,
            up: true,
            mac: vec![],
            kind: kind.map(str::to_owned),
            loopback: name == "lo",
            vxlan: None,
        }
    }

    fn fixture() -> (Vec<LinkInfoSummary>, Vec<(u32, Ipv4Net)>) {
        (
            vec![
                link(1, "lo", 65536, None),
                link(2, "weft0123456789a", 1500, Some("veth")),
                link(3, "eth0", 1500, None),
                link(4, "eth1", 9000, None),
            ],
            vec![
                (1, "127.0.0.1/8".parse().unwrap()),
                (2, "10.9.9.9/32".parse().unwrap()),
                (3, "192.168.1.5/24".parse().unwrap()),
                (4, "172.16.0.5/16".parse().unwrap()),
            ],
        )
    }

    #[test]
    fn first_found_skips_loopback_and_pod_devices() {
        let (links, addresses) = fixture();
        let found = node_address(&AddressMethod::FirstFound, &links, &addresses, |_| None);
        assert_eq!(found, Ok((3, "192.168.1.5/24".parse().unwrap())));
    }

    #[test]
    fn interface_cidrs_and_can_reach_choose_as_told() {
        let (links, addresses) = fixture();
        let spec = NodeAddressAutodetection {
            interface: Some("eth1".into()),
            ..Default::default()
        };
        let method = AddressMethod::from_spec(Some(&spec)).unwrap();
        assert_eq!(
            node_address(&method, &links, &addresses, |_| None)
                .unwrap()
                .0,
            4
        );
        let method = AddressMethod::Cidrs(vec!["172.16.0.0/12".parse().unwrap()]);
        assert_eq!(
            node_address(&method, &links, &addresses, |_| None)
                .unwrap()
                .0,
            4
        );
        let method = AddressMethod::CanReach("192.168.1.1".parse().unwrap());
        let found = node_address(&method, &links, &addresses, |_| {
            Some("192.168.1.5".parse().unwrap())
        });
        assert_eq!(found.unwrap().0, 3);
    }

    #[test]
    fn bad_specs_name_the_field() {
        let spec = NodeAddressAutodetection {
            interface: Some("eth(".into()),
            ..Default::default()
        };
        let error = AddressMethod::from_spec(Some(&spec)).unwrap_err();
        assert!(
            error
                .to_string()
                .contains("nodeAddressAutodetectionV4.interface")
        );
        let method = AddressMethod::Cidrs(vec!["10.200.0.0/16".parse().unwrap()]);
        let (links, addresses) = fixture();
        let error = node_address(&method, &links, &addresses, |_| None).unwrap_err();
        assert!(error.to_string().contains("no IPv4 address found by cidrs"));
    }

    #[test]
    fn host_mtu_is_the_smallest_uplink() {
        let (links, _) = fixture();
        assert_eq!(host_mtu(&links, Some(3)), 1500);
        let only_odd = vec![link(7, "uplink", 1400, None)];
        assert_eq!(host_mtu(&only_odd, Some(7)), 1400);
        assert_eq!(host_mtu(&[], None), 1500);
    }
}
