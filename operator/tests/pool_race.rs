//! The removal of a pool racing with block claims, on a real control plane: many nodes claim
//! blocks of a pool at the moment the operator's pool step removes it. Whatever the interleaving,
//! no IPAMBlock outlives its pool: the pool is either gone with no block referencing it, or kept
//! (disabled, draining) while its blocks exist; and once the claims are released it is deleted.

mod common;

use std::sync::Arc;

use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::{Client, ResourceExt};
use tokio::sync::Barrier;
use weft_api::{IpPool, IpamBlock};
use weft_cni::claim::{ClaimError, claim_block, release_block};
use weft_operator::ippools::PoolManager;
use weft_operator::labels::MANAGED_BY;

const CLAIMERS: usize = 12;
const ROUNDS: usize = 6;

async fn create_managed_pool(client: &Client, name: &str, cidr: &str) -> anyhow::Result<()> {
    let pool = serde_json::json!({
        "apiVersion": "network.weft.dev/v1", "kind": "IPPool",
        "metadata": {"name": name, "labels": {"app.kubernetes.io/managed-by": MANAGED_BY}},
        "spec": {"cidr": cidr, "blockSize": 26},
    });
    Api::<IpPool>::all(client.clone())
        .patch(
            name,
            &PatchParams::apply(common::TEST_MANAGER).force(),
            &Patch::Apply(&pool),
        )
        .await?;
    Ok(())
}

async fn blocks_of(client: &Client, pool: &str) -> anyhow::Result<Vec<IpamBlock>> {
    Ok(Api::<IpamBlock>::all(client.clone())
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter(|block| block.spec.pool == pool)
        .collect())
}

/// A pool exists, or no block references it.
async fn assert_no_orphan(client: &Client, pool: &str, when: &str) -> anyhow::Result<()> {
    let exists = Api::<IpPool>::all(client.clone())
        .get_opt(pool)
        .await?
        .is_some();
    let blocks = blocks_of(client, pool).await?;
    assert!(
        exists || blocks.is_empty(),
        "{when}: IPPool {pool} is gone but {} IPAMBlocks still reference it: {:?}",
        blocks.len(),
        blocks.iter().map(|b| b.name_any()).collect::<Vec<_>>()
    );
    Ok(())
}

#[tokio::test]
async fn claims_racing_with_pool_removal_leave_no_orphan_block() -> anyhow::Result<()> {
    let cluster = common::cluster().await?;
    let client = cluster.client().await?;
    let operator = cluster
        .client_as_service_account(common::OPERATOR_NAMESPACE, common::OPERATOR_ACCOUNT)
        .await?;
    for round in 0..ROUNDS {
        let pool = format!("race-{round}");
        create_managed_pool(&client, &pool, &format!("10.{}.0.0/20", 100 + round)).await?;
        let barrier = Arc::new(Barrier::new(CLAIMERS + 1));
        let claimers: Vec<_> = (0..CLAIMERS)
            .map(|index| {
                let (client, barrier, pool) = (client.clone(), barrier.clone(), pool.clone());
                tokio::spawn(async move {
                    let node = format!("race-node-{index}");
                    barrier.wait().await;
                    (node.clone(), claim_block(&client, &pool, &node).await)
                })
            })
            .collect();
        barrier.wait().await;
        // The Installation no longer lists the pool: the operator's pool step removes it.
        let report = PoolManager::new(operator.clone()).sync(&[]).await?;
        let mut claimed = Vec::new();
        for claimer in claimers {
            let (node, result) = claimer.await?;
            match result {
                Ok(block) => claimed.push((node, block)),
                Err(ClaimError::PoolDisabled { .. } | ClaimError::PoolNotFound { .. }) => {}
                Err(other) => anyhow::bail!("{node}: unexpected claim error: {other}"),
            }
        }
        assert_no_orphan(&client, &pool, &format!("round {round}")).await?;
        println!(
            "round {round}: {} claims kept, draining {:?}",
            claimed.len(),
            report.draining
        );
        // Claims refuse the disabled pool from now on; released claims let it go.
        if Api::<IpPool>::all(client.clone())
            .get_opt(&pool)
            .await?
            .is_some()
        {
            let refused = claim_block(&client, &pool, "late-node").await;
            assert!(
                matches!(refused, Err(ClaimError::PoolDisabled { .. })),
                "{refused:?}"
            );
        }
        for (node, block) in claimed {
            release_block(&client, block, &node).await?;
        }
        PoolManager::new(operator.clone()).sync(&[]).await?;
        assert!(
            Api::<IpPool>::all(client.clone())
                .get_opt(&pool)
                .await?
                .is_none(),
            "round {round}: the drained pool is deleted"
        );
        assert!(blocks_of(&client, &pool).await?.is_empty());
    }
    Ok(())
}
