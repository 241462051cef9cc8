//! DEL and CHECK.
//!
//! DEL does not delete the veth pair. Deleting a veth synchronously costs the caller ~20 ms of
//! kernel time, while the runtime's deletion of the pod namespace right after DEL takes the pair
//! with it asynchronously (~2 ms for the caller). DEL instead sets the host end down, which
//! removes the host routes to the pod and cuts the pod off at once, then releases the addresses.
//! If the namespace outlives the call, the pod keeps a dead interface that can neither send nor
//! receive; a later ADD of the same attachment finds the host end by its deterministic name and
//! replaces the pair. DEL never enters the pod namespace, so it succeeds whether or not the
//! namespace, the interface or the allocation still exist, with or without prevResult.

use std::net::IpAddr;

use super::delegate::Ipam;
use crate::config::PluginConf;
use crate::env::{Attachment, CniEnv, Command};
use crate::error::{CniError, code};
use crate::naming::{GATEWAY_V4, GATEWAY_V6, host_interface_name};
use crate::netlink::{Netlink, NetlinkError};
use crate::netns;

fn netlink_error(error: NetlinkError) -> CniError {
    CniError::new(code::NETLINK, error.to_string())
}

fn attachment(env: &CniEnv) -> Result<&Attachment, CniError> {
    env.attachment
        .as_ref()
        .ok_or_else(|| CniError::invalid_env("CNI_CONTAINERID: required"))
}

pub fn del(env: &CniEnv, conf: &PluginConf, stdin: &[u8]) -> Result<(), CniError> {
    let attachment = attachment(env)?;
    let host_name = host_interface_name(attachment);
    // The record goes first: the agent unbinds the pod's addresses from its interface (and
    // forgets its connections) before the addresses can be handed out again.
    if let Some(dir) = &conf.endpoint_dir {
        crate::endpoint::remove(dir, &host_name)
            .map_err(|error| CniError::new(code::IO, error.to_string()))?;
    }
    let mut netlink = Netlink::open().map_err(netlink_error)?;
    if let Some(link) = netlink.link_by_name(&host_name).map_err(netlink_error)?
        && link.up
    {
        match netlink.set_link_up(link.index, false) {
            Err(error) if !error.is_not_found() => return Err(netlink_error(error)),
            _ => {}
        }
    }
    Ipam::resolve(conf, env)?
        .run(env, Command::Del, stdin)
        .map(drop)
}

fn check_failed(message: String) -> CniError {
    CniError::new(code::CHECK_FAILED, message)
}

pub fn check(env: &CniEnv, conf: &PluginConf, stdin: &[u8]) -> Result<(), CniError> {
    let attachment = attachment(env)?;
    let previous = conf
        .common
        .prev_result
        .as_ref()
        .ok_or_else(|| CniError::invalid_config("prevResult: required for CHECK"))?;
    Ipam::resolve(conf, env)?.run(env, Command::Check, stdin)?;

    let addresses: Vec<IpAddr> = previous.ips.iter().map(|ip| ip.address.addr()).collect();
    let host_name = host_interface_name(attachment);
    let mut netlink = Netlink::open().map_err(netlink_error)?;
    let host = netlink
        .link_by_name(&host_name)
        .map_err(netlink_error)?
        .ok_or_else(|| check_failed(format!("host interface {host_name} is missing")))?;
    if !host.up {
        return Err(check_failed(format!("host interface {host_name} is down")));
    }
    for family_v6 in [false, true] {
        let routes = netlink
            .routes(family_v6, host.index)
            .map_err(netlink_error)?;
        for ip in addresses.iter().filter(|ip| ip.is_ipv6() == family_v6) {
            if !routes.iter().any(|route| {
                route.destination.addr() == *ip
                    && route.destination.prefix_len() == route.destination.max_prefix_len()
            }) {
                return Err(check_failed(format!(
                    "host route to {ip} via {host_name} is missing"
                )));
            }
        }
    }

    let netns_path = env
        .netns
        .as_deref()
        .ok_or_else(|| CniError::invalid_env("CNI_NETNS: required for CHECK"))?;
    let pod_netns = netns::open(netns_path)
        .map_err(|error| CniError::new(code::UNKNOWN_CONTAINER, format!("CNI_NETNS: {error}")))?;
    let expected_mac = previous
        .interfaces
        .iter()
        .find(|interface| interface.name == attachment.ifname && !interface.sandbox.is_empty())
        .map(|interface| interface.mac.to_lowercase());
    let ifname = attachment.ifname.clone();
    netns::run_in(std::os::fd::AsFd::as_fd(&pod_netns), move || {
        check_pod_end(&ifname, &addresses, expected_mac)
    })
    .map_err(|error| CniError::new(code::NETLINK, error.to_string()))?
}

fn check_pod_end(
    ifname: &str,
    addresses: &[IpAddr],
    expected_mac: Option<String>,
) -> Result<(), CniError> {
    let mut netlink = Netlink::open().map_err(netlink_error)?;
    let link = netlink
        .link_by_name(ifname)
        .map_err(netlink_error)?
        .ok_or_else(|| check_failed(format!("pod interface {ifname} is missing")))?;
    if !link.up {
        return Err(check_failed(format!("pod interface {ifname} is down")));
    }
    if let Some(mac) = expected_mac.filter(|mac| !mac.is_empty()) {
        let actual = crate::naming::format_mac(&link.mac);
        if actual != mac {
            return Err(check_failed(format!(
                "pod interface {ifname} has MAC {actual}, prevResult says {mac}"
            )));
        }
    }
    let configured = netlink.addresses(link.index).map_err(netlink_error)?;
    for ip in addresses {
        if !configured.iter().any(|address| address.addr() == *ip) {
            return Err(check_failed(format!(
                "pod interface {ifname} lacks address {ip}"
            )));
        }
    }
    for (family_v6, gateway) in [
        (false, IpAddr::from(GATEWAY_V4)),
        (true, IpAddr::from(GATEWAY_V6)),
    ] {
        if !addresses.iter().any(|ip| ip.is_ipv6() == family_v6) {
            continue;
        }
        let routes = netlink
            .routes(family_v6, link.index)
            .map_err(netlink_error)?;
        if !routes
            .iter()
            .any(|route| route.destination.prefix_len() == 0 && route.gateway == Some(gateway))
        {
            return Err(check_failed(format!(
                "pod default route via {gateway} on {ifname} is missing"
            )));
        }
    }
    Ok(())
}
