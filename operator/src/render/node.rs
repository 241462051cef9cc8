//! DaemonSet `weft-node`: the per-node agent. It runs on the host network on every Linux node
//! (all taints tolerated, `system-node-critical`; the Installation's `nodeDaemonSet` may narrow
//! the nodes and tolerations and set resources), installs the CNI binaries and conflist in an init container
//! and rolls whenever the CNI configuration changes (its hash is a pod annotation).
//!
//! Neither container is privileged. `install-cni` only writes files into the host's CNI
//! directories: it runs as root (the directories are root's) with every capability dropped. The
//! agent keeps `NET_ADMIN` (links, addresses, routes, neighbours, nftables over netlink, the
//! ethtool offload switch) and `NET_RAW`, nothing else: kernel modules (vxlan, nf_tables) are
//! loaded by the kernel on a netlink request, not by the agent, so `/lib/modules` is not mounted,
//! and `/run/netns` is only used by tests that run the agent outside a pod. The one sysctl the
//! agent writes (`net.ipv4.ip_forward`, when it is off) goes through the host's `/proc/sys/net`
//! mounted writable: that needs neither `privileged` nor `SYS_ADMIN`. The health endpoints
//! listen on the host's loopback address, which is where the kubelet probes a host-network pod,
//! so no pod can reach them; `/metrics` is served on the node's addresses only when the
//! Installation sets `nodeMetricsPort`.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{DaemonSet, DaemonSetSpec};
use k8s_openapi::api::core::v1::{
    Affinity, Capabilities, ConfigMap, Container, EnvVar, EnvVarSource, HTTPGetAction,
    HostPathVolumeSource, NodeAffinity, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm,
    ObjectFieldSelector, PodSecurityContext, PodSpec, PodTemplateSpec, Probe, SeccompProfile,
    SecurityContext, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use weft_api::defaults::{INSTALL_CNI_CONTAINER, NODE_AGENT_CONTAINER};
use weft_api::installation::NODE_HEALTH_PORT;
use weft_api::{CniType, ComputedInstallation, ComputedPlacement};

use super::cni::{CNI_CONFIG_KEY, CNI_CONFIG_NAME};
use super::{Meta, sha256_hex};
use crate::labels::{selector_labels, standard_labels};

pub const NODE_AGENT_NAME: &str = "weft-node";
/// Pod annotation holding a hash of the CNI conflist: a changed config rolls the DaemonSet.
pub const CNI_CONFIG_HASH_ANNOTATION: &str = "operator.weft.dev/cni-config-hash";
/// The agent's health port on the host network's loopback address.
pub const AGENT_HEALTH_PORT: i32 = NODE_HEALTH_PORT;
/// Where the agent serves `/healthz` and `/readyz`: the host's loopback, reachable by the kubelet
/// (which probes a host-network pod on the host's localhost) and by no pod.
const AGENT_HEALTH_ADDRESS: &str = "127.0.0.1";
/// Capabilities the agent keeps: netlink and nftables changes, and raw sockets.
const AGENT_CAPABILITIES: [&str; 2] = ["NET_ADMIN", "NET_RAW"];
/// Ports below this need `NET_BIND_SERVICE`, even for root.
const FIRST_UNPRIVILEGED_PORT: i32 = 1024;

const HOST_CNI_BIN: &str = "/host/opt/cni/bin";
const HOST_CNI_CONF: &str = "/host/etc/cni/net.d";
const WEFT_STATE: &str = "/var/lib/weft";
/// The host's net sysctls, mounted writable where the agent writes them (`ip_forward`): without
/// `privileged` the container's own /proc/sys is read-only, and a mount inside /proc is refused
/// by the runtime, so the agent writes through this path (`agent/src/kernel` `HOST_PROC_SYS`).
const HOST_PROC_SYS_NET: &str = "/proc/sys/net";
const AGENT_PROC_SYS_NET: &str = "/host/proc/sys/net";

pub(crate) fn image(computed: &ComputedInstallation) -> String {
    let registry = computed.registry.trim_end_matches('/');
    let tag = &computed.image_tag;
    if registry.is_empty() {
        format!("weft-agent:{tag}")
    } else {
        format!("{registry}/weft-agent:{tag}")
    }
}

pub(crate) fn pull_policy(computed: &ComputedInstallation) -> String {
    serde_json::to_value(computed.image_pull_policy)
        .ok()
        .and_then(|value| value.as_str().map(str::to_owned))
        .unwrap_or_else(|| "IfNotPresent".into())
}

/// The resources of `container` in `placement` (from `componentResources` and the workload's
/// overrides).
pub(crate) fn resources(
    placement: &ComputedPlacement,
    container: &str,
) -> Option<k8s_openapi::api::core::v1::ResourceRequirements> {
    placement.resources.get(container).cloned()
}

/// Keeps the agent off nodes where it cannot run although they may say `linux`: virtual-kubelet
/// nodes (ACI and similar) and EKS Fargate, as the Tigera operator does. An admin's affinity
/// replaces it.
fn default_affinity() -> Affinity {
    let not_in = |key: &str, value: &str| NodeSelectorRequirement {
        key: key.into(),
        operator: "NotIn".into(),
        values: Some(vec![value.into()]),
    };
    Affinity {
        node_affinity: Some(NodeAffinity {
            required_during_scheduling_ignored_during_execution: Some(NodeSelector {
                node_selector_terms: vec![NodeSelectorTerm {
                    match_expressions: Some(vec![
                        not_in("type", "virtual-kubelet"),
                        not_in("eks.amazonaws.com/compute-type", "fargate"),
                    ]),
                    ..Default::default()
                }],
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn env(name: &str, value: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value: Some(value.into()),
        ..Default::default()
    }
}

fn host_path(name: &str, path: &str, kind: &str) -> Volume {
    Volume {
        name: name.into(),
        host_path: Some(HostPathVolumeSource {
            path: path.into(),
            type_: Some(kind.into()),
        }),
        ..Default::default()
    }
}

fn mount(name: &str, path: &str, read_only: bool) -> VolumeMount {
    VolumeMount {
        name: name.into(),
        mount_path: path.into(),
        read_only: read_only.then_some(true),
        ..Default::default()
    }
}

/// Root (the host's CNI and state directories belong to root), not privileged, no privilege
/// escalation, a read-only image, and only the `added` capabilities.
fn root_with(added: &[&str]) -> Option<SecurityContext> {
    Some(SecurityContext {
        privileged: Some(false),
        run_as_user: Some(0),
        run_as_non_root: Some(false),
        allow_privilege_escalation: Some(false),
        read_only_root_filesystem: Some(true),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".into()]),
            add: (!added.is_empty()).then(|| added.iter().map(|name| (*name).to_owned()).collect()),
        }),
        ..Default::default()
    })
}

/// The agent's capabilities: [`AGENT_CAPABILITIES`], plus `NET_BIND_SERVICE` when the metrics
/// port is a privileged one.
fn agent_capabilities(computed: &ComputedInstallation) -> Vec<&'static str> {
    let mut added = AGENT_CAPABILITIES.to_vec();
    if computed
        .node_metrics_port
        .is_some_and(|port| port < FIRST_UNPRIVILEGED_PORT)
    {
        added.push("NET_BIND_SERVICE");
    }
    added
}

fn probe(path: &str, period: i32, failures: i32) -> Option<Probe> {
    Some(Probe {
        http_get: Some(HTTPGetAction {
            host: Some(AGENT_HEALTH_ADDRESS.into()),
            path: Some(path.into()),
            port: IntOrString::Int(AGENT_HEALTH_PORT),
            ..Default::default()
        }),
        period_seconds: Some(period),
        failure_threshold: Some(failures),
        timeout_seconds: Some(5),
        ..Default::default()
    })
}

fn install_cni(computed: &ComputedInstallation) -> Container {
    Container {
        name: INSTALL_CNI_CONTAINER.into(),
        image: Some(image(computed)),
        image_pull_policy: Some(pull_policy(computed)),
        command: Some(vec!["weft-agent".into(), "install-cni".into()]),
        env: Some(vec![
            env("CNI_BIN_DIR", HOST_CNI_BIN),
            env("CNI_CONF_DIR", HOST_CNI_CONF),
            env("CNI_CONF_NAME", CNI_CONFIG_KEY),
            EnvVar {
                name: "CNI_NETWORK_CONFIG".into(),
                value_from: Some(EnvVarSource {
                    config_map_key_ref: Some(k8s_openapi::api::core::v1::ConfigMapKeySelector {
                        name: CNI_CONFIG_NAME.into(),
                        key: CNI_CONFIG_KEY.into(),
                        optional: Some(false),
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            },
        ]),
        volume_mounts: Some(vec![
            mount("cni-bin-dir", HOST_CNI_BIN, false),
            mount("cni-net-dir", HOST_CNI_CONF, false),
        ]),
        resources: resources(&computed.node_placement, INSTALL_CNI_CONTAINER),
        security_context: root_with(&[]),
        ..Default::default()
    }
}

fn agent(computed: &ComputedInstallation) -> Container {
    let node_name = EnvVar {
        name: "NODE_NAME".into(),
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: "spec.nodeName".into(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let log_level = serde_json::to_value(computed.log_level)
        .ok()
        .and_then(|value| value.as_str().map(str::to_lowercase))
        .unwrap_or_else(|| "info".into());
    let mut variables = vec![
        node_name,
        env("WEFT_LOG_LEVEL", &log_level),
        env("WEFT_HEALTH_ADDRESS", AGENT_HEALTH_ADDRESS),
        env("WEFT_HEALTH_PORT", &AGENT_HEALTH_PORT.to_string()),
        // Where install-cni put weft's files: the agent removes them when weft is uninstalled.
        env("CNI_BIN_DIR", HOST_CNI_BIN),
        env("CNI_CONF_DIR", HOST_CNI_CONF),
        env("CNI_CONF_NAME", CNI_CONFIG_KEY),
    ];
    // Without it the agent serves no metrics at all.
    if let Some(port) = computed.node_metrics_port {
        variables.push(env("WEFT_METRICS_PORT", &port.to_string()));
    }
    Container {
        name: NODE_AGENT_CONTAINER.into(),
        image: Some(image(computed)),
        image_pull_policy: Some(pull_policy(computed)),
        command: Some(vec!["weft-agent".into(), "run".into()]),
        env: Some(variables),
        resources: resources(&computed.node_placement, NODE_AGENT_CONTAINER),
        liveness_probe: probe("/healthz", 10, 6),
        readiness_probe: probe("/readyz", 5, 3),
        volume_mounts: Some(vec![
            mount("weft-state", WEFT_STATE, false),
            mount("cni-bin-dir", HOST_CNI_BIN, false),
            mount("cni-net-dir", HOST_CNI_CONF, false),
            mount("host-proc-sys-net", AGENT_PROC_SYS_NET, false),
        ]),
        security_context: root_with(&agent_capabilities(computed)),
        ..Default::default()
    }
}

pub fn daemon_set(
    meta: &Meta,
    computed: &ComputedInstallation,
    cni_config: Option<&k8s_openapi::api::core::v1::ConfigMap>,
) -> DaemonSet {
    let config_hash = cni_config
        .and_then(|config: &ConfigMap| config.data.as_ref())
        .and_then(|data| data.get(CNI_CONFIG_KEY))
        .map(|text| sha256_hex(text.as_bytes()));
    let pod_annotations =
        config_hash.map(|hash| BTreeMap::from([(CNI_CONFIG_HASH_ANNOTATION.to_owned(), hash)]));
    let weft_cni = computed.cni.cni_type == CniType::Weft;
    let volumes = vec![
        host_path("cni-bin-dir", &computed.cni.bin_dir, "DirectoryOrCreate"),
        host_path("cni-net-dir", &computed.cni.conf_dir, "DirectoryOrCreate"),
        host_path("weft-state", WEFT_STATE, "DirectoryOrCreate"),
        host_path("host-proc-sys-net", HOST_PROC_SYS_NET, "Directory"),
    ];
    let placement = &computed.node_placement;
    let pod = PodSpec {
        host_network: Some(true),
        dns_policy: Some("ClusterFirstWithHostNet".into()),
        priority_class_name: Some("system-node-critical".into()),
        service_account_name: Some(NODE_AGENT_NAME.into()),
        termination_grace_period_seconds: Some(30),
        security_context: Some(PodSecurityContext {
            seccomp_profile: Some(SeccompProfile {
                type_: "RuntimeDefault".into(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        // Linux nodes only (the image is a Linux image), so a Windows node is not counted by the
        // DaemonSet; by default every taint is tolerated: without the agent no pod gets a network.
        node_selector: Some(placement.node_selector.clone()),
        affinity: Some(placement.affinity.clone().unwrap_or_else(default_affinity)),
        tolerations: (!placement.tolerations.is_empty()).then(|| placement.tolerations.clone()),
        image_pull_secrets: (!computed.image_pull_secrets.is_empty())
            .then(|| computed.image_pull_secrets.clone()),
        init_containers: weft_cni.then(|| vec![install_cni(computed)]),
        containers: vec![agent(computed)],
        volumes: Some(volumes),
        ..Default::default()
    };
    DaemonSet {
        metadata: meta.namespaced(NODE_AGENT_NAME, "node"),
        spec: Some(DaemonSetSpec {
            selector: LabelSelector {
                match_labels: Some(selector_labels(NODE_AGENT_NAME)),
                ..Default::default()
            },
            update_strategy: Some(computed.node_update_strategy.clone()),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(standard_labels(NODE_AGENT_NAME, "node")),
                    annotations: pod_annotations,
                    ..Default::default()
                }),
                spec: Some(pod),
            },
            ..Default::default()
        }),
        ..Default::default()
    }
}
