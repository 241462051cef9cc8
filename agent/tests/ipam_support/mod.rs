//! Support for the IPAM fault tests: [`ApiProxy`], a TCP relay to the API server that the test
//! can cut (every open connection dropped, so watches must start over) or stall (connections
//! accepted, nothing relayed), and [`AgentIdentity`], the agent's rights as a ServiceAccount
//! with the pod rights in a binding of their own so they can be revoked.

use std::path::Path;
use std::sync::{Arc, Mutex};

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
use kube::api::{DeleteParams, ListParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client};
use serde_json::json;
use tokio::net::{TcpListener, TcpStream};

use crate::common::NodeCluster;

/// A TCP relay to the API server that can drop or hold every connection.
pub struct ApiProxy {
    port: u16,
    /// Bumped by `cut`: every relayed connection of an older generation ends.
    generation: tokio::sync::watch::Sender<u64>,
    stalled: Arc<Mutex<Option<Vec<TcpStream>>>>,
}

impl ApiProxy {
    pub async fn start(upstream: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let port = listener.local_addr().unwrap().port();
        let (generation, _) = tokio::sync::watch::channel(0u64);
        let stalled: Arc<Mutex<Option<Vec<TcpStream>>>> = Arc::new(Mutex::new(None));
        let (sender, held) = (generation.clone(), stalled.clone());
        let target = upstream;
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if let Some(held) = held.lock().unwrap().as_mut() {
                    held.push(inbound);
                    continue;
                }
                let mut cut = sender.subscribe();
                let target = target.clone();
                tokio::spawn(async move {
                    let Ok(mut outbound) = TcpStream::connect(&target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = cut.changed() => {}
                    }
                });
            }
        });
        Self {
            port,
            generation,
            stalled,
        }
    }

    /// Drops every open connection.
    pub fn cut(&self) {
        self.generation.send_modify(|generation| *generation += 1);
    }

    /// From now on, connections are accepted and held without an answer; open ones are cut.
    pub fn stall(&self) {
        *self.stalled.lock().unwrap() = Some(Vec::new());
        self.cut();
    }

    /// Relays again (the held connections are closed).
    pub fn relay(&self) {
        *self.stalled.lock().unwrap() = None;
    }

    /// The admin kubeconfig pointed at this proxy, acting as `user` when given.
    pub fn kubeconfig(&self, admin: &Path, user: Option<(&str, &[&str])>) -> Kubeconfig {
        let mut config = Kubeconfig::read_from(admin).expect("admin kubeconfig");
        for cluster in &mut config.clusters {
            if let Some(cluster) = cluster.cluster.as_mut() {
                cluster.server = Some(format!("https://127.0.0.1:{}", self.port));
            }
        }
        if let Some((name, groups)) = user {
            for auth in &mut config.auth_infos {
                if let Some(auth) = auth.auth_info.as_mut() {
                    auth.impersonate = Some(name.to_owned());
                    auth.impersonate_groups =
                        Some(groups.iter().map(|group| (*group).to_owned()).collect());
                }
            }
        }
        config
    }

    /// An admin client through this proxy.
    pub async fn client(&self, admin: &Path) -> Client {
        let config = kube::Config::from_custom_kubeconfig(
            self.kubeconfig(admin, None),
            &KubeConfigOptions::default(),
        )
        .await
        .expect("client config");
        Client::try_from(config).expect("client")
    }
}

/// `host:port` of the API server the admin kubeconfig names.
pub fn api_server(admin: &Path) -> String {
    let config = Kubeconfig::read_from(admin).expect("admin kubeconfig");
    let server = config.clusters[0]
        .cluster
        .as_ref()
        .and_then(|cluster| cluster.server.clone())
        .expect("server");
    server.trim_start_matches("https://").to_owned()
}

/// The agent's rights as a ServiceAccount of the test's namespace, with the pod rights in a
/// binding of their own so they can be revoked.
pub struct AgentIdentity {
    client: Client,
    name: String,
    pub user: String,
    pub groups: Vec<String>,
}

impl AgentIdentity {
    pub async fn grant(nodes: &NodeCluster) -> Self {
        let name = format!("wt-{}-agent", nodes.id);
        let user = format!("system:serviceaccount:{}:weft-node", nodes.namespace);
        let groups = vec![
            "system:serviceaccounts".to_owned(),
            format!("system:serviceaccounts:{}", nodes.namespace),
            "system:authenticated".to_owned(),
        ];
        let read = json!(["get", "list", "watch"]);
        let role: ClusterRole = serde_json::from_value(json!({
            "metadata": {"name": name},
            "rules": [
                {"apiGroups": [""], "resources": ["nodes"], "verbs": ["get", "list", "watch", "patch"]},
                {"apiGroups": [""], "resources": ["nodes/status"], "verbs": ["patch"]},
                {"apiGroups": [""], "resources": ["namespaces"], "verbs": read},
                {"apiGroups": ["operator.weft.dev"], "resources": ["installations"], "verbs": read},
                {"apiGroups": ["networking.k8s.io"], "resources": ["networkpolicies"], "verbs": read},
                {"apiGroups": ["network.weft.dev"], "resources": ["networkpolicies", "globalnetworkpolicies", "ippools"], "verbs": read},
                {"apiGroups": ["network.weft.dev"], "resources": ["ipamblocks"], "verbs": ["get", "list", "watch", "create", "delete"]},
                {"apiGroups": ["", "events.k8s.io"], "resources": ["events"], "verbs": ["create", "patch"]},
            ]
        }))
        .unwrap();
        let pods: ClusterRole = serde_json::from_value(json!({
            "metadata": {"name": format!("{name}-pods")},
            "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": read}]
        }))
        .unwrap();
        let roles: Api<ClusterRole> = Api::all(nodes.client.clone());
        for role in [role, pods] {
            roles
                .create(&PostParams::default(), &role)
                .await
                .expect("create ClusterRole");
        }
        let this = Self {
            client: nodes.client.clone(),
            name,
            user,
            groups,
        };
        this.bind(&this.name).await;
        this.bind(&format!("{}-pods", this.name)).await;
        this
    }

    async fn bind(&self, role: &str) {
        let (namespace, account) = {
            let parts: Vec<&str> = self.user.split(':').collect();
            (parts[2].to_owned(), parts[3].to_owned())
        };
        let binding: ClusterRoleBinding = serde_json::from_value(json!({
            "metadata": {"name": role},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
            "subjects": [{"kind": "ServiceAccount", "name": account, "namespace": namespace}]
        }))
        .unwrap();
        Api::<ClusterRoleBinding>::all(self.client.clone())
            .create(&PostParams::default(), &binding)
            .await
            .expect("create ClusterRoleBinding");
    }

    pub async fn revoke_pods(&self) {
        Api::<ClusterRoleBinding>::all(self.client.clone())
            .delete(&format!("{}-pods", self.name), &DeleteParams::default())
            .await
            .expect("delete the pods binding");
    }

    pub async fn grant_pods(&self) {
        self.bind(&format!("{}-pods", self.name)).await;
    }

    /// Whether the agent's identity may list pods now (RBAC is applied asynchronously).
    pub async fn may_list_pods(&self, cluster_kubeconfig: &Path) -> bool {
        let mut config = Kubeconfig::read_from(cluster_kubeconfig).unwrap();
        for auth in &mut config.auth_infos {
            if let Some(auth) = auth.auth_info.as_mut() {
                auth.impersonate = Some(self.user.clone());
                auth.impersonate_groups = Some(self.groups.clone());
            }
        }
        let config = kube::Config::from_custom_kubeconfig(config, &KubeConfigOptions::default())
            .await
            .unwrap();
        let client = Client::try_from(config).unwrap();
        Api::<Pod>::all(client)
            .list(&ListParams::default().limit(1))
            .await
            .is_ok()
    }
}
