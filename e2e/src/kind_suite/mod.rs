//! The end-to-end checks that need real nodes (the kind cluster of `e2e/kind/`) beyond
//! `weftctl check` and the upstream suites: the operator's diagnosis of real pod trouble
//! ([`diagnosis`]), objects another party wrote costing only themselves ([`untrusted`]) and the
//! dataplane through disruption ([`disruption`]). They talk to the cluster
//! in KUBECONFIG with kube-rs, and use `docker` (the nodes are its containers) and `kubectl exec`
//! where the API alone cannot act.

pub mod diagnosis;
pub mod disruption;
pub mod untrusted;

use std::future::Future;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context as _, bail};
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use weft_api::{INSTALLATION_NAME, Installation};

const POLL: Duration = Duration::from_secs(2);

/// The cluster under test and what the checks need to know about it.
pub struct Suite {
    pub client: Client,
    /// The kind cluster's name: its nodes are the Docker containers `<cluster>-control-plane`,
    /// `<cluster>-worker`, `<cluster>-worker2`, ...
    pub cluster: String,
    /// The agnhost image present on every node (test pods run it; never pulled).
    pub agnhost: String,
}

/// Polls `check` every two seconds until it returns `Some`; on timeout the error names `what`
/// and the last state `check` reported through `last`.
pub async fn poll<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<Result<T, String>>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let last = match check().await? {
            Ok(value) => return Ok(value),
            Err(last) => last,
        };
        if tokio::time::Instant::now() >= deadline {
            bail!("{what}: not within {}s (last: {last})", timeout.as_secs());
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Runs a command to completion; its stdout, or an error with its stderr.
pub fn run(command: &mut Command) -> anyhow::Result<String> {
    let output = command
        .output()
        .with_context(|| format!("running {command:?}"))?;
    if !output.status.success() {
        bail!(
            "{command:?} failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

impl Suite {
    pub fn installations(&self) -> Api<Installation> {
        Api::all(self.client.clone())
    }

    /// Merge-patches the Installation's spec (`null` removes a field).
    pub async fn patch_spec(&self, spec: serde_json::Value) -> anyhow::Result<()> {
        self.installations()
            .patch(
                INSTALLATION_NAME,
                &PatchParams::default(),
                &Patch::Merge(serde_json::json!({ "spec": spec })),
            )
            .await
            .context("patching the Installation")?;
        Ok(())
    }

    /// Waits until the Installation reports Available=True for its current generation.
    pub async fn wait_available(&self, timeout: Duration) -> anyhow::Result<()> {
        poll("Installation Available", timeout, || async {
            let installation = self.installations().get(INSTALLATION_NAME).await?;
            let status = installation.status.clone().unwrap_or_default();
            let current = status.observed_generation == installation.metadata.generation;
            let available = status
                .conditions
                .iter()
                .any(|c| c.type_ == "Available" && c.status == "True");
            Ok(if current && available {
                Ok(())
            } else {
                Err(component_summary(&installation))
            })
        })
        .await
    }

    /// Waits until the message of `component` satisfies `wanted`; returns it.
    pub async fn wait_component_message(
        &self,
        component: &str,
        timeout: Duration,
        wanted: impl Fn(&str) -> bool,
    ) -> anyhow::Result<String> {
        let what = format!("component {component}'s message");
        poll(&what, timeout, || async {
            let installation = self.installations().get(INSTALLATION_NAME).await?;
            let message = installation
                .status
                .iter()
                .flat_map(|status| &status.components)
                .find(|status| status.name == component)
                .and_then(|status| status.message.clone())
                .unwrap_or_default();
            Ok(if wanted(&message) {
                Ok(message)
            } else {
                Err(format!("{message:?}"))
            })
        })
        .await
    }

    /// Waits until `pod` in `namespace` is Running and ready; returns it.
    pub async fn wait_pod_ready(&self, namespace: &str, pod: &str) -> anyhow::Result<Pod> {
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
        poll(
            &format!("pod {namespace}/{pod} ready"),
            Duration::from_secs(120),
            || async {
                let current = pods.get(pod).await?;
                Ok(if pod_ready(&current) {
                    Ok(current)
                } else {
                    Err(format!("{:?}", current.status.and_then(|s| s.phase)))
                })
            },
        )
        .await
    }

    /// Deletes namespace `name` if it exists (waiting until it is gone), then creates it.
    pub async fn fresh_namespace(&self, name: &str) -> anyhow::Result<()> {
        let namespaces: Api<Namespace> = Api::all(self.client.clone());
        if namespaces.get_opt(name).await?.is_some() {
            let _ = namespaces.delete(name, &DeleteParams::default()).await;
            poll("old namespace gone", Duration::from_secs(120), || async {
                Ok(match namespaces.get_opt(name).await? {
                    None => Ok(()),
                    Some(_) => Err("terminating".to_owned()),
                })
            })
            .await?;
        }
        let namespace: Namespace =
            serde_json::from_value(serde_json::json!({"metadata": {"name": name}}))?;
        namespaces
            .create(&PostParams::default(), &namespace)
            .await?;
        Ok(())
    }

    /// The worker nodes' names, sorted (`<cluster>-worker`, `<cluster>-worker2`, ...).
    pub fn workers(&self) -> Vec<String> {
        ["worker", "worker2", "worker3"]
            .iter()
            .map(|suffix| format!("{}-{suffix}", self.cluster))
            .collect()
    }
}

/// Whether `pod` is Ready.
pub fn pod_ready(pod: &Pod) -> bool {
    pod.status
        .iter()
        .flat_map(|status| status.conditions.iter().flatten())
        .any(|c| c.type_ == "Ready" && c.status == "True")
}

/// `name: message` for every component, for timeouts.
fn component_summary(installation: &Installation) -> String {
    let components: Vec<String> = installation
        .status
        .iter()
        .flat_map(|status| &status.components)
        .map(|c| format!("{}: {}", c.name, c.message.clone().unwrap_or_default()))
        .collect();
    format!("{} {}", installation.name_any(), components.join("; "))
}
