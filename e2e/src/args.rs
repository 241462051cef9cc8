//! Command lines of the control-plane processes.

use std::path::Path;

use crate::cluster::{CLUSTER_CIDR, KWOK_NODE_ANNOTATION, NODE_CIDR_MASK, SERVICE_CIDR};
use crate::pki::PkiFiles;
use crate::ports::Ports;

/// Everything the command lines are built from.
pub struct ControlPlaneArgs<'a> {
    pub dir: &'a Path,
    pub ports: &'a Ports,
    pub pki: &'a PkiFiles,
    pub kubeconfig: &'a Path,
    /// The audit policy file, when the API server keeps an audit log (`logs/audit.log`).
    pub audit_policy: Option<&'a Path>,
}

/// kwok nodes' Lease duration. A kubelet's is 40 s, renewed every 10 s; on thousands of kwok nodes
/// that is hundreds of writes a second, more than a small machine's API server keeps up with
/// (nodes then go NotReady for lack of renewals). 200 s (renewed every 50 s, NotReady after as
/// long without a renewal) keeps 5,000 nodes at 100 renewals a second.
const NODE_LEASE_SECONDS: u32 = 200;

/// kwok's configuration file, in the cluster directory.
pub const KWOK_CONFIG: &str = "kwok.yaml";

/// kwok plays 4 pod and 4 node stage transitions at a time by default; a DaemonSet on 1,000
/// nodes then waits ~18 s for kwok alone to mark its pods Ready. The built-in stages still apply.
pub const KWOK_CONFIGURATION: &str = "apiVersion: config.kwok.x-k8s.io/v1alpha1
kind: KwokConfiguration
options:
  podPlayStageParallelism: 16
  nodePlayStageParallelism: 16
  nodeLeaseParallelism: 16
";

fn flag(name: &str, value: impl std::fmt::Display) -> String {
    format!("--{name}={value}")
}

fn path(p: &Path) -> String {
    p.display().to_string()
}

impl ControlPlaneArgs<'_> {
    pub fn etcd(&self) -> Vec<String> {
        let client = format!("http://127.0.0.1:{}", self.ports.etcd_client);
        let peer = format!("http://127.0.0.1:{}", self.ports.etcd_peer);
        vec![
            flag("name", "weft"),
            flag("data-dir", path(&self.dir.join("etcd"))),
            flag("listen-client-urls", &client),
            flag("advertise-client-urls", &client),
            flag("listen-peer-urls", &peer),
            flag("initial-advertise-peer-urls", &peer),
            flag("initial-cluster", format!("weft={peer}")),
            // A throw-away test store: durability on power loss is not worth the fsync latency.
            "--unsafe-no-fsync".into(),
            flag("log-level", "warn"),
        ]
    }

    pub fn apiserver(&self) -> Vec<String> {
        let mut args = vec![
            flag(
                "etcd-servers",
                format!("http://127.0.0.1:{}", self.ports.etcd_client),
            ),
            flag("secure-port", self.ports.apiserver),
            flag("bind-address", "127.0.0.1"),
            flag("advertise-address", "127.0.0.1"),
            flag("cert-dir", path(&self.dir.join("apiserver-certs"))),
            flag("tls-cert-file", path(&self.pki.serving_cert)),
            flag("tls-private-key-file", path(&self.pki.serving_key)),
            flag("client-ca-file", path(&self.pki.ca_cert)),
            flag("service-cluster-ip-range", SERVICE_CIDR),
            flag(
                "service-account-issuer",
                "https://kubernetes.default.svc.cluster.local",
            ),
            flag(
                "service-account-key-file",
                path(&self.pki.service_account_pub),
            ),
            flag(
                "service-account-signing-key-file",
                path(&self.pki.service_account_key),
            ),
            flag("authorization-mode", "RBAC"),
            flag("allow-privileged", "true"),
            flag("profiling", "false"),
            flag("v", 1),
        ];
        if let Some(policy) = self.audit_policy {
            args.extend([
                flag("audit-policy-file", path(policy)),
                flag("audit-log-path", path(&self.dir.join("logs/audit.log"))),
                flag("audit-log-format", "json"),
                // Readers count lines from an offset: rotate only past 1 GiB (the default is 100 MB).
                flag("audit-log-maxsize", 1024),
            ]);
        }
        args
    }

    fn client_flags(&self) -> Vec<String> {
        let kubeconfig = path(self.kubeconfig);
        vec![
            flag("kubeconfig", &kubeconfig),
            flag("authentication-kubeconfig", &kubeconfig),
            flag("authorization-kubeconfig", &kubeconfig),
            flag("bind-address", "127.0.0.1"),
            flag("leader-elect", "false"),
            flag("v", 1),
        ]
    }

    pub fn controller_manager(&self) -> Vec<String> {
        let mut args = self.client_flags();
        args.extend([
            flag("secure-port", self.ports.controller_manager),
            flag("allocate-node-cidrs", "true"),
            flag("cluster-cidr", CLUSTER_CIDR),
            flag("node-cidr-mask-size", NODE_CIDR_MASK),
            flag("service-cluster-ip-range", SERVICE_CIDR),
            flag(
                "service-account-private-key-file",
                path(&self.pki.service_account_key),
            ),
            flag("root-ca-file", path(&self.pki.ca_cert)),
            flag("cluster-signing-cert-file", path(&self.pki.ca_cert)),
            flag("cluster-signing-key-file", path(&self.pki.ca_key)),
            flag("use-service-account-credentials", "false"),
            flag("kube-api-qps", 200),
            flag("kube-api-burst", 400),
            flag("concurrent-daemonset-syncs", 4),
            // kwok renews each node's Lease every quarter of its duration, like a kubelet.
            flag(
                "node-monitor-grace-period",
                format!("{NODE_LEASE_SECONDS}s"),
            ),
        ]);
        args
    }

    pub fn scheduler(&self) -> Vec<String> {
        let mut args = self.client_flags();
        args.extend([
            flag("secure-port", self.ports.scheduler),
            // The default client limit (50 requests/s, one bind and one Event per pod) would make
            // the scheduler the slowest part of every rollout on hundreds of kwok nodes; the
            // controller-manager gets the same limit above.
            flag("kube-api-qps", 200),
            flag("kube-api-burst", 400),
        ]);
        args
    }

    pub fn kwok(&self) -> Vec<String> {
        vec![
            flag("kubeconfig", path(self.kubeconfig)),
            flag("config", path(&self.dir.join(KWOK_CONFIG))),
            flag("manage-all-nodes", "false"),
            flag(
                "manage-nodes-with-annotation-selector",
                format!("{KWOK_NODE_ANNOTATION}=fake"),
            ),
            flag("node-lease-duration-seconds", NODE_LEASE_SECONDS),
            flag("server-address", format!("127.0.0.1:{}", self.ports.kwok)),
        ]
    }
}
