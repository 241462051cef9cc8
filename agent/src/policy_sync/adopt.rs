//! Adopting pods wired before ADD wrote endpoint records (an upgrade from a version without
//! them): a local pod that reports an address no record holds is found by its host route (ADD
//! routes each pod address to the pod's host interface), and a record is written for it, so the
//! guard binds it like any other pod instead of cutting it off. The kernel's route is the
//! proof: an address is only ever bound to the interface the node already routes it to.
//! Local pods no route explains (not on a weft interface) are looked up again at most every
//! [`RETRY`], not on every pass.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use weft_cni::endpoint::{self, EndpointRecord};
use weft_policy::model::Cluster;

use crate::kernel::Kernel;
use crate::kernel::netlink as nl;

/// How often local pods without a record or a host route are looked up again.
pub const RETRY: Duration = Duration::from_secs(5);

/// The orphans last looked up, and when: the same set is not looked up again before [`RETRY`].
#[derive(Default)]
pub struct Attempts {
    last: Option<(BTreeSet<String>, Instant)>,
}

/// Records for the local pods that have an address but no record, from the host routes;
/// each is also written to `dir`.
pub fn adopt(
    attempts: &mut Attempts,
    kernel: &Kernel,
    dir: &Path,
    cluster: &Cluster,
    local: &BTreeSet<String>,
    records: &[EndpointRecord],
) -> Vec<EndpointRecord> {
    let recorded: BTreeSet<IpAddr> = records.iter().flat_map(|r| r.ips.clone()).collect();
    let named: BTreeSet<(&str, &str)> = records
        .iter()
        .filter_map(|r| Some((r.namespace.as_deref()?, r.name.as_deref()?)))
        .collect();
    let orphans: Vec<_> = cluster
        .endpoints
        .iter()
        .filter(|e| local.contains(&e.key()))
        .filter(|e| !named.contains(&(e.namespace.as_str(), e.name.as_str())))
        .filter(|e| !e.ips.is_empty() && e.ips.iter().all(|ip| !recorded.contains(ip)))
        .collect();
    let keys: BTreeSet<String> = orphans.iter().map(|pod| pod.key()).collect();
    if orphans.is_empty()
        || attempts
            .last
            .as_ref()
            .is_some_and(|(last, at)| *last == keys && at.elapsed() < RETRY)
    {
        return Vec::new();
    }
    attempts.last = Some((keys, Instant::now()));
    let routed = match host_routes(kernel) {
        Ok(routed) => routed,
        Err(error) => {
            tracing::warn!(%error, "reading the host routes to adopt pods");
            return Vec::new();
        }
    };
    let mut adopted = Vec::new();
    for pod in orphans {
        let Some(interface) = pod.ips.iter().find_map(|ip| routed.get(ip)) else {
            continue;
        };
        let record = EndpointRecord {
            host_interface: interface.clone(),
            container_id: String::new(),
            ifname: String::new(),
            namespace: Some(pod.namespace.clone()),
            name: Some(pod.name.clone()),
            ips: pod
                .ips
                .iter()
                .filter(|ip| routed.get(ip) == Some(interface))
                .copied()
                .collect(),
        };
        match endpoint::write(dir, &record) {
            Ok(()) => {
                tracing::info!(pod = %pod.key(), %interface, "adopted a pod wired without an endpoint record")
            }
            Err(error) => tracing::warn!(%error, "writing an adopted pod's record"),
        }
        adopted.push(record);
    }
    adopted
}

/// Address → workload interface, from the full-length routes on the workload interfaces.
fn host_routes(kernel: &Kernel) -> Result<BTreeMap<IpAddr, String>, crate::kernel::KernelError> {
    let links = kernel.netlink(nl::links)?;
    let mut routed = BTreeMap::new();
    for link in links.iter().filter(|link| {
        link.name.starts_with(weft_cni::naming::HOST_PREFIX)
            && link.name != crate::routes::VXLAN_DEVICE
    }) {
        for ipv6 in [false, true] {
            let routes = kernel.netlink(|netlink| netlink.routes(ipv6, link.index))?;
            for route in routes {
                let destination = route.destination;
                if destination.prefix_len() == destination.max_prefix_len() {
                    routed.insert(destination.addr(), link.name.clone());
                }
            }
        }
    }
    Ok(routed)
}
