//! The rtnetlink messages the agent needs beyond the plugin's client: link and address dumps,
//! the VXLAN device, routes tagged with weft's protocol number, neighbour and FDB entries.
//! Each function is one request on a [`Netlink`] socket opened inside the node's namespace.

use std::net::{IpAddr, Ipv4Addr};

use ipnet::{IpNet, Ipv4Net};
use netlink_packet_core::{NLM_F_APPEND, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL, NLM_F_REPLACE};
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::link::{
    InfoData, InfoKind, InfoVxlan, LinkAttribute, LinkFlags, LinkInfo, LinkMessage,
};
use netlink_packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourMessage, NeighbourState,
};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteFlags, RouteHeader, RouteMessage, RouteProtocol, RouteScope,
    RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use weft_cni::netlink::{Netlink, NetlinkError};

/// The route protocol number of every route the agent installs (`ip route show proto 81`): how
/// a restarted agent recognises its own routes and leaves everyone else's alone.
pub const ROUTE_PROTOCOL: u8 = 81;

/// A link as the agent sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkInfoSummary {
    pub index: u32,
    pub name: String,
    pub mtu: u32,
    pub up: bool,
    pub mac: Vec<u8>,
    /// `vxlan`, `veth`, `bridge`, ... (`None` for physical devices and loopback).
    pub kind: Option<String>,
    pub loopback: bool,
    /// A VXLAN device's settings.
    pub vxlan: Option<VxlanSettings>,
}

/// What a VXLAN device was created with (the parts that decide where its frames go).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct VxlanSettings {
    pub vni: u32,
    pub local: Option<Ipv4Addr>,
    pub port: u16,
    pub parent: u32,
}

/// Where a weft route sends its traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RouteTarget {
    /// Via `gateway` out of `oif`; `onlink` when the gateway is not on a connected subnet (the
    /// VXLAN device has no address).
    Via {
        gateway: Ipv4Addr,
        oif: u32,
        onlink: bool,
    },
    /// Dropped here: the node's own blocks, so traffic to a free address never leaves the node.
    Blackhole,
}

/// One IPv4 route of the main table with weft's protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KernelRoute {
    pub destination: Ipv4Net,
    pub target: RouteTarget,
}

/// Every link of the namespace.
pub fn links(netlink: &mut Netlink) -> Result<Vec<LinkInfoSummary>, NetlinkError> {
    let answers = netlink.request(
        RouteNetlinkMessage::GetLink(LinkMessage::default()),
        NLM_F_DUMP,
        "list links",
        "",
    )?;
    Ok(answers
        .into_iter()
        .filter_map(|answer| match answer {
            RouteNetlinkMessage::NewLink(message) => Some(summarize_link(message)),
            _ => None,
        })
        .collect())
}

fn summarize_link(message: LinkMessage) -> LinkInfoSummary {
    let mut link = LinkInfoSummary {
        index: message.header.index,
        name: String::new(),
        mtu: 0,
        up: message.header.flags.contains(LinkFlags::Up),
        mac: Vec::new(),
        kind: None,
        loopback: message.header.flags.contains(LinkFlags::Loopback),
        vxlan: None,
    };
    for attribute in message.attributes {
        match attribute {
            LinkAttribute::IfName(name) => link.name = name,
            LinkAttribute::Mtu(mtu) => link.mtu = mtu,
            LinkAttribute::Address(mac) => link.mac = mac,
            LinkAttribute::LinkInfo(infos) => {
                for info in infos {
                    match info {
                        LinkInfo::Kind(kind) => link.kind = Some(kind.to_string()),
                        LinkInfo::Data(InfoData::Vxlan(settings)) => {
                            link.vxlan = Some(vxlan_settings(&settings));
                        }
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    link
}

fn vxlan_settings(attributes: &[InfoVxlan]) -> VxlanSettings {
    let mut settings = VxlanSettings::default();
    for attribute in attributes {
        match attribute {
            InfoVxlan::Id(vni) => settings.vni = *vni,
            InfoVxlan::Local(local) => settings.local = Some(*local),
            InfoVxlan::Port(port) => settings.port = *port,
            InfoVxlan::Link(parent) => settings.parent = *parent,
            _ => {}
        }
    }
    settings
}

/// Every IPv4 address of the namespace with the index of its link.
pub fn ipv4_addresses(netlink: &mut Netlink) -> Result<Vec<(u32, Ipv4Net)>, NetlinkError> {
    let mut message = AddressMessage::default();
    message.header.family = AddressFamily::Inet;
    let answers = netlink.request(
        RouteNetlinkMessage::GetAddress(message),
        NLM_F_DUMP,
        "list addresses",
        "",
    )?;
    Ok(answers
        .into_iter()
        .filter_map(|answer| match answer {
            RouteNetlinkMessage::NewAddress(address) => {
                let prefix = address.header.prefix_len;
                let index = address.header.index;
                address
                    .attributes
                    .iter()
                    .find_map(|attribute| match attribute {
                        AddressAttribute::Local(IpAddr::V4(ip)) => {
                            Ipv4Net::new(*ip, prefix).ok().map(|net| (index, net))
                        }
                        _ => None,
                    })
            }
            _ => None,
        })
        .collect())
}

/// The source address the kernel would use to reach `destination` (for `canReach`).
pub fn source_for(
    netlink: &mut Netlink,
    destination: Ipv4Addr,
) -> Result<Option<Ipv4Addr>, NetlinkError> {
    let mut message = RouteMessage::default();
    message.header.address_family = AddressFamily::Inet;
    message.header.destination_prefix_length = 32;
    message
        .attributes
        .push(RouteAttribute::Destination(RouteAddress::Inet(destination)));
    let answers = netlink.request(
        RouteNetlinkMessage::GetRoute(message),
        0,
        "look up route",
        &destination.to_string(),
    )?;
    Ok(answers.into_iter().find_map(|answer| match answer {
        RouteNetlinkMessage::NewRoute(route) => {
            route
                .attributes
                .into_iter()
                .find_map(|attribute| match attribute {
                    RouteAttribute::PrefSource(RouteAddress::Inet(ip)) => Some(ip),
                    _ => None,
                })
        }
        _ => None,
    }))
}

/// What the VXLAN device must look like.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VxlanSpec {
    pub name: String,
    pub vni: u32,
    pub port: u16,
    pub mac: [u8; 6],
    pub mtu: u32,
    pub local: Ipv4Addr,
    /// The uplink the VXLAN packets leave through.
    pub parent: u32,
}

/// Creates the VXLAN device (down; [`set_up`] brings it up). Learning is off: every remote VTEP
/// has a static FDB entry, so unknown destinations are never flooded.
pub fn create_vxlan(netlink: &mut Netlink, spec: &VxlanSpec) -> Result<(), NetlinkError> {
    let mut message = LinkMessage::default();
    message.attributes = vec![
        LinkAttribute::IfName(spec.name.clone()),
        LinkAttribute::Address(spec.mac.to_vec()),
        LinkAttribute::Mtu(spec.mtu),
        LinkAttribute::LinkInfo(vec![
            LinkInfo::Kind(InfoKind::Vxlan),
            LinkInfo::Data(InfoData::Vxlan(vec![
                InfoVxlan::Id(spec.vni),
                InfoVxlan::Local(spec.local),
                InfoVxlan::Link(spec.parent),
                InfoVxlan::Port(spec.port),
                InfoVxlan::Learning(false),
            ])),
        ]),
    ];
    netlink.acked(
        RouteNetlinkMessage::NewLink(message),
        NLM_F_CREATE | NLM_F_EXCL,
        "create vxlan device",
        &spec.name,
    )
}

/// Sets a link's MTU.
pub fn set_mtu(netlink: &mut Netlink, index: u32, mtu: u32) -> Result<(), NetlinkError> {
    let mut message = LinkMessage::default();
    message.header.index = index;
    message.attributes.push(LinkAttribute::Mtu(mtu));
    netlink.acked(
        RouteNetlinkMessage::SetLink(message),
        0,
        "set mtu",
        &index.to_string(),
    )
}

/// Brings a link up.
pub fn set_up(netlink: &mut Netlink, index: u32) -> Result<(), NetlinkError> {
    netlink.set_link_up(index, true)
}

fn route_message(route: &KernelRoute) -> RouteMessage {
    let mut message = RouteMessage::default();
    message.header.address_family = AddressFamily::Inet;
    message.header.destination_prefix_length = route.destination.prefix_len();
    message.header.table = RouteHeader::RT_TABLE_MAIN;
    message.header.protocol = RouteProtocol::Other(ROUTE_PROTOCOL);
    message
        .attributes
        .push(RouteAttribute::Destination(RouteAddress::Inet(
            route.destination.network(),
        )));
    match route.target {
        RouteTarget::Via {
            gateway,
            oif,
            onlink,
        } => {
            message.header.kind = RouteType::Unicast;
            message.header.scope = RouteScope::Universe;
            if onlink {
                message.header.flags = RouteFlags::Onlink;
            }
            message
                .attributes
                .push(RouteAttribute::Gateway(RouteAddress::Inet(gateway)));
            message.attributes.push(RouteAttribute::Oif(oif));
        }
        RouteTarget::Blackhole => {
            message.header.kind = RouteType::BlackHole;
            message.header.scope = RouteScope::Universe;
        }
    }
    message
}

/// The IPv4 routes of the main table that carry weft's protocol number.
pub fn weft_routes(netlink: &mut Netlink) -> Result<Vec<KernelRoute>, NetlinkError> {
    let mut message = RouteMessage::default();
    message.header.address_family = AddressFamily::Inet;
    let answers = netlink.request(
        RouteNetlinkMessage::GetRoute(message),
        NLM_F_DUMP,
        "list routes",
        "",
    )?;
    Ok(answers
        .into_iter()
        .filter_map(|answer| match answer {
            RouteNetlinkMessage::NewRoute(route)
                if route.header.protocol == RouteProtocol::Other(ROUTE_PROTOCOL)
                    && route.header.table == RouteHeader::RT_TABLE_MAIN =>
            {
                route_from_message(&route)
            }
            _ => None,
        })
        .collect())
}

fn route_from_message(message: &RouteMessage) -> Option<KernelRoute> {
    let mut destination = Ipv4Addr::UNSPECIFIED;
    let mut gateway = None;
    let mut oif = 0;
    for attribute in &message.attributes {
        match attribute {
            RouteAttribute::Destination(RouteAddress::Inet(ip)) => destination = *ip,
            RouteAttribute::Gateway(RouteAddress::Inet(ip)) => gateway = Some(*ip),
            RouteAttribute::Oif(index) => oif = *index,
            _ => {}
        }
    }
    let destination = Ipv4Net::new(destination, message.header.destination_prefix_length).ok()?;
    let target = match (message.header.kind, gateway) {
        (RouteType::BlackHole, _) => RouteTarget::Blackhole,
        (RouteType::Unicast, Some(gateway)) => RouteTarget::Via {
            gateway,
            oif,
            onlink: message.header.flags.contains(RouteFlags::Onlink),
        },
        _ => return None,
    };
    Some(KernelRoute {
        destination,
        target,
    })
}

/// Adds or replaces a weft route.
pub fn replace_route(netlink: &mut Netlink, route: &KernelRoute) -> Result<(), NetlinkError> {
    netlink.acked(
        RouteNetlinkMessage::NewRoute(route_message(route)),
        NLM_F_CREATE | NLM_F_REPLACE,
        "replace route",
        &route.destination.to_string(),
    )
}

/// Deletes a weft route (gone already is fine).
pub fn delete_route(netlink: &mut Netlink, route: &KernelRoute) -> Result<(), NetlinkError> {
    match netlink.acked(
        RouteNetlinkMessage::DelRoute(route_message(route)),
        0,
        "delete route",
        &route.destination.to_string(),
    ) {
        Err(error) if error.is_not_found() => Ok(()),
        other => other,
    }
}

/// A static entry on the VXLAN device: `ip` answers with `mac` (neighbour table), or frames for
/// `mac` go to the VTEP at `ip` (FDB).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StaticEntry {
    pub ip: Ipv4Addr,
    pub mac: [u8; 6],
}

fn entry_message(family: AddressFamily, index: u32, entry: &StaticEntry) -> NeighbourMessage {
    let mut message = NeighbourMessage::default();
    message.header.family = family;
    message.header.ifindex = index;
    message.header.state = NeighbourState::Permanent;
    if family == AddressFamily::Bridge {
        // NTF_SELF: the entry belongs to the VXLAN device's own FDB, not to a bridge port.
        message.header.flags = NeighbourFlags::Own;
    }
    message
        .attributes
        .push(NeighbourAttribute::Destination(NeighbourAddress::Inet(
            entry.ip,
        )));
    message
        .attributes
        .push(NeighbourAttribute::LinkLayerAddress(entry.mac.to_vec()));
    message
}

/// Which table a [`StaticEntry`] lives in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryTable {
    Neighbour,
    Fdb,
}

impl EntryTable {
    fn family(self) -> AddressFamily {
        match self {
            EntryTable::Neighbour => AddressFamily::Inet,
            EntryTable::Fdb => AddressFamily::Bridge,
        }
    }
}

/// The permanent entries of one table on the link `index`.
pub fn static_entries(
    netlink: &mut Netlink,
    table: EntryTable,
    index: u32,
) -> Result<Vec<StaticEntry>, NetlinkError> {
    let mut message = NeighbourMessage::default();
    message.header.family = table.family();
    message.header.ifindex = index;
    let answers = netlink.request(
        RouteNetlinkMessage::GetNeighbour(message),
        NLM_F_DUMP,
        "list neighbours",
        &index.to_string(),
    )?;
    Ok(answers
        .into_iter()
        .filter_map(|answer| match answer {
            RouteNetlinkMessage::NewNeighbour(entry)
                if entry.header.ifindex == index
                    && entry.header.state == NeighbourState::Permanent =>
            {
                entry_of(&entry)
            }
            _ => None,
        })
        .collect())
}

fn entry_of(message: &NeighbourMessage) -> Option<StaticEntry> {
    let mut ip = None;
    let mut mac = None;
    for attribute in &message.attributes {
        match attribute {
            NeighbourAttribute::Destination(NeighbourAddress::Inet(address)) => ip = Some(*address),
            // An FDB dump (AF_BRIDGE) cannot tell the parser the VTEP's family: raw bytes.
            NeighbourAttribute::Destination(NeighbourAddress::Other(bytes)) => {
                ip = <[u8; 4]>::try_from(&bytes[..]).ok().map(Ipv4Addr::from);
            }
            NeighbourAttribute::LinkLayerAddress(bytes) => {
                mac = <[u8; 6]>::try_from(&bytes[..]).ok()
            }
            _ => {}
        }
    }
    Some(StaticEntry { ip: ip?, mac: mac? })
}

/// Adds (or replaces) a permanent entry.
pub fn add_entry(
    netlink: &mut Netlink,
    table: EntryTable,
    index: u32,
    entry: &StaticEntry,
) -> Result<(), NetlinkError> {
    // FDB entries of a VXLAN device are keyed by MAC and destination: append adds one more
    // destination, replace would move the MAC; neighbours are keyed by IP.
    let flags = match table {
        EntryTable::Neighbour => NLM_F_CREATE | NLM_F_REPLACE,
        EntryTable::Fdb => NLM_F_CREATE | NLM_F_APPEND,
    };
    match netlink.acked(
        RouteNetlinkMessage::NewNeighbour(entry_message(table.family(), index, entry)),
        flags,
        "add neighbour",
        &entry.ip.to_string(),
    ) {
        Err(error) if error.is_exists() => Ok(()),
        other => other,
    }
}

/// Deletes a permanent entry (gone already is fine).
pub fn delete_entry(
    netlink: &mut Netlink,
    table: EntryTable,
    index: u32,
    entry: &StaticEntry,
) -> Result<(), NetlinkError> {
    match netlink.acked(
        RouteNetlinkMessage::DelNeighbour(entry_message(table.family(), index, entry)),
        0,
        "delete neighbour",
        &entry.ip.to_string(),
    ) {
        Err(error) if error.is_not_found() => Ok(()),
        other => other,
    }
}

/// Deletes a link by index (gone already is fine).
pub fn delete_link(netlink: &mut Netlink, index: u32) -> Result<(), NetlinkError> {
    match netlink.delete_link(index) {
        Err(error) if error.is_not_found() => Ok(()),
        other => other,
    }
}

/// `true` when `net` is an IPv4 network (IPv6 pools are not routed by the agent yet).
pub fn ipv4(net: &IpNet) -> Option<Ipv4Net> {
    match net {
        IpNet::V4(v4) => Some(*v4),
        IpNet::V6(_) => None,
    }
}
