//! Watchers that keep the [`ClusterView`] current: one task per kind, each reducing objects to
//! their view on arrival and nudging the agent's loop after every change.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::sync::{Arc, Mutex, MutexGuard};

use futures::StreamExt;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use tokio::sync::Notify;

use crate::view::{self, ClusterView, Kind};

/// The view shared by the watchers and the loops that act on it.
#[derive(Default)]
pub struct Shared {
    view: Mutex<ClusterView>,
    /// Notified after every change of the view.
    pub changed: Notify,
}

impl Shared {
    pub fn view(&self) -> MutexGuard<'_, ClusterView> {
        self.view
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    fn update(&self, kind: Kind, change: impl FnOnce(&mut ClusterView)) {
        {
            let mut view = self.view();
            change(&mut view);
            view.stale.remove(&kind);
            if kind == Kind::Installation && !view.installation.is_empty() {
                view.installation_seen = true;
            }
            if kind.shapes_routing() {
                view.routing_generation += 1;
            } else {
                view.policy_generation += 1;
            }
        }
        self.changed.notify_waiters();
        self.changed.notify_one();
    }
}

fn key<K: Resource>(object: &K) -> String {
    match object.meta().namespace.as_deref() {
        Some(namespace) => format!("{namespace}/{}", object.name_any()),
        None => object.name_any(),
    }
}

/// Keeps one map of the view in step with the objects of `api`.
async fn watch_into<K, V>(
    api: Api<K>,
    config: watcher::Config,
    kind: Kind,
    convert: fn(&K) -> Option<V>,
    slot: fn(&mut ClusterView) -> &mut BTreeMap<String, V>,
    shared: Arc<Shared>,
) where
    K: Resource + Clone + DeserializeOwned + Debug + Send + 'static,
    V: Send + 'static,
{
    let mut buffer: Option<BTreeMap<String, V>> = None;
    let stream = watcher::watcher(api, config).default_backoff();
    let mut stream = std::pin::pin!(stream);
    while let Some(event) = stream.next().await {
        match event {
            Ok(Event::Init) => buffer = Some(BTreeMap::new()),
            Ok(Event::InitApply(object)) => {
                if let (Some(buffer), Some(value)) = (buffer.as_mut(), convert(&object)) {
                    buffer.insert(key(&object), value);
                }
            }
            Ok(Event::InitDone) => {
                let complete = buffer.take().unwrap_or_default();
                shared.update(kind, |view| {
                    *slot(view) = complete;
                    view.synced.insert(kind);
                });
            }
            Ok(Event::Apply(object)) => {
                let name = key(&object);
                let value = convert(&object);
                shared.update(kind, |view| match value {
                    Some(value) => {
                        slot(view).insert(name, value);
                    }
                    None => {
                        slot(view).remove(&name);
                    }
                });
            }
            Ok(Event::Delete(object)) => {
                let name = key(&object);
                shared.update(kind, |view| {
                    slot(view).remove(&name);
                });
            }
            Err(error) => {
                tracing::warn!(?kind, %error, "watch failed; retrying with backoff");
                // Until it delivers again, the map may miss changes (IPAM GC waits for it).
                shared.view().stale.insert(kind);
            }
        }
    }
}

/// Starts one watcher per kind.
pub fn spawn_all(client: &Client, shared: &Arc<Shared>) -> Vec<tokio::task::JoinHandle<()>> {
    let config = watcher::Config::default;
    // Small pages: a page of full Pod objects is what the agent holds at its peak while listing.
    let pods_config = || {
        watcher::Config::default()
            .fields("status.phase!=Succeeded,status.phase!=Failed")
            .page_size(100)
    };
    vec![
        tokio::spawn(watch_into(
            Api::all(client.clone()),
            config().fields(&format!("metadata.name={}", weft_api::INSTALLATION_NAME)),
            Kind::Installation,
            view::installation_view,
            |view| &mut view.installation,
            shared.clone(),
        )),
        tokio::spawn(watch_into(
            Api::all(client.clone()),
            config(),
            Kind::Node,
            view::node_view,
            |view| &mut view.nodes,
            shared.clone(),
        )),
        tokio::spawn(watch_into(
            Api::all(client.clone()),
            config(),
            Kind::Pool,
            view::pool_view,
            |view| &mut view.pools,
            shared.clone(),
        )),
        tokio::spawn(watch_into(
            Api::all(client.clone()),
            config(),
            Kind::Block,
            view::block_view,
            |view| &mut view.blocks,
            shared.clone(),
        )),
        tokio::spawn(watch_into(
            Api::all(client.clone()),
            pods_config(),
            Kind::Pod,
            view::pod_view,
            |view| &mut view.pods,
            shared.clone(),
        )),
        tokio::spawn(watch_into(
            Api::all(client.clone()),
            config(),
            Kind::Namespace,
            view::namespace_view,
            |view| &mut view.namespaces,
            shared.clone(),
        )),
        tokio::spawn(watch_into(
            Api::all(client.clone()),
            config(),
            Kind::KubernetesPolicy,
            view::kubernetes_policy_view,
            |view| &mut view.kubernetes_policies,
            shared.clone(),
        )),
        tokio::spawn(watch_into(
            Api::all(client.clone()),
            config(),
            Kind::WeftPolicy,
            view::weft_policy_view,
            |view| &mut view.weft_policies,
            shared.clone(),
        )),
        tokio::spawn(watch_into(
            Api::all(client.clone()),
            config(),
            Kind::GlobalPolicy,
            view::global_policy_view,
            |view| &mut view.global_policies,
            shared.clone(),
        )),
    ]
}
