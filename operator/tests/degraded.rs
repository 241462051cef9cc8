//! Status that tells the truth, on a real control plane with kwok nodes: the running version is
//! recorded once the rollout completes; a weft-node pod that keeps crash-looping past the grace
//! period makes the component and the Installation Degraded (and kstatus' Stalled), and its
//! recovery clears it; a refused apply moves `observedGeneration` with the conditions, so the
//! generation reads as failed, not as still in progress.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Context as _;
use k8s_openapi::api::admissionregistration::v1::{
    ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding,
};
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::Client;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;
use weft_api::Installation;
use weft_operator::context::Settings;

use common::{
    Operator, apply_installation, cluster, condition, condition_is, wait_available, wait_for,
};

const LIMIT: Duration = Duration::from_secs(90);
/// Short, so the test waits seconds rather than the default minute.
const GRACE: Duration = Duration::from_secs(3);
const FREEZE: &str = "freeze-weft-cni-config";

async fn installation(client: &Client) -> anyhow::Result<Installation> {
    Ok(Api::<Installation>::all(client.clone())
        .get("default")
        .await?)
}

/// Sets the status kwok gave `pod` to a crash-looping agent, or back to a running, ready one.
async fn set_agent_state(client: &Client, pod: &str, crashing: bool) -> anyhow::Result<()> {
    let ready = if crashing { "False" } else { "True" };
    let state = if crashing {
        json!({"waiting": {"reason": "CrashLoopBackOff",
                           "message": "back-off 40s restarting failed container"}})
    } else {
        json!({"running": {"startedAt": "2026-01-01T00:00:00Z"}})
    };
    // With a pod IP kwok leaves the status alone (its ready stage plays only without one); a
    // host-network pod's IP is its node's.
    let pods = Api::<Pod>::namespaced(client.clone(), "weft-system");
    let host_ip = pods
        .get(pod)
        .await?
        .status
        .and_then(|status| status.host_ip)
        .unwrap_or_else(|| "192.0.2.10".into());
    let patch = json!({"status": {
        "podIP": host_ip, "podIPs": [{"ip": host_ip}],
        "conditions": [
            {"type": "PodScheduled", "status": "True"},
            {"type": "Initialized", "status": "True"},
            {"type": "ContainersReady", "status": ready},
            {"type": "Ready", "status": ready},
        ],
        "containerStatuses": [{"name": "weft-agent", "image": "weft-agent", "imageID": "",
            "ready": !crashing, "restartCount": 4, "started": !crashing, "state": state,
            "lastState": {"terminated": {"exitCode": 1, "reason": "Error"}}}],
    }});
    pods.patch_status(pod, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .with_context(|| format!("patch the status of pod {pod}"))?;
    Ok(())
}

/// Refuses every update of the CNI ConfigMap, as a broken admission webhook would.
async fn freeze_cni_config(client: &Client) -> anyhow::Result<()> {
    let policy: ValidatingAdmissionPolicy = serde_json::from_value(json!({
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicy",
        "metadata": {"name": FREEZE},
        "spec": {"failurePolicy": "Fail",
            "matchConstraints": {"resourceRules": [{"apiGroups": [""], "apiVersions": ["v1"],
                "operations": ["UPDATE"], "resources": ["configmaps"],
                "resourceNames": ["weft-cni-config"]}]},
            "validations": [{"expression": "false",
                "message": "weft-cni-config is frozen"}]},
    }))?;
    let binding: ValidatingAdmissionPolicyBinding = serde_json::from_value(json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicyBinding",
        "metadata": {"name": FREEZE},
        "spec": {"policyName": FREEZE, "validationActions": ["Deny"]},
    }))?;
    Api::<ValidatingAdmissionPolicy>::all(client.clone())
        .create(&PostParams::default(), &policy)
        .await?;
    Api::<ValidatingAdmissionPolicyBinding>::all(client.clone())
        .create(&PostParams::default(), &binding)
        .await?;
    // The API server enforces a new policy only once its informers have it: until a dry-run
    // update is refused, the operator's apply could still pass.
    wait_for("the freeze in force", LIMIT, || async {
        Ok(cni_config_update_refused(client).await?.then_some(()))
    })
    .await
}

/// Whether a dry-run update of weft-cni-config is refused by the freeze.
async fn cni_config_update_refused(client: &Client) -> anyhow::Result<bool> {
    let patch = json!({"metadata": {"annotations": {"weft.dev/freeze-probe": "x"}}});
    let params = PatchParams {
        dry_run: true,
        ..PatchParams::default()
    };
    match Api::<ConfigMap>::namespaced(client.clone(), "weft-system")
        .patch("weft-cni-config", &params, &Patch::Merge(&patch))
        .await
    {
        Ok(_) => Ok(false),
        Err(kube::Error::Api(status)) if status.message.contains("frozen") => Ok(true),
        Err(error) => Err(error.into()),
    }
}

async fn thaw_cni_config(client: &Client) -> anyhow::Result<()> {
    Api::<ValidatingAdmissionPolicyBinding>::all(client.clone())
        .delete(FREEZE, &DeleteParams::default())
        .await?;
    Api::<ValidatingAdmissionPolicy>::all(client.clone())
        .delete(FREEZE, &DeleteParams::default())
        .await?;
    Ok(())
}

async fn version_is_recorded(client: &Client) -> anyhow::Result<()> {
    let installation = wait_available(client, LIMIT).await?;
    let status = installation.status.as_ref().context("status")?;
    let version = weft_operator::facts::OPERATOR_VERSION;
    assert_eq!(status.version.as_deref(), Some(version));
    let available = condition(&installation, "Available").context("Available")?;
    assert!(
        available.message.starts_with(&format!("weft {version}: ")),
        "{available:?}"
    );
    assert!(condition_is(&installation, "Reconciling", "False"));
    assert!(condition_is(&installation, "Stalled", "False"));
    Ok(())
}

async fn a_crash_loop_degrades_and_recovery_clears_it(client: &Client) -> anyhow::Result<()> {
    let pods = Api::<Pod>::namespaced(client.clone(), "weft-system")
        .list(&ListParams::default().labels("app.kubernetes.io/name=weft-node"))
        .await?;
    let pod = pods.items.first().context("a weft-node pod")?;
    let name = pod.metadata.name.clone().context("pod name")?;
    set_agent_state(client, &name, true).await?;
    let waited = wait_for("Degraded for the crash loop", LIMIT, || async {
        let installation = installation(client).await?;
        Ok(condition_is(&installation, "Degraded", "True").then_some(installation))
    })
    .await;
    let degraded = match waited {
        Ok(installation) => installation,
        Err(error) => {
            let status = installation(client).await?.status;
            let pod = Api::<Pod>::namespaced(client.clone(), "weft-system")
                .get(&name)
                .await?
                .status;
            return Err(error.context(format!("last status: {status:#?}; pod: {pod:#?}")));
        }
    };
    let degraded_condition = condition(&degraded, "Degraded").context("Degraded")?;
    assert_eq!(degraded_condition.reason, "ComponentDegraded");
    assert!(
        degraded_condition.message.contains(&format!(
            "pod weft-system/{name} on node {}: container weft-agent: CrashLoopBackOff",
            pod.spec
                .as_ref()
                .and_then(|s| s.node_name.clone())
                .unwrap_or_default()
        )) && degraded_condition
            .message
            .contains("failing for more than 3s"),
        "{degraded_condition:?}"
    );
    let node = degraded
        .status
        .as_ref()
        .and_then(|status| status.components.iter().find(|c| c.name == "node"))
        .context("node component")?;
    assert!(node.degraded && !node.progressing, "{node:?}");
    assert!(condition_is(&degraded, "Available", "False"));
    assert!(condition_is(&degraded, "Stalled", "True"));

    set_agent_state(client, &name, false).await?;
    let recovered = wait_available(client, LIMIT).await?;
    assert!(condition_is(&recovered, "Degraded", "False"));
    assert!(condition_is(&recovered, "Stalled", "False"));
    Ok(())
}

async fn a_refused_apply_is_reported_for_its_generation(client: &Client) -> anyhow::Result<()> {
    freeze_cni_config(client).await?;
    apply_installation(client, json!({"network": {"mtu": 1400}})).await?;
    let failed = wait_for("Degraded ApplyFailed", LIMIT, || async {
        let installation = installation(client).await?;
        let failed = condition(&installation, "Degraded")
            .is_some_and(|c| c.status == "True" && c.reason == "ApplyFailed");
        Ok(failed.then_some(installation))
    })
    .await?;
    let generation = failed.metadata.generation;
    let status = failed.status.as_ref().context("status")?;
    assert_eq!(
        status.observed_generation, generation,
        "observedGeneration follows the generation whose apply failed"
    );
    for condition in &status.conditions {
        assert_eq!(condition.observed_generation, generation, "{condition:?}");
    }
    let stalled = condition(&failed, "Stalled").context("Stalled")?;
    assert_eq!(stalled.status, "True");
    assert!(
        stalled.message.contains("weft-cni-config is frozen"),
        "{stalled:?}"
    );
    assert!(condition_is(&failed, "Reconciling", "False"));

    thaw_cni_config(client).await?;
    let recovered = wait_available(client, LIMIT).await?;
    assert!(condition_is(&recovered, "Stalled", "False"));
    Ok(())
}

#[tokio::test]
async fn version_crash_loop_and_refused_apply_are_reported_truthfully() -> anyhow::Result<()> {
    let cluster = cluster().await?;
    let client = cluster.client().await?;
    cluster.add_nodes(2, &BTreeMap::new()).await?;
    let settings = Settings {
        degraded_grace: GRACE,
        ..Settings::default()
    };
    let operator = Operator::start_with(cluster, "degraded", settings).await?;
    apply_installation(&client, json!({})).await?;
    version_is_recorded(&client).await?;
    a_crash_loop_degrades_and_recovery_clears_it(&client).await?;
    a_refused_apply_is_reported_for_its_generation(&client).await?;
    operator.stop().await
}
