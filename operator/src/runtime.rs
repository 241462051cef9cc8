//! Runs the operator: the health and metrics port, leader election, the Installation controller
//! (triggered by the Installation and by metadata-only watches of the objects it manages) and a
//! graceful stop when asked or when leadership is lost.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures::stream::BoxStream;
use futures::{Stream, StreamExt, stream};
use k8s_openapi::api::admissionregistration::v1::{
    ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding,
};
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, ServiceAccount};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
use kube::core::PartialObjectMeta;
use kube::runtime::WatchStreamExt;
use kube::runtime::controller::{self, Controller};
use kube::runtime::watcher::{self, Event, watcher};
use kube::{Api, Client, Resource};
use prometheus_client::registry::Registry;
use serde::de::DeserializeOwned;
use tokio::sync::watch;
use tracing::{info, warn};
use weft_api::{Installation, IpPool};

use crate::context::{Context, Settings};
use crate::counting::counting_client;
use crate::events::Events;
use crate::health::{Endpoints, Readiness, serve};
use crate::labels::{NAMESPACE, managed_selector};
use crate::leader::{Election, LeaderError};
use crate::metrics::Metrics;
use crate::reconcile::{error_policy, reconcile};
use crate::steady::Steady;

/// How long the controller waits for more changes before it reconciles: a burst of watch events
/// (a DaemonSet's status while its pods start) becomes one reconcile, yet a change is acted on,
/// and the rollout's end reported, a moment after it happens.
const DEBOUNCE: Duration = Duration::from_millis(150);
/// After shutdown, how long running reconciles may take to finish, and then how long giving
/// the Lease up may take: a stuck API call must not keep a stopping operator alive (the
/// kubelet would kill it at its grace period, and a successor would wait for the Lease).
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// How the operator process runs.
#[derive(Clone, Debug)]
pub struct Options {
    /// Address of `/healthz` and `/readyz`, and of `/metrics` when `metrics_address` is `None`
    /// (port 0 picks a free one).
    pub health_address: SocketAddr,
    /// Address of `/metrics` alone, when it is served apart from the health endpoints.
    pub metrics_address: Option<SocketAddr>,
    /// Namespace of the leader Lease; `None` disables leader election (a single replica).
    pub lease_namespace: Option<String>,
    /// This replica's name in the Lease and in Events.
    pub identity: String,
    pub settings: Settings,
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("serving the health or metrics port on {address}: {source}")]
    Health {
        address: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Leader(#[from] LeaderError),
    #[error("lost the leader Lease; stopping so a successor takes over")]
    LostLeadership,
}

/// A running operator's observable parts, for the binary and for tests.
#[derive(Clone)]
pub struct Handles {
    pub metrics: Metrics,
    pub registry: Arc<Registry>,
    pub readiness: Readiness,
    /// True while this replica leads and its controller runs.
    pub leading: Readiness,
    /// Where `/healthz` and `/readyz` are served, once bound.
    pub address: Arc<std::sync::OnceLock<SocketAddr>>,
    /// Where `/metrics` is served apart from the health endpoints, once bound.
    pub metrics_address: Arc<std::sync::OnceLock<SocketAddr>>,
}

impl Handles {
    pub fn new() -> Self {
        let metrics = Metrics::default();
        let mut registry = Registry::default();
        metrics.register(&mut registry);
        Self {
            metrics,
            registry: Arc::new(registry),
            readiness: Readiness::default(),
            leading: Readiness::default(),
            address: Arc::default(),
            metrics_address: Arc::default(),
        }
    }
}

impl Default for Handles {
    fn default() -> Self {
        Self::new()
    }
}

/// A stream that yields whenever an object of kind `K` selected by `config` changes. Only
/// metadata is requested, so object bodies are never transferred or kept.
fn changes<K>(
    api: Api<PartialObjectMeta<K>>,
    config: watcher::Config,
    steady: Arc<Steady>,
) -> BoxStream<'static, ()>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug + Send + 'static,
    PartialObjectMeta<K>: Resource<DynamicType = ()>,
{
    watcher(api, config)
        .default_backoff()
        .filter_map(move |event| {
            // Every event, relists included, may show something the last sync did not see.
            steady.bump();
            async move { matches!(event, Ok(Event::Apply(_) | Event::Delete(_))).then_some(()) }
        })
        .boxed()
}

fn child_changes(client: &Client, steady: &Arc<Steady>) -> impl Stream<Item = ()> + Send + 'static {
    let managed = || watcher::Config::default().labels(&managed_selector());
    let s = || steady.clone();
    stream::select_all(vec![
        changes::<Namespace>(Api::all(client.clone()), managed(), s()),
        changes::<ClusterRole>(Api::all(client.clone()), managed(), s()),
        changes::<ClusterRoleBinding>(Api::all(client.clone()), managed(), s()),
        changes::<ValidatingAdmissionPolicy>(Api::all(client.clone()), managed(), s()),
        changes::<ValidatingAdmissionPolicyBinding>(Api::all(client.clone()), managed(), s()),
        changes::<ServiceAccount>(in_weft_system(client), managed(), s()),
        changes::<ConfigMap>(in_weft_system(client), managed(), s()),
        changes::<DaemonSet>(in_weft_system(client), managed(), s()),
        changes::<Deployment>(in_weft_system(client), managed(), s()),
        changes::<PodDisruptionBudget>(in_weft_system(client), managed(), s()),
        // Every pool, managed or not: a change to an unmanaged pool may resolve a conflict.
        changes::<IpPool>(Api::all(client.clone()), watcher::Config::default(), s()),
    ])
}

/// Metadata-only access to kind `K` in `weft-system`.
fn in_weft_system<K>(client: &Client) -> Api<PartialObjectMeta<K>>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>,
    PartialObjectMeta<K>: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>,
{
    Api::namespaced(client.clone(), NAMESPACE)
}

/// Runs the controller until `shutdown` turns true (or leadership is lost).
pub async fn run(
    client: Client,
    options: Options,
    handles: Handles,
    shutdown: watch::Receiver<bool>,
) -> Result<(), RunError> {
    // Lease renewals go through the plain client: the counted one measures reconcile cost only.
    let counted = counting_client(client.clone(), &handles.metrics);
    let health_endpoints = match options.metrics_address {
        Some(_) => Endpoints::HEALTH,
        None => Endpoints::ALL,
    };
    let (address, server) = serve(
        options.health_address,
        health_endpoints,
        handles.readiness.clone(),
        handles.registry.clone(),
        shutdown.clone(),
    )
    .await
    .map_err(|source| RunError::Health {
        address: options.health_address,
        source,
    })?;
    info!(%address, metrics = health_endpoints.metrics, "serving /healthz and /readyz");
    let _ = handles.address.set(address);
    let server = tokio::spawn(server);
    let metrics_server = match options.metrics_address {
        Some(metrics_address) => {
            let (bound, server) = serve(
                metrics_address,
                Endpoints::METRICS,
                handles.readiness.clone(),
                handles.registry.clone(),
                shutdown.clone(),
            )
            .await
            .map_err(|source| RunError::Health {
                address: metrics_address,
                source,
            })?;
            info!(address = %bound, "serving /metrics");
            let _ = handles.metrics_address.set(bound);
            Some(tokio::spawn(server))
        }
        None => None,
    };

    let mut election = match &options.lease_namespace {
        Some(namespace) => {
            Some(Election::start(client.clone(), namespace, &options.identity).await?)
        }
        None => None,
    };
    handles.readiness.set(true);
    let mut lost = false;
    if let Some(election) = election.as_mut() {
        info!(identity = %options.identity, "waiting to lead");
        let mut stop = shutdown.clone();
        tokio::select! {
            acquired = election.acquired() => lost = !acquired,
            _ = stop.wait_for(|stop| *stop) => {}
        }
    }
    let result = if lost {
        Err(RunError::LostLeadership)
    } else if *shutdown.borrow() {
        Ok(())
    } else {
        info!("leading: starting the Installation controller");
        let leading = election.as_ref().map(|election| election.leading.clone());
        handles.leading.set(true);
        let controller = control(counted, &options, &handles, shutdown.clone(), leading);
        let result = within_grace_after_shutdown(shutdown.clone(), controller)
            .await
            .unwrap_or_else(|| {
                warn!(grace = ?SHUTDOWN_GRACE, "reconciles still running at shutdown were cancelled");
                Ok(())
            });
        handles.leading.set(false);
        result
    };
    handles.readiness.set(false);
    if let Some(election) = election {
        election.release(SHUTDOWN_GRACE).await;
    }
    server.abort();
    if let Some(metrics_server) = metrics_server {
        metrics_server.abort();
    }
    result
}

/// Runs `work` to its end, unless `shutdown` has been on for `SHUTDOWN_GRACE` first (`None`).
async fn within_grace_after_shutdown<T>(
    mut shutdown: watch::Receiver<bool>,
    work: impl std::future::Future<Output = T>,
) -> Option<T> {
    let deadline = async move {
        if shutdown.wait_for(|stop| *stop).await.is_err() {
            // The sender is gone without a shutdown: nothing will stop `work` early.
            std::future::pending::<()>().await;
        }
        tokio::time::sleep(SHUTDOWN_GRACE).await;
    };
    tokio::select! {
        result = work => Some(result),
        () = deadline => None,
    }
}

async fn control(
    client: Client,
    options: &Options,
    handles: &Handles,
    mut shutdown: watch::Receiver<bool>,
    leading: Option<watch::Receiver<bool>>,
) -> Result<(), RunError> {
    let node_mtus = crate::node_mtu::NodeMtus::default();
    let ctx = Arc::new(Context {
        client: client.clone(),
        events: Events::new(client.clone(), &options.identity),
        metrics: handles.metrics.clone(),
        settings: options.settings.clone(),
        node_mtus: node_mtus.clone(),
        retries: Default::default(),
        progress: Default::default(),
        steady: Default::default(),
    });
    let steady = ctx.steady.clone();
    let (lost_tx, mut lost_rx) = watch::channel(false);
    let stop = async move {
        match leading {
            Some(mut leading) => {
                tokio::select! {
                    _ = shutdown.wait_for(|stop| *stop) => {}
                    _ = leading.wait_for(|leading| !*leading) => { let _ = lost_tx.send(true); }
                }
            }
            None => {
                let _ = shutdown.wait_for(|stop| *stop).await;
            }
        }
    };
    Controller::new(
        Api::<Installation>::all(client.clone()),
        watcher::Config::default(),
    )
    .with_config(controller::Config::default().debounce(DEBOUNCE))
    .reconcile_all_on(stream::select(
        child_changes(&client, &steady),
        crate::node_mtu::watch(&client, node_mtus)
            .map(move |()| steady.bump())
            .boxed(),
    ))
    .graceful_shutdown_on(stop)
    .run(reconcile, error_policy, ctx)
    .for_each(|result| async move {
        if let Err(error) = result {
            warn!(%error, "reconcile ended with an error");
        }
    })
    .await;
    if *lost_rx.borrow_and_update() {
        return Err(RunError::LostLeadership);
    }
    Ok(())
}
