//! Delegated IPAM: find the IPAM plugin named by `ipam.type` in CNI_PATH and exec it with the same
//! network config on stdin, as the CNI spec prescribes.
//!
//! One deliberate exception: when `ipam.type` is `weft-ipam`, the same IPAM code runs inside this
//! process (same config parsing, store and lock, so it is interchangeable with the binary), unless
//! the config sets `"execIpam": true`. A second process per call costs about as much as the
//! whole interface set-up (see the CNI section of BENCHMARKS.md); any other IPAM plugin is exec'd.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command as Process, Stdio};

use crate::config::PluginConf;
use crate::env::{CniEnv, Command};
use crate::error::{CniError, code};
use crate::result::CniResult;

/// The name of weft's own IPAM plugin.
pub const WEFT_IPAM: &str = "weft-ipam";

/// How this call reaches its IPAM plugin.
#[derive(Debug, Clone)]
pub enum Ipam {
    /// weft-ipam's code in this process.
    InProcess,
    /// An IPAM plugin binary from CNI_PATH.
    Exec(PathBuf),
}

impl Ipam {
    pub fn resolve(conf: &PluginConf, env: &CniEnv) -> Result<Self, CniError> {
        if conf.ipam_type == WEFT_IPAM && !conf.exec_ipam {
            Ok(Self::InProcess)
        } else {
            find_plugin(&conf.ipam_type, &env.path).map(Self::Exec)
        }
    }

    /// Runs `command` with `stdin`; returns what the plugin printed.
    pub fn run(&self, env: &CniEnv, command: Command, stdin: &[u8]) -> Result<String, CniError> {
        match self {
            Self::InProcess => {
                let env = CniEnv {
                    command,
                    ..env.clone()
                };
                crate::ipam::command::run(&env, stdin)
            }
            Self::Exec(plugin) => exec(plugin, command, stdin),
        }
    }

    /// Runs ADD and parses its result, which must hold at least one address. A result that
    /// cannot be used may still stand for addresses the plugin allocated: they are released
    /// (DEL) before the error is returned.
    pub fn add(&self, env: &CniEnv, stdin: &[u8]) -> Result<CniResult, CniError> {
        let stdout = self.run(env, Command::Add, stdin)?;
        let mut unusable = match serde_json::from_str::<CniResult>(&stdout) {
            Ok(result) if !result.ips.is_empty() => return Ok(result),
            Ok(_) => "ADD returned no address".to_owned(),
            Err(error) => format!("ADD result is not a CNI result: {error}"),
        };
        if let Err(error) = self.run(env, Command::Del, stdin) {
            unusable.push_str(&format!(
                "; releasing its addresses (DEL) failed too: {error}"
            ));
        }
        Err(CniError::new(
            code::IPAM_DELEGATE,
            format!("IPAM plugin {}: {unusable}", self.name()),
        ))
    }

    fn name(&self) -> String {
        match self {
            Self::InProcess => WEFT_IPAM.to_owned(),
            Self::Exec(plugin) => plugin.display().to_string(),
        }
    }
}

/// Finds `name` in the CNI_PATH directories.
pub fn find_plugin(name: &str, cni_path: &[PathBuf]) -> Result<PathBuf, CniError> {
    if cni_path.is_empty() {
        return Err(CniError::invalid_env(format!(
            "CNI_PATH: required to find the IPAM plugin {name:?}"
        )));
    }
    cni_path
        .iter()
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
        .ok_or_else(|| {
            let dirs: Vec<_> = cni_path
                .iter()
                .map(|dir| dir.display().to_string())
                .collect();
            CniError::invalid_env(format!(
                "CNI_PATH: IPAM plugin {name:?} (ipam.type) not found in {}",
                dirs.join(":")
            ))
        })
}

/// Runs the IPAM plugin for `command` with `stdin`; returns its stdout, or its CNI error.
pub fn exec(plugin: &Path, command: Command, stdin: &[u8]) -> Result<String, CniError> {
    let fail = |what: String| {
        CniError::new(
            code::IPAM_DELEGATE,
            format!("IPAM plugin {}: {what}", plugin.display()),
        )
    };
    let mut child = Process::new(plugin)
        .env("CNI_COMMAND", command.as_str())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|error| fail(format!("cannot run: {error}")))?;
    if let Some(mut input) = child.stdin.take() {
        // A plugin that exits without reading its config closes the pipe: its output and exit
        // status still tell what happened.
        match input.write_all(stdin) {
            Err(error) if error.kind() != std::io::ErrorKind::BrokenPipe => {
                return Err(fail(format!("writing the config: {error}")));
            }
            _ => {}
        }
    }
    let output = child
        .wait_with_output()
        .map_err(|error| fail(format!("waiting: {error}")))?;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    if output.status.success() {
        return Ok(stdout);
    }
    match serde_json::from_str::<CniError>(&stdout) {
        Ok(error) => Err(error),
        Err(_) => Err(fail(format!(
            "{} {} with output {:?}",
            command.as_str(),
            output.status,
            stdout.trim()
        ))),
    }
}
