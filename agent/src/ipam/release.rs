//! Releasing the node's empty blocks. Ordered against the plugin: under the allocation store's
//! lock the block is checked empty and dropped from the node state file (ADD reads the file
//! under the same lock), and only then is its IPAMBlock deleted. From that moment the block is
//! out of the file for good: the watch shows the deletion later, and until it does the view's
//! word on that block does not count (see `NodeIpam::inputs`). A deletion that failed or timed
//! out is retried on the next step.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::time::Instant;

use ipnet::{IpNet, Ipv4Net};
use weft_cni::claim::{self, ClaimError};

use super::{Inputs, IpamError, NodeIpam, Released, size};

impl NodeIpam {
    /// Releases blocks that stayed empty for the grace period, keeping at least one usable block
    /// and half a block of free addresses.
    pub(super) async fn release_empty(
        &mut self,
        inputs: &Inputs,
        usable: &mut Vec<Ipv4Net>,
        used: &BTreeMap<Ipv4Net, usize>,
    ) -> Result<(), IpamError> {
        let now = Instant::now();
        let empty: BTreeSet<Ipv4Net> = inputs
            .held
            .keys()
            .filter(|block| used.get(block).copied().unwrap_or(0) == 0)
            .copied()
            .collect();
        self.empty_since.retain(|block, _| empty.contains(block));
        for block in &empty {
            self.empty_since.entry(*block).or_insert(now);
        }
        for block in empty {
            let usable_block = usable.contains(&block);
            let spare: usize = usable
                .iter()
                .filter(|other| **other != block)
                .map(|other| size(other) - used.get(other).copied().unwrap_or(0))
                .sum();
            let keep = usable_block && (usable.len() <= 1 || spare < size(&block) / 2);
            let waited = self
                .empty_since
                .get(&block)
                .is_some_and(|since| now.duration_since(*since) >= self.settings.block_grace);
            if keep || !waited {
                continue;
            }
            {
                let store = self.open_store()?;
                let still_empty = !store.records()?.iter().any(|record| match record.ip {
                    IpAddr::V4(ip) => block.contains(&ip),
                    IpAddr::V6(_) => false,
                });
                if !still_empty {
                    continue;
                }
                usable.retain(|other| *other != block);
                let mut state = self.written.clone().unwrap_or_default();
                state.blocks.retain(|other| *other != IpNet::V4(block));
                self.write(state)?;
                // From here on the block is out of the file for good, whatever the API says.
                self.released.insert(block, Released::new());
            }
            self.claimed.remove(&block);
            self.empty_since.remove(&block);
            self.release(block).await;
        }
        Ok(())
    }

    /// Deletes the IPAMBlock of a released block; a failure is logged and retried next step.
    async fn release(&mut self, block: Ipv4Net) {
        let call = claim::release_block(&self.client, IpNet::V4(block), &self.settings.node);
        let outcome = match tokio::time::timeout(self.api_timeout, call).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(error @ ClaimError::NotHolder { .. })) => {
                tracing::warn!(%block, %error, "a released block is held by another node now");
                Ok(())
            }
            Ok(Err(error)) => Err(IpamError::from(error)),
            Err(_) => Err(IpamError::Timeout {
                action: format!("releasing block {block}"),
                after: self.api_timeout,
            }),
        };
        match outcome {
            Ok(()) => {
                if let Some(released) = self.released.get_mut(&block) {
                    released.deleted = true;
                }
                self.metrics.count_freed("block", 1);
                tracing::info!(%block, "released empty block");
            }
            Err(error) => {
                tracing::warn!(%block, %error, "releasing an empty block failed; retrying")
            }
        }
    }

    /// Retries the releases whose API call failed (the blocks are out of the file already).
    pub(super) async fn retry_releases(&mut self) {
        let pending: Vec<Ipv4Net> = self
            .released
            .iter()
            .filter(|(_, released)| !released.deleted)
            .map(|(block, _)| *block)
            .collect();
        for block in pending {
            self.release(block).await;
        }
    }
}
