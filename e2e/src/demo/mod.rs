//! `make demo`: weft on the local control plane with a real dataplane. Three nodes on two
//! underlay subnets are network namespaces ([`underlay`]), registered as Nodes and each running
//! its own `weft-agent run` ([`kubelet`]), with CNI files installed by `weft-agent install-cni`
//! from the operator's conflist and pods attached by the installed `weft` plugin ([`cni`]).
//! [`run`] drives it and prints the tables and the connectivity matrix ([`report`],
//! [`matrix`]); [`kwok`] is the install path alone on kwok nodes (`make demo-kwok`).

pub mod children;
pub mod cni;
pub mod host;
pub mod kubelet;
pub mod kwok;
pub mod matrix;
pub mod report;
pub mod run;
pub mod underlay;

/// Why the demo failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{command}: {message}")]
    Command { command: String, message: String },
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("{what}: {source}")]
    Api { what: String, source: kube::Error },
    #[error("{name} exited ({status}); last log lines:\n{log_tail}")]
    Exited {
        name: String,
        status: String,
        log_tail: String,
    },
    #[error("timed out after {seconds}s waiting for {what}")]
    Timeout { what: String, seconds: u64 },
    #[error("{0}")]
    Setup(String),
    #[error(transparent)]
    Cluster(#[from] crate::Error),
}

/// Maps a kube error to [`Error::Api`] saying what was being done.
pub(crate) fn api(what: String) -> impl FnOnce(kube::Error) -> Error {
    move |source| Error::Api { what, source }
}
