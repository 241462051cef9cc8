//! The tables the demo prints: `kubectl` output, the Installation's component table, the IP
//! pools with their allocated and total blocks, and the pods with their addresses and nodes.

use kube::api::ListParams;
use kube::{Api, Client, ResourceExt};
use weft_api::{Installation, IpPool, IpamBlock};

use super::{Error, api};
use crate::LocalCluster;

/// `kubectl <args>` against `cluster`, its output.
pub fn kubectl(cluster: &LocalCluster, args: &[&str]) -> Result<String, Error> {
    let output = cluster
        .kubectl()
        .args(args)
        .output()
        .map_err(|source| Error::Io {
            what: "running kubectl".into(),
            source,
        })?;
    if !output.status.success() {
        return Err(Error::Command {
            command: format!("kubectl {}", args.join(" ")),
            message: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        });
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// The Installation's components, one line each.
pub fn component_table(installation: &Installation) -> String {
    let mut table = format!(
        "{:<12} {:<10} {:<12} {:<9} {}\n",
        "COMPONENT", "AVAILABLE", "PROGRESSING", "DEGRADED", "MESSAGE"
    );
    for component in installation
        .status
        .iter()
        .flat_map(|status| &status.components)
    {
        table.push_str(&format!(
            "{:<12} {:<10} {:<12} {:<9} {}\n",
            component.name,
            component.available,
            component.progressing,
            component.degraded,
            component.message.as_deref().unwrap_or_default()
        ));
    }
    table
}

/// The pools with ALLOCATED (IPAMBlocks of the pool) and TOTAL (2^(blockSize - prefix)); a
/// pool status that carries the counts is used as it is.
pub async fn pool_table(client: &Client) -> Result<String, Error> {
    let pools = Api::<IpPool>::all(client.clone())
        .list(&ListParams::default())
        .await
        .map_err(api("list IPPools".into()))?;
    let blocks = Api::<IpamBlock>::all(client.clone())
        .list(&ListParams::default())
        .await
        .map_err(api("list IPAMBlocks".into()))?;
    let mut table = format!(
        "{:<22} {:<16} {:<10} {:<18} {:<10} {}\n",
        "NAME", "CIDR", "BLOCKSIZE", "ENCAPSULATION", "ALLOCATED", "TOTAL"
    );
    for pool in pools.items {
        let name = pool.name_any();
        let block_size = pool.spec.block_size_or_default();
        let prefix = pool
            .spec
            .cidr
            .split_once('/')
            .and_then(|(_, length)| length.parse::<i32>().ok())
            .unwrap_or(block_size);
        let status = pool.status.clone().unwrap_or_default();
        let allocated = status.allocated_blocks.unwrap_or_else(|| {
            blocks
                .items
                .iter()
                .filter(|block| block.spec.pool == name)
                .count() as i64
        });
        let total = status
            .total_blocks
            .unwrap_or(1_i64 << (block_size - prefix).clamp(0, 62));
        let encapsulation = serde_json::to_value(pool.spec.encapsulation)
            .ok()
            .and_then(|value| value.as_str().map(str::to_owned))
            .unwrap_or_default();
        table.push_str(&format!(
            "{name:<22} {:<16} {block_size:<10} {encapsulation:<18} {allocated:<10} {total}\n",
            pool.spec.cidr
        ));
    }
    Ok(table)
}
