//! `weft-agent controllers`: cluster-wide IPAM garbage collection, leader-elected so that one
//! replica acts at a time. A block whose node no longer exists is released after a grace period
//! (a node that is only being replaced keeps its blocks); each release is an Event on the
//! block's IPPool and a count in `weft_agent_freed_total{kind="block"}`.
//!
//! Addresses of deleted pods are freed by the agent on each node, which holds the allocation
//! store; pools removed from the Installation are disabled, drained and deleted by the operator.

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Node;
use kube::api::{DeleteParams, ListParams, Preconditions};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::{Api, Client, Resource, ResourceExt};
use kube_lease_manager::LeaseManagerBuilder;
use tokio::signal::unix::{SignalKind, signal};
use weft_api::{IpPool, IpamBlock};

use crate::health::{self, Health};
use crate::metrics::Metrics;

/// The Lease the replicas compete for.
pub const LEASE_NAME: &str = "weft-controllers";

#[derive(Debug, Clone)]
pub struct ControllerSettings {
    pub namespace: String,
    pub identity: String,
    pub block_grace: Duration,
    pub interval: Duration,
    pub health: SocketAddr,
}

#[derive(Debug, thiserror::Error)]
pub enum ControllerError {
    #[error("connecting to the API server: {0}")]
    Client(#[source] kube::Error),
    #[error("leader election on Lease {namespace}/{LEASE_NAME}: {message}")]
    Election { namespace: String, message: String },
    #[error("serving health: {0}")]
    Health(std::io::Error),
    #[error("signal handler: {0}")]
    Signal(std::io::Error),
}

/// The blocks of deleted nodes and since when their node has been missing.
struct Collector {
    client: Client,
    recorder: Recorder,
    metrics: Metrics,
    grace: Duration,
    missing_since: HashMap<String, Instant>,
}

impl Collector {
    async fn pass(&mut self) -> Result<usize, kube::Error> {
        let nodes: BTreeSet<String> = Api::<Node>::all(self.client.clone())
            .list_metadata(&ListParams::default())
            .await?
            .items
            .into_iter()
            .map(|node| node.name_any())
            .collect();
        let blocks_api: Api<IpamBlock> = Api::all(self.client.clone());
        let blocks = blocks_api.list(&ListParams::default()).await?.items;
        let now = Instant::now();
        let orphaned: Vec<&IpamBlock> = blocks
            .iter()
            .filter(|block| !nodes.contains(&block.spec.node))
            .collect();
        let orphan_names: BTreeSet<String> = orphaned.iter().map(|b| b.name_any()).collect();
        self.missing_since
            .retain(|name, _| orphan_names.contains(name));
        let mut released = 0;
        for block in orphaned {
            let name = block.name_any();
            let since = *self.missing_since.entry(name.clone()).or_insert(now);
            if now.duration_since(since) < self.grace {
                continue;
            }
            let params = DeleteParams {
                preconditions: Some(Preconditions {
                    uid: block.metadata.uid.clone(),
                    resource_version: block.metadata.resource_version.clone(),
                }),
                ..DeleteParams::default()
            };
            match blocks_api.delete(&name, &params).await {
                Ok(_) => {}
                Err(kube::Error::Api(status)) if status.is_not_found() || status.code == 409 => {
                    continue;
                }
                Err(error) => return Err(error),
            }
            released += 1;
            self.missing_since.remove(&name);
            self.metrics.count_freed("block", 1);
            tracing::info!(block = %block.spec.cidr, node = %block.spec.node, "released the block of a deleted node");
            self.announce(block).await;
        }
        Ok(released)
    }

    async fn announce(&self, block: &IpamBlock) {
        // The Event is about the live pool (with its uid) when it still exists.
        let reference = match Api::<IpPool>::all(self.client.clone())
            .get_opt(&block.spec.pool)
            .await
        {
            Ok(Some(live)) => live.object_ref(&()),
            _ => IpPool::new(&block.spec.pool, Default::default()).object_ref(&()),
        };
        let event = Event {
            type_: EventType::Normal,
            reason: "BlockReleased".into(),
            note: Some(format!(
                "released block {} of node {}, which no longer exists",
                block.spec.cidr, block.spec.node
            )),
            action: "ReleaseBlock".into(),
            secondary: None,
        };
        if let Err(error) = self.recorder.publish(&event, &reference).await {
            tracing::warn!(%error, "recording the BlockReleased event");
        }
    }
}

pub async fn run(settings: ControllerSettings) -> Result<(), ControllerError> {
    let client = Client::try_default()
        .await
        .map_err(ControllerError::Client)?;
    let metrics = Metrics::new();
    // Liveness of the controllers is the process serving: their loop waits on the Lease.
    let health = Health::new(std::time::Duration::MAX);
    health::serve(settings.health, health.clone(), metrics.clone())
        .await
        .map_err(ControllerError::Health)?;
    let election = |message: String| ControllerError::Election {
        namespace: settings.namespace.clone(),
        message,
    };
    let manager = LeaseManagerBuilder::new(client.clone(), LEASE_NAME)
        .with_namespace(&settings.namespace)
        .with_identity(&settings.identity)
        .with_duration(15)
        .with_grace(5)
        .with_field_manager("weft-controllers")
        .build()
        .await
        .map_err(|error| election(error.to_string()))?;
    let (mut leading, lease_task) = manager.watch().await;
    health.set_ready();
    let mut collector = Collector {
        client: client.clone(),
        recorder: Recorder::new(
            client.clone(),
            Reporter {
                controller: "weft-controllers".into(),
                instance: Some(settings.identity.clone()),
            },
        ),
        metrics,
        grace: settings.block_grace,
        missing_since: HashMap::new(),
    };
    let mut terminate = signal(SignalKind::terminate()).map_err(ControllerError::Signal)?;
    let mut interrupt = signal(SignalKind::interrupt()).map_err(ControllerError::Signal)?;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(settings.interval) => {}
            changed = leading.changed() => if changed.is_err() { break },
            _ = terminate.recv() => break,
            _ = interrupt.recv() => break,
        }
        if !*leading.borrow() {
            collector.missing_since.clear();
            continue;
        }
        if let Err(error) = collector.pass().await {
            tracing::warn!(%error, "garbage collection pass failed; retrying");
        }
    }
    // Dropping the receiver ends the election task, which gives the Lease up.
    drop(leading);
    let _ = lease_task.await;
    Ok(())
}
