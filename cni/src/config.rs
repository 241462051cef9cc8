//! The network configuration on stdin: the fields every weft plugin shares (cniVersion, name,
//! prevResult, cni.dev/valid-attachments) and the `weft` plugin's own (mtu, ipam.type).
//!
//! Parsing is two-step so errors name fields: the bytes must be a JSON object (else code 6,
//! decode), then each field is read and checked by name (else code 7, invalid config).

use serde_json::{Map, Value};

use crate::env::{Attachment, validate_container_id, validate_ifname};
use crate::error::{CniError, code};
use crate::node_state::DEFAULT_NODE_STATE_FILE;
use crate::result::{CniResult, check_version};

/// Largest config weft reads; anything larger is not a network config.
pub const MAX_CONFIG_BYTES: usize = 1 << 20;

/// Parses stdin into a JSON object (code 6 when it is not one).
pub fn parse_object(bytes: &[u8]) -> Result<Map<String, Value>, CniError> {
    if bytes.len() > MAX_CONFIG_BYTES {
        return Err(CniError::new(
            code::DECODE,
            format!("stdin: config is larger than {MAX_CONFIG_BYTES} bytes"),
        ));
    }
    match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(other) => Err(CniError::new(
            code::DECODE,
            format!(
                "stdin: the network config must be a JSON object, got {}",
                json_kind(&other)
            ),
        )),
        Err(error) => Err(CniError::new(
            code::DECODE,
            format!("stdin: the network config is not valid JSON: {error}"),
        )),
    }
}

pub fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Reads an optional string field; present but not a string is an error naming `path`.
pub fn optional_str<'a>(
    map: &'a Map<String, Value>,
    key: &str,
    path: &str,
) -> Result<Option<&'a str>, CniError> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => Ok(Some(text)),
        Some(other) => Err(CniError::invalid_config(format!(
            "{path}: must be a string, got {}",
            json_kind(other)
        ))),
    }
}

/// Reads a required, non-empty string field.
pub fn required_str<'a>(
    map: &'a Map<String, Value>,
    key: &str,
    path: &str,
) -> Result<&'a str, CniError> {
    match optional_str(map, key, path)? {
        Some(text) if !text.is_empty() => Ok(text),
        _ => Err(CniError::invalid_config(format!(
            "{path}: required, a non-empty string"
        ))),
    }
}

/// Reads an optional object field.
pub fn optional_object<'a>(
    map: &'a Map<String, Value>,
    key: &str,
    path: &str,
) -> Result<Option<&'a Map<String, Value>>, CniError> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(object)) => Ok(Some(object)),
        Some(other) => Err(CniError::invalid_config(format!(
            "{path}: must be an object, got {}",
            json_kind(other)
        ))),
    }
}

/// The fields all weft plugins read.
#[derive(Debug, Clone)]
pub struct CommonConf {
    pub cni_version: String,
    pub name: String,
    pub prev_result: Option<CniResult>,
    /// `cni.dev/valid-attachments`, given with GC.
    pub valid_attachments: Option<Vec<Attachment>>,
}

impl CommonConf {
    pub fn parse(map: &Map<String, Value>) -> Result<Self, CniError> {
        let cni_version = required_str(map, "cniVersion", "cniVersion")?.to_owned();
        check_version(&cni_version)?;
        let name = required_str(map, "name", "name")?.to_owned();
        validate_network_name(&name)?;
        let prev_result = match map.get("prevResult") {
            None | Some(Value::Null) => None,
            Some(value @ Value::Object(_)) => Some(
                serde_json::from_value::<CniResult>(value.clone()).map_err(|error| {
                    CniError::invalid_config(format!("prevResult: not a valid CNI result: {error}"))
                })?,
            ),
            Some(other) => {
                return Err(CniError::invalid_config(format!(
                    "prevResult: must be an object, got {}",
                    json_kind(other)
                )));
            }
        };
        let valid_attachments = parse_valid_attachments(map)?;
        Ok(Self {
            cni_version,
            name,
            prev_result,
            valid_attachments,
        })
    }
}

/// Network names: letters, digits, `_`, `.`, `-`, starting with a letter or digit (they name
/// directories of the allocation store, so nothing else may pass).
pub fn validate_network_name(name: &str) -> Result<(), CniError> {
    let valid = name.len() <= 128
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if valid {
        Ok(())
    } else {
        Err(CniError::invalid_config(format!(
            "name: {name:?} is not valid; allowed: letters, digits, '_', '.', '-', starting with a letter or digit, at most 128 characters"
        )))
    }
}

const VALID_ATTACHMENTS: &str = "cni.dev/valid-attachments";

fn parse_valid_attachments(map: &Map<String, Value>) -> Result<Option<Vec<Attachment>>, CniError> {
    let items = match map.get(VALID_ATTACHMENTS) {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Array(items)) => items,
        Some(other) => {
            return Err(CniError::invalid_config(format!(
                "{VALID_ATTACHMENTS}: must be an array, got {}",
                json_kind(other)
            )));
        }
    };
    let mut attachments = Vec::with_capacity(items.len());
    for (index, item) in items.iter().enumerate() {
        let path = format!("{VALID_ATTACHMENTS}[{index}]");
        let Value::Object(object) = item else {
            return Err(CniError::invalid_config(format!(
                "{path}: must be an object, got {}",
                json_kind(item)
            )));
        };
        let container_id = required_str(object, "containerID", &format!("{path}.containerID"))?;
        validate_container_id(container_id)
            .map_err(|error| CniError::invalid_config(format!("{path}: {}", error.msg)))?;
        let ifname = required_str(object, "ifname", &format!("{path}.ifname"))?;
        validate_ifname(ifname)
            .map_err(|error| CniError::invalid_config(format!("{path}: {}", error.msg)))?;
        attachments.push(Attachment {
            container_id: container_id.to_owned(),
            ifname: ifname.to_owned(),
        });
    }
    Ok(Some(attachments))
}

/// Default pod MTU when neither the config nor the node state sets one.
pub const DEFAULT_MTU: u32 = 1500;

/// Reads an optional absolute path field; `path` names it in messages.
pub fn absolute_path(
    map: &Map<String, Value>,
    key: &str,
    path: &str,
    default: &str,
) -> Result<std::path::PathBuf, CniError> {
    match optional_str(map, key, path)? {
        None => Ok(default.into()),
        Some(file) if file.starts_with('/') => Ok(file.into()),
        Some(file) => Err(CniError::invalid_config(format!(
            "{path}: {file:?} must be an absolute path"
        ))),
    }
}

impl PluginConf {
    /// The pod MTU: the config's, else the node's (written by the agent), else [`DEFAULT_MTU`].
    /// A missing or unreadable node state file is not an error here: IPAM reports it when it
    /// needs the file.
    pub fn effective_mtu(&self) -> u32 {
        self.mtu
            .or_else(|| {
                crate::node_state::NodeState::read(&self.node_state_file)
                    .ok()
                    .and_then(|state| state.mtu)
            })
            .unwrap_or(DEFAULT_MTU)
    }
}

/// The `weft` plugin's config.
#[derive(Debug, Clone)]
pub struct PluginConf {
    pub common: CommonConf,
    /// `mtu` when the config sets one (absent or 0: the node's MTU from the node state file).
    pub mtu: Option<u32>,
    /// `nodeStateFile`: where the agent publishes the node's pod MTU (and IPAM blocks).
    pub node_state_file: std::path::PathBuf,
    /// `endpointDir`: where ADD records the pods it wired for the agent (see
    /// [`crate::endpoint`]); when set, ADD also waits for the agent's policy guard.
    pub endpoint_dir: Option<std::path::PathBuf>,
    /// The IPAM plugin (`weft-ipam` runs in-process unless `exec_ipam`).
    pub ipam_type: String,
    /// `execIpam`: exec weft-ipam from CNI_PATH like any other IPAM plugin.
    pub exec_ipam: bool,
}

impl PluginConf {
    pub fn parse(bytes: &[u8]) -> Result<Self, CniError> {
        let map = parse_object(bytes)?;
        let common = CommonConf::parse(&map)?;
        let kind = required_str(&map, "type", "type")?;
        if kind != "weft" {
            return Err(CniError::invalid_config(format!(
                "type: {kind:?} is not this plugin; allowed: \"weft\""
            )));
        }
        let mtu = match map.get("mtu") {
            None | Some(Value::Null) => None,
            Some(value) => match value.as_u64() {
                Some(0) => None,
                Some(mtu @ 68..=65535) => Some(mtu as u32),
                _ => {
                    return Err(CniError::invalid_config(format!(
                        "mtu: {value} is not allowed; allowed: 0 (the node's MTU, else {DEFAULT_MTU}) or an integer from 68 to 65535"
                    )));
                }
            },
        };
        let ipam = optional_object(&map, "ipam", "ipam")?.ok_or_else(|| {
            CniError::invalid_config("ipam: required, an object with at least \"type\"")
        })?;
        let ipam_type = required_str(ipam, "type", "ipam.type")?;
        let plain_name = !ipam_type.contains('/') && ipam_type != "." && ipam_type != "..";
        if !plain_name {
            return Err(CniError::invalid_config(format!(
                "ipam.type: {ipam_type:?} must be a plugin file name found in CNI_PATH, not a path"
            )));
        }
        let exec_ipam = match map.get("execIpam") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(flag)) => *flag,
            Some(other) => {
                return Err(CniError::invalid_config(format!(
                    "execIpam: must be true or false, got {}",
                    json_kind(other)
                )));
            }
        };
        let node_state_file = absolute_path(
            &map,
            "nodeStateFile",
            "nodeStateFile",
            DEFAULT_NODE_STATE_FILE,
        )?;
        let endpoint_dir = match optional_str(&map, "endpointDir", "endpointDir")? {
            None => None,
            Some(dir) if dir.starts_with('/') => Some(dir.into()),
            Some(dir) => {
                return Err(CniError::invalid_config(format!(
                    "endpointDir: {dir:?} must be an absolute path"
                )));
            }
        };
        Ok(Self {
            common,
            mtu,
            node_state_file,
            endpoint_dir,
            ipam_type: ipam_type.to_owned(),
            exec_ipam,
        })
    }
}
