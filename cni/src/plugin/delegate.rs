//! Delegated IPAM: find the IPAM plugin named by `ipam.type` in CNI_PATH and exec it with the same
//! network config on stdin, as the CNI spec prescribes.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command as Process, Stdio};

use crate::env::Command;
use crate::error::{CniError, code};
use crate::result::CniResult;

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
        input
            .write_all(stdin)
            .map_err(|error| fail(format!("writing the config: {error}")))?;
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

/// Runs IPAM ADD and parses its result, which must hold at least one address.
pub fn add(plugin: &Path, stdin: &[u8]) -> Result<CniResult, CniError> {
    let stdout = exec(plugin, Command::Add, stdin)?;
    let result: CniResult = serde_json::from_str(&stdout).map_err(|error| {
        CniError::new(
            code::IPAM_DELEGATE,
            format!(
                "IPAM plugin {}: ADD result is not a CNI result: {error}",
                plugin.display()
            ),
        )
    })?;
    if result.ips.is_empty() {
        return Err(CniError::new(
            code::IPAM_DELEGATE,
            format!("IPAM plugin {}: ADD returned no address", plugin.display()),
        ));
    }
    Ok(result)
}
