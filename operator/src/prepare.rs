//! Validation and defaulting of an Installation: the spec as written plus the cluster facts give
//! the configuration the operator renders (recorded in `status.computed`, never in the spec).

use weft_api::{
    CniType, ComputedCni, ComputedInstallation, ComputedIpPool, ComputedNetwork, Installation,
    IpamType,
};

use crate::render::ClusterFacts;

/// The computed configuration, or a message naming every invalid field.
pub fn prepare(
    installation: &Installation,
    _facts: &ClusterFacts,
) -> Result<ComputedInstallation, String> {
    let spec = &installation.spec;
    let network = spec.network.clone().unwrap_or_default();
    let cni = spec.cni.clone().unwrap_or_default();
    if let Some(mtu) = network.mtu
        && !(576..=9216).contains(&mtu)
    {
        return Err(format!(
            "spec.network.mtu: {mtu} is out of range; allowed: 576 to 9216"
        ));
    }
    let cni_type = cni.cni_type.unwrap_or_default();
    let ipam_type = cni.ipam.and_then(|ipam| ipam.ipam_type).unwrap_or_default();
    let pools = match network.ip_pools {
        Some(pools) => pools
            .into_iter()
            .map(|pool| ComputedIpPool {
                name: pool.name,
                cidr: pool.cidr,
                block_size: pool.block_size.unwrap_or(26),
                encapsulation: pool.encapsulation.unwrap_or_default(),
                nat_outgoing: pool.nat_outgoing.unwrap_or_default(),
                node_selector: pool.node_selector.unwrap_or_else(|| "all()".into()),
                disable_new_allocations: pool.disable_new_allocations.unwrap_or_default(),
            })
            .collect(),
        None if cni_type == CniType::Weft && ipam_type == IpamType::Weft => vec![ComputedIpPool {
            name: "default-ipv4-ippool".into(),
            cidr: "192.168.0.0/16".into(),
            block_size: 26,
            node_selector: "all()".into(),
            ..Default::default()
        }],
        None => Vec::new(),
    };
    Ok(ComputedInstallation {
        registry: spec
            .registry
            .clone()
            .unwrap_or_else(|| "ghcr.io/weft".into()),
        image_tag: env!("CARGO_PKG_VERSION").into(),
        image_pull_secrets: spec.image_pull_secrets.clone().unwrap_or_default(),
        image_pull_policy: spec.image_pull_policy.unwrap_or_default(),
        kubernetes_provider: spec.kubernetes_provider.unwrap_or_default(),
        cni: ComputedCni {
            cni_type,
            ipam_type,
            bin_dir: cni.bin_dir.unwrap_or_else(|| "/opt/cni/bin".into()),
            conf_dir: cni.conf_dir.unwrap_or_else(|| "/etc/cni/net.d".into()),
        },
        network: ComputedNetwork {
            mtu: network.mtu,
            linux_dataplane: network.linux_dataplane.unwrap_or_default(),
            ip_pools: pools,
            node_address_autodetection_v4: network
                .node_address_autodetection_v4
                .unwrap_or_default(),
        },
        control_plane_replicas: spec.control_plane_replicas.unwrap_or(2),
        control_plane_node_selector: spec.control_plane_node_selector.clone().unwrap_or_default(),
        control_plane_tolerations: spec.control_plane_tolerations.clone().unwrap_or_default(),
        node_update_strategy: spec.node_update_strategy.clone().unwrap_or_default(),
        component_resources: spec.component_resources.clone().unwrap_or_default(),
        log_level: spec
            .logging
            .as_ref()
            .and_then(|logging| logging.level)
            .unwrap_or_default(),
    })
}
