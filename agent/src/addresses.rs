//! Which pod holds an address that two pods report. A deleted pod's object can outlive its
//! sandbox (Terminating behind a finalizer, or a slow kubelet) while the node's IPAM hands its
//! address to a new pod; policy must follow the new pod, and nft takes one dispatch entry per
//! address (a second one fails the whole transaction).

use std::collections::BTreeMap;
use std::net::IpAddr;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::view::PodView;

/// How strongly a pod holds its addresses against another pod reporting one of them.
/// Ordered: the greater claim holds the address.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct AddressClaim {
    /// False once the pod is being deleted: its sandbox, and its address, may already be gone.
    pub live: bool,
    /// When the pod was created: between two live (or two deleted) pods, the newer one was
    /// given the address last.
    pub created: Option<Time>,
}

/// For every address some pod reports, the key (`namespace/name`) of the pod that holds it;
/// ties go to the greater key, so every agent picks the same pod.
pub fn holders(pods: &BTreeMap<String, PodView>) -> BTreeMap<IpAddr, &str> {
    let mut holders: BTreeMap<IpAddr, (&AddressClaim, &str)> = BTreeMap::new();
    for (key, pod) in pods {
        for ip in &pod.endpoint.ips {
            let candidate = (&pod.claim, key.as_str());
            holders
                .entry(*ip)
                .and_modify(|holder| *holder = (*holder).max(candidate))
                .or_insert(candidate);
        }
    }
    holders
        .into_iter()
        .map(|(ip, (_, key))| (ip, key))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use weft_policy::model::Endpoint;

    fn pod(name: &str, ips: &[&str], live: bool, created: &str) -> (String, PodView) {
        let endpoint = Endpoint {
            namespace: "ns".into(),
            name: name.into(),
            labels: BTreeMap::new(),
            ips: ips.iter().map(|ip| ip.parse().unwrap()).collect(),
            ports: Vec::new(),
            service_account: "default".into(),
        };
        let claim = AddressClaim {
            live,
            created: Some(Time(created.parse().unwrap())),
        };
        (
            endpoint.key(),
            PodView {
                node: "n1".into(),
                endpoint,
                claim,
            },
        )
    }

    fn holder_of(pods: &[(String, PodView)], ip: &str) -> String {
        let pods: BTreeMap<String, PodView> = pods.iter().cloned().collect();
        holders(&pods)[&ip.parse::<IpAddr>().unwrap()].to_owned()
    }

    #[test]
    fn a_live_pod_holds_the_address_of_a_deleted_one_even_if_older() {
        let pods = [
            pod("old", &["10.0.0.5"], false, "2026-01-02T00:00:00Z"),
            pod("new", &["10.0.0.5"], true, "2026-01-01T00:00:00Z"),
        ];
        assert_eq!(holder_of(&pods, "10.0.0.5"), "ns/new");
    }

    #[test]
    fn between_two_live_pods_the_newer_holds_the_address() {
        let pods = [
            pod("b", &["10.0.0.5", "10.0.0.6"], true, "2026-01-01T00:00:00Z"),
            pod("a", &["10.0.0.5"], true, "2026-01-01T00:00:01Z"),
        ];
        assert_eq!(holder_of(&pods, "10.0.0.5"), "ns/a");
        assert_eq!(holder_of(&pods, "10.0.0.6"), "ns/b");
    }

    #[test]
    fn equal_claims_go_to_the_same_pod_whatever_the_order() {
        let a = pod("a", &["10.0.0.5"], true, "2026-01-01T00:00:00Z");
        let b = pod("b", &["10.0.0.5"], true, "2026-01-01T00:00:00Z");
        assert_eq!(holder_of(&[a.clone(), b.clone()], "10.0.0.5"), "ns/b");
        assert_eq!(holder_of(&[b, a], "10.0.0.5"), "ns/b");
    }
}
