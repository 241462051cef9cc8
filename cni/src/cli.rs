//! What both plugin binaries do around their command handler: read the environment and stdin,
//! print the result or the CNI error JSON, and exit 0 or 1.

use std::io::{Read, Write};
use std::process::ExitCode;

use crate::config::MAX_CONFIG_BYTES;
use crate::env::{CniEnv, Command};
use crate::error::{CniError, code};
use crate::result::{CURRENT_VERSION, SUPPORTED_VERSIONS, knows_status_and_gc};

/// Environment variable that turns on logging to stderr (`error`, `warn`, `info`, `debug`).
pub const LOG_ENV: &str = "WEFT_CNI_LOG";

/// Runs a plugin binary's handler against the process environment and stdio.
pub fn main_with(handler: fn(&CniEnv, &[u8]) -> Result<String, CniError>) -> ExitCode {
    init_logging();
    let mut stdin = Vec::new();
    let read = std::io::stdin()
        .take(MAX_CONFIG_BYTES as u64 + 1)
        .read_to_end(&mut stdin);
    let outcome = match read {
        Err(error) => Err(CniError::new(
            crate::error::code::IO,
            format!("stdin: {error}"),
        )),
        Ok(_) => CniEnv::from_process().and_then(|env| handler(&env, &stdin)),
    };
    let mut stdout = std::io::stdout().lock();
    match outcome {
        Ok(output) => {
            let _ = stdout.write_all(output.as_bytes());
            ExitCode::SUCCESS
        }
        Err(error) => {
            tracing::warn!(code = error.code, msg = %error.msg, "failed");
            let _ = stdout.write_all(error.to_json(&requested_version(&stdin)).as_bytes());
            ExitCode::FAILURE
        }
    }
}

/// The config's cniVersion when it names a supported one, else the current version.
pub fn requested_version(stdin: &[u8]) -> String {
    serde_json::from_slice::<serde_json::Value>(stdin)
        .ok()
        .and_then(|value| value.get("cniVersion")?.as_str().map(str::to_owned))
        .filter(|version| SUPPORTED_VERSIONS.contains(&version.as_str()))
        .unwrap_or_else(|| CURRENT_VERSION.to_owned())
}

/// Refuses STATUS and GC for a config whose cniVersion predates them (before 1.1.0).
pub fn ensure_command_known(command: Command, version: &str) -> Result<(), CniError> {
    if matches!(command, Command::Status | Command::Gc) && !knows_status_and_gc(version) {
        return Err(CniError::new(
            code::INCOMPATIBLE_VERSION,
            format!(
                "cniVersion: {} needs 1.1.0, the config says {version}",
                command.as_str()
            ),
        ));
    }
    Ok(())
}

fn init_logging() {
    let Ok(level) = std::env::var(LOG_ENV) else {
        return;
    };
    let level = level.parse().unwrap_or(tracing::Level::INFO);
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(level)
        .try_init();
}
