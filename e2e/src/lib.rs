//! weft's local Kubernetes control plane for integration tests, end-to-end suites and demos:
//! etcd, kube-apiserver (RBAC, generated PKI), kube-controller-manager (node pod CIDRs),
//! kube-scheduler and kwok fake nodes, all on 127.0.0.1 with free ports, built from pinned Go
//! modules by `e2e/scripts/build-control-plane.sh`.
//!
//! ```no_run
//! # async fn demo() -> Result<(), weft_e2e::Error> {
//! let cluster = weft_e2e::LocalCluster::shared().await?;
//! let nodes = cluster.add_nodes(3, &Default::default()).await?;
//! let client = cluster.client().await?;
//! # Ok(()) }
//! ```

mod args;
pub mod binaries;
mod cluster;
mod crds;
pub mod demo;
pub mod helm;
pub mod kind_suite;
pub mod node_runner;
mod pki;
mod ports;
pub mod process;
mod shared;
pub mod state;
mod wait;

use std::path::{Path, PathBuf};

pub use binaries::{Binaries, Versions};
pub use cluster::{
    CLUSTER_CIDR, ClusterOptions, KWOK_NODE_ANNOTATION, LocalCluster, NODE_CIDR_MASK, SERVICE_CIDR,
};
pub use crds::install_crds;
pub use helm::{Helm, HelmMajor};
pub use node_runner::{NodeRunner, RunnerOptions};
pub use ports::free_listen_port;
pub use process::Lifetime;

/// The operator's namespace, ServiceAccount and RBAC as users apply them (`config/rbac`), as
/// (file name, manifest) pairs in apply order.
pub const OPERATOR_RBAC: [(&str, &str); 4] = [
    (
        "namespace.yaml",
        include_str!("../../config/rbac/namespace.yaml"),
    ),
    (
        "service_account.yaml",
        include_str!("../../config/rbac/service_account.yaml"),
    ),
    (
        "cluster_role.yaml",
        include_str!("../../config/rbac/cluster_role.yaml"),
    ),
    (
        "cluster_role_binding.yaml",
        include_str!("../../config/rbac/cluster_role_binding.yaml"),
    ),
];

/// Why the local cluster could not start or serve.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "control-plane binaries missing in {dir}: {missing}; build them with `make control-plane` \
         (or point WEFT_K8S_BIN_DIR at a directory holding them)"
    )]
    MissingBinaries { dir: PathBuf, missing: String },
    #[error(
        "Helm missing at {path}; build it with `make helm` (or point {variable} at a helm binary)"
    )]
    MissingHelm {
        path: PathBuf,
        variable: &'static str,
    },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("generating the cluster PKI: {0}")]
    Pki(String),
    #[error("starting {0}: {1}")]
    Start(String, String),
    #[error("{name} exited ({status}); last log lines:\n{log_tail}")]
    Exited {
        name: String,
        status: String,
        log_tail: String,
    },
    #[error("timed out after {seconds}s waiting for {what}")]
    Timeout { what: String, seconds: u64 },
    #[error("kubeconfig: {0}")]
    Kubeconfig(String),
    #[error("API request failed: {0}")]
    Api(String),
}

impl Error {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        Self::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}
