//! Shared steps of the operator's cluster tests: install the CRDs and the operator's own RBAC
//! (config/rbac) on the local control plane, run the operator in-process as its ServiceAccount
//! (so its ClusterRole is what is tested, not admin rights), and wait for conditions.

#![allow(dead_code)]

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context as _, bail};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::Client;
use kube::api::{Api, ListParams, Patch, PatchParams};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use weft_api::Installation;
use weft_e2e::LocalCluster;
use weft_operator::context::Settings;
use weft_operator::runtime::{Handles, Options, RunError, run};

pub const OPERATOR_NAMESPACE: &str = "weft-operator";
pub const OPERATOR_ACCOUNT: &str = "weft-operator";
pub const TEST_MANAGER: &str = "weft-operator-test";

/// The shared cluster with the CRDs and config/rbac applied.
pub async fn cluster() -> anyhow::Result<&'static LocalCluster> {
    let cluster = LocalCluster::shared()
        .await
        .context("the local control plane is required for this test")?;
    let client = cluster.client().await?;
    weft_operator::manifests::install_crds(&client, TEST_MANAGER).await?;
    let rbac = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/rbac");
    for file in [
        "namespace.yaml",
        "service_account.yaml",
        "cluster_role.yaml",
        "cluster_role_binding.yaml",
    ] {
        let path = rbac.join(file);
        let text = std::fs::read_to_string(&path).with_context(|| path.display().to_string())?;
        weft_operator::manifests::apply_yaml(&client, file, &text, TEST_MANAGER).await?;
    }
    Ok(cluster)
}

/// An operator running in this process under its own ServiceAccount.
pub struct Operator {
    stop: watch::Sender<bool>,
    task: JoinHandle<Result<(), RunError>>,
    pub handles: Handles,
}

impl Operator {
    pub async fn start(cluster: &LocalCluster, identity: &str) -> anyhow::Result<Self> {
        Self::start_with(cluster, identity, Settings::default()).await
    }

    pub async fn start_with(
        cluster: &LocalCluster,
        identity: &str,
        settings: Settings,
    ) -> anyhow::Result<Self> {
        let client = cluster
            .client_as_service_account(OPERATOR_NAMESPACE, OPERATOR_ACCOUNT)
            .await?;
        let options = Options {
            health_address: SocketAddr::from(([127, 0, 0, 1], 0)),
            metrics_address: None,
            lease_namespace: Some(OPERATOR_NAMESPACE.into()),
            identity: identity.into(),
            settings,
        };
        let handles = Handles::new();
        let (stop, shutdown) = watch::channel(false);
        let task = tokio::spawn(run(client, options, handles.clone(), shutdown));
        Ok(Self {
            stop,
            task,
            handles,
        })
    }

    /// Stops the operator as SIGTERM would and waits for it to finish (it bounds its own
    /// shutdown, so a minute means it hangs).
    pub async fn stop(self) -> anyhow::Result<()> {
        let _ = self.stop.send(true);
        tokio::time::timeout(Duration::from_secs(60), self.task)
            .await
            .context("the operator did not stop within 60 s of its shutdown signal")???;
        Ok(())
    }

    /// Requests sent with a writing verb (POST, PUT, PATCH, DELETE).
    pub fn writes(&self) -> u64 {
        ["POST", "PUT", "PATCH", "DELETE"]
            .iter()
            .map(|verb| self.handles.metrics.requests(verb))
            .sum()
    }

    pub fn reconciles(&self) -> u64 {
        self.handles.metrics.reconciles.get()
    }

    /// Finished reconciles that failed with error `kind` (`invalid`, `apply`, ...).
    pub fn failures(&self, kind: &str) -> u64 {
        self.handles
            .metrics
            .failures
            .get_or_create(&weft_operator::metrics::ErrorLabels { kind: kind.into() })
            .get()
    }
}

/// Polls `check` every 250 ms until it returns `Some`, failing with `what` after `limit`.
pub async fn wait_for<T, F, Fut>(what: &str, limit: Duration, mut check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<Option<T>>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    let mut last_error = None;
    loop {
        match check().await {
            Ok(Some(value)) => return Ok(value),
            Ok(None) => {}
            Err(error) => last_error = Some(error),
        }
        if tokio::time::Instant::now() >= deadline {
            match last_error {
                Some(error) => bail!("timed out after {limit:?} waiting for {what}: {error:#}"),
                None => bail!("timed out after {limit:?} waiting for {what}"),
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The Events with `reason` about the Installation whose uid is `uid` (so never about an earlier
/// Installation of the shared cluster) last seen at or after `since`.
pub async fn installation_events(
    client: &Client,
    uid: &str,
    reason: &str,
    since: jiff::Timestamp,
) -> anyhow::Result<Vec<Event>> {
    let events: Api<Event> = Api::namespaced(client.clone(), "default");
    Ok(events
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter(|event| {
            let about = event.regarding.as_ref().is_some_and(|regarding| {
                regarding.kind.as_deref() == Some("Installation")
                    && regarding.uid.as_deref() == Some(uid)
            });
            let last_seen = event
                .series
                .as_ref()
                .map(|series| series.last_observed_time.0)
                .or(event.event_time.as_ref().map(|time| time.0));
            about
                && event.reason.as_deref() == Some(reason)
                && last_seen.is_some_and(|time| time >= since)
        })
        .collect())
}

/// How many times the Events were published (an Event series counts each occurrence).
pub fn occurrences(events: &[Event]) -> i32 {
    events
        .iter()
        .map(|event| event.series.as_ref().map_or(1, |series| series.count))
        .sum()
}

/// The uid of `Installation/default`.
pub async fn installation_uid(client: &Client) -> anyhow::Result<String> {
    let installation = Api::<Installation>::all(client.clone())
        .get("default")
        .await?;
    installation
        .metadata
        .uid
        .context("Installation/default has no uid")
}

pub fn condition<'a>(installation: &'a Installation, type_: &str) -> Option<&'a Condition> {
    installation
        .status
        .as_ref()?
        .conditions
        .iter()
        .find(|condition| condition.type_ == type_)
}

pub fn condition_is(installation: &Installation, type_: &str, status: &str) -> bool {
    condition(installation, type_).is_some_and(|condition| condition.status == status)
}

/// Server-side applies `Installation/default` with `spec` as an admin would.
pub async fn apply_installation(client: &Client, spec: serde_json::Value) -> anyhow::Result<()> {
    let api: Api<Installation> = Api::all(client.clone());
    let object = serde_json::json!({
        "apiVersion": "operator.weft.dev/v1",
        "kind": "Installation",
        "metadata": {"name": "default"},
        "spec": spec,
    });
    api.patch(
        "default",
        &PatchParams::apply("admin").force(),
        &Patch::Apply(&object),
    )
    .await?;
    Ok(())
}

/// Waits until the Installation reports Available for its current generation.
pub async fn wait_available(client: &Client, limit: Duration) -> anyhow::Result<Installation> {
    let api: Api<Installation> = Api::all(client.clone());
    let waited = wait_for("Installation/default Available", limit, || {
        let api = api.clone();
        async move {
            let installation = api.get("default").await?;
            let current = installation.status.as_ref().is_some_and(|status| {
                status.observed_generation == installation.metadata.generation
            });
            let ready = current
                && condition_is(&installation, "Available", "True")
                && condition_is(&installation, "Ready", "True");
            Ok(ready.then_some(installation))
        }
    })
    .await;
    match waited {
        Ok(installation) => Ok(installation),
        Err(error) => {
            let status = api.get("default").await.ok().and_then(|i| i.status);
            Err(error.context(format!("last status: {status:#?}")))
        }
    }
}
