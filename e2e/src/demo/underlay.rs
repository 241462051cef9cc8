//! The demo's underlay, built from network namespaces the way the agent's tests build theirs:
//! a router namespace with two bridges (subnets `10.150.1.0/24` and `10.150.2.0/24`, forwarding
//! on), one namespace per node with `eth0` on one of the bridges and strict reverse-path
//! filtering, and one namespace per pod (the plugin wires it). Every namespace is named after
//! one prefix, and dropping the [`Underlay`] deletes them all, with the links inside them and the
//! nftables tables the agents programmed there.

use std::net::Ipv4Addr;

use super::Error;
use super::host::{ip, netns_names, sh};

/// The second octet of the underlay's addresses.
const UNDERLAY: u8 = 150;

/// A node's namespace on the underlay.
#[derive(Clone, Debug)]
pub struct NodeNetns {
    /// The namespace's name under /run/netns.
    pub netns: String,
    /// The underlay subnet (1 or 2).
    pub subnet: u8,
    /// The address of its `eth0`.
    pub address: Ipv4Addr,
}

/// The namespaces the demo made; dropping it deletes them.
#[derive(Debug)]
pub struct Underlay {
    prefix: String,
    router: String,
    created: Vec<String>,
}

impl Underlay {
    /// The router namespace with its two bridges; every namespace is named `<prefix>-...`.
    pub fn new(prefix: &str) -> Result<Self, Error> {
        let mut this = Self {
            prefix: prefix.to_owned(),
            router: format!("{prefix}-r"),
            created: Vec::new(),
        };
        let router = this.router.clone();
        this.add_netns(&router)?;
        ip(&router, &["link", "set", "lo", "up"])?;
        sh(&[
            "ip",
            "netns",
            "exec",
            &router,
            "sysctl",
            "-qw",
            "net.ipv4.ip_forward=1",
        ])?;
        for subnet in [1, 2] {
            let bridge = format!("br{subnet}");
            let gateway = format!("10.{UNDERLAY}.{subnet}.1/24");
            ip(&router, &["link", "add", &bridge, "type", "bridge"])?;
            ip(&router, &["addr", "add", &gateway, "dev", &bridge])?;
            ip(&router, &["link", "set", &bridge, "up"])?;
        }
        Ok(this)
    }

    /// The prefix of every namespace this underlay made.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The namespaces made so far.
    pub fn namespaces(&self) -> &[String] {
        &self.created
    }

    fn add_netns(&mut self, name: &str) -> Result<(), Error> {
        sh(&["ip", "netns", "add", name])?;
        self.created.push(name.to_owned());
        Ok(())
    }

    /// Node `index`'s namespace on `subnet` (1 or 2), `eth0` addressed `10.150.<subnet>.<10+index>`
    /// with a default route through the router.
    pub fn add_node(&mut self, index: u8, subnet: u8) -> Result<NodeNetns, Error> {
        let netns = format!("{}-n{index}", self.prefix);
        let address = Ipv4Addr::new(10, UNDERLAY, subnet, 10 + index);
        self.add_netns(&netns)?;
        ip(&netns, &["link", "set", "lo", "up"])?;
        // Strict reverse-path filtering, as distributions set it on hosts.
        for key in ["all", "default"] {
            let setting = format!("net.ipv4.conf.{key}.rp_filter=1");
            sh(&["ip", "netns", "exec", &netns, "sysctl", "-qw", &setting])?;
        }
        let port = format!("n{index}");
        ip(
            &self.router,
            &[
                "link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns", &netns,
            ],
        )?;
        let bridge = format!("br{subnet}");
        ip(
            &self.router,
            &["link", "set", &port, "master", &bridge, "up"],
        )?;
        ip(
            &netns,
            &["addr", "add", &format!("{address}/24"), "dev", "eth0"],
        )?;
        ip(&netns, &["link", "set", "eth0", "up"])?;
        let gateway = format!("10.{UNDERLAY}.{subnet}.1");
        ip(&netns, &["route", "add", "default", "via", &gateway])?;
        Ok(NodeNetns {
            netns,
            subnet,
            address,
        })
    }

    /// An empty namespace for pod `name` (loopback up), for the plugin to wire.
    pub fn add_pod(&mut self, name: &str) -> Result<String, Error> {
        let netns = format!("{}-p-{name}", self.prefix);
        self.add_netns(&netns)?;
        ip(&netns, &["link", "set", "lo", "up"])?;
        Ok(netns)
    }
}

/// The prefix of the namespaces of the demo running as `pid`.
pub fn prefix_of(pid: u32) -> String {
    format!("wd{pid}")
}

/// Deletes the namespaces a demo left behind when it was killed outright (SIGKILL cannot be
/// cleaned up after): those named after a pid that is no longer a running `weft-demo`.
pub fn remove_stale() -> Vec<String> {
    let mut removed = Vec::new();
    for name in netns_names() {
        let Some(pid) = name
            .strip_prefix("wd")
            .and_then(|rest| rest.split_once('-'))
            .and_then(|(pid, _)| pid.parse::<u32>().ok())
        else {
            continue;
        };
        let running = std::fs::read_to_string(format!("/proc/{pid}/comm"))
            .is_ok_and(|comm| comm.trim() == "weft-demo");
        if !running && sh(&["ip", "netns", "del", &name]).is_ok() {
            removed.push(name);
        }
    }
    removed
}

impl Drop for Underlay {
    fn drop(&mut self) {
        // Pods first, then nodes, the router last: deleting a namespace deletes its links.
        for name in self.created.iter().rev() {
            if let Err(error) = sh(&["ip", "netns", "del", name]) {
                tracing::warn!(%error, "deleting namespace {name}");
            }
        }
        let left: Vec<String> = netns_names()
            .into_iter()
            .filter(|name| name.starts_with(&format!("{}-", self.prefix)))
            .collect();
        if !left.is_empty() {
            eprintln!("weft-demo: namespaces left behind: {}", left.join(" "));
        }
    }
}
