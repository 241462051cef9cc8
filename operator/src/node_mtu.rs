//! The pod MTU each node's agent publishes (annotation `network.weft.dev/mtu`: the host MTU
//! minus encapsulation overhead), kept from a metadata-only watch of Nodes so a reconcile costs
//! no request for it. The smallest value is the MTU the cluster can use everywhere; it fills the
//! Installation's `status.mtu` when the spec sets none, and a configured MTU above it is
//! reported on the node component.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::Node;
use kube::core::PartialObjectMeta;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event, watcher};
use kube::{Api, Client, ResourceExt};

/// The annotation the agent writes.
pub const MTU_ANNOTATION: &str = "network.weft.dev/mtu";

/// Node name → published pod MTU.
#[derive(Clone, Debug, Default)]
pub struct NodeMtus(Arc<Mutex<BTreeMap<String, u32>>>);

impl NodeMtus {
    /// The smallest published MTU and a node that published it.
    pub fn smallest(&self) -> Option<(String, u32)> {
        let map = self.0.lock().unwrap_or_else(|poison| poison.into_inner());
        map.iter()
            .min_by_key(|(_, mtu)| **mtu)
            .map(|(node, mtu)| (node.clone(), *mtu))
    }

    fn set(&self, node: String, mtu: Option<u32>) -> bool {
        let before = self.smallest();
        let mut map = self.0.lock().unwrap_or_else(|poison| poison.into_inner());
        match mtu {
            Some(mtu) => map.insert(node, mtu),
            None => map.remove(&node),
        };
        drop(map);
        before.map(|(_, mtu)| mtu) != self.smallest().map(|(_, mtu)| mtu)
    }

    #[cfg(test)]
    pub fn with(entries: &[(&str, u32)]) -> Self {
        let this = Self::default();
        for (node, mtu) in entries {
            this.set((*node).to_owned(), Some(*mtu));
        }
        this
    }
}

fn published(node: &PartialObjectMeta<Node>) -> Option<u32> {
    node.annotations().get(MTU_ANNOTATION)?.parse().ok()
}

/// Keeps `store` current and yields whenever the smallest MTU changes.
pub fn watch(client: &Client, store: NodeMtus) -> impl Stream<Item = ()> + Send + 'static {
    let api: Api<PartialObjectMeta<Node>> = Api::all(client.clone());
    watcher(api, watcher::Config::default().page_size(crate::LIST_PAGE))
        .default_backoff()
        .filter_map(move |event| {
            let store = store.clone();
            async move {
                let changed = match event {
                    Ok(Event::Apply(node) | Event::InitApply(node)) => {
                        store.set(node.name_any(), published(&node))
                    }
                    Ok(Event::Delete(node)) => store.set(node.name_any(), None),
                    _ => false,
                };
                changed.then_some(())
            }
        })
}

/// The Installation's `status.mtu` and, when the configured MTU is larger than a node carries,
/// why.
pub fn effective(configured: Option<i32>, nodes: &NodeMtus) -> (Option<i32>, Option<String>) {
    let smallest = nodes.smallest();
    match (configured, smallest) {
        (Some(mtu), Some((node, carried))) if i64::from(mtu) > i64::from(carried) => (
            Some(mtu),
            Some(format!(
                "spec.network.mtu {mtu} is larger than node {node} carries ({carried}: its host MTU minus encapsulation overhead); pods there may lose large packets"
            )),
        ),
        (Some(mtu), _) => (Some(mtu), None),
        (None, Some((_, carried))) => (i32::try_from(carried).ok(), None),
        (None, None) => (None, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_smallest_node_mtu_fills_the_status_and_a_larger_setting_is_reported() {
        let nodes = NodeMtus::with(&[("a", 1450), ("b", 8950)]);
        assert_eq!(effective(None, &nodes), (Some(1450), None));
        assert_eq!(effective(Some(1400), &nodes), (Some(1400), None));
        let (mtu, problem) = effective(Some(9000), &nodes);
        assert_eq!(mtu, Some(9000));
        assert!(problem.unwrap().contains("node a carries (1450"));
        assert_eq!(effective(None, &NodeMtus::default()), (None, None));
    }
}
