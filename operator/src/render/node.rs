//! DaemonSet `weft-node`: the per-node agent. It runs on the host network on every node (all taints
//! tolerated, `system-node-critical`), installs the CNI binaries and conflist in an init container
//! and rolls whenever the CNI configuration changes (its hash is a pod annotation).

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{DaemonSet, DaemonSetSpec};
use k8s_openapi::api::core::v1::{
    ConfigMap, Container, EnvVar, EnvVarSource, HTTPGetAction, HostPathVolumeSource,
    ObjectFieldSelector, PodSpec, PodTemplateSpec, Probe, SecurityContext, Toleration, Volume,
    VolumeMount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use weft_api::{CniType, ComponentName, ComputedInstallation};

use super::cni::{CNI_CONFIG_KEY, CNI_CONFIG_NAME};
use super::{Meta, sha256_hex};
use crate::labels::{selector_labels, standard_labels};

pub const NODE_AGENT_NAME: &str = "weft-node";
/// Pod annotation holding a hash of the CNI conflist: a changed config rolls the DaemonSet.
pub const CNI_CONFIG_HASH_ANNOTATION: &str = "operator.weft.dev/cni-config-hash";
/// The agent's health port on the host network.
pub const AGENT_HEALTH_PORT: i32 = 9099;

const HOST_CNI_BIN: &str = "/host/opt/cni/bin";
const HOST_CNI_CONF: &str = "/host/etc/cni/net.d";
const WEFT_STATE: &str = "/var/lib/weft";

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

pub(crate) fn resources(
    computed: &ComputedInstallation,
    component: ComponentName,
) -> Option<k8s_openapi::api::core::v1::ResourceRequirements> {
    computed
        .component_resources
        .iter()
        .find(|resource| resource.component_name == component)
        .and_then(|resource| resource.resource_requirements.clone())
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

fn privileged() -> Option<SecurityContext> {
    Some(SecurityContext {
        privileged: Some(true),
        ..Default::default()
    })
}

fn probe(path: &str, period: i32, failures: i32) -> Option<Probe> {
    Some(Probe {
        http_get: Some(HTTPGetAction {
            host: Some("127.0.0.1".into()),
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
        name: "install-cni".into(),
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
        security_context: privileged(),
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
    Container {
        name: "weft-agent".into(),
        image: Some(image(computed)),
        image_pull_policy: Some(pull_policy(computed)),
        command: Some(vec!["weft-agent".into(), "run".into()]),
        env: Some(vec![
            node_name,
            env("WEFT_LOG_LEVEL", &log_level),
            env("WEFT_HEALTH_PORT", &AGENT_HEALTH_PORT.to_string()),
            // Where install-cni put weft's files: the agent removes them when weft is uninstalled.
            env("CNI_BIN_DIR", HOST_CNI_BIN),
            env("CNI_CONF_DIR", HOST_CNI_CONF),
            env("CNI_CONF_NAME", CNI_CONFIG_KEY),
        ]),
        resources: resources(computed, ComponentName::Node),
        liveness_probe: probe("/healthz", 10, 6),
        readiness_probe: probe("/readyz", 5, 3),
        volume_mounts: Some(vec![
            mount("weft-state", WEFT_STATE, false),
            mount("cni-bin-dir", HOST_CNI_BIN, false),
            mount("cni-net-dir", HOST_CNI_CONF, false),
            mount("lib-modules", "/lib/modules", true),
            mount("run-netns", "/run/netns", false),
        ]),
        security_context: privileged(),
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
        host_path("lib-modules", "/lib/modules", "Directory"),
        host_path("run-netns", "/run/netns", "DirectoryOrCreate"),
    ];
    let pod = PodSpec {
        host_network: Some(true),
        dns_policy: Some("ClusterFirstWithHostNet".into()),
        priority_class_name: Some("system-node-critical".into()),
        service_account_name: Some(NODE_AGENT_NAME.into()),
        termination_grace_period_seconds: Some(30),
        // The agent must run on every node whatever its taints: without it no pod gets a network.
        tolerations: Some(vec![Toleration {
            operator: Some("Exists".into()),
            ..Default::default()
        }]),
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
