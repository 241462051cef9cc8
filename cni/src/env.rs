//! The CNI environment (CNI_COMMAND, CNI_CONTAINERID, CNI_NETNS, CNI_IFNAME, CNI_ARGS, CNI_PATH),
//! read and validated once; every missing or malformed variable is reported by name (code 4).

use std::path::PathBuf;

use crate::error::CniError;

/// The operation a runtime asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Add,
    Del,
    Check,
    Version,
    Status,
    Gc,
}

impl Command {
    pub fn parse(value: &str) -> Result<Self, CniError> {
        Ok(match value {
            "ADD" => Self::Add,
            "DEL" => Self::Del,
            "CHECK" => Self::Check,
            "VERSION" => Self::Version,
            "STATUS" => Self::Status,
            "GC" => Self::Gc,
            other => {
                return Err(CniError::invalid_env(format!(
                    "CNI_COMMAND: unknown command {other:?}; allowed: ADD, DEL, CHECK, VERSION, STATUS, GC"
                )));
            }
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Add => "ADD",
            Self::Del => "DEL",
            Self::Check => "CHECK",
            Self::Version => "VERSION",
            Self::Status => "STATUS",
            Self::Gc => "GC",
        }
    }

    /// Commands that act on one attachment (container id + interface name).
    pub fn is_per_attachment(self) -> bool {
        matches!(self, Self::Add | Self::Del | Self::Check)
    }
}

/// One attachment: a container's interface in one network.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Attachment {
    pub container_id: String,
    pub ifname: String,
}

/// The validated CNI environment of one call.
#[derive(Debug, Clone)]
pub struct CniEnv {
    pub command: Command,
    /// Set for ADD, DEL and CHECK.
    pub attachment: Option<Attachment>,
    /// Required for ADD and CHECK; optional for DEL (the namespace may be gone).
    pub netns: Option<PathBuf>,
    pub args: String,
    pub path: Vec<PathBuf>,
}

impl CniEnv {
    /// Reads the environment through `var` (the process environment in the binaries).
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Self, CniError> {
        let command = match var("CNI_COMMAND") {
            Some(value) => Command::parse(&value)?,
            None => {
                return Err(CniError::invalid_env(
                    "CNI_COMMAND: not set; allowed: ADD, DEL, CHECK, VERSION, STATUS, GC",
                ));
            }
        };
        let non_empty = |name: &str| var(name).filter(|value| !value.is_empty());
        let mut env = Self {
            command,
            attachment: None,
            netns: None,
            args: var("CNI_ARGS").unwrap_or_default(),
            path: non_empty("CNI_PATH")
                .map(|value| {
                    value
                        .split(':')
                        .filter(|dir| !dir.is_empty())
                        .map(PathBuf::from)
                        .collect()
                })
                .unwrap_or_default(),
        };
        if command.is_per_attachment() {
            let container_id = non_empty("CNI_CONTAINERID").ok_or_else(|| {
                CniError::invalid_env(format!(
                    "CNI_CONTAINERID: required for {}",
                    command.as_str()
                ))
            })?;
            validate_container_id(&container_id)?;
            let ifname = non_empty("CNI_IFNAME").ok_or_else(|| {
                CniError::invalid_env(format!("CNI_IFNAME: required for {}", command.as_str()))
            })?;
            validate_ifname(&ifname)?;
            env.attachment = Some(Attachment {
                container_id,
                ifname,
            });
            env.netns = non_empty("CNI_NETNS").map(PathBuf::from);
            if env.netns.is_none() && command != Command::Del {
                return Err(CniError::invalid_env(format!(
                    "CNI_NETNS: required for {}",
                    command.as_str()
                )));
            }
        }
        Ok(env)
    }

    pub fn from_process() -> Result<Self, CniError> {
        Self::from_vars(|name| std::env::var(name).ok())
    }
}

/// Container ids: letters, digits, `_`, `.` and `-`, starting with a letter or digit (CNI 1.1).
pub fn validate_container_id(id: &str) -> Result<(), CniError> {
    let valid = id.len() <= 255
        && id.starts_with(|c: char| c.is_ascii_alphanumeric())
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if valid {
        Ok(())
    } else {
        Err(CniError::invalid_env(format!(
            "CNI_CONTAINERID: {id:?} is not valid; allowed: letters, digits, '_', '.', '-', starting with a letter or digit, at most 255 characters"
        )))
    }
}

/// Interface names: 1 to 15 bytes, not `.` or `..`, no `/`, `:` or whitespace (Linux rules).
pub fn validate_ifname(name: &str) -> Result<(), CniError> {
    let valid = !name.is_empty()
        && name.len() <= 15
        && name != "."
        && name != ".."
        && !name
            .chars()
            .any(|c| c == '/' || c == ':' || c.is_whitespace() || c.is_control());
    if valid {
        Ok(())
    } else {
        Err(CniError::invalid_env(format!(
            "CNI_IFNAME: {name:?} is not a valid interface name; allowed: 1 to 15 bytes, no '/', ':' or whitespace, not '.' or '..'"
        )))
    }
}
