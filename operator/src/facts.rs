//! Gathering the cluster facts defaulting needs: kubeadm's pod subnet, the nodes' pod CIDRs and
//! the operator's own registry and version. The default pool's CIDR, once recorded in
//! `status.computed`, is kept so nodes joining later never move it (a pool's CIDR is immutable).
//! Also the Service CIDRs and node addresses validation checks pools against. Both node facts come
//! from one paged read of the Nodes per sync.

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

/// What one paged read of every Node gives: their pod CIDRs (for the default pool) and
/// addresses (which pools must not overlap).
#[derive(Debug, Default)]
struct NodeFacts {
    pod_cidrs: Vec<ipnet::IpNet>,
    addresses: Vec<std::net::IpAddr>,
}

/// The Nodes of the cluster, read at most once per sync however many facts need them.
pub struct Nodes {
    client: Client,
    read: Option<NodeFacts>,
}

impl Nodes {
    pub fn new(client: &Client) -> Self {
        Self {
            client: client.clone(),
            read: None,
        }
    }

    async fn facts(&mut self) -> Result<&NodeFacts, kube::Error> {
        let read = match self.read.take() {
            Some(read) => read,
            None => read_nodes(&self.client).await?,
        };
        Ok(self.read.insert(read))
    }
}

async fn read_nodes(client: &Client) -> Result<NodeFacts, kube::Error> {
    let nodes: Api<Node> = Api::all(client.clone());
    let mut facts = NodeFacts::default();
    crate::for_each_page(&nodes, ListParams::default(), |page| {
        for node in &page {
            let pod_cidr = node.spec.as_ref().and_then(|spec| spec.pod_cidr.as_deref());
            facts
                .pod_cidrs
                .extend(pod_cidr.and_then(|cidr| cidr.parse::<ipnet::IpNet>().ok()));
            facts.addresses.extend(node_addresses(node));
        }
    })
    .await?;
    Ok(facts)
}

/// The facts for `installation`. The cluster is only asked when the Installation relies on a
/// default pool whose CIDR is not recorded yet.
pub async fn gather(
    client: &Client,
    installation: &Installation,
    nodes: &mut Nodes,
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
        facts.node_pod_cidrs = nodes.facts().await?.pod_cidrs.clone();
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
    nodes: &mut Nodes,
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
    networks.node_addresses = nodes.facts().await?.addresses.clone();
    Ok(networks)
}
