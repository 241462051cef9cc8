//! The operator process on a real control plane: its health and metrics port over loopback, one
//! leader among two replicas with a hand-over when the leader stops, and the binary stopping
//! cleanly on SIGTERM and giving its Lease up.

mod common;

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use common::{Operator, cluster, wait_for};

const LIMIT: Duration = Duration::from_secs(60);

async fn http_get(address: SocketAddr, path: &str) -> anyhow::Result<(u16, String)> {
    let mut stream = TcpStream::connect(address).await?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await?;
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_default();
    let body = response
        .split("\r\n\r\n")
        .nth(1)
        .unwrap_or_default()
        .to_owned();
    Ok((status, body))
}

#[tokio::test]
async fn one_leader_serves_health_and_hands_over_when_it_stops() -> anyhow::Result<()> {
    let cluster = cluster().await?;
    let first = Operator::start(cluster, "replica-a").await?;
    wait_for("replica-a to lead", LIMIT, || async {
        Ok(first.handles.leading.get().then_some(()))
    })
    .await?;
    let address = *first.handles.address.get().expect("bound once leading");
    assert_eq!(http_get(address, "/healthz").await?.0, 200);
    assert_eq!(http_get(address, "/readyz").await?.0, 200);
    let (status, metrics) = http_get(address, "/metrics").await?;
    assert_eq!(status, 200);
    assert!(
        metrics.contains("weft_operator_reconciles_total"),
        "{metrics}"
    );
    assert_eq!(http_get(address, "/nothing").await?.0, 404);

    let second = Operator::start(cluster, "replica-b").await?;
    wait_for("replica-b to serve its health port", LIMIT, || async {
        Ok(second.handles.readiness.get().then_some(()))
    })
    .await?;
    // replica-b competes from now on. The Lease then shows a renewal by replica-a made after
    // replica-b started: a whole renewal period in which replica-b did not take over.
    let leases: Api<Lease> = Api::namespaced(cluster.client().await?, common::OPERATOR_NAMESPACE);
    let renewed_before = leases
        .get("weft-operator")
        .await?
        .spec
        .and_then(|spec| spec.renew_time);
    let spec = wait_for("replica-a to renew its Lease", LIMIT, || async {
        let spec = leases.get("weft-operator").await?.spec.unwrap_or_default();
        Ok((spec.renew_time.is_some() && spec.renew_time != renewed_before).then_some(spec))
    })
    .await?;
    assert_eq!(spec.holder_identity.as_deref(), Some("replica-a"));
    assert!(!second.handles.leading.get(), "two replicas lead at once");
    assert_eq!(
        second.reconciles(),
        0,
        "replica-b reconciled while not leading"
    );

    first.stop().await?;
    wait_for("replica-b to take over", LIMIT, || async {
        Ok(second.handles.leading.get().then_some(()))
    })
    .await?;
    second.stop().await
}

#[tokio::test]
async fn the_binary_stops_on_sigterm_and_releases_its_lease() -> anyhow::Result<()> {
    let cluster = cluster().await?;
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_weft-operator"))
        .env("KUBECONFIG", cluster.kubeconfig())
        .args([
            "--health-address=127.0.0.1:0",
            "--identity=sigterm-test",
            "--log-format=json",
        ])
        .args(["--lease-namespace", "sigterm-test"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let client = cluster.client().await?;
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
    let namespace = serde_json::json!({"apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": "sigterm-test"}});
    namespaces
        .patch(
            "sigterm-test",
            &kube::api::PatchParams::apply("test").force(),
            &kube::api::Patch::Apply(namespace),
        )
        .await?;
    let leases: Api<Lease> = Api::namespaced(client, "sigterm-test");
    wait_for("the binary to hold its Lease", LIMIT, || async {
        let lease = leases.get_opt("weft-operator").await?;
        let holder = lease.and_then(|l| l.spec).and_then(|s| s.holder_identity);
        Ok((holder.as_deref() == Some("sigterm-test")).then_some(()))
    })
    .await?;
    let pid = child.id().expect("running").to_string();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()?;
    assert!(killed.success());
    let status = tokio::time::timeout(LIMIT, child.wait()).await??;
    let mut log = String::new();
    if let Some(mut stderr) = child.stderr.take() {
        stderr.read_to_string(&mut log).await?;
    }
    assert!(status.success(), "exit status {status}; log:\n{log}");
    let lease = leases.get("weft-operator").await?;
    let holder = lease.spec.and_then(|s| s.holder_identity);
    assert_ne!(
        holder.as_deref(),
        Some("sigterm-test"),
        "the Lease was released"
    );
    Ok(())
}

#[tokio::test]
async fn kubectl_applies_config_default() -> anyhow::Result<()> {
    let cluster = cluster().await?;
    let config = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/default");
    let output = cluster
        .kubectl()
        .args(["apply", "--server-side", "--force-conflicts", "-k"])
        .arg(&config)
        .output()?;
    assert!(
        output.status.success(),
        "kubectl apply -k config/default: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let client = cluster.client().await?;
    let deployments: Api<k8s_openapi::api::apps::v1::Deployment> =
        Api::namespaced(client, "weft-operator");
    let deployment = deployments.get("weft-operator").await?;
    let pod = deployment
        .spec
        .and_then(|spec| spec.template.spec)
        .expect("a pod template");
    assert_eq!(pod.host_network, Some(true));
    assert_eq!(pod.service_account_name.as_deref(), Some("weft-operator"));
    Ok(())
}

#[tokio::test]
async fn the_operator_role_grants_nothing_beyond_its_job() -> anyhow::Result<()> {
    let cluster = cluster().await?;
    let operator = cluster
        .client_as_service_account("weft-operator", "weft-operator")
        .await?;
    let secrets: Api<k8s_openapi::api::core::v1::Secret> = Api::all(operator.clone());
    let denied = secrets.list(&Default::default()).await;
    assert!(
        matches!(&denied, Err(kube::Error::Api(status)) if status.code == 403),
        "the operator can list Secrets: {denied:?}"
    );
    let pools: Api<weft_api::IpPool> = Api::all(operator.clone());
    pools.list(&Default::default()).await?;
    let nodes: Api<k8s_openapi::api::core::v1::Node> = Api::all(operator);
    nodes.list(&Default::default()).await?;
    let denied = nodes.delete("any-node", &Default::default()).await;
    assert!(
        matches!(&denied, Err(kube::Error::Api(status)) if status.code == 403),
        "the operator can delete Nodes: {denied:?}"
    );
    Ok(())
}
