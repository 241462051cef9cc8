//! [`LocalCluster`]: a real control plane on 127.0.0.1 — etcd, kube-apiserver (RBAC, optionally
//! an audit log of chosen users), kube-controller-manager (allocating node pod CIDRs),
//! kube-scheduler and kwok for fake nodes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Node, ServiceAccount};
use kube::api::{Api, ListParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};

use crate::binaries::Binaries;
use crate::process::{Lifetime, ManagedProcess};
use crate::wait::wait_until;
use crate::{Error, args, pki, ports, state};

/// The Service CIDR of every local cluster.
pub const SERVICE_CIDR: &str = "10.96.0.0/16";
/// The cluster CIDR the controller-manager cuts node pod CIDRs from: 16,384 node /24s, so
/// thousands of kwok nodes all get one (it contains the usual 10.244.0.0/16).
pub const CLUSTER_CIDR: &str = "10.192.0.0/10";
/// The prefix length of each node's pod CIDR.
pub const NODE_CIDR_MASK: u8 = 24;
/// The annotation that hands a Node to kwok.
pub const KWOK_NODE_ANNOTATION: &str = "kwok.x-k8s.io/node";

const READY_TIMEOUT: Duration = Duration::from_secs(120);
/// Extra time allowed per node added at once (kwok and the controller-manager work through them).
const READY_TIMEOUT_PER_NODE: Duration = Duration::from_millis(100);
/// Node creations in flight at once.
const NODE_CREATIONS_IN_FLIGHT: usize = 16;

/// How to start a [`LocalCluster`].
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    /// kwok nodes to add once the control plane is ready.
    pub nodes: usize,
    /// Directory for PKI, data and logs; a fresh temporary directory when `None`.
    pub state_dir: Option<PathBuf>,
    /// Whether the processes outlive the starting process.
    pub lifetime: Lifetime,
    /// Extra users, each with a client certificate in `system:masters` and a kubeconfig
    /// ([`LocalCluster::user_kubeconfig`]). When any are named, the API server writes an audit
    /// log of their requests alone (Metadata level) to [`LocalCluster::audit_log`].
    pub audited_users: Vec<String>,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        Self {
            nodes: 0,
            state_dir: None,
            lifetime: Lifetime::BoundToThisProcess,
            audited_users: Vec::new(),
        }
    }
}

/// A running local control plane. Dropping it stops every process and removes its directory
/// (unless it was started detached).
pub struct LocalCluster {
    dir: PathBuf,
    owns_dir: bool,
    kubeconfig: PathBuf,
    config: Config,
    binaries: Binaries,
    processes: Mutex<Vec<ManagedProcess>>,
    next_node: AtomicUsize,
}

impl std::fmt::Debug for LocalCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalCluster")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl LocalCluster {
    /// Starts etcd, the API server, controller-manager, scheduler and kwok, waits until they
    /// serve, then adds `options.nodes` Ready kwok nodes.
    pub async fn start(options: ClusterOptions) -> Result<Self, Error> {
        let binaries = Binaries::locate()?;
        let (dir, owns_dir) = match &options.state_dir {
            Some(dir) => {
                std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
                (dir.clone(), false)
            }
            None => {
                let dir = tempfile::Builder::new()
                    .prefix("weft-cluster-")
                    .tempdir()
                    .map_err(|e| Error::io(Path::new("/tmp"), e))?
                    .keep();
                (dir, true)
            }
        };
        let logs = dir.join("logs");
        std::fs::create_dir_all(&logs).map_err(|e| Error::io(&logs, e))?;
        let pki = pki::generate(&dir.join("pki"), "10.96.0.1", &options.audited_users)?;
        let ports = ports::Ports::allocate()?;
        let kubeconfig = dir.join("admin.kubeconfig");
        state::write_kubeconfig(&kubeconfig, ports.apiserver, &pki.files)?;
        for user in &pki.users {
            let path = dir.join(format!("{}.kubeconfig", user.name));
            state::write_user_kubeconfig(
                &path,
                ports.apiserver,
                &pki.files.ca_cert,
                &user.cert,
                &user.key,
            )?;
        }
        let audit_policy = if options.audited_users.is_empty() {
            None
        } else {
            let path = dir.join("audit-policy.yaml");
            std::fs::write(&path, audit_policy(&options.audited_users))
                .map_err(|e| Error::io(&path, e))?;
            Some(path)
        };

        let kwok_config = dir.join(args::KWOK_CONFIG);
        std::fs::write(&kwok_config, args::KWOK_CONFIGURATION)
            .map_err(|e| Error::io(&kwok_config, e))?;
        let command_lines = args::ControlPlaneArgs {
            dir: &dir,
            ports: &ports,
            pki: &pki.files,
            kubeconfig: &kubeconfig,
            audit_policy: audit_policy.as_deref(),
        };
        let [etcd, apiserver, controller_manager, scheduler, kwok] = [
            command_lines.etcd(),
            command_lines.apiserver(),
            command_lines.controller_manager(),
            command_lines.scheduler(),
            command_lines.kwok(),
        ];
        let mut processes = Vec::new();
        let lifetime = options.lifetime;
        let start = |name: &str, args: Vec<String>| {
            ManagedProcess::start(
                name,
                &binaries.path(name),
                &args,
                &logs.join(format!("{name}.log")),
                lifetime,
            )
        };
        processes.push(start("etcd", etcd)?);
        processes.push(start("kube-apiserver", apiserver)?);

        let config = Config::from_custom_kubeconfig(
            Kubeconfig::read_from(&kubeconfig).map_err(|e| Error::Kubeconfig(e.to_string()))?,
            &KubeConfigOptions::default(),
        )
        .await
        .map_err(|e| Error::Kubeconfig(e.to_string()))?;
        let cluster = Self {
            dir,
            owns_dir,
            kubeconfig,
            config,
            binaries: binaries.clone(),
            processes: Mutex::new(processes),
            next_node: AtomicUsize::new(0),
        };
        let client = cluster.client().await?;
        wait_until(
            &cluster,
            "kube-apiserver /readyz",
            READY_TIMEOUT,
            || async {
                let request = http::Request::get("/readyz")
                    .body(Vec::new())
                    .expect("static request");
                Ok(client
                    .request_text(request)
                    .await
                    .ok()
                    .filter(|body| body.trim() == "ok"))
            },
        )
        .await?;

        {
            let mut processes = cluster.processes.lock().expect("process list");
            processes.push(start("kube-controller-manager", controller_manager)?);
            processes.push(start("kube-scheduler", scheduler)?);
            processes.push(start("kwok", kwok)?);
        }
        // The service-account controller creating `default/default` shows the controller-manager works.
        let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), "default");
        wait_until(
            &cluster,
            "controller-manager (default ServiceAccount)",
            READY_TIMEOUT,
            || async { Ok(accounts.get_opt("default").await.ok().flatten()) },
        )
        .await?;
        for port in [ports.scheduler, ports.kwok] {
            wait_until(
                &cluster,
                "scheduler and kwok ports",
                READY_TIMEOUT,
                || async move {
                    Ok(tokio::net::TcpStream::connect(("127.0.0.1", port))
                        .await
                        .ok())
                },
            )
            .await?;
        }

        if options.lifetime == Lifetime::Detached {
            let pids = cluster.pids();
            state::write_pids(&cluster.dir, &pids)?;
        } else if owns_dir {
            crate::process::remove_at_exit(&cluster.dir);
        }
        if options.nodes > 0 {
            cluster.add_nodes(options.nodes, &BTreeMap::new()).await?;
        }
        Ok(cluster)
    }

    /// The cluster's directory (PKI, data, logs, kubeconfig).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// An admin kubeconfig (user in group `system:masters`).
    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    /// The kubeconfig of an extra user named in [`ClusterOptions::audited_users`].
    pub fn user_kubeconfig(&self, user: &str) -> PathBuf {
        self.dir.join(format!("{user}.kubeconfig"))
    }

    /// The API server's audit log (JSON lines), written when [`ClusterOptions::audited_users`]
    /// names users.
    pub fn audit_log(&self) -> PathBuf {
        self.dir.join("logs/audit.log")
    }

    /// The pinned binaries this cluster runs.
    pub fn binaries(&self) -> &Binaries {
        &self.binaries
    }

    /// A `kubectl` command with `--kubeconfig` set to the admin kubeconfig.
    pub fn kubectl(&self) -> std::process::Command {
        let mut command = std::process::Command::new(self.binaries.path("kubectl"));
        command.arg("--kubeconfig").arg(&self.kubeconfig);
        command
    }

    /// A client with cluster-admin rights. Make one per tokio runtime.
    pub async fn client(&self) -> Result<Client, Error> {
        Client::try_from(self.config.clone()).map_err(|e| Error::Kubeconfig(e.to_string()))
    }

    /// A client that impersonates `user` in `groups` (RBAC applies to it, not to the admin).
    pub async fn client_as(&self, user: &str, groups: &[&str]) -> Result<Client, Error> {
        let mut config = self.config.clone();
        config.auth_info.impersonate = Some(user.to_string());
        let mut all_groups: Vec<String> = groups.iter().map(|g| g.to_string()).collect();
        if !all_groups.iter().any(|g| g == "system:authenticated") {
            all_groups.push("system:authenticated".into());
        }
        config.auth_info.impersonate_groups = Some(all_groups);
        Client::try_from(config).map_err(|e| Error::Kubeconfig(e.to_string()))
    }

    /// A client acting as the ServiceAccount `namespace/name`.
    pub async fn client_as_service_account(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Client, Error> {
        let user = format!("system:serviceaccount:{namespace}:{name}");
        let namespace_group = format!("system:serviceaccounts:{namespace}");
        self.client_as(&user, &["system:serviceaccounts", &namespace_group])
            .await
    }

    /// A client that authenticates with the bearer `token` alone (for example a ServiceAccount
    /// token from a TokenRequest), so the API server sees exactly the identity the token carries.
    pub async fn client_with_token(&self, token: &str) -> Result<Client, Error> {
        let mut config = self.config.clone();
        config.auth_info = kube::config::AuthInfo {
            token: Some(token.to_owned().into()),
            ..Default::default()
        };
        Client::try_from(config).map_err(|e| Error::Kubeconfig(e.to_string()))
    }

    /// Adds `count` kwok-managed Nodes carrying `labels` and waits until each is Ready and has a
    /// pod CIDR. Returns their names.
    pub async fn add_nodes(
        &self,
        count: usize,
        labels: &BTreeMap<String, String>,
    ) -> Result<Vec<String>, Error> {
        let client = self.client().await?;
        let nodes: Api<Node> = Api::all(client);
        let names: Vec<String> = (0..count)
            .map(|_| {
                let index = self.next_node.fetch_add(1, Ordering::SeqCst);
                format!("kwok-node-{index}")
            })
            .collect();
        futures::stream::iter(&names)
            .map(|name| {
                let nodes = nodes.clone();
                async move {
                    let node: Node = serde_json::from_value(state::kwok_node(name, labels))
                        .expect("kwok node manifest is a valid Node");
                    nodes
                        .create(&PostParams::default(), &node)
                        .await
                        .map_err(|e| Error::Api(format!("create Node {name}: {e}")))
                }
            })
            .buffer_unordered(NODE_CREATIONS_IN_FLIGHT)
            .try_collect::<Vec<_>>()
            .await?;
        let timeout = READY_TIMEOUT + READY_TIMEOUT_PER_NODE * count as u32;
        let what = format!("{count} new Node(s) Ready with a podCIDR");
        let wanted: std::collections::BTreeSet<&str> = names.iter().map(String::as_str).collect();
        wait_until(self, &what, timeout, || async {
            let mut ready = 0;
            let mut params = ListParams::default().limit(500);
            loop {
                let page = nodes
                    .list(&params)
                    .await
                    .map_err(|e| Error::Api(format!("list Nodes: {e}")))?;
                ready += page
                    .items
                    .iter()
                    .filter(|node| wanted.contains(node.metadata.name.as_deref().unwrap_or("")))
                    .filter(|node| node_ready_with_cidr(node))
                    .count();
                match page.metadata.continue_.filter(|token| !token.is_empty()) {
                    Some(token) => params = params.continue_token(&token),
                    None => break,
                }
            }
            Ok((ready == wanted.len()).then_some(()))
        })
        .await?;
        Ok(names)
    }

    /// Fails with the process's log tail when any control-plane process has exited.
    pub fn ensure_running(&self) -> Result<(), Error> {
        let mut processes = self.processes.lock().expect("process list");
        processes.iter_mut().try_for_each(|p| p.ensure_running())
    }

    /// `(name, pid)` of every process.
    pub fn pids(&self) -> Vec<(String, u32)> {
        let processes = self.processes.lock().expect("process list");
        processes
            .iter()
            .map(|p| (p.name.clone(), p.pid()))
            .collect()
    }

    /// Leaves a detached cluster running (stop it later with [`crate::state::stop_detached`]).
    pub fn release(self) {
        let processes = std::mem::take(&mut *self.processes.lock().expect("process list"));
        processes.into_iter().for_each(ManagedProcess::release);
        std::mem::forget(self);
    }
}

/// An audit policy that records the requests of `users` at Metadata level (one event when a
/// request completes, and one when a watch starts) and nothing else.
fn audit_policy(users: &[String]) -> String {
    let users: Vec<String> = users.iter().map(|user| format!("\"{user}\"")).collect();
    format!(
        "apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
- level: Metadata
  users: [{}]
- level: None
",
        users.join(", ")
    )
}

fn node_ready_with_cidr(node: &Node) -> bool {
    let has_cidr = node
        .spec
        .as_ref()
        .and_then(|s| s.pod_cidr.as_ref())
        .is_some();
    let ready = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
    has_cidr && ready
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        let mut processes = std::mem::take(&mut *self.processes.lock().expect("process list"));
        while let Some(process) = processes.pop() {
            drop(process); // newest first: kwok, scheduler, controller-manager, apiserver, etcd
        }
        if self.owns_dir {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}
