//! Which local pod is on which host interface with which addresses: the endpoint records ADD
//! wrote, joined with the Pod objects (their labels decide the policy). A record names its pod
//! (from `CNI_ARGS`), so a pod is programmed as soon as it is wired and its Pod object is
//! known, without waiting for the kubelet to post its IP; a record without names is joined by
//! address once the Pod reports one.
//!
//! For a local pod with a record, the record is the truth about its addresses: the kubelet's
//! status says the same later, and another pod object still reporting one of them (a deleted
//! pod's leftover) loses it. A local pod without a record is not bound, and the guard drops
//! its traffic until it has one.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use weft_cni::endpoint::EndpointRecord;
use weft_policy::model::Cluster;

/// (host interface, address) of every programmed local pod.
pub type Bindings = BTreeSet<(String, IpAddr)>;

/// The bindings the kernel's table holds now (what an earlier run of the agent programmed),
/// read from the guard's sets; empty when there is no table.
pub fn in_kernel(netns: Option<&std::path::Path>) -> Bindings {
    let mut bindings = Bindings::new();
    let element = regex_lite::Regex::new(r#""([^"]+)" \. ([0-9a-fA-F:.]+)"#).expect("valid");
    for set in ["endpoints_v4", "endpoints_v6"] {
        let args: Vec<String> = ["list", "set", "inet", super::POLICY_TABLE, set]
            .map(String::from)
            .to_vec();
        let Ok(text) = super::conntrack::run_tool("nft", netns, &args) else {
            continue;
        };
        for found in element.captures_iter(&text) {
            if let Ok(ip) = found[2].parse() {
                bindings.insert((found[1].to_owned(), ip));
            }
        }
    }
    bindings
}

/// Gives the local endpoints of `cluster` the addresses of their records and returns the
/// bindings.
pub fn bind(
    cluster: &mut Cluster,
    local: &BTreeSet<String>,
    records: &[EndpointRecord],
) -> Bindings {
    let mut owner: BTreeMap<String, Vec<&EndpointRecord>> = BTreeMap::new();
    for record in records {
        let key = match (&record.namespace, &record.name) {
            (Some(namespace), Some(name)) => Some(format!("{namespace}/{name}")),
            _ => cluster
                .endpoints
                .iter()
                .filter(|endpoint| local.contains(&endpoint.key()))
                .find(|endpoint| endpoint.ips.iter().any(|ip| record.ips.contains(ip)))
                .map(|endpoint| endpoint.key()),
        };
        if let Some(key) = key.filter(|key| local.contains(key)) {
            owner.entry(key).or_default().push(record);
        }
    }
    let mut bindings = Bindings::new();
    let mut owned: BTreeMap<IpAddr, String> = BTreeMap::new();
    for (key, records) in &owner {
        for record in records {
            for ip in &record.ips {
                bindings.insert((record.host_interface.clone(), *ip));
                owned.insert(*ip, key.clone());
            }
        }
    }
    for endpoint in &mut cluster.endpoints {
        let key = endpoint.key();
        match owner.get(&key) {
            Some(records) => {
                let mut ips: Vec<IpAddr> = records.iter().flat_map(|r| r.ips.clone()).collect();
                ips.sort();
                ips.dedup();
                endpoint.ips = ips;
            }
            None => endpoint
                .ips
                .retain(|ip| owned.get(ip).is_none_or(|holder| *holder == key)),
        }
    }
    bindings
}

#[cfg(test)]
mod tests {
    use super::*;
    use weft_policy::model::Endpoint;

    fn endpoint(name: &str, ips: &[&str]) -> Endpoint {
        Endpoint {
            namespace: "ns".into(),
            name: name.into(),
            labels: BTreeMap::new(),
            ips: ips.iter().map(|ip| ip.parse().unwrap()).collect(),
            ports: Vec::new(),
            service_account: "default".into(),
        }
    }

    fn record(interface: &str, name: Option<&str>, ips: &[&str]) -> EndpointRecord {
        EndpointRecord {
            host_interface: interface.into(),
            container_id: "c".into(),
            ifname: "eth0".into(),
            namespace: name.map(|_| "ns".into()),
            name: name.map(Into::into),
            ips: ips.iter().map(|ip| ip.parse().unwrap()).collect(),
        }
    }

    #[test]
    fn a_named_record_programs_its_pod_before_the_pod_reports_an_address() {
        let mut cluster = Cluster {
            endpoints: vec![
                endpoint("new", &[]),
                endpoint("leftover", &["10.0.0.5"]),
                endpoint("remote", &["10.0.1.9"]),
            ],
            ..Cluster::default()
        };
        let local = BTreeSet::from(["ns/new".to_string(), "ns/leftover".to_string()]);
        let bindings = bind(
            &mut cluster,
            &local,
            &[record("weft1", Some("new"), &["10.0.0.5"])],
        );
        assert_eq!(
            bindings,
            Bindings::from([("weft1".to_string(), "10.0.0.5".parse().unwrap())])
        );
        assert_eq!(
            cluster.endpoints[0].ips,
            ["10.0.0.5".parse::<IpAddr>().unwrap()]
        );
        assert!(
            cluster.endpoints[1].ips.is_empty(),
            "the leftover loses the address"
        );
        assert_eq!(cluster.endpoints[2].ips.len(), 1);
    }

    #[test]
    fn an_unnamed_record_is_joined_by_address_and_unknown_pods_stay_unbound() {
        let mut cluster = Cluster {
            endpoints: vec![endpoint("a", &["10.0.0.2"]), endpoint("b", &["10.0.0.3"])],
            ..Cluster::default()
        };
        let local = BTreeSet::from(["ns/a".to_string(), "ns/b".to_string()]);
        let bindings = bind(
            &mut cluster,
            &local,
            &[
                record("weft1", None, &["10.0.0.2"]),
                record("weft2", Some("gone"), &["10.0.0.7"]),
            ],
        );
        assert_eq!(
            bindings,
            Bindings::from([("weft1".to_string(), "10.0.0.2".parse().unwrap())])
        );
    }
}
