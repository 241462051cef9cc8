//! Leader election on a `coordination.k8s.io` Lease, so only one operator replica reconciles at a
//! time (15 s lease, renewed 5 s before it expires).

use std::time::Duration;

use kube::Client;
use kube_lease_manager::{LeaseManagerBuilder, LeaseManagerError};
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub const LEASE_NAME: &str = "weft-operator";
const LEASE_SECONDS: u64 = 15;
const GRACE_SECONDS: u64 = 5;

#[derive(Debug, thiserror::Error)]
pub enum LeaderError {
    #[error("setting up the leader Lease {namespace}/{LEASE_NAME}: {source}")]
    Setup {
        namespace: String,
        #[source]
        source: LeaseManagerError,
    },
}

/// A running election: `leading` turns true when this replica holds the Lease.
pub struct Election {
    pub leading: watch::Receiver<bool>,
    task: JoinHandle<Result<kube_lease_manager::LeaseManager, LeaseManagerError>>,
}

impl Election {
    /// Starts competing for the Lease in `namespace` under `identity`.
    pub async fn start(
        client: Client,
        namespace: &str,
        identity: &str,
    ) -> Result<Self, LeaderError> {
        let manager = LeaseManagerBuilder::new(client, LEASE_NAME)
            .with_namespace(namespace)
            .with_identity(identity)
            .with_duration(LEASE_SECONDS)
            .with_grace(GRACE_SECONDS)
            .with_field_manager(crate::labels::FIELD_MANAGER)
            .build()
            .await
            .map_err(|source| LeaderError::Setup {
                namespace: namespace.to_owned(),
                source,
            })?;
        let (leading, task) = manager.watch().await;
        Ok(Self { leading, task })
    }

    /// Waits until this replica leads; false when the election ended first.
    pub async fn acquired(&mut self) -> bool {
        self.leading.wait_for(|leading| *leading).await.is_ok()
    }

    /// Gives the Lease up (so a successor need not wait for it to expire) and ends the election;
    /// after `grace` it stops competing without the release, and the Lease expires by itself.
    pub async fn release(self, grace: Duration) {
        let Self { leading, mut task } = self;
        drop(leading);
        match tokio::time::timeout(grace, &mut task).await {
            Ok(Ok(Ok(_))) => tracing::info!("released the leader lease"),
            Ok(Ok(Err(error))) => tracing::warn!(%error, "releasing the leader lease failed"),
            Ok(Err(error)) => tracing::warn!(%error, "the leader election task failed"),
            Err(_) => {
                task.abort();
                tracing::warn!(
                    ?grace,
                    "releasing the leader lease took too long; it expires by itself"
                );
            }
        }
    }
}
