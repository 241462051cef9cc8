//! Gathering the cluster facts defaulting needs: kubeadm's pod subnet, the nodes' pod CIDRs and
//! the operator's own registry and version. The default pool's CIDR, once recorded in
//! `status.computed`, is kept so nodes joining later never move it (a pool's CIDR is immutable).
//! Also the Service CIDRs and node addresses validation checks pools against.

use k8s_openapi::api::core::v1::{ConfigMap, Node};
use k8s_openapi::api::networking::v1::ServiceCIDR;
use kube::Client;
use kube::api::{Api, ListParams};
use weft_api::defaults::DEFAULT_POOL_NAME;
use weft_api::{ClusterFacts, Installation};

use crate::validate::ClusterNetworks;

/// The registry weft's images come from unless the Installation names another.
pub const OPERATOR_REGISTRY: &str = "ghcr.io/weft";
/// The operator's version: the tag of every image it deploys.
pub const OPERATOR_VERSION: &str = env!("CARGO_PKG_VERSION");

fn spec_lists_pools(installation: &Installation) -> bool {
    installation
        .spec
        .network
        .as_ref()
        .is_some_and(|network| network.ip_pools.is_some())
}

/// The default pool's CIDR recorded by an earlier reconcile, if any.
fn recorded_default_pool(installation: &Installation) -> Option<ipnet::IpNet> {
    installation
        .status
        .as_ref()?
        .computed
        .as_ref()?
        .network
        .ip_pools
        .iter()
        .find(|pool| pool.name == DEFAULT_POOL_NAME)?
        .cidr
        .parse()
        .ok()
}

async fn kubeadm_subnet(client: &Client) -> Result<Option<ipnet::IpNet>, kube::Error> {
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), "kube-system");
    let Some(config) = config_maps.get_opt("kubeadm-config").await? else {
        return Ok(None);
    };
    Ok(config
        .data
        .as_ref()
        .and_then(|data| data.get("ClusterConfiguration"))
        .and_then(|text| weft_api::kubeadm_pod_subnet(text)))
}

async fn node_pod_cidrs(client: &Client) -> Result<Vec<ipnet::IpNet>, kube::Error> {
    let nodes: Api<Node> = Api::all(client.clone());
    let mut cidrs = Vec::new();
    let mut params = ListParams::default().limit(crate::LIST_PAGE);
    loop {
        let page = nodes.list(&params).await?;
        cidrs.extend(page.items.iter().filter_map(|node| {
            node.spec
                .as_ref()?
                .pod_cidr
                .as_deref()?
                .parse::<ipnet::IpNet>()
                .ok()
        }));
        match page.metadata.continue_.filter(|token| !token.is_empty()) {
            Some(token) => params = params.continue_token(&token),
            None => return Ok(cidrs),
        }
    }
}

/// The facts for `installation`. The cluster is only asked when the Installation relies on a
/// default pool whose CIDR is not recorded yet.
pub async fn gather(
    client: &Client,
    installation: &Installation,
) -> Result<ClusterFacts, kube::Error> {
    let mut facts = crate::prepare::offline_facts();
    let uses_default_pool = weft_api::defaults(&installation.spec, &facts)
        .network
        .ip_pools
        .iter()
        .any(|pool| pool.name == DEFAULT_POOL_NAME);
    if spec_lists_pools(installation) || !uses_default_pool {
        return Ok(facts);
    }
    if let Some(cidr) = recorded_default_pool(installation) {
        facts.kubeadm_pod_subnet = Some(cidr);
        return Ok(facts);
    }
    facts.kubeadm_pod_subnet = kubeadm_subnet(client).await?;
    if facts.kubeadm_pod_subnet.is_none() {
        facts.node_pod_cidrs = node_pod_cidrs(client).await?;
    }
    Ok(facts)
}

fn node_addresses(node: &Node) -> impl Iterator<Item = std::net::IpAddr> + '_ {
    node.status
        .iter()
        .flat_map(|status| status.addresses.iter().flatten())
        .filter(|address| matches!(address.type_.as_str(), "InternalIP" | "ExternalIP"))
        .filter_map(|address| address.address.parse().ok())
}

/// The cluster's Service CIDRs and node addresses, which pools must not overlap. Reading them
/// lists every node, so it is done only when the answer can matter: the spec changed since the
/// last reconcile, or the last one found the configuration invalid.
pub async fn networks(
    client: &Client,
    installation: &Installation,
) -> Result<ClusterNetworks, kube::Error> {
    let status = installation.status.as_ref();
    let seen =
        status.and_then(|status| status.observed_generation) == installation.metadata.generation;
    let was_invalid = status.is_some_and(|status| {
        status.conditions.iter().any(|condition| {
            condition.type_ == "Degraded"
                && condition.reason == "InvalidConfiguration"
                && condition.status == "True"
        })
    });
    if seen && !was_invalid {
        return Ok(ClusterNetworks::default());
    }
    let service_cidrs: Api<ServiceCIDR> = Api::all(client.clone());
    let mut networks = ClusterNetworks::default();
    for cidr in service_cidrs.list(&ListParams::default()).await?.items {
        let listed = cidr.spec.and_then(|spec| spec.cidrs).unwrap_or_default();
        networks.service_cidrs.extend(
            listed
                .iter()
                .filter_map(|text| text.parse::<ipnet::IpNet>().ok()),
        );
    }
    let nodes: Api<Node> = Api::all(client.clone());
    let mut params = ListParams::default().limit(crate::LIST_PAGE);
    loop {
        let page = nodes.list(&params).await?;
        networks
            .node_addresses
            .extend(page.items.iter().flat_map(node_addresses));
        match page.metadata.continue_.filter(|token| !token.is_empty()) {
            Some(token) => params = params.continue_token(&token),
            None => return Ok(networks),
        }
    }
}
