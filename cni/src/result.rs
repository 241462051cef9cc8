//! CNI results (interfaces, ips, routes, dns) and the VERSION answer, with the version rules:
//! the result carries the config's cniVersion, and results older than 1.0 also carry `ips[].version`.

use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::error::CniError;

/// The CNI versions weft reads and answers in.
pub const SUPPORTED_VERSIONS: &[&str] = &["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"];

/// The newest version, the one weft speaks unless the config asks for an older one.
pub const CURRENT_VERSION: &str = "1.1.0";

/// Checks that `version` is one weft supports (code 1 otherwise).
pub fn check_version(version: &str) -> Result<(), CniError> {
    if SUPPORTED_VERSIONS.contains(&version) {
        Ok(())
    } else {
        Err(CniError::new(
            crate::error::code::INCOMPATIBLE_VERSION,
            format!(
                "cniVersion: {version:?} is not supported; supported: {}",
                SUPPORTED_VERSIONS.join(", ")
            ),
        ))
    }
}

/// True for versions that know STATUS and GC (1.1.0 and later).
pub fn knows_status_and_gc(version: &str) -> bool {
    version == "1.1.0"
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Interface {
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub mac: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub sandbox: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpConfig {
    pub address: IpNet,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<IpAddr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<usize>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteConfig {
    pub dst: IpNet,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gw: Option<IpAddr>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dns {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nameservers: Vec<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub domain: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub search: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<String>,
}

impl Dns {
    fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// A CNI success result (also the shape of prevResult).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CniResult {
    #[serde(default)]
    pub cni_version: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub interfaces: Vec<Interface>,
    #[serde(default)]
    pub ips: Vec<IpConfig>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<RouteConfig>,
    #[serde(default, skip_serializing_if = "Dns::is_empty")]
    pub dns: Dns,
}

impl CniResult {
    /// The result as JSON in the given CNI version's format.
    pub fn to_json(&self, version: &str) -> String {
        let mut result = self.clone();
        result.cni_version = version.to_owned();
        let mut value = serde_json::to_value(&result).unwrap_or_default();
        if version.starts_with("0.")
            && let Some(ips) = value.get_mut("ips").and_then(|ips| ips.as_array_mut())
        {
            for (ip, config) in ips.iter_mut().zip(&self.ips) {
                let family = if config.address.addr().is_ipv4() {
                    "4"
                } else {
                    "6"
                };
                ip["version"] = serde_json::Value::from(family);
            }
        }
        value.to_string()
    }
}

/// The VERSION answer.
pub fn version_json(version: &str) -> String {
    serde_json::json!({ "cniVersion": version, "supportedVersions": SUPPORTED_VERSIONS })
        .to_string()
}
