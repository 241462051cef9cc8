//! Defaulting of an Installation: [`defaults`] turns the spec an admin wrote plus facts about
//! the cluster into the [`ComputedInstallation`] the operator renders from. The result belongs in
//! `status.computed`; the spec is never written, so GitOps tools and server-side apply keep
//! owning exactly what they wrote.

use std::net::Ipv4Addr;

use ipnet::{IpNet, Ipv4Net};
use k8s_openapi::api::apps::v1::{DaemonSetUpdateStrategy, RollingUpdateDaemonSet};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ResourceRequirements, Toleration};

use crate::installation::{
    CniType, ComponentName, InstallationIpPool, InstallationSpec, IpamType, KubernetesProvider,
    NodeAddressAutodetection,
};
use crate::installation_overrides::{ComputedPlacement, LINUX, OS_LABEL};
use crate::installation_status::{
    ComputedCni, ComputedInstallation, ComputedIpPool, ComputedNetwork,
};
use crate::ippool::{DEFAULT_BLOCK_SIZE_V4, SELECT_ALL};

/// Name of the pool created when the spec lists none.
pub const DEFAULT_POOL_NAME: &str = "default-ipv4-ippool";
/// The node agent's container.
pub const NODE_AGENT_CONTAINER: &str = "weft-agent";
/// The node agent's init container.
pub const INSTALL_CNI_CONTAINER: &str = "install-cni";
/// The controllers' container.
pub const CONTROLLERS_CONTAINER: &str = "weft-controllers";
/// Pool CIDR used when the cluster's pod CIDR cannot be discovered.
pub const FALLBACK_POOL_CIDR: &str = "192.168.0.0/16";
/// Default block size of IPv6 pools.
pub const DEFAULT_BLOCK_SIZE_V6: i32 = 122;
pub const DEFAULT_CNI_BIN_DIR: &str = "/opt/cni/bin";
pub const DEFAULT_CNI_CONF_DIR: &str = "/etc/cni/net.d";
pub const DEFAULT_CONTROL_PLANE_REPLICAS: i32 = 2;
/// The widest prefix assumed for a pod CIDR inferred from node pod CIDRs alone.
const INFERRED_POD_CIDR_PREFIX: u8 = 16;

/// What the operator learned about the cluster (and itself) before defaulting.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ClusterFacts {
    /// `networking.podSubnet` of kubeadm's ClusterConfiguration (kube-system/kubeadm-config), if any.
    pub kubeadm_pod_subnet: Option<IpNet>,
    /// `spec.podCIDR` of the nodes, if any are set.
    pub node_pod_cidrs: Vec<IpNet>,
    /// The distribution detected from the cluster (None when nothing matched).
    pub detected_provider: Option<KubernetesProvider>,
    /// The operator's own image registry, used when the spec sets none.
    pub operator_registry: String,
    /// The operator's own version: the tag of every image.
    pub operator_version: String,
}

impl ClusterFacts {
    /// The cluster's IPv4 pod CIDR: kubeadm's podSubnet when it names one, else the smallest
    /// network covering every node pod CIDR, widened to a /16 (nodes seen so far hold only part
    /// of the range the cluster reserved for pods). None when neither is known.
    pub fn pod_cidr(&self) -> Option<Ipv4Net> {
        if let Some(IpNet::V4(subnet)) = self.kubeadm_pod_subnet {
            return Some(subnet.trunc());
        }
        let mut node_cidrs = self.node_pod_cidrs.iter().filter_map(|cidr| match cidr {
            IpNet::V4(v4) => Some(v4.trunc()),
            IpNet::V6(_) => None,
        });
        let first = node_cidrs.next()?;
        let covering = node_cidrs.fold(first, covering_network);
        let prefix = covering.prefix_len().min(INFERRED_POD_CIDR_PREFIX);
        Ipv4Net::new(covering.addr(), prefix)
            .ok()
            .map(|net| net.trunc())
    }
}

/// Reads `networking.podSubnet` from kubeadm's ClusterConfiguration document (the
/// `ClusterConfiguration` key of the kube-system/kubeadm-config ConfigMap). A dual-stack value
/// ("10.244.0.0/16,fd00::/56") yields its first CIDR. None when absent or unparsable.
pub fn kubeadm_pod_subnet(cluster_configuration: &str) -> Option<IpNet> {
    let document: serde_json::Value = serde_saphyr::from_str(cluster_configuration).ok()?;
    let subnets = document.get("networking")?.get("podSubnet")?.as_str()?;
    subnets.split(',').next()?.trim().parse().ok()
}

/// The fully defaulted configuration for `spec` in a cluster described by `facts`.
pub fn defaults(spec: &InstallationSpec, facts: &ClusterFacts) -> ComputedInstallation {
    let cni = computed_cni(spec);
    let network = spec.network.clone().unwrap_or_default();
    let ip_pools = if cni.cni_type == CniType::Weft && cni.ipam_type == IpamType::Weft {
        match &network.ip_pools {
            Some(pools) => pools.iter().map(computed_pool).collect(),
            None => vec![default_pool(facts)],
        }
    } else {
        Vec::new()
    };
    ComputedInstallation {
        registry: spec
            .registry
            .clone()
            .unwrap_or_else(|| facts.operator_registry.clone()),
        image_tag: facts.operator_version.clone(),
        image_pull_secrets: spec.image_pull_secrets.clone().unwrap_or_default(),
        image_pull_policy: spec.image_pull_policy.unwrap_or_default(),
        kubernetes_provider: match spec.kubernetes_provider {
            Some(provider) if provider != KubernetesProvider::AutoDetect => provider,
            _ => facts.detected_provider.unwrap_or_default(),
        },
        cni,
        network: ComputedNetwork {
            mtu: network.mtu,
            linux_dataplane: network.linux_dataplane.unwrap_or_default(),
            host_ports: network.host_ports.unwrap_or_default(),
            ip_pools,
            node_address_autodetection_v4: network
                .node_address_autodetection_v4
                .filter(|detection| *detection != NodeAddressAutodetection::default())
                .unwrap_or(NodeAddressAutodetection {
                    first_found: Some(true),
                    ..Default::default()
                }),
        },
        control_plane_replicas: spec
            .control_plane_replicas
            .unwrap_or(DEFAULT_CONTROL_PLANE_REPLICAS),
        control_plane_node_selector: spec.control_plane_node_selector.clone().unwrap_or_default(),
        control_plane_tolerations: spec.control_plane_tolerations.clone().unwrap_or_default(),
        node_update_strategy: node_update_strategy(spec.node_update_strategy.as_ref()),
        component_resources: spec.component_resources.clone().unwrap_or_default(),
        log_level: spec
            .logging
            .as_ref()
            .and_then(|l| l.level)
            .unwrap_or_default(),
        node_metrics_port: spec.node_metrics_port,
        node_placement: node_placement(spec),
        controllers_placement: controllers_placement(spec),
    }
}

/// `kubernetes.io/os: linux` with `extra` added over it (validation refuses another OS).
fn linux_nodes<'a>(
    extra: impl IntoIterator<Item = &'a BTreeMap<String, String>>,
) -> BTreeMap<String, String> {
    let mut selector = BTreeMap::from([(OS_LABEL.to_owned(), LINUX.to_owned())]);
    for labels in extra {
        selector.extend(labels.iter().map(|(k, v)| (k.clone(), v.clone())));
    }
    selector
}

/// The resources of `component` from `componentResources`, under `container`'s name.
fn component_resources(
    spec: &InstallationSpec,
    component: ComponentName,
    container: &str,
) -> BTreeMap<String, ResourceRequirements> {
    spec.component_resources
        .iter()
        .flatten()
        .find(|resource| resource.component_name == component)
        .and_then(|resource| resource.resource_requirements.clone())
        .map(|resources| BTreeMap::from([(container.to_owned(), resources)]))
        .unwrap_or_default()
}

/// The node agent runs on every Linux node and tolerates every taint unless the admin narrows it.
fn node_placement(spec: &InstallationSpec) -> ComputedPlacement {
    let pod = spec.node_daemon_set.as_ref().and_then(|set| set.pod());
    let mut resources = component_resources(spec, ComponentName::Node, NODE_AGENT_CONTAINER);
    if let Some(pod) = pod {
        for container in pod.containers.iter().flatten() {
            if let Some(wanted) = &container.resources {
                resources.insert(NODE_AGENT_CONTAINER.to_owned(), wanted.clone());
            }
        }
        for container in pod.init_containers.iter().flatten() {
            if let Some(wanted) = &container.resources {
                resources.insert(INSTALL_CNI_CONTAINER.to_owned(), wanted.clone());
            }
        }
    }
    ComputedPlacement {
        node_selector: linux_nodes(pod.and_then(|pod| pod.node_selector.as_ref())),
        affinity: pod.and_then(|pod| pod.affinity.clone()),
        tolerations: pod
            .and_then(|pod| pod.tolerations.clone())
            .unwrap_or_else(|| {
                vec![Toleration {
                    operator: Some("Exists".into()),
                    ..Default::default()
                }]
            }),
        resources,
    }
}

fn controllers_placement(spec: &InstallationSpec) -> ComputedPlacement {
    let pod = spec.controllers_deployment.as_ref().and_then(|d| d.pod());
    let mut resources =
        component_resources(spec, ComponentName::Controllers, CONTROLLERS_CONTAINER);
    for container in pod.iter().flat_map(|pod| pod.containers.iter().flatten()) {
        if let Some(wanted) = &container.resources {
            resources.insert(CONTROLLERS_CONTAINER.to_owned(), wanted.clone());
        }
    }
    ComputedPlacement {
        node_selector: linux_nodes(
            spec.control_plane_node_selector
                .iter()
                .chain(pod.and_then(|pod| pod.node_selector.as_ref())),
        ),
        affinity: pod.and_then(|pod| pod.affinity.clone()),
        tolerations: pod
            .and_then(|pod| pod.tolerations.clone())
            .or_else(|| spec.control_plane_tolerations.clone())
            .unwrap_or_default(),
        resources,
    }
}

fn computed_cni(spec: &InstallationSpec) -> ComputedCni {
    let cni = spec.cni.clone().unwrap_or_default();
    let cni_type = cni.cni_type.unwrap_or_default();
    // With another CNI plugin doing pod networking, addresses come from the node's podCIDR.
    let default_ipam = match cni_type {
        CniType::Weft => IpamType::Weft,
        CniType::External => IpamType::HostLocal,
    };
    ComputedCni {
        cni_type,
        ipam_type: cni
            .ipam
            .and_then(|ipam| ipam.ipam_type)
            .unwrap_or(default_ipam),
        bin_dir: cni.bin_dir.unwrap_or_else(|| DEFAULT_CNI_BIN_DIR.into()),
        conf_dir: cni.conf_dir.unwrap_or_else(|| DEFAULT_CNI_CONF_DIR.into()),
    }
}

fn default_pool(facts: &ClusterFacts) -> ComputedIpPool {
    let cidr = facts
        .pod_cidr()
        .map(|net| net.to_string())
        .unwrap_or_else(|| FALLBACK_POOL_CIDR.into());
    computed_pool(&InstallationIpPool {
        name: DEFAULT_POOL_NAME.into(),
        cidr,
        ..Default::default()
    })
}

fn computed_pool(pool: &InstallationIpPool) -> ComputedIpPool {
    let is_v6 = pool
        .cidr
        .parse::<IpNet>()
        .is_ok_and(|net| matches!(net, IpNet::V6(_)));
    let default_block = if is_v6 {
        DEFAULT_BLOCK_SIZE_V6
    } else {
        DEFAULT_BLOCK_SIZE_V4
    };
    ComputedIpPool {
        name: pool.name.clone(),
        cidr: pool.cidr.clone(),
        block_size: pool.block_size.unwrap_or(default_block),
        encapsulation: pool.encapsulation.unwrap_or_default(),
        nat_outgoing: pool.nat_outgoing.unwrap_or_default(),
        node_selector: pool
            .node_selector
            .clone()
            .unwrap_or_else(|| SELECT_ALL.into()),
        disable_new_allocations: pool.disable_new_allocations.unwrap_or(false),
    }
}

/// RollingUpdate with maxUnavailable 1 unless the spec says otherwise.
fn node_update_strategy(spec: Option<&DaemonSetUpdateStrategy>) -> DaemonSetUpdateStrategy {
    let mut strategy = spec.cloned().unwrap_or_default();
    let rolling = strategy.type_.get_or_insert_with(|| "RollingUpdate".into()) == "RollingUpdate";
    if rolling {
        let update = strategy
            .rolling_update
            .get_or_insert_with(RollingUpdateDaemonSet::default);
        if update.max_unavailable.is_none() && update.max_surge.is_none() {
            update.max_unavailable = Some(IntOrString::Int(1));
        }
    }
    strategy
}

/// The smallest network holding both `a` and `b`.
fn covering_network(a: Ipv4Net, b: Ipv4Net) -> Ipv4Net {
    let (a_bits, b_bits) = (u32::from(a.network()), u32::from(b.network()));
    let common = (a_bits ^ b_bits).leading_zeros() as u8;
    let prefix = common.min(a.prefix_len()).min(b.prefix_len());
    Ipv4Net::new(Ipv4Addr::from(a_bits), prefix)
        .map(|net| net.trunc())
        .unwrap_or(a)
}
