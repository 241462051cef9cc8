//! The CNI error every plugin failure ends in: a code from the CNI 1.1 table (or weft's own codes,
//! 100 and up), a message naming the field or step, and the JSON shape runtimes read on stdout.

use serde::{Deserialize, Serialize};

/// CNI error codes (spec 1.1, "Error" section) and weft's plugin-specific codes (≥ 100).
pub mod code {
    pub const INCOMPATIBLE_VERSION: u32 = 1;
    pub const UNSUPPORTED_FIELD: u32 = 2;
    pub const UNKNOWN_CONTAINER: u32 = 3;
    pub const INVALID_ENV: u32 = 4;
    pub const IO: u32 = 5;
    pub const DECODE: u32 = 6;
    pub const INVALID_CONFIG: u32 = 7;
    pub const TRY_AGAIN_LATER: u32 = 11;
    pub const NOT_AVAILABLE: u32 = 50;
    /// A netlink operation on the host or in the pod namespace failed.
    pub const NETLINK: u32 = 100;
    /// The interface name is already taken inside the pod namespace.
    pub const INTERFACE_EXISTS: u32 = 101;
    /// The delegated IPAM plugin could not be run or answered nonsense.
    pub const IPAM_DELEGATE: u32 = 102;
    /// Every address of the configured ranges or blocks is allocated.
    pub const NO_FREE_ADDRESS: u32 = 110;
    /// The allocation store could not be read or written.
    pub const STORE: u32 = 111;
    /// The node state file (pod CIDRs, pool blocks) is missing or unreadable.
    pub const NODE_STATE: u32 = 112;
    /// CHECK found the interface, addresses or routes different from prevResult.
    pub const CHECK_FAILED: u32 = 120;
}

/// A CNI error result, printed as JSON on stdout with a non-zero exit status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("CNI error {code}: {msg}")]
pub struct CniError {
    pub code: u32,
    pub msg: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub details: String,
}

impl CniError {
    pub fn new(code: u32, msg: impl Into<String>) -> Self {
        Self {
            code,
            msg: msg.into(),
            details: String::new(),
        }
    }

    pub fn with_details(mut self, details: impl Into<String>) -> Self {
        self.details = details.into();
        self
    }

    pub fn invalid_config(msg: impl Into<String>) -> Self {
        Self::new(code::INVALID_CONFIG, msg)
    }

    pub fn invalid_env(msg: impl Into<String>) -> Self {
        Self::new(code::INVALID_ENV, msg)
    }

    /// The error as the JSON object a runtime expects.
    pub fn to_json(&self, cni_version: &str) -> String {
        #[derive(Serialize)]
        #[serde(rename_all = "camelCase")]
        struct Wire<'a> {
            cni_version: &'a str,
            #[serde(flatten)]
            error: &'a CniError,
        }
        serde_json::to_string(&Wire {
            cni_version,
            error: self,
        })
        .unwrap_or_else(|_| format!("{{\"code\":{},\"msg\":\"unprintable error\"}}", self.code))
    }
}
