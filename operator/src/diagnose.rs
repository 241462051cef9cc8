//! Why a component's pods do not start: while a component is not available, its pods in
//! `weft-system` are looked up (by the workload's selector labels; nothing is cached) and the
//! first problems found (unschedulable, image pull failures, crash loops, OOM kills, bad
//! container configuration) are named with the pod and its node, for the component's message.

use k8s_openapi::api::core::v1::{ContainerStatus, Pod};
use kube::api::{Api, ListParams};
use kube::{Client, ResourceExt};

use crate::labels::{NAMESPACE, selector_labels};

/// How many pod problems a component message names at most.
const MAX_NAMED: usize = 3;

/// Waiting reasons that mean a container cannot start on its own.
const STUCK_WAITING: [&str; 7] = [
    "ErrImagePull",
    "ImagePullBackOff",
    "InvalidImageName",
    "CrashLoopBackOff",
    "CreateContainerConfigError",
    "CreateContainerError",
    "RunContainerError",
];

/// What keeps a pod from running, and whether it is failing: a container that cannot start on
/// its own (crash loop, image pull failure, bad configuration, an OOM kill it has not recovered
/// from). A pod waiting to be scheduled is not failing: capacity may come.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodProblem {
    pub text: String,
    pub failing: bool,
}

/// The problems of a workload's pods, for its component message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problems {
    /// Up to [`MAX_NAMED`] problems, and how many more pods have one.
    pub text: String,
    /// Whether any pod is failing (not merely waiting to be scheduled).
    pub failing: bool,
}

/// What keeps `pod` from running, if anything recognisable: `pod weft-system/x on node n:
/// container c: ImagePullBackOff (message)`, or `pod weft-system/x (not scheduled):
/// unschedulable (the scheduler's message)`.
pub fn pod_problem(pod: &Pod) -> Option<String> {
    diagnose(pod).map(|problem| problem.text)
}

/// [`pod_problem`], and whether it is a failure.
pub fn diagnose(pod: &Pod) -> Option<PodProblem> {
    let status = pod.status.as_ref()?;
    let place = match pod.spec.as_ref().and_then(|spec| spec.node_name.as_deref()) {
        Some(node) => format!("on node {node}"),
        None => "(not scheduled)".to_owned(),
    };
    let unschedulable = status.conditions.iter().flatten().find(|condition| {
        condition.type_ == "PodScheduled"
            && condition.status == "False"
            && condition.reason.as_deref() == Some("Unschedulable")
    });
    let (problem, failing) = match unschedulable {
        Some(condition) => Some((
            format!("unschedulable{}", with_detail(condition.message.as_deref())),
            false,
        )),
        None => status
            .init_container_statuses
            .iter()
            .flatten()
            .chain(status.container_statuses.iter().flatten())
            .find_map(|container| container_problem(container).map(|text| (text, true))),
    }?;
    Some(PodProblem {
        text: format!(
            "pod {}/{} {place}: {problem}",
            pod.namespace().unwrap_or_default(),
            pod.name_any()
        ),
        failing,
    })
}

fn with_detail(message: Option<&str>) -> String {
    match message.map(str::trim).filter(|text| !text.is_empty()) {
        Some(text) => format!(" ({text})"),
        None => String::new(),
    }
}

fn container_problem(container: &ContainerStatus) -> Option<String> {
    let state = container.state.as_ref();
    if let Some(waiting) = state.and_then(|state| state.waiting.as_ref())
        && let Some(reason) = waiting.reason.as_deref()
        && STUCK_WAITING.contains(&reason)
    {
        return Some(format!(
            "container {}: {reason}{}{}",
            container.name,
            with_detail(waiting.message.as_deref()),
            last_termination(container)
        ));
    }
    // An OOM kill the container has recovered from (running and ready again) is history.
    let terminated = state.and_then(|state| state.terminated.as_ref());
    if terminated.and_then(|t| t.reason.as_deref()) == Some("OOMKilled")
        || (last_oom(container).is_some() && !container.ready)
    {
        return Some(format!(
            "container {}: OOMKilled (restarted {} times); raise its memory limit",
            container.name, container.restart_count
        ));
    }
    None
}

fn last_oom(container: &ContainerStatus) -> Option<()> {
    let terminated = container.last_state.as_ref()?.terminated.as_ref()?;
    (terminated.reason.as_deref() == Some("OOMKilled")).then_some(())
}

/// How the container's previous run ended, for a crash loop: `, last terminated: StartError
/// (exit 128: <runtime message>)`. Long runtime messages are cut.
fn last_termination(container: &ContainerStatus) -> String {
    const MAX_MESSAGE: usize = 160;
    let Some(terminated) = container
        .last_state
        .as_ref()
        .and_then(|state| state.terminated.as_ref())
    else {
        return String::new();
    };
    let reason = terminated.reason.as_deref().unwrap_or("Error");
    let mut detail = format!("exit {}", terminated.exit_code);
    if let Some(message) = terminated.message.as_deref().map(str::trim)
        && !message.is_empty()
    {
        let cut: String = message.chars().take(MAX_MESSAGE).collect();
        let ellipsis = if cut.len() < message.len() { "..." } else { "" };
        detail.push_str(&format!(": {cut}{ellipsis}"));
    }
    format!(", last terminated: {reason} ({detail})")
}

/// The problems of the pods of workload `name` (selector labels) in `weft-system`, at most
/// [`MAX_NAMED`] named plus a count of the rest, joined for a component message.
pub async fn workload_pod_problems(
    client: &Client,
    name: &str,
) -> Result<Option<Problems>, kube::Error> {
    let selector = selector_labels(name)
        .into_iter()
        .map(|(key, value)| format!("{key}={value}"))
        .collect::<Vec<_>>()
        .join(",");
    let pods: Api<Pod> = Api::namespaced(client.clone(), NAMESPACE);
    // Pages, so that a DaemonSet rolling out on thousands of nodes is never held in memory whole.
    let mut problems = Vec::new();
    let mut failing = false;
    crate::for_each_page(&pods, ListParams::default().labels(&selector), |page| {
        for problem in page.iter().filter_map(diagnose) {
            failing |= problem.failing;
            problems.push(problem.text);
        }
    })
    .await?;
    Ok(summarise(problems).map(|text| Problems { text, failing }))
}

fn summarise(mut problems: Vec<String>) -> Option<String> {
    if problems.is_empty() {
        return None;
    }
    problems.sort();
    let more = problems.len().saturating_sub(MAX_NAMED);
    problems.truncate(MAX_NAMED);
    let mut text = problems.join("; ");
    if more > 0 {
        text.push_str(&format!(
            "; and {more} more pod{}",
            if more == 1 { "" } else { "s" }
        ));
    }
    Some(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(status: serde_json::Value) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "weft-node-abcde", "namespace": "weft-system"},
            "spec": {"nodeName": "node-1", "containers": []},
            "status": status,
        }))
        .unwrap()
    }

    fn waiting(reason: &str, message: &str) -> serde_json::Value {
        json!({"containerStatuses": [{"name": "weft-agent", "image": "i", "imageID": "",
            "ready": false, "restartCount": 4,
            "state": {"waiting": {"reason": reason, "message": message}}}]})
    }

    #[test]
    fn image_pull_and_crash_loop_name_pod_node_container_and_reason() {
        let problem = pod_problem(&pod(waiting(
            "ImagePullBackOff",
            "Back-off pulling image \"ghcr.io/weft/weft-agent:9\"",
        )));
        assert_eq!(
            problem.as_deref(),
            Some(
                "pod weft-system/weft-node-abcde on node node-1: container weft-agent: \
                 ImagePullBackOff (Back-off pulling image \"ghcr.io/weft/weft-agent:9\")"
            )
        );
        let problem = pod_problem(&pod(waiting("CrashLoopBackOff", ""))).unwrap();
        assert!(
            problem.ends_with("container weft-agent: CrashLoopBackOff"),
            "{problem}"
        );
        // Merely starting is no problem.
        assert_eq!(pod_problem(&pod(waiting("ContainerCreating", ""))), None);
    }

    /// Crash loops, pull failures and OOM kills not recovered from are failures (they degrade
    /// the component after the grace period); an unschedulable pod or an OOM kill the container
    /// has recovered from is not.
    #[test]
    fn failures_are_told_from_waiting_and_history() {
        for reason in ["CrashLoopBackOff", "ImagePullBackOff", "ErrImagePull"] {
            let problem = diagnose(&pod(waiting(reason, ""))).unwrap();
            assert!(problem.failing, "{reason}: {problem:?}");
        }
        let oom = |ready: bool| {
            pod(
                json!({"containerStatuses": [{"name": "weft-agent", "image": "i",
                "imageID": "", "ready": ready, "restartCount": 1, "state": {"running": {}},
                "lastState": {"terminated": {"exitCode": 137, "reason": "OOMKilled"}}}]}),
            )
        };
        assert!(diagnose(&oom(false)).unwrap().failing);
        assert_eq!(diagnose(&oom(true)), None);
        let mut pending = pod(
            json!({"phase": "Pending", "conditions": [{"type": "PodScheduled",
            "status": "False", "reason": "Unschedulable", "message": "no nodes"}]}),
        );
        pending.spec.as_mut().unwrap().node_name = None;
        assert!(!diagnose(&pending).unwrap().failing);
    }

    #[test]
    fn oom_kills_and_unschedulable_pods_are_named() {
        let oom = pod(
            json!({"containerStatuses": [{"name": "weft-agent", "image": "i",
            "imageID": "", "ready": false, "restartCount": 2,
            "state": {"running": {}},
            "lastState": {"terminated": {"exitCode": 137, "reason": "OOMKilled"}}}]}),
        );
        assert_eq!(
            pod_problem(&oom).as_deref(),
            Some(
                "pod weft-system/weft-node-abcde on node node-1: container weft-agent: \
                 OOMKilled (restarted 2 times); raise its memory limit"
            )
        );
        let mut pending = pod(
            json!({"phase": "Pending", "conditions": [{"type": "PodScheduled",
            "status": "False", "reason": "Unschedulable",
            "message": "0/3 nodes are available: 3 node(s) didn't match Pod's node affinity."}]}),
        );
        pending.spec.as_mut().unwrap().node_name = None;
        assert_eq!(
            pod_problem(&pending).as_deref(),
            Some(
                "pod weft-system/weft-node-abcde (not scheduled): unschedulable (0/3 nodes are \
                 available: 3 node(s) didn't match Pod's node affinity.)"
            )
        );
    }

    #[test]
    fn a_crash_loop_says_how_the_last_run_ended() {
        let long = "failed to create shim task: ".repeat(10);
        let crashing = pod(
            json!({"containerStatuses": [{"name": "weft-agent", "image": "i",
            "imageID": "", "ready": false, "restartCount": 3,
            "state": {"waiting": {"reason": "CrashLoopBackOff"}},
            "lastState": {"terminated": {"exitCode": 128, "reason": "StartError",
                "message": long}}}]}),
        );
        let problem = pod_problem(&crashing).unwrap();
        assert!(
            problem.contains(
                "container weft-agent: CrashLoopBackOff, last terminated: StartError \
                 (exit 128: failed to create shim task: "
            ),
            "{problem}"
        );
        assert!(
            problem.ends_with("...)") && problem.len() < 300,
            "{problem}"
        );
    }

    #[test]
    fn at_most_three_problems_are_named() {
        assert_eq!(summarise(Vec::new()), None);
        let problems = (0..5).map(|i| format!("pod p{i}")).collect();
        assert_eq!(
            summarise(problems).as_deref(),
            Some("pod p0; pod p1; pod p2; and 2 more pods")
        );
    }
}
