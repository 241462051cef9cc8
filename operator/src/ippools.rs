//! IP pool management. Pools the Installation lists are created with the managed-by label; an
//! existing identical pool without the label is adopted; a differing one is reported with the way
//! out. A managed pool no longer listed is disabled first, so no new blocks are cut from it, and
//! deleted once no IPAMBlock references it. Pools have no owner reference: they survive the
//! Installation's deletion, because running pods still use their addresses.

use std::collections::BTreeMap;

use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::{Client, ResourceExt};
use weft_api::{IpPool, IpPoolSpec, IpamBlock};

use crate::apply::{Change, Write};
use crate::labels::{FIELD_MANAGER, MANAGED_BY, MANAGED_BY_KEY};

/// What the pool step did and found.
#[derive(Debug, Default)]
pub struct PoolReport {
    pub writes: Vec<Write>,
    /// Pools the operator may not take over, each with how to resolve it.
    pub conflicts: Vec<String>,
    /// Removed pools still holding blocks.
    pub draining: Vec<String>,
}

fn is_managed(pool: &IpPool) -> bool {
    pool.labels().get(MANAGED_BY_KEY).map(String::as_str) == Some(MANAGED_BY)
}

/// Pool specs compared with their defaults resolved, so `blockSize: 26` equals an absent one.
fn same_spec(a: &IpPoolSpec, b: &IpPoolSpec) -> bool {
    a.cidr == b.cidr
        && a.block_size_or_default() == b.block_size_or_default()
        && a.encapsulation.unwrap_or_default() == b.encapsulation.unwrap_or_default()
        && a.nat_outgoing.unwrap_or_default() == b.nat_outgoing.unwrap_or_default()
        && a.node_selector_or_default() == b.node_selector_or_default()
        && a.disabled.unwrap_or_default() == b.disabled.unwrap_or_default()
}

/// The first field where an unmanaged pool differs, for the conflict message.
fn first_spec_difference(live: &IpPoolSpec, wanted: &IpPoolSpec) -> String {
    let pairs = [
        ("cidr", live.cidr.clone(), wanted.cidr.clone()),
        (
            "blockSize",
            live.block_size_or_default().to_string(),
            wanted.block_size_or_default().to_string(),
        ),
        (
            "encapsulation",
            format!("{:?}", live.encapsulation.unwrap_or_default()),
            format!("{:?}", wanted.encapsulation.unwrap_or_default()),
        ),
        (
            "natOutgoing",
            format!("{:?}", live.nat_outgoing.unwrap_or_default()),
            format!("{:?}", wanted.nat_outgoing.unwrap_or_default()),
        ),
        (
            "nodeSelector",
            live.node_selector_or_default().to_owned(),
            wanted.node_selector_or_default().to_owned(),
        ),
        (
            "disabled",
            live.disabled.unwrap_or_default().to_string(),
            wanted.disabled.unwrap_or_default().to_string(),
        ),
    ];
    pairs
        .into_iter()
        .find(|(_, live, wanted)| live != wanted)
        .map(|(field, live, wanted)| {
            format!("spec.{field} is {live:?}, the Installation wants {wanted:?}")
        })
        .unwrap_or_default()
}

/// The message telling the admin how to resolve a pool the operator will not take over.
pub fn conflict_message(name: &str, live: &IpPoolSpec, wanted: &IpPoolSpec) -> String {
    format!(
        "IPPool {name} exists, was not created by the operator and differs from \
         spec.network.ipPools[name={name}] ({}); to resolve: make the Installation's pool \
         identical to it (it is then adopted), give the Installation's pool another name, or \
         delete IPPool {name} if no pod uses it",
        first_spec_difference(live, wanted)
    )
}

pub struct PoolManager {
    pools: Api<IpPool>,
    blocks: Api<IpamBlock>,
}

impl PoolManager {
    pub fn new(client: Client) -> Self {
        Self {
            pools: Api::all(client.clone()),
            blocks: Api::all(client),
        }
    }

    async fn apply(&self, pool: &IpPool) -> Result<(), kube::Error> {
        let params = PatchParams::apply(FIELD_MANAGER).force();
        self.pools
            .patch(&pool.name_any(), &params, &Patch::Apply(pool))
            .await
            .map(drop)
    }

    /// Takes over an identical unlabelled pool by adding the operator's labels only: its spec
    /// already matches, and re-applying fields its author left to defaults could trip the
    /// immutability rules.
    async fn adopt(&self, pool: &IpPool) -> Result<(), kube::Error> {
        let params = PatchParams::apply(FIELD_MANAGER).force();
        let labels = serde_json::json!({
            "apiVersion": "network.weft.dev/v1",
            "kind": "IPPool",
            "metadata": {"name": pool.name_any(), "labels": pool.labels()},
        });
        self.pools
            .patch(&pool.name_any(), &params, &Patch::Apply(&labels))
            .await
            .map(drop)
    }

    /// How many IPAMBlocks reference pool `name` (a fresh, consistent list).
    async fn blocks_of(&self, name: &str) -> Result<usize, kube::Error> {
        let blocks = self.blocks.list(&ListParams::default()).await?.items;
        Ok(blocks
            .iter()
            .filter(|block| block.spec.pool == name)
            .count())
    }

    /// Brings the pools in line with `desired` (rendered from the Installation).
    pub async fn sync(&self, desired: &[IpPool]) -> Result<PoolReport, kube::Error> {
        let mut report = PoolReport::default();
        let mut live: BTreeMap<String, IpPool> = self
            .pools
            .list(&ListParams::default())
            .await?
            .items
            .into_iter()
            .map(|pool| (pool.name_any(), pool))
            .collect();
        for pool in desired {
            let name = pool.name_any();
            let change = match live.remove(&name) {
                None => Some(Change::Created),
                Some(current) if is_managed(&current) => {
                    (!same_spec(&current.spec, &pool.spec)).then_some(Change::Updated)
                }
                Some(current) if same_spec(&current.spec, &pool.spec) => Some(Change::Adopted),
                Some(current) => {
                    report
                        .conflicts
                        .push(conflict_message(&name, &current.spec, &pool.spec));
                    None
                }
            };
            let Some(change) = change else { continue };
            let applied = if change == Change::Adopted {
                self.adopt(pool).await
            } else {
                self.apply(pool).await
            };
            match applied {
                Ok(()) => report.writes.push(Write {
                    kind: "IPPool".into(),
                    name,
                    change,
                }),
                Err(kube::Error::Api(status)) if status.code == 422 => {
                    report.conflicts.push(format!(
                        "IPPool {name} cannot be changed as the Installation asks ({}); a pool's \
                         cidr and blockSize are immutable: add a pool with a new name and remove \
                         {name} from the Installation instead",
                        status.message
                    ));
                }
                Err(error) => return Err(error),
            }
        }
        for pool in live.into_values().filter(is_managed) {
            self.remove(pool, &mut report).await?;
        }
        Ok(report)
    }

    /// Removes a managed pool the Installation no longer lists: disabled first (claims refuse
    /// it, and a claim racing with the disabling undoes itself when it sees it; see
    /// `weft_cni::claim`), then blocks are counted with a read made after the disabling, and
    /// only a pool with none is deleted. A pool deleted without the disabling could lose a race
    /// with a claim that read it just before and leave an IPAMBlock without a pool.
    async fn remove(&self, pool: IpPool, report: &mut PoolReport) -> Result<(), kube::Error> {
        let name = pool.name_any();
        if pool.spec.disabled != Some(true) {
            let mut disabled = pool.clone();
            disabled.metadata.managed_fields = None;
            disabled.metadata.resource_version = None;
            disabled.spec.disabled = Some(true);
            disabled.status = None;
            self.apply(&disabled).await?;
            report.writes.push(Write {
                kind: "IPPool".into(),
                name: name.clone(),
                change: Change::Updated,
            });
        }
        let count = self.blocks_of(&name).await?;
        if count > 0 {
            report.draining.push(format!(
                "pool {name} still has {count} allocated block{}; it is deleted when they are \
                 released",
                if count == 1 { "" } else { "s" }
            ));
            return Ok(());
        }
        match self.pools.delete(&name, &Default::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(status)) if status.code == 404 => {}
            Err(error) => return Err(error),
        }
        report.writes.push(Write {
            kind: "IPPool".into(),
            name,
            change: Change::Deleted,
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(cidr: &str, block_size: Option<i32>) -> IpPoolSpec {
        IpPoolSpec {
            cidr: cidr.into(),
            block_size,
            ..Default::default()
        }
    }

    #[test]
    fn defaults_count_as_identical() {
        assert!(same_spec(
            &spec("10.0.0.0/16", None),
            &spec("10.0.0.0/16", Some(26))
        ));
        assert!(!same_spec(
            &spec("10.0.0.0/16", None),
            &spec("10.0.0.0/16", Some(24))
        ));
    }

    #[test]
    fn conflict_names_the_field_and_the_ways_out() {
        let message = conflict_message(
            "pool-a",
            &spec("10.1.0.0/16", None),
            &spec("10.2.0.0/16", None),
        );
        assert!(
            message.contains("spec.cidr is \"10.1.0.0/16\""),
            "{message}"
        );
        assert!(message.contains("delete IPPool pool-a"), "{message}");
    }
}
