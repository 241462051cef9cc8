//! Deployment `weft-controllers` (IP address garbage collection and pool accounting) and its
//! PodDisruptionBudget. It runs unprivileged with the most restrictive security context, spread
//! over Linux nodes, on the nodes and tolerations the Installation chooses (`controlPlane*` and
//! `controllersDeployment`).

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::core::v1::{
    Affinity, Capabilities, Container, EnvVar, EnvVarSource, ObjectFieldSelector, PodAffinityTerm,
    PodAntiAffinity, PodSecurityContext, PodSpec, PodTemplateSpec, SeccompProfile, SecurityContext,
    WeightedPodAffinityTerm,
};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use weft_api::ComputedInstallation;
use weft_api::defaults::CONTROLLERS_CONTAINER;

use super::Meta;
use super::node::{image, pull_policy, resources};
use crate::labels::{selector_labels, standard_labels};

pub const CONTROLLERS_NAME: &str = "weft-controllers";

fn selector() -> LabelSelector {
    LabelSelector {
        match_labels: Some(selector_labels(CONTROLLERS_NAME)),
        ..Default::default()
    }
}

fn restricted() -> Option<SecurityContext> {
    Some(SecurityContext {
        allow_privilege_escalation: Some(false),
        read_only_root_filesystem: Some(true),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".into()]),
            ..Default::default()
        }),
        ..Default::default()
    })
}

/// Replicas prefer distinct nodes so one node failure leaves the others serving.
fn spread() -> Option<Affinity> {
    Some(Affinity {
        pod_anti_affinity: Some(PodAntiAffinity {
            preferred_during_scheduling_ignored_during_execution: Some(vec![
                WeightedPodAffinityTerm {
                    weight: 100,
                    pod_affinity_term: PodAffinityTerm {
                        label_selector: Some(selector()),
                        topology_key: "kubernetes.io/hostname".into(),
                        ..Default::default()
                    },
                },
            ]),
            ..Default::default()
        }),
        ..Default::default()
    })
}

/// An env var from the pod's own fields (the Lease namespace and the replica's identity).
fn field_env(name: &str, path: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: path.into(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

pub fn deployment(
    meta: &Meta,
    computed: &ComputedInstallation,
) -> (Deployment, PodDisruptionBudget) {
    let container = Container {
        name: CONTROLLERS_CONTAINER.into(),
        image: Some(image(computed)),
        image_pull_policy: Some(pull_policy(computed)),
        command: Some(vec!["weft-agent".into(), "controllers".into()]),
        env: Some(vec![
            field_env("POD_NAMESPACE", "metadata.namespace"),
            field_env("POD_NAME", "metadata.name"),
        ]),
        resources: resources(&computed.controllers_placement, CONTROLLERS_CONTAINER),
        security_context: restricted(),
        ..Default::default()
    };
    let placement = &computed.controllers_placement;
    let pod = PodSpec {
        service_account_name: Some(CONTROLLERS_NAME.into()),
        priority_class_name: Some("system-cluster-critical".into()),
        node_selector: Some(placement.node_selector.clone()),
        tolerations: (!placement.tolerations.is_empty()).then(|| placement.tolerations.clone()),
        image_pull_secrets: (!computed.image_pull_secrets.is_empty())
            .then(|| computed.image_pull_secrets.clone()),
        affinity: placement.affinity.clone().or_else(spread),
        security_context: Some(PodSecurityContext {
            run_as_non_root: Some(true),
            run_as_user: Some(65532),
            run_as_group: Some(65532),
            seccomp_profile: Some(SeccompProfile {
                type_: "RuntimeDefault".into(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        containers: vec![container],
        ..Default::default()
    };
    let deployment = Deployment {
        metadata: meta.namespaced(CONTROLLERS_NAME, "controllers"),
        spec: Some(DeploymentSpec {
            replicas: Some(computed.control_plane_replicas),
            selector: selector(),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(standard_labels(CONTROLLERS_NAME, "controllers")),
                    ..Default::default()
                }),
                spec: Some(pod),
            },
            ..Default::default()
        }),
        ..Default::default()
    };
    let budget = PodDisruptionBudget {
        metadata: meta.namespaced(CONTROLLERS_NAME, "controllers"),
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(1)),
            selector: Some(selector()),
            ..Default::default()
        }),
        ..Default::default()
    };
    (deployment, budget)
}
