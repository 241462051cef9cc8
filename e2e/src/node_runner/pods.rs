//! The runner's pod loop: list the pods bound to the node, start, restart, report and stop their
//! processes, and the ServiceAccount kubeconfig each process uses.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Container, EnvVar, Pod};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use kube::{Client, ResourceExt};
use serde_json::json;
use tokio::process::{Child, Command};
use tokio::sync::watch;

use super::{LEASE_RENEW, POLL, Run, RunnerOptions, now, renew_lease};
use crate::Error;

/// A process standing for a pod's container.
pub(crate) struct Process {
    child: Child,
    run_index: usize,
    /// The container restarts under restartPolicy Always.
    restarts: i32,
}

pub(crate) struct State {
    pub(crate) client: Client,
    pub(crate) options: RunnerOptions,
    pub(crate) admin_kubeconfig: PathBuf,
    pub(crate) dir: PathBuf,
    pub(crate) runs: Arc<Mutex<Vec<Run>>>,
    /// Running processes by pod uid.
    pub(crate) processes: HashMap<String, Process>,
    /// Pods (uid) already reported Running, whether a process runs for them or not.
    pub(crate) ready: HashSet<String>,
}

impl State {
    pub(crate) async fn serve(mut self, mut stopped: watch::Receiver<bool>) {
        let mut last_renewal = Instant::now();
        loop {
            if *stopped.borrow() {
                break;
            }
            if last_renewal.elapsed() >= LEASE_RENEW {
                let _ = renew_lease(&self.client, &self.options.name).await;
                last_renewal = Instant::now();
            }
            if let Err(error) = self.sync().await {
                tracing::warn!(%error, node = %self.options.name, "node runner sync failed");
            }
            tokio::select! {
                _ = tokio::time::sleep(POLL) => {}
                _ = stopped.changed() => {}
            }
        }
        for (_, mut process) in self.processes.drain() {
            terminate(&mut process.child, Duration::from_secs(10)).await;
        }
    }

    async fn sync(&mut self) -> Result<(), Error> {
        let pods: Api<Pod> = Api::all(self.client.clone());
        let selector = format!("spec.nodeName={}", self.options.name);
        let list = pods
            .list(&ListParams::default().fields(&selector))
            .await
            .map_err(|e| Error::Api(format!("list pods of {}: {e}", self.options.name)))?;
        let mut seen = HashSet::new();
        for pod in list.items {
            let uid = pod.uid().unwrap_or_default();
            seen.insert(uid.clone());
            if pod.metadata.deletion_timestamp.is_some() {
                self.remove(&pod, &uid).await?;
            } else {
                self.advance(&pod, &uid).await?;
            }
        }
        // Pods gone from the API (deleted with grace 0 by someone else): stop their processes.
        let gone: Vec<String> = self
            .processes
            .keys()
            .filter(|uid| !seen.contains(*uid))
            .cloned()
            .collect();
        for uid in gone {
            if let Some(mut process) = self.processes.remove(&uid) {
                terminate(&mut process.child, Duration::from_secs(10)).await;
                self.record_exit(process.run_index, -1);
            }
        }
        self.ready.retain(|uid| seen.contains(uid));
        Ok(())
    }

    /// Starts a new pod, or reports how its process ended.
    async fn advance(&mut self, pod: &Pod, uid: &str) -> Result<(), Error> {
        let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
        if matches!(phase, Some("Succeeded" | "Failed")) {
            return Ok(());
        }
        let Some(container) = pod.spec.as_ref().and_then(|s| s.containers.first()) else {
            return Ok(());
        };
        let program = self.program_for(container);
        if let Some(process) = self.processes.get_mut(uid) {
            let Ok(Some(status)) = process.child.try_wait() else {
                if !self.ready.contains(uid) {
                    // Started, but reporting it failed last time.
                    self.report_running(pod, container, 0).await?;
                    self.ready.insert(uid.to_string());
                }
                return Ok(());
            };
            let code = status.code().unwrap_or(-1);
            let (run_index, restarts) = (process.run_index, process.restarts);
            self.record_exit(run_index, code);
            let restart_policy = pod
                .spec
                .as_ref()
                .and_then(|s| s.restart_policy.as_deref())
                .unwrap_or("Always");
            let always = restart_policy == "Always" || (restart_policy == "OnFailure" && code != 0);
            if always {
                self.processes.remove(uid);
                if let Some(program) = program {
                    self.spawn(pod, uid, container, &program, restarts + 1)
                        .await?;
                }
            } else {
                self.processes.remove(uid);
                self.report_finished(pod, container, code).await?;
            }
            return Ok(());
        }
        if self.ready.contains(uid) {
            return Ok(());
        }
        if let Some(program) = program {
            self.spawn(pod, uid, container, &program, 0).await?;
        }
        self.report_running(pod, container, 0).await?;
        self.ready.insert(uid.to_string());
        Ok(())
    }

    fn program_for(&self, container: &Container) -> Option<PathBuf> {
        let image = container.image.as_deref()?;
        let without_tag = image.split('@').next()?;
        let repository = without_tag.rsplit('/').next()?;
        let repository = repository.split(':').next()?;
        self.options.programs.get(repository).cloned()
    }

    async fn spawn(
        &mut self,
        pod: &Pod,
        uid: &str,
        container: &Container,
        program: &Path,
        restarts: i32,
    ) -> Result<(), Error> {
        let namespace = pod.namespace().unwrap_or_default();
        let name = pod.name_any();
        let account = pod
            .spec
            .as_ref()
            .and_then(|s| s.service_account_name.clone())
            .unwrap_or_else(|| "default".into());
        let kubeconfig = self.dir.join(format!("{namespace}_{account}.kubeconfig"));
        write_service_account_kubeconfig(
            &self.admin_kubeconfig,
            &kubeconfig,
            &namespace,
            &account,
        )?;
        let args = container.args.clone().unwrap_or_default();
        let log_path = self.dir.join(log_file_name(&namespace, &name));
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|e| Error::io(&log_path, e))?;
        let log_err = log.try_clone().map_err(|e| Error::io(&log_path, e))?;
        let mut command = Command::new(program);
        command
            .args(&args)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", &self.dir)
            .env("KUBECONFIG", &kubeconfig)
            .stdin(std::process::Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .kill_on_drop(true);
        for variable in container.env.iter().flatten() {
            if let Some(value) = env_value(pod, variable) {
                command.env(&variable.name, value);
            }
        }
        let child = command
            .spawn()
            .map_err(|e| Error::Start(program.display().to_string(), e.to_string()))?;
        let run_index = {
            let mut runs = self.runs.lock().expect("runs");
            runs.push(Run {
                namespace,
                pod: name,
                program: program.to_path_buf(),
                args,
                exit_code: None,
            });
            runs.len() - 1
        };
        self.processes.insert(
            uid.to_string(),
            Process {
                child,
                run_index,
                restarts,
            },
        );
        if restarts > 0 {
            self.report_running(pod, container, restarts).await?;
        }
        Ok(())
    }

    fn record_exit(&self, run_index: usize, code: i32) {
        if let Some(run) = self.runs.lock().expect("runs").get_mut(run_index) {
            run.exit_code = Some(code);
        }
    }

    async fn report_running(
        &self,
        pod: &Pod,
        container: &Container,
        restarts: i32,
    ) -> Result<(), Error> {
        let condition =
            |kind: &str| json!({"type": kind, "status": "True", "lastTransitionTime": now()});
        let status = json!({"status": {
            "phase": "Running",
            "hostIP": "127.0.0.1", "hostIPs": [{"ip": "127.0.0.1"}],
            "podIP": "127.0.0.1", "podIPs": [{"ip": "127.0.0.1"}],
            "startTime": now(),
            "conditions": [condition("PodScheduled"), condition("Initialized"),
                           condition("ContainersReady"), condition("Ready")],
            "containerStatuses": [{
                "name": container.name, "image": container.image, "imageID": "",
                "ready": true, "started": true, "restartCount": restarts,
                "state": {"running": {"startedAt": now()}},
            }],
        }});
        self.patch_pod_status(pod, &status).await
    }

    async fn report_finished(
        &self,
        pod: &Pod,
        container: &Container,
        code: i32,
    ) -> Result<(), Error> {
        let phase = if code == 0 { "Succeeded" } else { "Failed" };
        let reason = if code == 0 { "Completed" } else { "Error" };
        let condition = |kind: &str, value: &str| json!({"type": kind, "status": value, "lastTransitionTime": now()});
        let status = json!({"status": {
            "phase": phase,
            "conditions": [condition("PodScheduled", "True"), condition("Initialized", "True"),
                           condition("ContainersReady", "False"), condition("Ready", "False")],
            "containerStatuses": [{
                "name": container.name, "image": container.image, "imageID": "",
                "ready": false, "started": false, "restartCount": 0,
                "state": {"terminated": {"exitCode": code, "reason": reason,
                                         "startedAt": now(), "finishedAt": now()}},
            }],
        }});
        self.patch_pod_status(pod, &status).await
    }

    async fn patch_pod_status(&self, pod: &Pod, status: &serde_json::Value) -> Result<(), Error> {
        let namespace = pod.namespace().unwrap_or_default();
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &namespace);
        match pods
            .patch_status(
                &pod.name_any(),
                &PatchParams::default(),
                &Patch::Merge(status),
            )
            .await
        {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(response)) if response.code == 404 => Ok(()),
            Err(e) => Err(Error::Api(format!(
                "status of pod {namespace}/{}: {e}",
                pod.name_any()
            ))),
        }
    }

    /// A pod being deleted: stop its process within the grace period, then remove the pod.
    async fn remove(&mut self, pod: &Pod, uid: &str) -> Result<(), Error> {
        if let Some(mut process) = self.processes.remove(uid) {
            let grace = pod
                .metadata
                .deletion_grace_period_seconds
                .and_then(|seconds| u64::try_from(seconds).ok())
                .unwrap_or(30);
            let code = terminate(&mut process.child, Duration::from_secs(grace)).await;
            self.record_exit(process.run_index, code);
        }
        self.ready.remove(uid);
        let namespace = pod.namespace().unwrap_or_default();
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &namespace);
        let params = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(kube::api::Preconditions {
                uid: Some(uid.to_string()),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        match pods.delete(&pod.name_any(), &params).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(response)) if matches!(response.code, 404 | 409) => Ok(()),
            Err(e) => Err(Error::Api(format!(
                "delete pod {namespace}/{}: {e}",
                pod.name_any()
            ))),
        }
    }
}

pub(crate) fn log_file_name(namespace: &str, pod: &str) -> String {
    format!("{namespace}_{pod}.log")
}

/// SIGTERM, then SIGKILL after `grace`; returns the exit code (-1 for a signal).
async fn terminate(child: &mut Child, grace: Duration) -> i32 {
    if let Some(pid) = child.id() {
        // SAFETY: kill(2) with a pid this process spawned and has not reaped.
        unsafe {
            libc::kill(pid as libc::pid_t, libc::SIGTERM);
        }
    }
    let status = match tokio::time::timeout(grace, child.wait()).await {
        Ok(status) => status.ok(),
        Err(_) => {
            let _ = child.kill().await;
            child.wait().await.ok()
        }
    };
    status.and_then(|s| s.code()).unwrap_or(-1)
}

/// The value of an env var: a literal, or a `fieldRef` the kubelet would resolve.
fn env_value(pod: &Pod, variable: &EnvVar) -> Option<String> {
    if let Some(value) = &variable.value {
        return Some(value.clone());
    }
    let path = &variable.value_from.as_ref()?.field_ref.as_ref()?.field_path;
    match path.as_str() {
        "metadata.name" => Some(pod.name_any()),
        "metadata.namespace" => pod.namespace(),
        "metadata.uid" => pod.uid(),
        "spec.nodeName" => pod.spec.as_ref()?.node_name.clone(),
        "spec.serviceAccountName" => pod.spec.as_ref()?.service_account_name.clone(),
        "status.podIP" | "status.hostIP" => Some("127.0.0.1".into()),
        _ => None,
    }
}

/// The admin kubeconfig, impersonating the ServiceAccount `namespace/account` (and its groups).
fn write_service_account_kubeconfig(
    admin: &Path,
    path: &Path,
    namespace: &str,
    account: &str,
) -> Result<(), Error> {
    let text = std::fs::read_to_string(admin).map_err(|e| Error::io(admin, e))?;
    let mut config: serde_json::Value = serde_saphyr::from_str(&text)
        .map_err(|e| Error::Kubeconfig(format!("{}: {e}", admin.display())))?;
    let users = config
        .get_mut("users")
        .and_then(|users| users.as_array_mut())
        .ok_or_else(|| Error::Kubeconfig(format!("{}: no users", admin.display())))?;
    for user in users {
        if let Some(user) = user.get_mut("user").and_then(|u| u.as_object_mut()) {
            user.insert(
                "as".into(),
                json!(format!("system:serviceaccount:{namespace}:{account}")),
            );
            user.insert(
                "as-groups".into(),
                json!([
                    "system:serviceaccounts",
                    format!("system:serviceaccounts:{namespace}"),
                    "system:authenticated"
                ]),
            );
        }
    }
    let text = serde_json::to_string_pretty(&config)
        .map_err(|e| Error::Kubeconfig(format!("{}: {e}", path.display())))?;
    std::fs::write(path, text).map_err(|e| Error::io(path, e))
}
