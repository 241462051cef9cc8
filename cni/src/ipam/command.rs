//! The `weft-ipam` commands: ADD allocates, DEL releases, CHECK verifies prevResult's addresses are
//! still held, STATUS reports whether an ADD could get an address, GC releases every allocation
//! not in `cni.dev/valid-attachments` except the node's tunnel address (the agent's, which no
//! runtime lists).

use std::time::{Duration, Instant};

use super::allocate::{AllocateError, allocate, collect_garbage, first_exhausted_set, release};
use super::config::{AddressSource, IpamConf};
use super::store::{LockedStore, StoreError};
use crate::env::{Attachment, CniEnv, Command};
use crate::error::{CniError, code};
use crate::node_state::NodeState;
use crate::result::{CniResult, IpConfig, version_json};

/// Runs one `weft-ipam` call and returns what goes to stdout.
pub fn run(env: &CniEnv, stdin: &[u8]) -> Result<String, CniError> {
    if env.command == Command::Version {
        return Ok(version_json(&crate::cli::requested_version(stdin)));
    }
    let conf = IpamConf::parse(stdin)?;
    let version = conf.common.cni_version.clone();
    crate::cli::ensure_command_known(env.command, &version)?;
    match env.command {
        Command::Add => add(&conf, attachment(env)?).map(|result| result.to_json(&version)),
        Command::Del => del(&conf, attachment(env)?).map(|()| String::new()),
        Command::Check => check(&conf, attachment(env)?).map(|()| String::new()),
        Command::Status => status(&conf).map(|()| String::new()),
        Command::Gc => gc(&conf).map(|()| String::new()),
        Command::Version => unreachable!("answered above"),
    }
}

fn attachment(env: &CniEnv) -> Result<&Attachment, CniError> {
    env.attachment.as_ref().ok_or_else(|| {
        CniError::invalid_env("CNI_CONTAINERID, CNI_IFNAME: required for this command")
    })
}

fn open_store(conf: &IpamConf) -> Result<LockedStore, CniError> {
    LockedStore::open(&conf.data_dir, &conf.common.name).map_err(store_error)
}

fn store_error(error: StoreError) -> CniError {
    CniError::new(code::STORE, error.to_string())
}

/// How long an ADD in pool mode waits for the agent to add a block when the node's blocks are
/// full. The agent claims the next block ahead of need, so this wait only covers a burst that
/// outruns it; the ADD itself never calls the API server.
const BLOCK_WAIT: Duration = Duration::from_secs(10);
const BLOCK_POLL: Duration = Duration::from_millis(20);

/// Allocates one address per range set for the attachment.
pub fn add(conf: &IpamConf, owner: &Attachment) -> Result<CniResult, CniError> {
    let waiting_since = Instant::now();
    let allocations = loop {
        // The node state is read under the store lock: the agent removes a block from it only
        // while holding the lock, so no ADD can allocate from a block being released.
        let store = open_store(conf)?;
        let pool_mode = matches!(conf.source, AddressSource::Pool { .. });
        let error = match conf.range_sets() {
            Ok(sets) => match allocate(&store, &sets, owner) {
                Ok(allocations) => break allocations,
                Err(AllocateError::Store(error)) => return Err(store_error(error)),
                Err(error @ AllocateError::Exhausted { .. }) => error.to_string(),
            },
            // No node state yet, or no block in it: the agent is starting or claiming.
            Err(error) if pool_mode => error.msg,
            Err(error) => return Err(error),
        };
        let exhausted = |detail: String| {
            CniError::new(
                code::NO_FREE_ADDRESS,
                format!(
                    "{error}{detail} (network {:?}, container {})",
                    conf.common.name, owner.container_id
                ),
            )
        };
        let AddressSource::Pool { node_state_file } = &conf.source else {
            return Err(exhausted(String::new()));
        };
        if let Some(reason) = NodeState::read(node_state_file)
            .ok()
            .and_then(|state| state.exhausted)
        {
            return Err(exhausted(format!(": {reason}")));
        }
        if waiting_since.elapsed() >= BLOCK_WAIT {
            return Err(exhausted(format!(
                ": the node agent added no block within {} s",
                BLOCK_WAIT.as_secs()
            )));
        }
        drop(store);
        std::thread::sleep(BLOCK_POLL);
    };
    Ok(CniResult {
        ips: allocations
            .into_iter()
            .map(|allocation| IpConfig {
                address: allocation.address,
                gateway: allocation.gateway,
                interface: None,
            })
            .collect(),
        routes: conf.routes.clone(),
        ..CniResult::default()
    })
}

fn del(conf: &IpamConf, owner: &Attachment) -> Result<(), CniError> {
    let store = open_store(conf)?;
    release(&store, owner).map(drop).map_err(store_error)
}

fn check(conf: &IpamConf, owner: &Attachment) -> Result<(), CniError> {
    let previous = conf
        .common
        .prev_result
        .as_ref()
        .ok_or_else(|| CniError::invalid_config("prevResult: required for CHECK"))?;
    let store = open_store(conf)?;
    let held: Vec<_> = store
        .records()
        .map_err(store_error)?
        .into_iter()
        .filter(|record| &record.owner == owner)
        .map(|record| record.ip)
        .collect();
    for ip in &previous.ips {
        if !held.contains(&ip.address.addr()) {
            return Err(CniError::new(
                code::CHECK_FAILED,
                format!(
                    "prevResult.ips: {} is not allocated to container {} interface {} in network {:?}",
                    ip.address.addr(),
                    owner.container_id,
                    owner.ifname,
                    conf.common.name
                ),
            ));
        }
    }
    Ok(())
}

fn status(conf: &IpamConf) -> Result<(), CniError> {
    let sets = conf
        .range_sets()
        .map_err(|error| CniError::new(code::NOT_AVAILABLE, error.msg))?;
    let store = open_store(conf)?;
    match first_exhausted_set(&store, &sets).map_err(store_error)? {
        Some(ranges) => Err(CniError::new(
            code::NOT_AVAILABLE,
            format!("no free address in {ranges}"),
        )),
        None => Ok(()),
    }
}

fn gc(conf: &IpamConf) -> Result<(), CniError> {
    let valid =
        conf.common.valid_attachments.as_deref().ok_or_else(|| {
            CniError::invalid_config("cni.dev/valid-attachments: required for GC")
        })?;
    let store = open_store(conf)?;
    let released = collect_garbage(&store, valid).map_err(store_error)?;
    for record in released {
        tracing::info!(ip = %record.ip, container = %record.owner.container_id, ifname = %record.owner.ifname, "released by GC");
    }
    Ok(())
}
