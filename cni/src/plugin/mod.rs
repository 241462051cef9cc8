//! `weft`: the interface plugin. Dispatches the CNI commands; ADD in [`add`], DEL and CHECK in
//! [`teardown`], IPAM delegation in [`delegate`], one call per attachment at a time in [`lock`].

pub mod add;
pub mod delegate;
pub mod lock;
pub mod teardown;

use std::path::Path;

use crate::config::PluginConf;
use crate::env::{CniEnv, Command};
use crate::error::CniError;
use crate::result::version_json;

/// Runs one `weft` call and returns what goes to stdout.
pub fn run(env: &CniEnv, stdin: &[u8]) -> Result<String, CniError> {
    if env.command == Command::Version {
        return Ok(version_json(&crate::cli::requested_version(stdin)));
    }
    let conf = PluginConf::parse(stdin)?;
    let version = conf.common.cni_version.clone();
    crate::cli::ensure_command_known(env.command, &version)?;
    let lock = match &env.attachment {
        Some(attachment) if env.command.is_per_attachment() => Some(lock::AttachmentLock::acquire(
            Path::new(lock::LOCK_DIR),
            attachment,
        )?),
        _ => None,
    };
    let output = dispatch(env, &conf, stdin, &version);
    if env.command == Command::Del
        && output.is_ok()
        && let Some(lock) = lock
    {
        lock.remove();
    }
    output
}

fn dispatch(
    env: &CniEnv,
    conf: &PluginConf,
    stdin: &[u8],
    version: &str,
) -> Result<String, CniError> {
    match env.command {
        Command::Add => add::add(env, conf, stdin).map(|result| result.to_json(version)),
        Command::Del => teardown::del(env, conf, stdin).map(|()| String::new()),
        Command::Check => teardown::check(env, conf, stdin).map(|()| String::new()),
        // STATUS: the config parsed; readiness is whether IPAM could serve an ADD.
        // GC: the pod interfaces go with their namespaces; the addresses are what can leak.
        Command::Status | Command::Gc => delegate::Ipam::resolve(conf, env)?
            .run(env, env.command, stdin)
            .map(|_| String::new()),
        Command::Version => unreachable!("answered above"),
    }
}
