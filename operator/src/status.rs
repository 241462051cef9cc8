//! What the admin reads: per-component status computed from the live workloads and pools, the
//! Installation's Ready/Available/Progressing/Degraded conditions derived from them, and the rule
//! that status is written only when something other than a timestamp changed.

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::ResourceExt;
use weft_api::{ComponentStatus, InstallationStatus};

use crate::conditions::{AVAILABLE, DEGRADED, Desired, PROGRESSING, READY, differ, with_kstatus};

pub const NODE_COMPONENT: &str = "node";
pub const CONTROLLERS_COMPONENT: &str = "controllers";
pub const POOLS_COMPONENT: &str = "ip-pools";

fn component(name: &str, state: State, message: String) -> ComponentStatus {
    ComponentStatus {
        name: name.to_owned(),
        available: state == State::Available,
        progressing: state == State::Progressing,
        degraded: state == State::Degraded,
        message: Some(message),
    }
}

/// `status` marked Degraded with `problem` added to its message.
pub fn degrade(status: ComponentStatus, problem: &str) -> ComponentStatus {
    let message = match status.message {
        Some(message) => format!("{message}; {problem}"),
        None => problem.to_owned(),
    };
    component(&status.name, State::Degraded, message)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    Available,
    Progressing,
    Degraded,
}

impl State {
    pub fn of(status: &ComponentStatus) -> State {
        if status.degraded {
            State::Degraded
        } else if status.progressing {
            State::Progressing
        } else {
            State::Available
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            State::Available => AVAILABLE,
            State::Progressing => PROGRESSING,
            State::Degraded => DEGRADED,
        }
    }
}

fn plural(count: i32, word: &str) -> String {
    if count == 1 {
        format!("{count} {word}")
    } else {
        format!("{count} {word}s")
    }
}

/// Status of the node agent from its DaemonSet.
pub fn node_status(daemon_set: Option<&DaemonSet>) -> ComponentStatus {
    let Some(daemon_set) = daemon_set else {
        return component(
            NODE_COMPONENT,
            State::Progressing,
            "DaemonSet weft-system/weft-node does not exist yet".into(),
        );
    };
    let id = format!("DaemonSet weft-system/{}", daemon_set.name_any());
    let status = daemon_set.status.clone().unwrap_or_default();
    let generation = daemon_set.metadata.generation.unwrap_or_default();
    let desired = status.desired_number_scheduled;
    let updated = status.updated_number_scheduled.unwrap_or_default();
    let available = status.number_available.unwrap_or_default();
    let rollout = Rollout {
        observed_generation: status.observed_generation.unwrap_or_default(),
        generation,
        desired,
        updated,
        available,
        old: 0,
        unit: "node",
    };
    let (state, message) = rollout.progress(&id).unwrap_or_else(|| {
        (
            State::Available,
            format!("{id} is available on {}", plural(desired, "node")),
        )
    });
    component(NODE_COMPONENT, state, message)
}

/// A workload's rollout counts, as its controller reports them.
struct Rollout {
    observed_generation: i64,
    generation: i64,
    desired: i32,
    updated: i32,
    available: i32,
    /// Pods of an earlier template still running (a Deployment's `replicas - updatedReplicas`):
    /// until they are gone the old version still serves.
    old: i32,
    /// What `desired` counts: nodes for a DaemonSet, replicas for a Deployment.
    unit: &'static str,
}

impl Rollout {
    /// Why the workload `id` is still progressing, or `None` once it is fully available.
    fn progress(&self, id: &str) -> Option<(State, String)> {
        let Self {
            observed_generation,
            generation,
            desired,
            updated,
            available,
            old,
            unit,
        } = *self;
        let message = if observed_generation < generation {
            format!("{id} update is not observed yet")
        } else if updated < desired {
            format!("{id} is rolling out ({updated} of {desired} updated)")
        } else if available < desired {
            format!(
                "{id} is not available (awaiting {})",
                plural(desired - available, unit)
            )
        } else if old > 0 {
            format!(
                "{id} is rolling out ({} of the previous version still running)",
                plural(old, unit)
            )
        } else {
            return None;
        };
        Some((State::Progressing, message))
    }
}

/// Status of the controllers from their Deployment.
pub fn controllers_status(deployment: Option<&Deployment>) -> ComponentStatus {
    let Some(deployment) = deployment else {
        return component(
            CONTROLLERS_COMPONENT,
            State::Progressing,
            "Deployment weft-system/weft-controllers does not exist yet".into(),
        );
    };
    let id = format!("Deployment weft-system/{}", deployment.name_any());
    let desired = deployment
        .spec
        .as_ref()
        .and_then(|spec| spec.replicas)
        .unwrap_or(1);
    let status = deployment.status.clone().unwrap_or_default();
    let generation = deployment.metadata.generation.unwrap_or_default();
    let updated = status.updated_replicas.unwrap_or_default();
    let available = status.available_replicas.unwrap_or_default();
    let rollout = Rollout {
        observed_generation: status.observed_generation.unwrap_or_default(),
        generation,
        desired,
        updated,
        available,
        old: status.replicas.unwrap_or_default() - updated,
        unit: "replica",
    };
    let (state, message) = rollout.progress(&id).unwrap_or_else(|| {
        (
            State::Available,
            format!("{id} is available ({})", plural(available, "replica")),
        )
    });
    component(CONTROLLERS_COMPONENT, state, message)
}

/// Status of the IP pools from what the pool step found.
pub fn pools_status(conflicts: &[String], draining: &[String], pools: usize) -> ComponentStatus {
    if !conflicts.is_empty() {
        component(POOLS_COMPONENT, State::Degraded, conflicts.join("; "))
    } else if !draining.is_empty() {
        component(POOLS_COMPONENT, State::Progressing, draining.join("; "))
    } else {
        let message = match pools {
            0 => "no IP pools are configured".to_owned(),
            1 => "1 IP pool is in sync".to_owned(),
            count => format!("{count} IP pools are in sync"),
        };
        component(POOLS_COMPONENT, State::Available, message)
    }
}

/// A reason the whole Installation is degraded beyond its components (for example an apply error).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    pub reason: String,
    pub message: String,
}

/// The Installation conditions for these components (and an overall problem, if any).
pub fn installation_conditions(
    components: &[ComponentStatus],
    problem: Option<&Problem>,
) -> Vec<Desired> {
    let pick = |state: State| -> Vec<&ComponentStatus> {
        components
            .iter()
            .filter(|status| State::of(status) == state)
            .collect()
    };
    let summary = |items: &[&ComponentStatus]| -> String {
        items
            .iter()
            .map(|status| {
                status
                    .message
                    .clone()
                    .unwrap_or_else(|| status.name.clone())
            })
            .collect::<Vec<_>>()
            .join("; ")
    };
    let degraded = pick(State::Degraded);
    let progressing = pick(State::Progressing);
    let all_available = degraded.is_empty() && progressing.is_empty();

    let degraded_condition = match (problem, degraded.is_empty()) {
        (Some(problem), _) => Desired::new(DEGRADED, true, &problem.reason, &problem.message),
        (None, false) => Desired::new(DEGRADED, true, "ComponentDegraded", summary(&degraded)),
        (None, true) => Desired::new(DEGRADED, false, "AsExpected", "no component is degraded"),
    };
    let progressing_condition = if progressing.is_empty() {
        Desired::new(
            PROGRESSING,
            false,
            "Stable",
            "every component is up to date",
        )
    } else {
        Desired::new(PROGRESSING, true, "RollingOut", summary(&progressing))
    };
    let available_condition = if all_available {
        Desired::new(
            AVAILABLE,
            true,
            "AllComponentsAvailable",
            "every component is available",
        )
    } else {
        let waiting: Vec<&ComponentStatus> = degraded.iter().chain(&progressing).copied().collect();
        Desired::new(
            AVAILABLE,
            false,
            "ComponentsNotAvailable",
            summary(&waiting),
        )
    };
    let ready = all_available && problem.is_none();
    let ready_condition = if ready {
        Desired::new(
            READY,
            true,
            "Ready",
            "weft is installed and every component is available",
        )
    } else {
        Desired::new(
            READY,
            false,
            "NotReady",
            "see the Available, Progressing and Degraded conditions",
        )
    };
    with_kstatus(vec![
        ready_condition,
        available_condition,
        progressing_condition,
        degraded_condition,
    ])
}

/// The weft version running: `target` (the operator's) once every component is available, which
/// means every workload runs the current render with every pod updated; until then the version
/// recorded before (`running`), so an upgrade is reported as such until its rollout completes.
pub fn running_version(
    running: Option<&str>,
    target: &str,
    components: &[ComponentStatus],
) -> Option<String> {
    let rolled_out = components
        .iter()
        .all(|status| State::of(status) == State::Available);
    if rolled_out {
        Some(target.to_owned())
    } else {
        running.map(str::to_owned)
    }
}

/// `desired` told in terms of versions: while `running` is not `target`, Progressing says
/// `Upgrading` from which version to which; once it is, Available names the version.
pub fn with_versions(
    mut desired: Vec<Desired>,
    running: Option<&str>,
    target: &str,
) -> Vec<Desired> {
    for condition in &mut desired {
        match (condition.type_, condition.status, running) {
            (PROGRESSING | crate::conditions::RECONCILING, true, Some(running))
                if running != target =>
            {
                condition.reason = "Upgrading".into();
                condition.message = format!(
                    "upgrading weft from {running} to {target}: {}",
                    condition.message
                );
            }
            (AVAILABLE, true, Some(running)) if running == target => {
                condition.message = format!("weft {target}: {}", condition.message);
            }
            _ => {}
        }
    }
    desired
}

/// Keeps the previous conditions but sets Degraded (and Ready false): used for invalid
/// configuration, where nothing is applied and the components are left as they were.
pub fn with_problem(previous: &[Condition], problem: &Problem) -> Vec<Desired> {
    let keep = |type_: &'static str, default: Desired| -> Desired {
        previous
            .iter()
            .find(|condition| condition.type_ == type_)
            .map(|condition| {
                Desired::new(
                    type_,
                    condition.status == "True",
                    &condition.reason,
                    &condition.message,
                )
            })
            .unwrap_or(default)
    };
    with_kstatus(vec![
        Desired::new(READY, false, "NotReady", "see the Degraded condition"),
        keep(
            AVAILABLE,
            Desired::new(
                AVAILABLE,
                false,
                "NotApplied",
                "the configuration was not applied",
            ),
        ),
        keep(
            PROGRESSING,
            Desired::new(
                PROGRESSING,
                false,
                "NotApplied",
                "the configuration was not applied",
            ),
        ),
        Desired::new(DEGRADED, true, &problem.reason, &problem.message),
    ])
}

/// True when writing `new` over `old` would change anything but condition timestamps.
pub fn status_changed(old: Option<&InstallationStatus>, new: &InstallationStatus) -> bool {
    let Some(old) = old else { return true };
    old.observed_generation != new.observed_generation
        || differ(&old.conditions, &new.conditions)
        || old.components != new.components
        || old.mtu != new.mtu
        || old.version != new.version
        || old.computed != new.computed
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::apps::v1::{DaemonSetStatus, DeploymentSpec, DeploymentStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    use super::*;

    fn daemon_set(desired: i32, updated: i32, available: i32) -> DaemonSet {
        DaemonSet {
            metadata: ObjectMeta {
                name: Some("weft-node".into()),
                generation: Some(2),
                ..Default::default()
            },
            status: Some(DaemonSetStatus {
                observed_generation: Some(2),
                desired_number_scheduled: desired,
                updated_number_scheduled: Some(updated),
                number_available: Some(available),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn node_messages_count_nodes() {
        let rolling = node_status(Some(&daemon_set(3, 2, 3)));
        assert!(rolling.progressing);
        assert_eq!(
            rolling.message.as_deref(),
            Some("DaemonSet weft-system/weft-node is rolling out (2 of 3 updated)")
        );
        let waiting = node_status(Some(&daemon_set(3, 3, 2)));
        assert_eq!(
            waiting.message.as_deref(),
            Some("DaemonSet weft-system/weft-node is not available (awaiting 1 node)")
        );
        let done = node_status(Some(&daemon_set(3, 3, 3)));
        assert!(done.available && !done.progressing && !done.degraded);
    }

    #[test]
    fn an_unobserved_generation_is_progressing() {
        let mut stale = daemon_set(3, 3, 3);
        stale.metadata.generation = Some(3);
        assert!(node_status(Some(&stale)).progressing);
    }

    /// The Deployment weft-controllers wanting `desired` replicas, with the status counts given.
    fn controllers(desired: i32, total: Option<i32>, updated: i32, available: i32) -> Deployment {
        Deployment {
            metadata: ObjectMeta {
                name: Some("weft-controllers".into()),
                ..Default::default()
            },
            spec: Some(DeploymentSpec {
                replicas: Some(desired),
                ..Default::default()
            }),
            status: Some(DeploymentStatus {
                replicas: total,
                updated_replicas: Some(updated),
                available_replicas: Some(available),
                ..Default::default()
            }),
        }
    }

    #[test]
    fn deployment_awaiting_replicas() {
        let deployment = controllers(2, None, 2, 0);
        assert_eq!(
            controllers_status(Some(&deployment)).message.as_deref(),
            Some("Deployment weft-system/weft-controllers is not available (awaiting 2 replicas)")
        );
    }

    #[test]
    fn installation_conditions_follow_components() {
        let available = node_status(Some(&daemon_set(1, 1, 1)));
        let conflict = pools_status(&["IPPool x differs".into()], &[], 1);
        let all_good = installation_conditions(std::slice::from_ref(&available), None);
        let status_of = |conditions: &[Desired], type_: &str| {
            conditions
                .iter()
                .find(|c| c.type_ == type_)
                .map(|c| c.status)
        };
        assert_eq!(status_of(&all_good, READY), Some(true));
        assert_eq!(status_of(&all_good, DEGRADED), Some(false));
        let degraded = installation_conditions(&[available, conflict], None);
        assert_eq!(status_of(&degraded, DEGRADED), Some(true));
        assert_eq!(status_of(&degraded, AVAILABLE), Some(false));
        assert_eq!(
            degraded
                .iter()
                .find(|c| c.type_ == DEGRADED)
                .map(|c| c.message.as_str()),
            Some("IPPool x differs")
        );
    }

    /// After an operator upgrade the version running stays the old one, and Progressing says
    /// Upgrading, until every component runs the new render; then the new version is recorded.
    #[test]
    fn the_running_version_moves_when_the_rollout_completes() {
        let rolling = node_status(Some(&daemon_set(3, 1, 3)));
        let done = node_status(Some(&daemon_set(3, 3, 3)));
        assert_eq!(
            running_version(Some("v1"), "v2", std::slice::from_ref(&rolling)).as_deref(),
            Some("v1")
        );
        assert_eq!(
            running_version(None, "v2", std::slice::from_ref(&rolling)),
            None
        );
        assert_eq!(
            running_version(Some("v1"), "v2", std::slice::from_ref(&done)).as_deref(),
            Some("v2")
        );
        let upgrading = with_versions(
            installation_conditions(std::slice::from_ref(&rolling), None),
            Some("v1"),
            "v2",
        );
        let progressing = upgrading.iter().find(|c| c.type_ == PROGRESSING).unwrap();
        assert!(progressing.status);
        assert_eq!(progressing.reason, "Upgrading");
        assert!(
            progressing
                .message
                .starts_with("upgrading weft from v1 to v2: DaemonSet"),
            "{}",
            progressing.message
        );
        let available = with_versions(
            installation_conditions(std::slice::from_ref(&done), None),
            Some("v2"),
            "v2",
        );
        let condition = available.iter().find(|c| c.type_ == AVAILABLE).unwrap();
        assert!(condition.status);
        assert_eq!(condition.message, "weft v2: every component is available");
    }

    /// A Deployment whose new replicas are all available while old ones still run has not
    /// finished rolling out: the old version still serves.
    #[test]
    fn old_replicas_still_running_are_progressing() {
        let deployment = controllers(2, Some(3), 2, 2);
        let status = controllers_status(Some(&deployment));
        assert!(status.progressing, "{status:?}");
        assert_eq!(
            status.message.as_deref(),
            Some(
                "Deployment weft-system/weft-controllers is rolling out (1 replica of the \
                 previous version still running)"
            )
        );
    }

    #[test]
    fn only_timestamps_changing_is_no_status_change() {
        let status = InstallationStatus {
            observed_generation: Some(1),
            ..Default::default()
        };
        assert!(!status_changed(Some(&status), &status.clone()));
        assert!(status_changed(None, &status));
    }
}
