//! The operator's diagnosis of real pod trouble: three misconfigurations an admin can make, each
//! applied to the Installation, then the component's status message must name the pod, its node
//! (or that it has none) and the reason, and the Installation must return to Available once it is undone.
//!
//! - An image registry nothing serves (an address of ours with no listener: the pull fails on
//!   the node and never leaves the machine) → the node component names `ErrImagePull` or
//!   `ImagePullBackOff`.
//! - A control-plane node selector no node matches → the controllers name `unschedulable`.
//! - A memory limit the agent cannot start under → the node component names the OOM kill or
//!   the crash loop that follows.

use std::time::Duration;

use serde_json::{Value, json};

use super::Suite;

/// One misconfiguration and what the component's message must then say.
struct Case {
    what: &'static str,
    component: &'static str,
    breaks: Value,
    undoes: Value,
    /// Whether the pod got a node (and the message must name it).
    scheduled: bool,
    reasons: &'static [&'static str],
}

fn cases(unserved_registry: &str) -> Vec<Case> {
    vec![
        Case {
            what: "image pull failure",
            component: "node",
            breaks: json!({"registry": unserved_registry}),
            undoes: json!({"registry": null}),
            scheduled: true,
            reasons: &["ErrImagePull", "ImagePullBackOff"],
        },
        Case {
            what: "unschedulable controllers",
            component: "controllers",
            breaks: json!({"controlPlaneNodeSelector": {"weft.dev/e2e": "nowhere"}}),
            undoes: json!({"controlPlaneNodeSelector": null}),
            scheduled: false,
            reasons: &["unschedulable"],
        },
        Case {
            what: "memory limit too low for the agent",
            component: "node",
            breaks: json!({"componentResources": [{"componentName": "Node",
                "resourceRequirements": {"requests": {"memory": "1Mi"}, "limits": {"memory": "1Mi"}}}]}),
            undoes: json!({"componentResources": null}),
            scheduled: true,
            reasons: &["OOMKilled", "CrashLoopBackOff", "RunContainerError"],
        },
    ]
}

/// Runs every case; returns one report line per case (the message the operator wrote).
pub async fn run(suite: &Suite, unserved_registry: &str) -> anyhow::Result<Vec<String>> {
    suite.wait_available(Duration::from_secs(180)).await?;
    let mut report = Vec::new();
    for case in cases(unserved_registry) {
        eprintln!("diagnosis: {}", case.what);
        suite.patch_spec(case.breaks.clone()).await?;
        let place = match case.scheduled {
            true => format!(" on node {}-", suite.cluster),
            false => " (not scheduled): ".to_owned(),
        };
        let found = suite
            .wait_component_message(case.component, Duration::from_secs(180), |message| {
                message.contains(": pod weft-system/")
                    && message.contains(&place)
                    && case.reasons.iter().any(|reason| message.contains(reason))
            })
            .await;
        suite.patch_spec(case.undoes.clone()).await?;
        let message = found?;
        suite.wait_available(Duration::from_secs(240)).await?;
        report.push(format!("PASS {}: {}: {message}", case.what, case.component));
    }
    Ok(report)
}
