//! The NodeRunner runs a pod's mapped program as the pod's ServiceAccount and reports what
//! happens to it; pods of other images are only reported Running; deleting a pod stops its
//! process.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Pod, ServiceAccount};
use kube::api::{Api, DeleteParams, PostParams};
use serde_json::json;
use weft_e2e::{LocalCluster, NodeRunner, RunnerOptions};

const NAMESPACE: &str = "default";
const LIMIT: Duration = Duration::from_secs(60);

fn pod(name: &str, node: &str, image: &str, args: &[&str], restart: &str) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {
            "nodeName": node,
            "serviceAccountName": "runner-test",
            "restartPolicy": restart,
            "containers": [{"name": "main", "image": image, "args": args,
                            "env": [{"name": "POD_NAME",
                                     "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}]}],
        },
    }))
    .expect("a valid Pod")
}

async fn wait_phase(pods: &Api<Pod>, name: &str, phase: &str) -> Pod {
    let started = Instant::now();
    loop {
        if let Some(pod) = pods.get_opt(name).await.expect("get pod")
            && pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some(phase)
        {
            return pod;
        }
        assert!(
            started.elapsed() < LIMIT,
            "pod {name} never reached {phase}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn pods_run_as_their_service_account_and_stop_when_deleted() {
    let cluster = LocalCluster::shared()
        .await
        .expect("the local control plane");
    let client = cluster.client().await.unwrap();
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), NAMESPACE);
    let account = serde_json::from_value(json!({"metadata": {"name": "runner-test"}})).unwrap();
    accounts
        .create(&PostParams::default(), &account)
        .await
        .unwrap();
    let runner = NodeRunner::start(
        cluster,
        RunnerOptions {
            name: "runner-test".into(),
            labels: BTreeMap::new(),
            programs: BTreeMap::from([
                ("kubectl".into(), cluster.binaries().path("kubectl")),
                ("sleep".into(), PathBuf::from("/bin/sleep")),
            ]),
        },
    )
    .await
    .unwrap();
    let node = runner.name().to_string();
    let pods: Api<Pod> = Api::namespaced(client.clone(), NAMESPACE);

    // kubectl, authenticated as the pod's ServiceAccount, runs to completion.
    let whoami = pod(
        "whoami",
        &node,
        "registry.k8s.io/kubectl:v1.36.3",
        &["auth", "whoami"],
        "Never",
    );
    pods.create(&PostParams::default(), &whoami).await.unwrap();
    wait_phase(&pods, "whoami", "Succeeded").await;
    let output = std::fs::read_to_string(runner.log_path(NAMESPACE, "whoami")).unwrap();
    assert!(
        output.contains("system:serviceaccount:default:runner-test"),
        "kubectl ran as the pod's ServiceAccount: {output}"
    );

    // A program that fails makes the pod Failed with its exit code.
    let denied = pod(
        "denied",
        &node,
        "kubectl",
        &["get", "secrets", "-A"],
        "Never",
    );
    pods.create(&PostParams::default(), &denied).await.unwrap();
    let failed = wait_phase(&pods, "denied", "Failed").await;
    let terminated = failed.status.unwrap().container_statuses.unwrap()[0]
        .state
        .clone()
        .unwrap()
        .terminated
        .unwrap();
    assert_eq!(terminated.exit_code, 1, "RBAC denied the ServiceAccount");

    // An image with no program is reported Running without running anything.
    let simulated = pod("simulated", &node, "example.com/agent:1", &[], "Always");
    pods.create(&PostParams::default(), &simulated)
        .await
        .unwrap();
    wait_phase(&pods, "simulated", "Running").await;

    // Deleting a running pod stops its process and removes the pod.
    let sleeper = pod("sleeper", &node, "busybox/sleep:1", &["300"], "Always");
    pods.create(&PostParams::default(), &sleeper).await.unwrap();
    wait_phase(&pods, "sleeper", "Running").await;
    pods.delete("sleeper", &DeleteParams::default())
        .await
        .unwrap();
    let started = Instant::now();
    while pods.get_opt("sleeper").await.unwrap().is_some() {
        assert!(
            started.elapsed() < LIMIT,
            "the deleted pod was never removed"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let runs = runner.runs();
    let sleep = runs
        .iter()
        .find(|run| run.pod == "sleeper")
        .expect("sleep ran");
    assert_eq!(sleep.args, ["300"]);
    assert!(sleep.exit_code.is_some(), "sleep was stopped: {sleep:?}");
    assert!(
        !runs.iter().any(|run| run.pod == "simulated"),
        "nothing ran for the simulated pod"
    );
    runner.stop().await.unwrap();
}
