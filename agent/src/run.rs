//! `weft-agent run`: the node agent. Watches the cluster, keeps the node's IPAM state,
//! publishes the node's address and MTU, and programs routes, NAT and policy.
//!
//! Three loops, so that no API call can hold up the dataplane: the dataplane loop (this
//! module) only reads the watched view and programs the kernel; node IPAM (block claims and
//! releases, see [`crate::ipam`]) and the Node's annotations and condition
//! ([`crate::node_publisher`]) run in their own tasks and exchange values with it through watch
//! channels.
//!
//! Restart without disruption: nothing in the kernel is touched until every watch has listed
//! once; then routes are diffed against the kernel's protocol-81 routes, the VXLAN device is
//! adopted when it is ours, and the nft tables are replaced in one transaction each. Nothing is
//! ever flushed first. On SIGTERM the agent leaves everything in place (a rolling update must
//! not cut pods off) unless the watch has seen the Installation being deleted, in which case it
//! removes what it created.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kube::Client;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;
use tracing::Instrument;

use crate::dataplane::{Dataplane, NodeFacts, Part, Scope, encapsulates};
use crate::detect::AddressMethod;
use crate::faults::{self, Faults};
use crate::health::{self, Health};
use crate::install_cni::{self, CniPaths};
use crate::ipam::{IpamSettings, NodeIpam};
use crate::kernel::Kernel;
use crate::metrics::Metrics;
use crate::node_publisher::{self, NodeWish};
use crate::node_status;
use crate::routes::vtep_mac;
use crate::watch::{self as watchers, Shared};

/// How often the loops look at their state even without a change (allocations are local
/// files, so the IPAM check is cheap); also the dataplane loop's liveness beat.
const TICK: Duration = Duration::from_millis(100);
/// The longest wait before a node part that failed is tried again.
const MAX_RETRY: Duration = Duration::from_secs(30);

/// Everything `run` needs to know.
#[derive(Debug, Clone)]
pub struct RunSettings {
    pub node: String,
    pub cni: CniPaths,
    pub netns: Option<PathBuf>,
    pub health: SocketAddr,
    /// Where `/metrics` is served besides the health address, when set.
    pub metrics: Option<SocketAddr>,
    /// How long a loop may go without completing a pass before `/healthz` fails.
    pub liveness: Duration,
    pub block_grace: Duration,
    pub address_grace: Duration,
    pub resync: Duration,
}

/// Why the agent stopped.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("connecting to the API server: {0}")]
    Client(#[source] kube::Error),
    #[error("serving on {address}: {source}")]
    Serve {
        address: SocketAddr,
        source: std::io::Error,
    },
    #[error("opening the node's network namespace: {0}")]
    Kernel(#[from] crate::kernel::KernelError),
    #[error("signal handler: {0}")]
    Signal(std::io::Error),
}

/// What node IPAM tells the dataplane loop.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct IpamStatus {
    tunnel: Option<Ipv4Addr>,
    /// The node state file exists (the plugin can allocate).
    written: bool,
    /// The pod MTU the node state file carries.
    mtu: Option<u32>,
}

pub async fn run(settings: RunSettings) -> Result<(), RunError> {
    let span = tracing::info_span!("agent", node = %settings.node);
    run_in_span(settings).instrument(span).await
}

async fn run_in_span(settings: RunSettings) -> Result<(), RunError> {
    let client = Client::try_default().await.map_err(RunError::Client)?;
    let metrics = Metrics::new();
    let health = Health::new(settings.liveness);
    health.beat("dataplane");
    health.beat("ipam");
    let serve_error = |address| move |source| RunError::Serve { address, source };
    let bound = health::serve(settings.health, health.clone(), metrics.clone())
        .await
        .map_err(serve_error(settings.health))?;
    if let Some(address) = settings.metrics {
        health::serve_metrics(address, metrics.clone())
            .await
            .map_err(serve_error(address))?;
    }
    tracing::info!(health = %bound, metrics = ?settings.metrics, netns = ?settings.netns, "weft-agent starting");
    let kernel = Kernel::open(settings.netns.as_deref())?;
    let mut dataplane = Dataplane::new(kernel, &settings.node, metrics.clone());
    let shared = Arc::new(Shared::default());
    let woken = shared.clone();
    dataplane
        .policy_mut()
        .watch_endpoints(settings.cni.endpoint_dir(), move || {
            woken.view().policy_generation += 1;
            woken.changed.notify_one();
        });
    let mut tasks = watchers::spawn_all(&client, &shared);
    let events = faults::spawn_sender(client.clone(), &settings.node);
    let ipam = NodeIpam::new(
        IpamSettings {
            node: settings.node.clone(),
            node_state_file: settings.cni.node_state_file(),
            data_dir: settings.cni.ipam_dir(),
            network: conflist_network(&settings.cni),
            block_grace: settings.block_grace,
            address_grace: settings.address_grace,
        },
        client.clone(),
        metrics.clone(),
    )
    .with_netns(settings.netns.clone());
    let (mtu_sender, mtu) = watch::channel(None);
    let (ipam_sender, mut ipam_status) = watch::channel(IpamStatus::default());
    tasks.push(tokio::spawn(
        ipam_loop(ipam, shared.clone(), mtu, ipam_sender, health.clone()).in_current_span(),
    ));
    let (wish_sender, wish) = watch::channel(NodeWish::default());
    tasks.push(tokio::spawn(
        node_publisher::run(client.clone(), settings.node.clone(), shared.clone(), wish)
            .in_current_span(),
    ));
    let mut terminate = signal(SignalKind::terminate()).map_err(RunError::Signal)?;
    let mut interrupt = signal(SignalKind::interrupt()).map_err(RunError::Signal)?;
    // (routing, policy) generations last programmed; None forces a full pass.
    let mut applied: Option<(u64, u64)> = None;
    let mut facts: Option<NodeFacts> = None;
    let mut next_full = Instant::now();
    let mut failures = 0u32;
    let mut faults = Faults::default();
    let mut node_fault: Option<String> = Some("not synced yet".into());
    let mut ever_ready = false;
    loop {
        tokio::select! {
            _ = shared.changed.notified() => {}
            _ = ipam_status.changed() => {}
            _ = tokio::time::sleep(TICK) => {}
            _ = terminate.recv() => break,
            _ = interrupt.recv() => break,
        }
        health.beat("dataplane");
        let status = ipam_status.borrow_and_update().clone();
        let (generations, synced) = {
            let view = shared.view();
            (
                (view.routing_generation, view.policy_generation),
                view.all_synced(),
            )
        };
        // A new tunnel address must reach the VXLAN device: a routing pass.
        if dataplane.tunnel != status.tunnel {
            dataplane.tunnel = status.tunnel;
            applied = None;
        }
        let now = Instant::now();
        let full = applied.is_none() || now >= next_full;
        let retry_due = dataplane.next_peer_retry().is_some_and(|due| due <= now);
        let scope = match applied {
            Some((routing, policy)) if !full => Scope {
                routing: routing != generations.0 || retry_due,
                policy: policy != generations.1,
            },
            _ => Scope::ALL,
        };
        if synced && status.written && (scope.routing || scope.policy) {
            if full {
                dataplane.verify_tables();
            }
            let detect_error = if scope.routing {
                match detect(&shared, &dataplane) {
                    Ok(detected) => {
                        facts = Some(detected);
                        None
                    }
                    Err(error) => Some(error),
                }
            } else {
                None
            };
            let mut report = tokio::task::block_in_place(|| {
                let view = shared.view();
                dataplane.sync(&view, facts.as_ref(), scope)
            });
            if let Some(error) = detect_error {
                match facts {
                    // The last detected address keeps serving; the failure is logged.
                    Some(_) => {
                        tracing::warn!(%error, "detecting the node's address failed; keeping the last one")
                    }
                    None => {
                        report.node_faults.insert(Part::Address, error);
                    }
                }
            }
            faults.observe(&report, &metrics, Some(&events), now);
            applied = Some(generations);
            if report.node_healthy() {
                failures = 0;
                metrics.count_sync("ok");
                if full {
                    next_full = now + settings.resync;
                }
                node_fault = None;
            } else {
                // Only the full pass retries a failed part, after a growing wait: never a hot
                // loop, and every other part stays programmed meanwhile.
                failures += 1;
                metrics.count_sync("error");
                let wait = (TICK * 2u32.pow(failures.min(9))).min(MAX_RETRY);
                next_full = now + wait;
                node_fault = Some(
                    report
                        .node_faults
                        .iter()
                        .map(|(part, error)| format!("{}: {error}", part.as_str()))
                        .collect::<Vec<_>>()
                        .join("; "),
                );
            }
            if report.routes_changed + report.entries_changed > 0 || report.policy_lines > 0 {
                tracing::info!(
                    routes = report.routes_changed,
                    entries = report.entries_changed,
                    policy_lines = report.policy_lines,
                    "dataplane updated"
                );
            }
            release_freed_memory();
        }
        // What the node publishes, and whether it is ready, follow from the last passes.
        let encapsulated = encapsulates(&shared.view());
        let pod_mtu = facts.as_ref().map(|facts| facts.pod_mtu(encapsulated));
        mtu_sender.send_if_modified(|sent| replace(sent, pod_mtu));
        let annotations = facts.as_ref().zip(pod_mtu).map(|(facts, mtu)| {
            let mac = encapsulated.then(|| vtep_mac(&settings.node));
            node_status::desired_annotations(&facts.address, mac.as_ref(), mtu)
        });
        // The plugin reads the MTU from the node state file: it must be written before the
        // node is said to be ready.
        let not_ready = match (&node_fault, pod_mtu) {
            (Some(why), _) => Some(why.clone()),
            (None, mtu) if status.mtu != mtu => Some("writing the node state file".into()),
            (None, _) => None,
        };
        match not_ready {
            None => {
                health.set_ready();
                if !ever_ready {
                    ever_ready = true;
                    tracing::info!("first sync programmed; ready");
                }
            }
            Some(why) => health.set_not_ready(why),
        }
        // NetworkUnavailable=False once the node has been programmed; never flipped back.
        let wish_now = NodeWish {
            annotations,
            available: ever_ready,
        };
        wish_sender.send_if_modified(|sent| replace(sent, wish_now));
    }
    for task in tasks {
        task.abort();
    }
    tokio::task::block_in_place(|| shutdown(&settings, &shared, &mut dataplane));
    Ok(())
}

/// Sets `slot` to `value`; whether it changed.
fn replace<T: PartialEq>(slot: &mut T, value: T) -> bool {
    if *slot == value {
        return false;
    }
    *slot = value;
    true
}

fn detect(shared: &Shared, dataplane: &Dataplane) -> Result<NodeFacts, String> {
    let method = {
        let view = shared.view();
        let spec = view
            .installation()
            .and_then(|installation| installation.autodetection.clone());
        AddressMethod::from_spec(spec.as_ref()).map_err(|error| error.to_string())?
    };
    dataplane.detect(&method).map_err(|error| error.to_string())
}

/// Node IPAM in its own task: block claims and releases are API calls, which must never hold
/// up the dataplane. Reports the tunnel address and what the node state file holds.
async fn ipam_loop(
    mut ipam: NodeIpam,
    shared: Arc<Shared>,
    mut mtu: watch::Receiver<Option<u32>>,
    status: watch::Sender<IpamStatus>,
    health: Health,
) {
    let mut written_mtu = None;
    let mut last_error: Option<(String, Instant)> = None;
    loop {
        tokio::select! {
            _ = shared.changed.notified() => {}
            _ = mtu.changed() => {}
            _ = tokio::time::sleep(TICK) => {}
        }
        let pod_mtu = *mtu.borrow_and_update();
        match ipam.step(&shared, pod_mtu).await {
            Ok(()) => {
                written_mtu = pod_mtu;
                last_error = None;
            }
            Err(error) => {
                let text = error.to_string();
                let repeat = last_error.as_ref().is_some_and(|(last, when)| {
                    *last == text && when.elapsed() < faults::REPEAT_LOG
                });
                if !repeat {
                    tracing::warn!(error = %text, "IPAM step failed; retrying");
                    last_error = Some((text, Instant::now()));
                }
            }
        }
        let now = IpamStatus {
            tunnel: ipam.tunnel_address(),
            written: ipam.has_written(),
            mtu: written_mtu,
        };
        status.send_if_modified(|sent| replace(sent, now));
        health.beat("ipam");
    }
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

/// On stop: remove what the agent created only when the watch has seen the Installation being
/// deleted (a deletionTimestamp, or its deletion after it was seen). A failed read decides
/// nothing: a missing CRD or a wrong API group must not tear a node down.
fn shutdown(settings: &RunSettings, shared: &Shared, dataplane: &mut Dataplane) {
    if !shared.view().installation_deletion_seen() {
        tracing::info!("stopping; the dataplane stays in place");
        return;
    }
    tracing::info!("the Installation was deleted: removing weft from this node");
    if let Err(error) = dataplane.remove_all() {
        tracing::warn!(%error, "removing the dataplane");
    }
    if let Err(error) = install_cni::uninstall(&settings.cni) {
        tracing::warn!(%error, "removing the CNI config and binaries");
    }
    let _ = std::fs::remove_file(settings.cni.node_state_file());
}
