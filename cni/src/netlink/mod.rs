//! A small synchronous rtnetlink client: exactly the link, address, route and neighbour operations
//! the plugin needs, over one blocking socket bound to the network namespace it was opened in.
//!
//! Synchronous on purpose: a plugin call is a handful of request/ACK round trips, and an async
//! runtime would cost more to start than the whole exchange.

use std::io;
use std::net::IpAddr;
use std::os::fd::{AsRawFd, BorrowedFd};

use ipnet::IpNet;
use netlink_packet_core::{
    NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL, NLM_F_REPLACE, NLM_F_REQUEST, NetlinkHeader,
    NetlinkMessage, NetlinkPayload,
};
use netlink_packet_route::address::{AddressAttribute, AddressFlags, AddressMessage};
use netlink_packet_route::link::{
    InfoData, InfoKind, InfoVeth, LinkAttribute, LinkFlags, LinkInfo, LinkMessage,
};
use netlink_packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourMessage, NeighbourState,
};
use netlink_packet_route::route::RouteMessage;
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};

mod messages;

use messages::{family_of, link_from_message, route_from_message, route_message};

/// A failed netlink operation: which operation, on what, and the kernel's answer.
#[derive(Debug, thiserror::Error)]
#[error("netlink {op} {target}: {source}")]
pub struct NetlinkError {
    pub op: &'static str,
    pub target: String,
    #[source]
    pub source: io::Error,
}

impl NetlinkError {
    /// The kernel's errno, when the error came from the kernel.
    pub fn errno(&self) -> Option<i32> {
        self.source.raw_os_error()
    }

    /// True when the object was not there (no such device, route, address or entry).
    pub fn is_not_found(&self) -> bool {
        matches!(
            self.errno(),
            Some(
                libc_errno::ENODEV
                    | libc_errno::ESRCH
                    | libc_errno::ENOENT
                    | libc_errno::EADDRNOTAVAIL
            )
        )
    }

    /// True when the object already exists.
    pub fn is_exists(&self) -> bool {
        self.errno() == Some(libc_errno::EEXIST)
    }
}

mod libc_errno {
    pub const ENOENT: i32 = 2;
    pub const ESRCH: i32 = 3;
    pub const EEXIST: i32 = 17;
    pub const ENODEV: i32 = 19;
    pub const EADDRNOTAVAIL: i32 = 99;
}

/// One end of a veth pair to create.
#[derive(Debug, Clone)]
pub struct VethEnd {
    pub name: String,
    pub mac: [u8; 6],
}

/// What we know about a link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub index: u32,
    pub name: String,
    pub mac: Vec<u8>,
    pub mtu: u32,
    pub up: bool,
    /// For a veth: the peer's interface index (in the peer's namespace).
    pub peer_index: Option<u32>,
}

/// A route as the plugin installs and checks it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub destination: IpNet,
    pub gateway: Option<IpAddr>,
    pub oif: u32,
}

/// The message naming `address` (with its prefix length) on link `index`.
fn address_message(index: u32, address: IpNet) -> AddressMessage {
    let mut message = AddressMessage::default();
    message.header.family = family_of(address.addr());
    message.header.prefix_len = address.prefix_len();
    message.header.index = index;
    message
        .attributes
        .push(AddressAttribute::Local(address.addr()));
    message
        .attributes
        .push(AddressAttribute::Address(address.addr()));
    message
}

/// A blocking rtnetlink socket in the namespace of the thread that opened it.
pub struct Netlink {
    socket: Socket,
    sequence: u32,
    buffer: Vec<u8>,
}

const RECEIVE_BUFFER: usize = 64 * 1024;

impl Netlink {
    /// Opens a socket in the current thread's network namespace; it stays bound to that namespace.
    pub fn open() -> Result<Self, NetlinkError> {
        let fail = |source| NetlinkError {
            op: "open",
            target: "socket".into(),
            source,
        };
        let mut socket = Socket::new(NETLINK_ROUTE).map_err(fail)?;
        socket.bind_auto().map_err(fail)?;
        Ok(Self {
            socket,
            sequence: 0,
            buffer: Vec::with_capacity(RECEIVE_BUFFER),
        })
    }

    /// Creates a veth pair in a single request: `host` here and up, `peer` directly inside the
    /// namespace `peer_netns` (still down), both with the given MACs and MTU.
    pub fn create_veth(
        &mut self,
        host: &VethEnd,
        peer: &VethEnd,
        mtu: u32,
        peer_netns: BorrowedFd<'_>,
    ) -> Result<(), NetlinkError> {
        // The peer cannot be brought up in this request: the kernel opens it before the pair is
        // linked and refuses (ENOTCONN). It is brought up from inside its namespace.
        let mut peer_message = LinkMessage::default();
        peer_message.attributes = vec![
            LinkAttribute::IfName(peer.name.clone()),
            LinkAttribute::Address(peer.mac.to_vec()),
            LinkAttribute::Mtu(mtu),
            LinkAttribute::NetNsFd(peer_netns.as_raw_fd()),
        ];
        let mut message = LinkMessage::default();
        message.header.flags = LinkFlags::Up;
        message.header.change_mask = LinkFlags::Up;
        message.attributes = vec![
            LinkAttribute::IfName(host.name.clone()),
            LinkAttribute::Address(host.mac.to_vec()),
            LinkAttribute::Mtu(mtu),
            LinkAttribute::LinkInfo(vec![
                LinkInfo::Kind(InfoKind::Veth),
                LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(peer_message))),
            ]),
        ];
        self.acked(
            RouteNetlinkMessage::NewLink(message),
            NLM_F_CREATE | NLM_F_EXCL,
            "create veth",
            &host.name,
        )
    }

    /// Looks a link up by name; `None` when there is no such link.
    pub fn link_by_name(&mut self, name: &str) -> Result<Option<Link>, NetlinkError> {
        let mut message = LinkMessage::default();
        message
            .attributes
            .push(LinkAttribute::IfName(name.to_owned()));
        match self.request(RouteNetlinkMessage::GetLink(message), 0, "get link", name) {
            Ok(answers) => Ok(answers.into_iter().find_map(|answer| match answer {
                RouteNetlinkMessage::NewLink(link) => Some(link_from_message(link)),
                _ => None,
            })),
            Err(error) if error.is_not_found() => Ok(None),
            Err(error) => Err(error),
        }
    }

    /// Sets a link administratively up or down.
    pub fn set_link_up(&mut self, index: u32, up: bool) -> Result<(), NetlinkError> {
        let mut message = LinkMessage::default();
        message.header.index = index;
        message.header.flags = if up {
            LinkFlags::Up
        } else {
            LinkFlags::empty()
        };
        message.header.change_mask = LinkFlags::Up;
        self.acked(
            RouteNetlinkMessage::SetLink(message),
            0,
            "set link state",
            &index.to_string(),
        )
    }

    /// Deletes a link by index (a veth's peer goes with it).
    pub fn delete_link(&mut self, index: u32) -> Result<(), NetlinkError> {
        let mut message = LinkMessage::default();
        message.header.index = index;
        self.acked(
            RouteNetlinkMessage::DelLink(message),
            0,
            "delete link",
            &index.to_string(),
        )
    }

    /// Adds an address (with its prefix length) to a link.
    pub fn add_address(&mut self, index: u32, address: IpNet) -> Result<(), NetlinkError> {
        let mut message = address_message(index, address);
        if address.addr().is_ipv6() {
            // A pod address is unique by allocation; waiting for duplicate detection would only
            // leave it unusable for the first second.
            message
                .attributes
                .push(AddressAttribute::Flags(AddressFlags::Nodad));
        }
        self.acked(
            RouteNetlinkMessage::NewAddress(message),
            NLM_F_CREATE | NLM_F_EXCL,
            "add address",
            &address.to_string(),
        )
    }

    /// Removes an address from a link; an address already gone is not an error.
    pub fn delete_address(&mut self, index: u32, address: IpNet) -> Result<(), NetlinkError> {
        match self.acked(
            RouteNetlinkMessage::DelAddress(address_message(index, address)),
            0,
            "delete address",
            &address.to_string(),
        ) {
            Err(error) if error.is_not_found() => Ok(()),
            other => other,
        }
    }

    /// The addresses configured on a link.
    pub fn addresses(&mut self, index: u32) -> Result<Vec<IpNet>, NetlinkError> {
        let message = AddressMessage::default();
        let answers = self.request(
            RouteNetlinkMessage::GetAddress(message),
            NLM_F_DUMP,
            "list addresses",
            &index.to_string(),
        )?;
        Ok(answers
            .into_iter()
            .filter_map(|answer| match answer {
                RouteNetlinkMessage::NewAddress(address) if address.header.index == index => {
                    let prefix = address.header.prefix_len;
                    address
                        .attributes
                        .iter()
                        .find_map(|attribute| match attribute {
                            AddressAttribute::Address(ip) => IpNet::new(*ip, prefix).ok(),
                            _ => None,
                        })
                }
                _ => None,
            })
            .collect())
    }

    /// Adds a route in the main table. Without a gateway the route is on-link (scope link).
    pub fn add_route(&mut self, route: &Route) -> Result<(), NetlinkError> {
        let message = route_message(route);
        self.acked(
            RouteNetlinkMessage::NewRoute(message),
            NLM_F_CREATE | NLM_F_EXCL,
            "add route",
            &route.destination.to_string(),
        )
    }

    /// Adds a route, replacing any route to the same destination.
    pub fn replace_route(&mut self, route: &Route) -> Result<(), NetlinkError> {
        let message = route_message(route);
        self.acked(
            RouteNetlinkMessage::NewRoute(message),
            NLM_F_CREATE | NLM_F_REPLACE,
            "replace route",
            &route.destination.to_string(),
        )
    }

    /// Deletes a route of the main table.
    pub fn delete_route(&mut self, route: &Route) -> Result<(), NetlinkError> {
        let message = route_message(route);
        self.acked(
            RouteNetlinkMessage::DelRoute(message),
            0,
            "delete route",
            &route.destination.to_string(),
        )
    }

    /// The main-table unicast routes of one address family that leave through `oif`.
    pub fn routes(&mut self, ipv6: bool, oif: u32) -> Result<Vec<Route>, NetlinkError> {
        let mut message = RouteMessage::default();
        message.header.address_family = if ipv6 {
            AddressFamily::Inet6
        } else {
            AddressFamily::Inet
        };
        let answers = self.request(
            RouteNetlinkMessage::GetRoute(message),
            NLM_F_DUMP,
            "list routes",
            "",
        )?;
        Ok(answers
            .into_iter()
            .filter_map(|answer| match answer {
                RouteNetlinkMessage::NewRoute(route) => route_from_message(&route),
                _ => None,
            })
            .filter(|route| route.oif == oif)
            .collect())
    }

    /// Adds a permanent neighbour entry (IP → MAC) on a link.
    pub fn add_permanent_neighbour(
        &mut self,
        index: u32,
        ip: IpAddr,
        mac: &[u8; 6],
    ) -> Result<(), NetlinkError> {
        let mut message = NeighbourMessage::default();
        message.header.family = family_of(ip);
        message.header.ifindex = index;
        message.header.state = NeighbourState::Permanent;
        message
            .attributes
            .push(NeighbourAttribute::Destination(match ip {
                IpAddr::V4(v4) => NeighbourAddress::Inet(v4),
                IpAddr::V6(v6) => NeighbourAddress::Inet6(v6),
            }));
        message
            .attributes
            .push(NeighbourAttribute::LinkLayerAddress(mac.to_vec()));
        self.acked(
            RouteNetlinkMessage::NewNeighbour(message),
            NLM_F_CREATE | NLM_F_EXCL,
            "add neighbour",
            &ip.to_string(),
        )
    }

    pub fn acked(
        &mut self,
        message: RouteNetlinkMessage,
        flags: u16,
        op: &'static str,
        target: &str,
    ) -> Result<(), NetlinkError> {
        self.request(message, flags | NLM_F_ACK, op, target)
            .map(drop)
    }

    /// Sends one request and collects the answers until the ACK, the end of a dump or an error.
    /// Public so the node agent can send the messages this client has no helper for.
    pub fn request(
        &mut self,
        message: RouteNetlinkMessage,
        flags: u16,
        op: &'static str,
        target: &str,
    ) -> Result<Vec<RouteNetlinkMessage>, NetlinkError> {
        let fail = |source: io::Error| NetlinkError {
            op,
            target: target.to_owned(),
            source,
        };
        self.sequence = self.sequence.wrapping_add(1);
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | flags;
        header.sequence_number = self.sequence;
        let mut packet = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(message));
        packet.finalize();
        let mut bytes = vec![0; packet.buffer_len()];
        packet.serialize(&mut bytes);
        self.socket
            .send_to(&bytes, &SocketAddr::new(0, 0), 0)
            .map_err(fail)?;

        let expects_ack = flags & NLM_F_ACK != 0;
        let dump = flags & NLM_F_DUMP == NLM_F_DUMP;
        let mut answers = Vec::new();
        loop {
            self.buffer.clear();
            self.buffer.reserve(RECEIVE_BUFFER);
            self.socket.recv(&mut self.buffer, 0).map_err(fail)?;
            let mut offset = 0;
            while offset < self.buffer.len() {
                let parsed =
                    NetlinkMessage::<RouteNetlinkMessage>::deserialize(&self.buffer[offset..])
                        .map_err(|error| {
                            fail(io::Error::new(
                                io::ErrorKind::InvalidData,
                                error.to_string(),
                            ))
                        })?;
                let length = parsed.header.length as usize;
                if length == 0 {
                    return Err(fail(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "empty netlink message",
                    )));
                }
                offset += length.next_multiple_of(4);
                if parsed.header.sequence_number != self.sequence {
                    continue;
                }
                match parsed.payload {
                    NetlinkPayload::Error(error) if error.code.is_some() => {
                        return Err(fail(error.to_io()));
                    }
                    NetlinkPayload::Error(_) | NetlinkPayload::Done(_) => return Ok(answers),
                    NetlinkPayload::InnerMessage(inner) => {
                        answers.push(inner);
                        if !expects_ack && !dump {
                            return Ok(answers);
                        }
                    }
                    _ => {}
                }
            }
        }
    }
}
