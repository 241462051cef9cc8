//! Where weft's workloads run and how the node agent is updated: the node selectors stay on Linux
//! nodes, override tolerations follow the API server's rules, and `nodeUpdateStrategy` is judged
//! as the API server judges a DaemonSet's (after its defaulting), plus what the agent itself
//! allows: it runs on the host network and binds a fixed port on each node, so two agents cannot
//! run on one node and a surge rollout could never start its new pods.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use weft_api::installation_overrides::{LINUX, OS_LABEL};
use weft_api::{ComputedInstallation, InstallationSpec, installation::NODE_HEALTH_PORT};

use super::{Errors, check_tolerations};

const NODE_POD: &str = "spec.nodeDaemonSet.spec.template.spec";
const CONTROLLERS_POD: &str = "spec.controllersDeployment.spec.template.spec";

pub(super) fn check_placement(spec: &InstallationSpec, errors: &mut Errors) {
    check_linux(
        "spec.controlPlaneNodeSelector",
        spec.control_plane_node_selector.as_ref(),
        errors,
    );
    if let Some(pod) = spec.node_daemon_set.as_ref().and_then(|set| set.pod()) {
        check_linux(
            &format!("{NODE_POD}.nodeSelector"),
            pod.node_selector.as_ref(),
            errors,
        );
        check_tolerations(
            &format!("{NODE_POD}.tolerations"),
            pod.tolerations.as_deref(),
            errors,
        );
    }
    if let Some(pod) = spec.controllers_deployment.as_ref().and_then(|d| d.pod()) {
        check_linux(
            &format!("{CONTROLLERS_POD}.nodeSelector"),
            pod.node_selector.as_ref(),
            errors,
        );
        check_tolerations(
            &format!("{CONTROLLERS_POD}.tolerations"),
            pod.tolerations.as_deref(),
            errors,
        );
    }
}

/// The schema's `OS_IS_LINUX` rule (also for `controlPlaneNodeSelector`, which predates it).
fn check_linux(field: &str, selector: Option<&BTreeMap<String, String>>, errors: &mut Errors) {
    if let Some(os) = selector
        .and_then(|selector| selector.get(OS_LABEL))
        .filter(|os| *os != LINUX)
    {
        errors.add(
            field,
            format!(
                "{OS_LABEL}: {os:?} is not allowed: weft's workloads run only on Linux nodes \
                 (leave it out or set {LINUX:?})"
            ),
        );
    }
}

pub(super) fn check_node_update_strategy(computed: &ComputedInstallation, errors: &mut Errors) {
    let strategy = &computed.node_update_strategy;
    let path = "spec.nodeUpdateStrategy";
    match strategy.type_.as_deref().unwrap_or("RollingUpdate") {
        "RollingUpdate" => {}
        "OnDelete" if strategy.rolling_update.is_some() => errors.add(
            format!("{path}.rollingUpdate"),
            "is only allowed with type RollingUpdate",
        ),
        "OnDelete" => {}
        other => errors.add(
            format!("{path}.type"),
            format!("{other:?} is not allowed: use RollingUpdate or OnDelete"),
        ),
    }
    let Some(rolling) = &strategy.rolling_update else {
        return;
    };
    let parse = |name: &str, value: Option<&IntOrString>, errors: &mut Errors| match value {
        None => Some(None),
        Some(value) => match count_or_percent(value) {
            Some(n) => Some(Some(n)),
            None => {
                errors.add(
                    format!("{path}.rollingUpdate.{name}"),
                    "must be a count >= 0 or a percentage between 0% and 100%",
                );
                None
            }
        },
    };
    let unavailable = parse("maxUnavailable", rolling.max_unavailable.as_ref(), errors);
    let surge = parse("maxSurge", rolling.max_surge.as_ref(), errors);
    let (Some(unavailable), Some(surge)) = (unavailable, surge) else {
        return;
    };
    // The API server defaults an unset maxUnavailable to 1 and an unset maxSurge to 0.
    if surge.unwrap_or(0) != 0 {
        let server = if unavailable.unwrap_or(1) != 0 {
            format!(
                " (the API server also refuses maxSurge unless maxUnavailable is 0, and \
                 maxUnavailable {})",
                if unavailable.is_none() {
                    "defaults to 1"
                } else {
                    "is not 0"
                }
            )
        } else {
            String::new()
        };
        errors.add(
            format!("{path}.rollingUpdate.maxSurge"),
            format!(
                "must be 0: weft-node runs on the host network and binds port \
                 {NODE_HEALTH_PORT} on every node, so a second agent can never start beside the \
                 old one; use maxUnavailable{server}"
            ),
        );
    } else if unavailable == Some(0) {
        errors.add(
            format!("{path}.rollingUpdate.maxUnavailable"),
            "cannot be 0 when maxSurge is 0: the update could never progress",
        );
    }
}

/// A non-negative count, or a percentage 0..100 (its number returned).
fn count_or_percent(value: &IntOrString) -> Option<i64> {
    match value {
        IntOrString::Int(n) => (*n >= 0).then_some(i64::from(*n)),
        IntOrString::String(text) => {
            let percent: i64 = text.strip_suffix('%')?.parse().ok()?;
            (0..=100).contains(&percent).then_some(percent)
        }
    }
}
