//! Keeps this node's Node object saying what the dataplane loop wants it to say: the
//! `network.weft.dev/*` annotations peers route by and, once the node has been programmed,
//! NetworkUnavailable=False. It compares with the live Node as the watch sees it, not with what
//! it last wrote, so a Node deleted and re-created under the same name gets both back. Runs in
//! its own task with a timeout on every call: a slow API server never holds up the dataplane.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kube::Client;
use tokio::sync::watch;

use crate::faults::REPEAT_LOG;
use crate::node_status;
use crate::view::{Kind, annotations};
use crate::watch::Shared;

/// Longest wait for one API call.
pub const API_TIMEOUT: Duration = Duration::from_secs(10);
/// After a write, the same value is not written again until the watch had time to show it.
const SETTLE: Duration = Duration::from_secs(5);
const TICK: Duration = Duration::from_secs(1);

/// What the node should say.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeWish {
    /// The annotations to publish, once the node's address is known.
    pub annotations: Option<BTreeMap<String, String>>,
    /// Whether NetworkUnavailable should be False.
    pub available: bool,
}

/// What a live Node lacks of `wish`: (annotations to write, whether to set the condition).
pub fn missing(
    wish: &NodeWish,
    live_annotations: &BTreeMap<String, String>,
    live_network_unavailable: Option<&str>,
) -> (Option<BTreeMap<String, String>>, bool) {
    let annotations = wish.annotations.clone().filter(|wanted| {
        let published: BTreeMap<String, String> = [
            annotations::ADDRESS,
            annotations::VXLAN_MAC,
            annotations::MTU,
        ]
        .iter()
        .filter_map(|key| {
            live_annotations
                .get(*key)
                .map(|value| ((*key).to_owned(), value.clone()))
        })
        .collect();
        published != *wanted
    });
    let condition = wish.available && live_network_unavailable != Some("False");
    (annotations, condition)
}

/// One write, remembered so it is not repeated before the watch could show it.
#[derive(Default)]
struct Recent {
    annotations: Option<(BTreeMap<String, String>, Instant)>,
    condition: Option<Instant>,
    failures: u32,
    retry_at: Option<Instant>,
    missing_logged: Option<Instant>,
}

pub async fn run(
    client: Client,
    node: String,
    shared: Arc<Shared>,
    mut wish: watch::Receiver<NodeWish>,
) {
    let mut recent = Recent::default();
    loop {
        tokio::select! {
            changed = wish.changed() => if changed.is_err() { return },
            _ = shared.changed.notified() => {}
            _ = tokio::time::sleep(TICK) => {}
        }
        let now = Instant::now();
        if recent.retry_at.is_some_and(|at| now < at) {
            continue;
        }
        let wanted = wish.borrow().clone();
        let (synced, live) = {
            let view = shared.view();
            let live = view.nodes.get(&node).map(|live| {
                (
                    live.weft_annotations.clone(),
                    live.network_unavailable.clone(),
                )
            });
            (view.synced.contains(&Kind::Node), live)
        };
        if !synced {
            continue;
        }
        let Some((live_annotations, live_condition)) = live else {
            if recent
                .missing_logged
                .is_none_or(|logged| logged.elapsed() >= REPEAT_LOG)
            {
                tracing::warn!(%node, "this node's Node object does not exist; the dataplane and the blocks it holds stay as they are until it is back");
                recent.missing_logged = Some(now);
            }
            continue;
        };
        recent.missing_logged = None;
        let (annotations, condition) =
            missing(&wanted, &live_annotations, live_condition.as_deref());
        let mut failed = false;
        if let Some(annotations) = annotations {
            let settling = recent
                .annotations
                .as_ref()
                .is_some_and(|(sent, at)| *sent == annotations && at.elapsed() < SETTLE);
            if !settling {
                let call = node_status::publish(&client, &node, &annotations);
                match tokio::time::timeout(API_TIMEOUT, call).await {
                    Ok(Ok(())) => recent.annotations = Some((annotations, now)),
                    Ok(Err(error)) => {
                        failed = true;
                        tracing::warn!(%error, "publishing the node's annotations");
                    }
                    Err(_) => {
                        failed = true;
                        tracing::warn!("publishing the node's annotations timed out");
                    }
                }
            }
        }
        if condition && recent.condition.is_none_or(|at| at.elapsed() >= SETTLE) {
            let call = node_status::set_network_available(&client, &node);
            match tokio::time::timeout(API_TIMEOUT, call).await {
                Ok(Ok(())) => recent.condition = Some(now),
                Ok(Err(error)) => {
                    failed = true;
                    tracing::warn!(%error, "setting NetworkUnavailable=False");
                }
                Err(_) => {
                    failed = true;
                    tracing::warn!("setting NetworkUnavailable=False timed out");
                }
            }
        }
        if failed {
            recent.failures += 1;
            let wait = (Duration::from_millis(250) * 2u32.pow(recent.failures.min(7)))
                .min(Duration::from_secs(30));
            recent.retry_at = Some(Instant::now() + wait);
        } else {
            recent.failures = 0;
            recent.retry_at = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wish() -> NodeWish {
        NodeWish {
            annotations: Some(BTreeMap::from([
                (annotations::ADDRESS.to_owned(), "10.0.0.2/24".to_owned()),
                (annotations::MTU.to_owned(), "1450".to_owned()),
            ])),
            available: true,
        }
    }

    #[test]
    fn a_node_that_holds_everything_needs_nothing() {
        let live = wish().annotations.unwrap();
        assert_eq!(missing(&wish(), &live, Some("False")), (None, false));
    }

    #[test]
    fn a_recreated_node_gets_its_annotations_and_condition_back() {
        let (annotations, condition) = missing(&wish(), &BTreeMap::new(), None);
        assert_eq!(annotations, wish().annotations);
        assert!(condition);
    }

    #[test]
    fn a_stale_mac_is_removed_and_an_unready_node_claims_nothing() {
        let mut live = wish().annotations.unwrap();
        live.insert(annotations::VXLAN_MAC.into(), "02:00:00:00:00:01".into());
        let (annotations, _) = missing(&wish(), &live, Some("False"));
        assert_eq!(annotations, wish().annotations);
        let unready = NodeWish {
            available: false,
            ..wish()
        };
        assert!(!missing(&unready, &BTreeMap::new(), Some("True")).1);
    }
}
