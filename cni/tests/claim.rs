//! The block claim library against the real local API server: concurrent claimers get distinct
//! blocks, claims beyond the pool's size fail clearly, release frees a block for others, and only
//! the holder may release.

use std::collections::HashSet;

use ipnet::IpNet;
use kube::Client;
use kube::api::{Api, PostParams};
use weft_api::{IpPool, IpPoolSpec, IpamBlock};
use weft_cni::claim::{ClaimError, claim_block, node_blocks, release_block};

async fn client() -> anyhow::Result<Client> {
    let cluster = weft_e2e::LocalCluster::shared().await?;
    let client = cluster.client().await?;
    install_crds(&client).await?;
    Ok(client)
}

/// Applies weft's CRDs (IPPool and IPAMBlock among them) and waits until they are served.
async fn install_crds(client: &Client) -> anyhow::Result<()> {
    weft_e2e::install_crds(client, weft_api::crds(), "weft-cni-tests").await?;
    Ok(())
}

async fn create_pool(
    client: &Client,
    name: &str,
    cidr: &str,
    block_size: i32,
    disabled: bool,
) -> anyhow::Result<()> {
    let pools: Api<IpPool> = Api::all(client.clone());
    let spec = IpPoolSpec {
        cidr: cidr.into(),
        block_size: Some(block_size),
        disabled: disabled.then_some(true),
        ..IpPoolSpec::default()
    };
    pools
        .create(&PostParams::default(), &IpPool::new(name, spec))
        .await?;
    Ok(())
}

#[tokio::test]
async fn twenty_concurrent_claimers_get_distinct_blocks() -> anyhow::Result<()> {
    let client = client().await?;
    create_pool(&client, "wc-claim-twenty", "10.88.128.0/20", 26, false).await?;
    let claims = (0..20).map(|index| {
        let client = client.clone();
        tokio::spawn(async move {
            let node = format!("wc-claim-node-{index}");
            let block = claim_block(&client, "wc-claim-twenty", &node).await;
            (node, block)
        })
    });
    let mut seen = HashSet::new();
    let pool: IpNet = "10.88.128.0/20".parse()?;
    for claim in futures_join(claims).await {
        let (node, block) = claim;
        let block = block?;
        assert!(
            pool.contains(&block) && block.prefix_len() == 26,
            "{block} is not a /26 of {pool}"
        );
        assert!(seen.insert(block), "block {block} was handed out twice");
        assert_eq!(node_blocks(&client, &node).await?, [block]);
    }
    assert_eq!(seen.len(), 20);
    let objects: Api<IpamBlock> = Api::all(client.clone());
    let in_pool = objects
        .list(&Default::default())
        .await?
        .items
        .into_iter()
        .filter(|b| b.spec.pool == "wc-claim-twenty")
        .count();
    assert_eq!(in_pool, 20);
    Ok(())
}

/// Awaits every task (the crate has no futures dependency of its own).
async fn futures_join<T: Send + 'static>(
    tasks: impl Iterator<Item = tokio::task::JoinHandle<T>>,
) -> Vec<T> {
    let mut results = Vec::new();
    for task in tasks.collect::<Vec<_>>() {
        results.push(task.await.expect("claimer task"));
    }
    results
}

#[tokio::test]
async fn claims_beyond_the_pool_fail_and_release_frees_a_block() -> anyhow::Result<()> {
    let client = client().await?;
    create_pool(&client, "wc-claim-small", "10.88.144.0/24", 26, false).await?;
    let mut held = Vec::new();
    for index in 0..4 {
        held.push(claim_block(&client, "wc-claim-small", &format!("wc-small-{index}")).await?);
    }
    assert_eq!(held.iter().collect::<HashSet<_>>().len(), 4);
    let error = claim_block(&client, "wc-claim-small", "wc-small-late")
        .await
        .unwrap_err();
    assert!(
        matches!(error, ClaimError::PoolExhausted { total: 4, .. }),
        "{error:?}"
    );
    assert_eq!(
        error.to_string(),
        "IPPool \"wc-claim-small\" (10.88.144.0/24) is exhausted: all 4 blocks of size /26 are claimed"
    );

    // Only the holder releases; then the freed block is exactly what the next claimer gets.
    let freed = held[2];
    let wrong = release_block(&client, freed, "wc-small-0")
        .await
        .unwrap_err();
    assert!(matches!(wrong, ClaimError::NotHolder { .. }), "{wrong:?}");
    assert!(release_block(&client, freed, "wc-small-2").await?);
    assert!(
        !release_block(&client, freed, "wc-small-2").await?,
        "a second release finds nothing"
    );
    assert!(node_blocks(&client, "wc-small-2").await?.is_empty());
    assert_eq!(
        claim_block(&client, "wc-claim-small", "wc-small-late").await?,
        freed
    );
    assert_eq!(node_blocks(&client, "wc-small-late").await?, [freed]);
    Ok(())
}

#[tokio::test]
async fn missing_and_disabled_pools_are_reported() -> anyhow::Result<()> {
    let client = client().await?;
    let missing = claim_block(&client, "wc-claim-nonexistent", "n")
        .await
        .unwrap_err();
    assert_eq!(
        missing.to_string(),
        "IPPool \"wc-claim-nonexistent\" not found"
    );
    create_pool(&client, "wc-claim-off", "10.88.160.0/24", 26, true).await?;
    let disabled = claim_block(&client, "wc-claim-off", "n").await.unwrap_err();
    assert!(
        matches!(disabled, ClaimError::PoolDisabled { .. }),
        "{disabled:?}"
    );
    Ok(())
}
