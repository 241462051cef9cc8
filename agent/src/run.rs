//! `weft-agent run`: the node agent's loop. Watches the cluster, keeps the node's IPAM state,
//! publishes the node's address and MTU, and programs routes, NAT and policy.
//!
//! Restart without disruption: nothing in the kernel is touched until every watch has listed
//! once; then routes are diffed against the kernel's protocol-81 routes, the VXLAN device is
//! adopted when it is ours, and the nft tables are replaced in one transaction each. Nothing is
//! ever flushed first. On SIGTERM the agent leaves everything in place (a rolling update must
//! not cut pods off) unless the Installation is gone, in which case it removes what it created.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kube::{Api, Client};
use tokio::signal::unix::{SignalKind, signal};
use tracing::Instrument;
use weft_api::Installation;

use crate::dataplane::{Dataplane, DataplaneError, NodeFacts, Scope, encapsulates};
use crate::detect::AddressMethod;
use crate::health::{self, Ready};
use crate::install_cni::{self, CniPaths};
use crate::ipam::{IpamSettings, NodeIpam};
use crate::kernel::Kernel;
use crate::metrics::Metrics;
use crate::node_status;
use crate::routes::vtep_mac;
use crate::watch::{self, Shared};

/// How often the IPAM state is checked (allocations are local files, so this is cheap).
const IPAM_TICK: Duration = Duration::from_millis(100);

/// Everything `run` needs to know.
#[derive(Debug, Clone)]
pub struct RunSettings {
    pub node: String,
    pub cni: CniPaths,
    pub netns: Option<PathBuf>,
    pub health: SocketAddr,
    pub block_grace: Duration,
    pub address_grace: Duration,
    pub resync: Duration,
}

/// Why the agent stopped.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("connecting to the API server: {0}")]
    Client(#[source] kube::Error),
    #[error("serving health on {address}: {source}")]
    Health {
        address: SocketAddr,
        source: std::io::Error,
    },
    #[error("opening the node's network namespace: {0}")]
    Kernel(#[from] crate::kernel::KernelError),
    #[error("signal handler: {0}")]
    Signal(std::io::Error),
}

/// What the loop last published, so unchanged values are not written again.
#[derive(Default)]
struct Published {
    annotations: Option<BTreeMap<String, String>>,
    condition: bool,
}

pub async fn run(settings: RunSettings) -> Result<(), RunError> {
    let span = tracing::info_span!("agent", node = %settings.node);
    run_in_span(settings).instrument(span).await
}

async fn run_in_span(settings: RunSettings) -> Result<(), RunError> {
    let client = Client::try_default().await.map_err(RunError::Client)?;
    let metrics = Metrics::new();
    let ready = Ready::default();
    let bound = health::serve(settings.health, ready.clone(), metrics.clone())
        .await
        .map_err(|source| RunError::Health {
            address: settings.health,
            source,
        })?;
    tracing::info!(health = %bound, netns = ?settings.netns, "weft-agent starting");
    let kernel = Kernel::open(settings.netns.as_deref())?;
    let mut dataplane = Dataplane::new(kernel, &settings.node, metrics.clone());
    let shared = Arc::new(Shared::default());
    let watchers = watch::spawn_all(&client, &shared);
    let network = conflist_network(&settings.cni);
    let mut ipam = NodeIpam::new(
        IpamSettings {
            node: settings.node.clone(),
            node_state_file: settings.cni.node_state_file(),
            data_dir: settings.cni.ipam_dir(),
            network,
            block_grace: settings.block_grace,
            address_grace: settings.address_grace,
        },
        client.clone(),
        metrics.clone(),
    );
    let mut terminate = signal(SignalKind::terminate()).map_err(RunError::Signal)?;
    let mut interrupt = signal(SignalKind::interrupt()).map_err(RunError::Signal)?;
    let mut published = Published::default();
    let mut pod_mtu = None;
    // (routing, policy) generations last programmed; None forces a full sync.
    let mut applied: Option<(u64, u64)> = None;
    let mut facts: Option<NodeFacts> = None;
    let mut next_resync = Instant::now();
    let mut failures = 0u32;
    loop {
        tokio::select! {
            _ = shared.changed.notified() => {}
            _ = tokio::time::sleep(IPAM_TICK) => {}
            _ = terminate.recv() => break,
            _ = interrupt.recv() => break,
        }
        if let Err(error) = ipam.step(&shared, pod_mtu).await {
            tracing::warn!(%error, "IPAM step failed; retrying");
        }
        let (generations, synced) = {
            let view = shared.view();
            (
                (view.routing_generation, view.policy_generation),
                view.all_synced(),
            )
        };
        // A new tunnel address must reach the VXLAN device: a routing pass.
        if dataplane.tunnel != ipam.tunnel_address() {
            dataplane.tunnel = ipam.tunnel_address();
            applied = None;
        }
        let full = applied.is_none() || facts.is_none() || Instant::now() >= next_resync;
        let scope = match applied {
            Some((routing, policy)) if !full => Scope {
                routing: routing != generations.0,
                policy: policy != generations.1,
            },
            _ => Scope::ALL,
        };
        // Ready means pods can be networked: the node state file must be there as well.
        if !synced || !(scope.routing || scope.policy) || !ipam.has_written() {
            continue;
        }
        match sync_once(
            &client,
            &settings,
            &shared,
            &mut dataplane,
            &mut published,
            scope,
            &mut facts,
        )
        .await
        {
            Ok(mtu) => {
                if pod_mtu != Some(mtu) {
                    pod_mtu = Some(mtu);
                    // The plugin reads the MTU from the node state file: write it before
                    // anyone is told the node is ready.
                    if let Err(error) = ipam.step(&shared, pod_mtu).await {
                        tracing::warn!(%error, "IPAM step failed; retrying");
                        continue;
                    }
                }
                applied = Some(generations);
                if full {
                    next_resync = Instant::now() + settings.resync;
                }
                failures = 0;
                metrics.count_sync("ok");
                release_freed_memory();
                if !ready.get() {
                    ready.set();
                    tracing::info!("first sync programmed; ready");
                }
                if !published.condition {
                    match node_status::set_network_available(&client, &settings.node).await {
                        Ok(()) => published.condition = true,
                        Err(error) => tracing::warn!(%error, "setting NetworkUnavailable=False"),
                    }
                }
            }
            Err(error) => {
                metrics.count_sync("error");
                failures += 1;
                let wait = Duration::from_millis(100 * 2u64.pow(failures.min(6)));
                next_resync = Instant::now() + wait;
                applied = None;
                tracing::warn!(%error, retry_in = ?wait, "sync failed");
            }
        }
    }
    for watcher in watchers {
        watcher.abort();
    }
    shutdown(&client, &settings, &mut dataplane).await;
    Ok(())
}

/// Hands the memory a sync freed (a whole compile, the initial lists) back to the system; the
/// compile allocates and frees several MiB each time, which fragmentation would otherwise keep.
fn release_freed_memory() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only returns free heap pages to the kernel.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// The conflist's network name (the allocation store's directory); `weft` when unreadable.
fn conflist_network(cni: &CniPaths) -> String {
    std::fs::read(cni.conflist())
        .ok()
        .and_then(|bytes| serde_json::from_slice::<serde_json::Value>(&bytes).ok())
        .and_then(|value| value.get("name")?.as_str().map(str::to_owned))
        .unwrap_or_else(|| "weft".into())
}

/// One sync of the parts in `scope`; returns the pod MTU this node carries. The node's address
/// and MTU are detected again with every routing pass and kept for policy-only passes.
async fn sync_once(
    client: &Client,
    settings: &RunSettings,
    shared: &Shared,
    dataplane: &mut Dataplane,
    published: &mut Published,
    scope: Scope,
    facts: &mut Option<NodeFacts>,
) -> Result<u32, DataplaneError> {
    let encapsulated = encapsulates(&shared.view());
    let current = match (facts.as_ref(), scope.routing) {
        (Some(known), false) => known.clone(),
        _ => {
            let method = {
                let view = shared.view();
                let spec = view
                    .installation()
                    .and_then(|installation| installation.autodetection.clone());
                AddressMethod::from_spec(spec.as_ref())?
            };
            dataplane.detect(&method)?
        }
    };
    let mtu = current.pod_mtu(encapsulated);
    let mac = encapsulated.then(|| vtep_mac(&settings.node));
    let wanted = node_status::desired_annotations(&current.address, mac.as_ref(), mtu);
    if published.annotations.as_ref() != Some(&wanted) {
        match node_status::publish(client, &settings.node, &wanted).await {
            Ok(()) => published.annotations = Some(wanted),
            Err(error) => tracing::warn!(%error, "publishing the node's annotations"),
        }
    }
    let report = tokio::task::block_in_place(|| {
        let view = shared.view();
        dataplane.sync(&view, &current, scope)
    })?;
    *facts = Some(current);
    if report.routes_changed + report.entries_changed > 0 || report.policy_lines > 0 {
        tracing::info!(
            routes = report.routes_changed,
            entries = report.entries_changed,
            policy_lines = report.policy_lines,
            "dataplane updated"
        );
    }
    for (cidr, why) in &report.unreachable {
        tracing::debug!(%cidr, %why, "no route");
    }
    Ok(mtu)
}

/// On stop: remove what the agent created only when the Installation is gone.
async fn shutdown(client: &Client, settings: &RunSettings, dataplane: &mut Dataplane) {
    let installations: Api<Installation> = Api::all(client.clone());
    let gone = match installations.get_opt(weft_api::INSTALLATION_NAME).await {
        Ok(None) => true,
        Ok(Some(installation)) => installation.metadata.deletion_timestamp.is_some(),
        Err(error) => {
            tracing::warn!(%error, "cannot tell whether weft is being uninstalled; leaving the node as is");
            false
        }
    };
    if !gone {
        tracing::info!("stopping; the dataplane stays in place");
        return;
    }
    tracing::info!("the Installation is gone: removing weft from this node");
    if let Err(error) = tokio::task::block_in_place(|| dataplane.remove_all()) {
        tracing::warn!(%error, "removing the dataplane");
    }
    if let Err(error) = install_cni::uninstall(&settings.cni) {
        tracing::warn!(%error, "removing the CNI config and binaries");
    }
    let _ = std::fs::remove_file(settings.cni.node_state_file());
}
