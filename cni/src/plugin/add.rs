//! ADD: IPAM first, then a veth pair created in one request with its pod end already inside the
//! pod's namespace; host end up with proxy ARP and a host route per pod address; pod end up with
//! /32 (/128) addresses and a default route via a link-local gateway. Any failure undoes what
//! this call created and releases the attachment's addresses.
//!
//! With an endpoint directory configured (see [`crate::endpoint`]), ADD first checks that the
//! agent's policy guard is in the kernel (and fails with "try again later" before changing
//! anything when it is not), and ends by recording the pod for the agent: its traffic is
//! dropped by the guard until the agent has programmed its policy, which the record lets it do
//! at once. Waiting in ADD for the agent (Cilium's way) would tie every pod start to the agent
//! being up; the guard keeps a pod closed instead, whether the agent is up, slow or down.
//!
//! The caller holds the attachment's lock ([`super::lock`]): no other call for this container and
//! interface runs meanwhile, so the host interface with this attachment's name is either a
//! leftover of an earlier call (replaced) or the one this call created (undone on failure). An
//! interface this call did not create, such as a taken `CNI_IFNAME` in the pod, is never touched.

use std::net::IpAddr;
use std::os::fd::AsFd;
use std::path::Path;

use ipnet::IpNet;

use super::delegate::Ipam;
use crate::config::PluginConf;
use crate::endpoint;
use crate::env::{Attachment, CniEnv, Command};
use crate::error::{CniError, code};
use crate::naming::{GATEWAY_V4, GATEWAY_V6, HOST_MAC, format_mac, host_interface_name, pod_mac};
use crate::netlink::{Netlink, NetlinkError, Route, VethEnd};
use crate::netns;
use crate::result::{CniResult, Interface, IpConfig, RouteConfig};

/// Index of the pod interface in the result's `interfaces`.
const POD_INTERFACE: usize = 1;

pub fn add(env: &CniEnv, conf: &PluginConf, stdin: &[u8]) -> Result<CniResult, CniError> {
    let attachment = env
        .attachment
        .as_ref()
        .ok_or_else(|| CniError::invalid_env("CNI_CONTAINERID: required for ADD"))?;
    let netns_path = env
        .netns
        .as_deref()
        .ok_or_else(|| CniError::invalid_env("CNI_NETNS: required for ADD"))?;
    if let Some(dir) = &conf.endpoint_dir
        && !endpoint::is_guarded(dir)
    {
        return Err(CniError::new(
            code::TRY_AGAIN_LATER,
            format!(
                "endpointDir: the weft agent has not yet installed policy enforcement on this \
                 node ({} missing or from an earlier boot); is the weft-agent pod running?",
                dir.join(endpoint::GUARD_MARKER).display()
            ),
        ));
    }
    let pod_netns = netns::open(netns_path)
        .map_err(|error| CniError::new(code::UNKNOWN_CONTAINER, format!("CNI_NETNS: {error}")))?;
    let ipam = Ipam::resolve(conf, env)?;
    let allocated = ipam.add(env, stdin)?;
    let addresses: Vec<IpAddr> = allocated.ips.iter().map(|ip| ip.address.addr()).collect();
    let mut created_pair = false;
    match wire(
        attachment,
        netns_path,
        pod_netns.as_fd(),
        conf.effective_mtu(),
        &addresses,
        &mut created_pair,
    )
    .and_then(|result| record(env, conf, attachment, &addresses).map(|()| result))
    {
        Ok(result) => Ok(result),
        Err(error) => {
            undo(env, conf, attachment, created_pair, &ipam, stdin);
            Err(error)
        }
    }
}

/// Tells the agent about the pod (see [`crate::endpoint`]).
fn record(
    env: &CniEnv,
    conf: &PluginConf,
    attachment: &Attachment,
    addresses: &[IpAddr],
) -> Result<(), CniError> {
    let Some(dir) = &conf.endpoint_dir else {
        return Ok(());
    };
    let (namespace, name) = endpoint::pod_from_args(&env.args);
    let record = endpoint::EndpointRecord {
        host_interface: host_interface_name(attachment),
        container_id: attachment.container_id.clone(),
        ifname: attachment.ifname.clone(),
        namespace,
        name,
        ips: addresses.to_vec(),
    };
    endpoint::write(dir, &record).map_err(|error| CniError::new(code::IO, error.to_string()))
}

/// Best effort: remove the pair if this call created it, and release the addresses (the failed
/// ADD leaves the attachment without a working interface, so nothing may keep them); the
/// original error wins.
fn undo(
    env: &CniEnv,
    conf: &PluginConf,
    attachment: &Attachment,
    created_pair: bool,
    ipam: &Ipam,
    stdin: &[u8],
) {
    if created_pair
        && let Ok(mut netlink) = Netlink::open()
        && let Ok(Some(link)) = netlink.link_by_name(&host_interface_name(attachment))
    {
        let _ = netlink.delete_link(link.index);
    }
    if let Some(dir) = &conf.endpoint_dir {
        let _ = endpoint::remove(dir, &host_interface_name(attachment));
    }
    if let Err(error) = ipam.run(env, Command::Del, stdin) {
        tracing::warn!(%error, "releasing addresses after a failed ADD");
    }
}

fn netlink_error(error: NetlinkError) -> CniError {
    CniError::new(code::NETLINK, error.to_string())
}

fn host_prefix(ip: IpAddr) -> IpNet {
    IpNet::new(ip, if ip.is_ipv4() { 32 } else { 128 }).expect("full-length prefix is valid")
}

fn wire(
    attachment: &Attachment,
    netns_path: &Path,
    pod_netns: std::os::fd::BorrowedFd<'_>,
    mtu: u32,
    addresses: &[IpAddr],
    created_pair: &mut bool,
) -> Result<CniResult, CniError> {
    let host_name = host_interface_name(attachment);
    let pod_mac = pod_mac(attachment);
    let mut netlink = Netlink::open().map_err(netlink_error)?;
    // A host end with our name is left from an earlier ADD of this very attachment (a retry, or a
    // DEL that left the pair to the namespace teardown): replace it.
    if let Some(stale) = netlink.link_by_name(&host_name).map_err(netlink_error)? {
        netlink.delete_link(stale.index).map_err(netlink_error)?;
    }
    let host_end = VethEnd {
        name: host_name.clone(),
        mac: HOST_MAC,
    };
    let pod_end = VethEnd {
        name: attachment.ifname.clone(),
        mac: pod_mac,
    };
    netlink
        .create_veth(&host_end, &pod_end, mtu, pod_netns)
        .map_err(|error| {
            if error.is_exists() {
                CniError::new(
                    code::INTERFACE_EXISTS,
                    format!(
                        "CNI_IFNAME: an interface named {:?} already exists in {}",
                        attachment.ifname,
                        netns_path.display()
                    ),
                )
            } else {
                netlink_error(error)
            }
        })?;
    *created_pair = true;
    let host_link = netlink
        .link_by_name(&host_name)
        .map_err(netlink_error)?
        .ok_or_else(|| {
            CniError::new(
                code::NETLINK,
                format!("host interface {host_name} vanished after creation"),
            )
        })?;
    crate::sysctl::configure_host_end(&host_name)
        .map_err(|error| CniError::new(code::IO, error.to_string()))?;
    for ip in addresses {
        netlink
            .replace_route(&Route {
                destination: host_prefix(*ip),
                gateway: None,
                oif: host_link.index,
            })
            .map_err(netlink_error)?;
    }
    netns::with_entered(pod_netns, || {
        configure_pod_end(&attachment.ifname, addresses)
    })
    .map_err(|error| CniError::new(code::NETLINK, error.to_string()))??;

    let mut routes = Vec::new();
    if addresses.iter().any(IpAddr::is_ipv4) {
        routes.push(RouteConfig {
            dst: "0.0.0.0/0".parse().expect("valid"),
            gw: Some(GATEWAY_V4.into()),
        });
    }
    if addresses.iter().any(IpAddr::is_ipv6) {
        routes.push(RouteConfig {
            dst: "::/0".parse().expect("valid"),
            gw: Some(GATEWAY_V6.into()),
        });
    }
    Ok(CniResult {
        interfaces: vec![
            Interface {
                name: host_name,
                mac: format_mac(&HOST_MAC),
                ..Interface::default()
            },
            Interface {
                name: attachment.ifname.clone(),
                mac: format_mac(&pod_mac),
                mtu: Some(mtu),
                sandbox: netns_path.display().to_string(),
            },
        ],
        ips: addresses
            .iter()
            .map(|ip| IpConfig {
                address: host_prefix(*ip),
                gateway: None,
                interface: Some(POD_INTERFACE),
            })
            .collect(),
        routes,
        ..CniResult::default()
    })
}

/// Inside the pod namespace: interface up, addresses, gateway neighbour and default routes.
fn configure_pod_end(ifname: &str, addresses: &[IpAddr]) -> Result<(), CniError> {
    let mut netlink = Netlink::open().map_err(netlink_error)?;
    let link = netlink
        .link_by_name(ifname)
        .map_err(netlink_error)?
        .ok_or_else(|| {
            CniError::new(
                code::NETLINK,
                format!("pod interface {ifname} missing after creation"),
            )
        })?;
    netlink
        .set_link_up(link.index, true)
        .map_err(netlink_error)?;
    for ip in addresses {
        netlink
            .add_address(link.index, host_prefix(*ip))
            .map_err(netlink_error)?;
    }
    for (wanted, gateway) in [
        (false, IpAddr::from(GATEWAY_V4)),
        (true, IpAddr::from(GATEWAY_V6)),
    ] {
        if !addresses.iter().any(|ip| ip.is_ipv6() == wanted) {
            continue;
        }
        // A permanent entry for the gateway: the pod never has to wait for (or depend on) the
        // host's proxy ARP before its first packet.
        netlink
            .add_permanent_neighbour(link.index, gateway, &HOST_MAC)
            .map_err(netlink_error)?;
        if gateway.is_ipv4() {
            netlink
                .add_route(&Route {
                    destination: host_prefix(gateway),
                    gateway: None,
                    oif: link.index,
                })
                .map_err(netlink_error)?;
        }
        let default = if wanted { "::/0" } else { "0.0.0.0/0" };
        netlink
            .add_route(&Route {
                destination: default.parse().expect("valid"),
                gateway: Some(gateway),
                oif: link.index,
            })
            .map_err(netlink_error)?;
    }
    Ok(())
}
