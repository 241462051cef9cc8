//! The node state file: what the agent knows about this node that IPAM needs — the node's
//! podCIDRs (host-local `usePodCidr`) and the pool blocks it holds (pool mode). The agent writes
//! it atomically; the plugins only read it.

use std::io;
use std::path::{Path, PathBuf};

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

/// Where the agent writes the node state unless the IPAM config says otherwise.
pub const DEFAULT_NODE_STATE_FILE: &str = "/var/lib/weft/node-state.json";

/// The node state file's content.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeState {
    #[serde(default)]
    pub node_name: String,
    /// The node's spec.podCIDRs.
    #[serde(default, rename = "podCIDRs")]
    pub pod_cidrs: Vec<IpNet>,
    /// The IPAMBlocks affine to this node, in allocation order.
    #[serde(default)]
    pub blocks: Vec<IpNet>,
    /// The pod MTU the agent detected (host MTU minus encapsulation overhead), used when the
    /// network config sets none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    /// Set when every pool this node may use is exhausted: why, naming the pools. An ADD that
    /// finds no free address fails at once with this message instead of waiting for a block.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exhausted: Option<String>,
}

/// Why the node state could not be read.
#[derive(Debug, thiserror::Error)]
pub enum NodeStateError {
    #[error("node state file {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("node state file {path}: not valid node state JSON: {source}")]
    Parse {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("node state file {path}: writing: {source}")]
    Write { path: PathBuf, source: io::Error },
}

impl NodeState {
    pub fn read(path: &Path) -> Result<Self, NodeStateError> {
        let bytes = std::fs::read(path).map_err(|source| NodeStateError::Read {
            path: path.to_owned(),
            source,
        })?;
        serde_json::from_slice(&bytes).map_err(|source| NodeStateError::Parse {
            path: path.to_owned(),
            source,
        })
    }

    /// Writes the file atomically (temporary file + rename), so readers never see half of it.
    pub fn write(&self, path: &Path) -> Result<(), NodeStateError> {
        let fail = |source| NodeStateError::Write {
            path: path.to_owned(),
            source,
        };
        let bytes =
            serde_json::to_vec_pretty(self).map_err(|error| fail(io::Error::other(error)))?;
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(fail)?;
        }
        let temporary = path.with_extension(format!("tmp-{}", std::process::id()));
        std::fs::write(&temporary, bytes).map_err(fail)?;
        std::fs::rename(&temporary, path).map_err(fail)
    }
}
