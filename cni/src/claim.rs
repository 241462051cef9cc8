//! The block claim library (cargo feature `claim`; the plugin binaries never need it): a node
//! claims a free block of an IPPool by creating the `IPAMBlock` object named after the block's
//! CIDR. The API server refuses a second object of the same name, so two nodes can never hold
//! the same block: a claimer that loses the race gets AlreadyExists and moves to the next block.
//!
//! The agent uses it to keep its blocks and writes them to the node state file for `weft-ipam`.
//!
//! Claims refuse disabled pools, and a claim checks its pool again after creating the block: the
//! operator deletes a removed pool only after disabling it and then finding no block of it, so a
//! claim that read the pool before it was disabled but created its block after the operator's
//! count finds the pool disabled (or gone) on its second look and deletes the block it made.
//! No IPAMBlock outlives its pool.

use std::collections::HashSet;

use ipnet::IpNet;
use kube::api::{Api, DeleteParams, ListParams, PostParams, Preconditions};
use weft_api::{IpPool, IpamBlock, block_name};

/// Why a claim, release or listing failed.
#[derive(Debug, thiserror::Error)]
pub enum ClaimError {
    #[error("IPPool {pool:?} not found")]
    PoolNotFound { pool: String },
    #[error("IPPool {pool:?}: spec.cidr {cidr:?} is not a CIDR")]
    InvalidPoolCidr { pool: String, cidr: String },
    #[error("IPPool {pool:?}: spec.blockSize {block_size} does not fit spec.cidr {cidr}")]
    InvalidBlockSize {
        pool: String,
        cidr: IpNet,
        block_size: i32,
    },
    #[error("IPPool {pool:?} is disabled: no new blocks are cut from it")]
    PoolDisabled { pool: String },
    #[error(
        "IPPool {pool:?} ({cidr}) is exhausted: all {total} blocks of size /{block_size} are claimed"
    )]
    PoolExhausted {
        pool: String,
        cidr: IpNet,
        block_size: u8,
        total: u128,
    },
    #[error("IPAMBlock {block} is held by node {holder:?}, not by {node:?}")]
    NotHolder {
        block: IpNet,
        holder: String,
        node: String,
    },
    #[error("{action}: {source}")]
    Api {
        action: String,
        #[source]
        source: kube::Error,
    },
}

fn api_error(action: impl Into<String>) -> impl FnOnce(kube::Error) -> ClaimError {
    let action = action.into();
    move |source| ClaimError::Api { action, source }
}

fn is_already_exists(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(status) if status.is_already_exists())
}

/// The pool's CIDR and block prefix length, validated.
fn pool_geometry(pool_name: &str, pool: &IpPool) -> Result<(IpNet, u8), ClaimError> {
    let cidr: IpNet = pool
        .spec
        .cidr
        .parse()
        .map_err(|_| ClaimError::InvalidPoolCidr {
            pool: pool_name.to_owned(),
            cidr: pool.spec.cidr.clone(),
        })?;
    let block_size = pool.spec.block_size_or_default();
    let fits = u8::try_from(block_size)
        .ok()
        .filter(|size| (cidr.prefix_len()..=cidr.max_prefix_len()).contains(size));
    let block_size = fits.ok_or(ClaimError::InvalidBlockSize {
        pool: pool_name.to_owned(),
        cidr,
        block_size,
    })?;
    Ok((cidr.trunc(), block_size))
}

/// Number of blocks of `block_size` in `cidr` (saturating for huge IPv6 pools).
pub fn block_count(cidr: IpNet, block_size: u8) -> u128 {
    1u128
        .checked_shl(u32::from(block_size - cidr.prefix_len()))
        .unwrap_or(u128::MAX)
}

/// A claimer's starting block: spread by node name so concurrent claimers rarely collide.
fn start_offset(node: &str, total: u128) -> u128 {
    u128::from(crate::naming::fnv1a(&[node])) % total.max(1)
}

/// The `index`-th block of `cidr`.
fn nth_block(cidr: IpNet, block_size: u8, index: u128) -> IpNet {
    let shift = u32::from(cidr.max_prefix_len() - block_size);
    let base = crate::ipam::range::to_number(cidr.network());
    let address = crate::ipam::range::from_number(base + (index << shift), cidr.addr().is_ipv6());
    IpNet::new(address, block_size).expect("block size checked against the pool")
}

/// Claims a free block of `pool_name` for `node` and returns its CIDR.
pub async fn claim_block(
    client: &kube::Client,
    pool_name: &str,
    node: &str,
) -> Result<IpNet, ClaimError> {
    let pools: Api<IpPool> = Api::all(client.clone());
    let pool = usable_pool(&pools, pool_name).await?;
    let (cidr, block_size) = pool_geometry(pool_name, &pool)?;
    let total = block_count(cidr, block_size);
    let blocks: Api<IpamBlock> = Api::all(client.clone());
    let taken: HashSet<String> = blocks
        .list(&ListParams::default())
        .await
        .map_err(api_error("listing IPAMBlocks"))?
        .items
        .into_iter()
        .filter_map(|block| block.metadata.name)
        .collect();
    let start = start_offset(node, total);
    // Walk every block once from the start offset; stop early for pools too big to walk.
    let steps = total.min(1 << 20);
    for step in 0..steps {
        let block = nth_block(cidr, block_size, (start + step) % total);
        if taken.contains(&block_name(block)) {
            continue;
        }
        let object = IpamBlock::for_cidr(block, pool_name, node);
        match blocks.create(&PostParams::default(), &object).await {
            Ok(created) => {
                confirm(&pools, &blocks, pool_name, &pool, &created).await?;
                tracing::info!(%block, pool = pool_name, node, "claimed block");
                return Ok(block);
            }
            Err(error) if is_already_exists(&error) => continue,
            Err(error) => {
                return Err(api_error(format!(
                    "creating IPAMBlock {}",
                    block_name(block)
                ))(error));
            }
        }
    }
    Err(ClaimError::PoolExhausted {
        pool: pool_name.to_owned(),
        cidr,
        block_size,
        total,
    })
}

/// The pool, when it exists and is not disabled.
async fn usable_pool(pools: &Api<IpPool>, pool_name: &str) -> Result<IpPool, ClaimError> {
    let pool = pools
        .get_opt(pool_name)
        .await
        .map_err(api_error(format!("reading IPPool {pool_name:?}")))?
        .ok_or_else(|| ClaimError::PoolNotFound {
            pool: pool_name.to_owned(),
        })?;
    if pool.spec.disabled == Some(true) {
        return Err(ClaimError::PoolDisabled {
            pool: pool_name.to_owned(),
        });
    }
    Ok(pool)
}

/// The second look after creating `created`: the same pool (same uid) must still exist and be
/// enabled, or the block is deleted again and the claim fails as the pool's state says.
async fn confirm(
    pools: &Api<IpPool>,
    blocks: &Api<IpamBlock>,
    pool_name: &str,
    pool: &IpPool,
    created: &IpamBlock,
) -> Result<(), ClaimError> {
    let refusal = match usable_pool(pools, pool_name).await {
        Ok(current) if current.metadata.uid == pool.metadata.uid => return Ok(()),
        Ok(_) => ClaimError::PoolNotFound {
            pool: pool_name.to_owned(),
        },
        Err(error) => error,
    };
    let name = created.metadata.name.clone().unwrap_or_default();
    let params = DeleteParams {
        preconditions: Some(Preconditions {
            uid: created.metadata.uid.clone(),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    match blocks.delete(&name, &params).await {
        Ok(_) => {}
        Err(kube::Error::Api(status)) if status.is_not_found() => {}
        Err(error) => return Err(api_error(format!("deleting IPAMBlock {name}"))(error)),
    }
    tracing::info!(block = name, pool = pool_name, "undid a claim: {refusal}");
    Err(refusal)
}

/// Releases `block` held by `node`. Returns false when the block was not claimed at all.
pub async fn release_block(
    client: &kube::Client,
    block: IpNet,
    node: &str,
) -> Result<bool, ClaimError> {
    let blocks: Api<IpamBlock> = Api::all(client.clone());
    let name = block_name(block);
    let Some(current) = blocks
        .get_opt(&name)
        .await
        .map_err(api_error(format!("reading IPAMBlock {name}")))?
    else {
        return Ok(false);
    };
    if current.spec.node != node {
        return Err(ClaimError::NotHolder {
            block: block.trunc(),
            holder: current.spec.node,
            node: node.to_owned(),
        });
    }
    // Delete exactly the object we checked, not one re-created by someone else meanwhile.
    let params = DeleteParams {
        preconditions: Some(Preconditions {
            uid: current.metadata.uid,
            resource_version: current.metadata.resource_version,
        }),
        ..DeleteParams::default()
    };
    match blocks.delete(&name, &params).await {
        Ok(_) => {
            tracing::info!(%block, node, "released block");
            Ok(true)
        }
        Err(kube::Error::Api(status)) if status.is_not_found() => Ok(false),
        Err(error) => Err(api_error(format!("deleting IPAMBlock {name}"))(error)),
    }
}

/// The blocks `node` holds, in address order.
pub async fn node_blocks(client: &kube::Client, node: &str) -> Result<Vec<IpNet>, ClaimError> {
    let blocks: Api<IpamBlock> = Api::all(client.clone());
    let mut held: Vec<IpNet> = blocks
        .list(&ListParams::default())
        .await
        .map_err(api_error("listing IPAMBlocks"))?
        .items
        .into_iter()
        .filter(|block| block.spec.node == node)
        .filter_map(|block| block.spec.cidr.parse().ok())
        .collect();
    held.sort();
    Ok(held)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_of_a_pool_are_enumerated_in_order() {
        let pool: IpNet = "10.88.128.0/24".parse().unwrap();
        assert_eq!(block_count(pool, 26), 4);
        let blocks: Vec<String> = (0..4)
            .map(|index| nth_block(pool, 26, index).to_string())
            .collect();
        assert_eq!(
            blocks,
            [
                "10.88.128.0/26",
                "10.88.128.64/26",
                "10.88.128.128/26",
                "10.88.128.192/26"
            ]
        );
        assert_eq!(block_count("fd00::/64".parse().unwrap(), 122), 1 << 58);
        assert_eq!(block_count("10.0.0.0/8".parse().unwrap(), 8), 1);
    }

    #[test]
    fn start_offsets_stay_inside_the_pool() {
        for node in ["a", "node-1", "kwok-node-17"] {
            assert!(start_offset(node, 4) < 4);
        }
        assert_eq!(start_offset("a", 0), 0);
    }
}
