//! `defaults(spec, facts)`: every unset field gets its documented default, set fields are kept,
//! and the default pool follows the cluster's pod CIDR.

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use weft_api::{
    ClusterFacts, CniSpec, CniType, Encapsulation, ImagePullPolicy, InstallationIpPool,
    InstallationSpec, IpamSpec, IpamType, KubernetesProvider, LinuxDataplane, LogLevel,
    NatOutgoing, NetworkSpec, NodeAddressAutodetection, defaults, kubeadm_pod_subnet,
};

fn base_facts() -> ClusterFacts {
    ClusterFacts {
        operator_registry: "ghcr.io/weft".into(),
        operator_version: "v0.1.0".into(),
        ..Default::default()
    }
}

fn net(text: &str) -> ipnet::IpNet {
    text.parse().unwrap()
}

#[test]
fn an_empty_spec_gets_every_default() {
    let computed = defaults(&InstallationSpec::default(), &base_facts());
    assert_eq!(computed.registry, "ghcr.io/weft");
    assert_eq!(computed.image_tag, "v0.1.0");
    assert_eq!(computed.image_pull_policy, ImagePullPolicy::IfNotPresent);
    assert_eq!(computed.kubernetes_provider, KubernetesProvider::AutoDetect);
    assert_eq!(computed.cni.cni_type, CniType::Weft);
    assert_eq!(computed.cni.ipam_type, IpamType::Weft);
    assert_eq!(computed.cni.bin_dir, "/opt/cni/bin");
    assert_eq!(computed.cni.conf_dir, "/etc/cni/net.d");
    assert_eq!(
        computed.network.mtu, None,
        "absent MTU stays absent: the node agent detects it"
    );
    assert_eq!(computed.network.linux_dataplane, LinuxDataplane::Nftables);
    assert_eq!(
        computed.network.node_address_autodetection_v4.first_found,
        Some(true)
    );
    assert_eq!(computed.control_plane_replicas, 2);
    assert_eq!(computed.log_level, LogLevel::Info);
    let strategy = &computed.node_update_strategy;
    assert_eq!(strategy.type_.as_deref(), Some("RollingUpdate"));
    assert_eq!(
        strategy.rolling_update.as_ref().unwrap().max_unavailable,
        Some(IntOrString::Int(1))
    );

    let [pool] = computed.network.ip_pools.as_slice() else {
        panic!("one default pool expected")
    };
    assert_eq!(pool.name, "default-ipv4-ippool");
    assert_eq!(
        pool.cidr, "192.168.0.0/16",
        "no pod CIDR known: the fallback pool"
    );
    assert_eq!(pool.block_size, 26);
    assert_eq!(pool.encapsulation, Encapsulation::VxlanCrossSubnet);
    assert_eq!(pool.nat_outgoing, NatOutgoing::Enabled);
    assert_eq!(pool.node_selector, "all()");
    assert!(!pool.disable_new_allocations);
}

#[test]
fn the_default_pool_uses_kubeadms_pod_subnet_first() {
    let facts = ClusterFacts {
        kubeadm_pod_subnet: Some(net("10.32.0.0/12")),
        node_pod_cidrs: vec![net("10.244.0.0/24")],
        ..base_facts()
    };
    let computed = defaults(&InstallationSpec::default(), &facts);
    assert_eq!(computed.network.ip_pools[0].cidr, "10.32.0.0/12");
}

#[test]
fn the_default_pool_covers_the_node_pod_cidrs_widened_to_a_16() {
    let facts = ClusterFacts {
        node_pod_cidrs: vec![
            net("10.244.0.0/24"),
            net("10.244.1.0/24"),
            net("10.244.7.0/24"),
            net("fd00::/64"),
        ],
        ..base_facts()
    };
    let computed = defaults(&InstallationSpec::default(), &facts);
    assert_eq!(computed.network.ip_pools[0].cidr, "10.244.0.0/16");

    let wide = ClusterFacts {
        node_pod_cidrs: vec![net("10.0.0.0/24"), net("10.128.0.0/24")],
        ..base_facts()
    };
    assert_eq!(wide.pod_cidr().unwrap().to_string(), "10.0.0.0/8");
}

#[test]
fn kubeadm_cluster_configuration_pod_subnet_is_read() {
    let config = "apiVersion: kubeadm.k8s.io/v1beta4\nkind: ClusterConfiguration\nnetworking:\n  dnsDomain: cluster.local\n  podSubnet: 10.244.0.0/16,fd00:10:244::/56\n  serviceSubnet: 10.96.0.0/12\n";
    assert_eq!(kubeadm_pod_subnet(config), Some(net("10.244.0.0/16")));
    assert_eq!(
        kubeadm_pod_subnet("kind: ClusterConfiguration\nnetworking: {}\n"),
        None
    );
    assert_eq!(kubeadm_pod_subnet("not: [valid"), None);
}

#[test]
fn set_fields_are_kept_and_pool_fields_defaulted_one_by_one() {
    let spec = InstallationSpec {
        registry: Some("registry.example.com/weft".into()),
        kubernetes_provider: Some(KubernetesProvider::Kind),
        control_plane_replicas: Some(3),
        network: Some(NetworkSpec {
            mtu: Some(1400),
            ip_pools: Some(vec![InstallationIpPool {
                name: "edge".into(),
                cidr: "172.20.0.0/20".into(),
                block_size: Some(28),
                nat_outgoing: Some(NatOutgoing::Disabled),
                ..Default::default()
            }]),
            node_address_autodetection_v4: Some(NodeAddressAutodetection {
                interface: Some("eth.*".into()),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let computed = defaults(
        &spec,
        &ClusterFacts {
            detected_provider: Some(KubernetesProvider::Eks),
            ..base_facts()
        },
    );
    assert_eq!(computed.registry, "registry.example.com/weft");
    assert_eq!(
        computed.kubernetes_provider,
        KubernetesProvider::Kind,
        "a set provider beats detection"
    );
    assert_eq!(computed.control_plane_replicas, 3);
    assert_eq!(computed.network.mtu, Some(1400));
    assert_eq!(
        computed
            .network
            .node_address_autodetection_v4
            .interface
            .as_deref(),
        Some("eth.*")
    );
    assert_eq!(
        computed.network.node_address_autodetection_v4.first_found,
        None
    );
    let [pool] = computed.network.ip_pools.as_slice() else {
        panic!("the one listed pool expected")
    };
    assert_eq!(
        (pool.name.as_str(), pool.cidr.as_str(), pool.block_size),
        ("edge", "172.20.0.0/20", 28)
    );
    assert_eq!(pool.nat_outgoing, NatOutgoing::Disabled);
    assert_eq!(pool.encapsulation, Encapsulation::VxlanCrossSubnet);
    assert_eq!(pool.node_selector, "all()");
}

#[test]
fn detected_provider_fills_an_auto_detect_provider() {
    let spec = InstallationSpec {
        kubernetes_provider: Some(KubernetesProvider::AutoDetect),
        ..Default::default()
    };
    let facts = ClusterFacts {
        detected_provider: Some(KubernetesProvider::K3s),
        ..base_facts()
    };
    assert_eq!(
        defaults(&spec, &facts).kubernetes_provider,
        KubernetesProvider::K3s
    );
}

#[test]
fn an_empty_pool_list_means_no_pools() {
    let spec = InstallationSpec {
        network: Some(NetworkSpec {
            ip_pools: Some(vec![]),
            ..Default::default()
        }),
        ..Default::default()
    };
    assert!(defaults(&spec, &base_facts()).network.ip_pools.is_empty());
}

#[test]
fn host_local_ipam_and_external_cni_have_no_pools() {
    let host_local = InstallationSpec {
        cni: Some(CniSpec {
            ipam: Some(IpamSpec {
                ipam_type: Some(IpamType::HostLocal),
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    assert!(
        defaults(&host_local, &base_facts())
            .network
            .ip_pools
            .is_empty()
    );

    let external = InstallationSpec {
        cni: Some(CniSpec {
            cni_type: Some(CniType::External),
            ..Default::default()
        }),
        ..Default::default()
    };
    let computed = defaults(&external, &base_facts());
    assert_eq!(computed.cni.ipam_type, IpamType::HostLocal);
    assert!(computed.network.ip_pools.is_empty());
}

#[test]
fn an_on_delete_update_strategy_is_kept_as_is() {
    let spec = InstallationSpec {
        node_update_strategy: Some(k8s_openapi::api::apps::v1::DaemonSetUpdateStrategy {
            type_: Some("OnDelete".into()),
            rolling_update: None,
        }),
        ..Default::default()
    };
    let strategy = defaults(&spec, &base_facts()).node_update_strategy;
    assert_eq!(strategy.type_.as_deref(), Some("OnDelete"));
    assert!(strategy.rolling_update.is_none());
}

#[test]
fn defaulting_is_idempotent_through_the_spec_shape() {
    // Computing again from a spec that states every computed value yields the same result,
    // so what status.computed shows is what the operator renders.
    let first = defaults(&InstallationSpec::default(), &base_facts());
    let restated = InstallationSpec {
        registry: Some(first.registry.clone()),
        network: Some(NetworkSpec {
            ip_pools: Some(
                first
                    .network
                    .ip_pools
                    .iter()
                    .map(|p| InstallationIpPool {
                        name: p.name.clone(),
                        cidr: p.cidr.clone(),
                        block_size: Some(p.block_size),
                        encapsulation: Some(p.encapsulation),
                        nat_outgoing: Some(p.nat_outgoing),
                        node_selector: Some(p.node_selector.clone()),
                        disable_new_allocations: Some(p.disable_new_allocations),
                    })
                    .collect(),
            ),
            ..Default::default()
        }),
        node_update_strategy: Some(first.node_update_strategy.clone()),
        ..Default::default()
    };
    assert_eq!(defaults(&restated, &base_facts()), first);
}
