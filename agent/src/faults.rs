//! Makes what a sync could not do visible without flooding: a refused object or a failing peer
//! is logged and reported as a Kubernetes Event when it first appears or its reason changes
//! (and logged again at most every [`REPEAT_LOG`] while it lasts), its recovery is logged, and
//! the current counts are metrics. Events are sent by their own task, so a slow API server
//! never holds up the dataplane.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Node, ObjectReference};
use kube::Resource;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use tokio::sync::mpsc;
use weft_api::IpamBlock;

use crate::dataplane::SyncReport;
use crate::metrics::Metrics;
use crate::trust::RefusedKind;
use weft_policy::model::PolicyKind;

/// How often a fault that lasts is logged again.
pub const REPEAT_LOG: Duration = Duration::from_secs(300);
/// Events waiting to be sent; beyond this they are dropped (and the drop logged).
const EVENT_QUEUE: usize = 256;
/// An Event that takes longer than this is given up.
const EVENT_TIMEOUT: Duration = Duration::from_secs(10);

/// One Event for the API server.
#[derive(Debug, Clone, PartialEq)]
pub struct FaultEvent {
    pub regarding: ObjectReference,
    pub reason: &'static str,
    pub note: String,
}

/// What is wrong now, keyed by (what, name): the text and when it was last logged.
#[derive(Default)]
pub struct Faults {
    known: BTreeMap<(String, String), (String, Instant)>,
}

impl Faults {
    /// Compares `report` with what was known; logs, queues Events for new or changed faults and
    /// updates the metrics. Returns the Events queued (for tests).
    pub fn observe(
        &mut self,
        report: &SyncReport,
        metrics: &Metrics,
        events: Option<&mpsc::Sender<FaultEvent>>,
        now: Instant,
    ) -> Vec<FaultEvent> {
        let mut current: BTreeMap<(String, String), String> = BTreeMap::new();
        for refusal in &report.refused {
            current.insert(
                (what_of(refusal.kind).to_owned(), refusal.name.clone()),
                refusal.reason.clone(),
            );
        }
        for (peer, error) in &report.peer_faults {
            current.insert(("peer".to_owned(), peer.clone()), error.clone());
        }
        for (part, error) in &report.node_faults {
            current.insert(("part".to_owned(), part.as_str().to_owned()), error.clone());
        }
        let mut sent = Vec::new();
        for ((what, name), reason) in &current {
            let key = (what.clone(), name.clone());
            let (fresh, due) = match self.known.get(&key) {
                None => (true, true),
                Some((known, logged)) => (
                    !same_fault(known, reason),
                    now.duration_since(*logged) >= REPEAT_LOG,
                ),
            };
            if !(fresh || due) {
                continue;
            }
            match what.as_str() {
                "part" => {
                    tracing::warn!(part = %name, error = %reason, "this node's dataplane part cannot be programmed; the other parts are")
                }
                "peer" => {
                    tracing::warn!(node = %name, error = %reason, "routes to a peer refused by the kernel; only that peer is affected")
                }
                kind if kind.contains("NetworkPolicy") => {
                    tracing::warn!(%kind, name = %name, %reason, "policy refused by nft: it denies all traffic it governs until it changes; every other policy is programmed")
                }
                kind => {
                    tracing::warn!(%kind, name = %name, %reason, "not routing by an object that cannot be trusted")
                }
            }
            self.known.insert(key, (reason.clone(), now));
            if fresh && let Some(event) = event_for(what, name, reason) {
                if let Some(events) = events
                    && events.try_send(event.clone()).is_err()
                {
                    tracing::warn!(reason = event.reason, "Event queue full; Event dropped");
                }
                sent.push(event);
            }
        }
        self.known.retain(|(what, name), _| {
            let still = current.contains_key(&(what.clone(), name.clone()));
            if !still {
                tracing::info!(%what, %name, "fault cleared");
            }
            still
        });
        let count = |what: &str| {
            current
                .keys()
                .filter(|(kind, _)| kind == what)
                .count()
                .try_into()
                .unwrap_or(i64::MAX)
        };
        metrics.set_refused(
            RefusedKind::Block.as_str(),
            count(RefusedKind::Block.as_str()),
        );
        metrics.set_refused(
            RefusedKind::Node.as_str(),
            count(RefusedKind::Node.as_str()),
        );
        metrics.set_refused("peer", count("peer"));
        metrics.set_refused(
            "policy",
            POLICY_KINDS.iter().map(|(what, ..)| count(what)).sum(),
        );
        for part in [
            crate::dataplane::Part::Address,
            crate::dataplane::Part::Forwarding,
            crate::dataplane::Part::Vxlan,
            crate::dataplane::Part::Routes,
            crate::dataplane::Part::Nat,
            crate::dataplane::Part::Policy,
        ] {
            metrics.set_part_fault(part.as_str(), report.node_faults.contains_key(&part));
        }
        sent
    }
}

/// Backoff texts carry a countdown: the same error with another countdown is the same fault.
fn same_fault(known: &str, now: &str) -> bool {
    let stem = |text: &str| text.split(" (failed ").next().unwrap_or(text).to_owned();
    stem(known) == stem(now)
}

/// The kinds of refused policies: (what faults calls them, apiVersion, kind).
const POLICY_KINDS: [(&str, &str, &str); 3] = [
    (
        "NetworkPolicy.networking.k8s.io",
        "networking.k8s.io/v1",
        "NetworkPolicy",
    ),
    (
        "NetworkPolicy.network.weft.dev",
        "network.weft.dev/v1",
        "NetworkPolicy",
    ),
    (
        "GlobalNetworkPolicy.network.weft.dev",
        "network.weft.dev/v1",
        "GlobalNetworkPolicy",
    ),
];

fn what_of(kind: RefusedKind) -> &'static str {
    match kind {
        RefusedKind::Policy(PolicyKind::Kubernetes) => POLICY_KINDS[0].0,
        RefusedKind::Policy(PolicyKind::Namespaced) => POLICY_KINDS[1].0,
        RefusedKind::Policy(PolicyKind::Global) => POLICY_KINDS[2].0,
        other => other.as_str(),
    }
}

fn event_for(what: &str, name: &str, reason: &str) -> Option<FaultEvent> {
    let (regarding, event_reason) = match what {
        "Node" => (reference::<Node>(name), "WeftNodeRefused"),
        "peer" => (reference::<Node>(name), "WeftPeerUnreachable"),
        "IPAMBlock" => (reference::<IpamBlock>(name), "WeftBlockRefused"),
        policy => {
            let (_, api_version, kind) = POLICY_KINDS.iter().find(|(what, ..)| *what == policy)?;
            let (namespace, name) = match name.split_once('/') {
                Some((namespace, name)) => (Some(namespace.to_owned()), name),
                None => (None, name),
            };
            let regarding = ObjectReference {
                api_version: Some((*api_version).to_owned()),
                kind: Some((*kind).to_owned()),
                namespace,
                name: Some(name.to_owned()),
                ..ObjectReference::default()
            };
            (regarding, "WeftPolicyRefused")
        }
    };
    Some(FaultEvent {
        regarding,
        reason: event_reason,
        note: truncate(reason),
    })
}

fn reference<K: Resource<DynamicType = ()>>(name: &str) -> ObjectReference {
    ObjectReference {
        api_version: Some(K::api_version(&()).into_owned()),
        kind: Some(K::kind(&()).into_owned()),
        name: Some(name.to_owned()),
        ..ObjectReference::default()
    }
}

/// Event notes are limited to 1 kB by the API server.
fn truncate(text: &str) -> String {
    const LIMIT: usize = 1000;
    if text.len() <= LIMIT {
        return text.to_owned();
    }
    let mut cut = LIMIT - 3;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}...", &text[..cut])
}

/// Starts the task that sends queued Events as `weft-agent` on `node`.
pub fn spawn_sender(client: kube::Client, node: &str) -> mpsc::Sender<FaultEvent> {
    let (sender, mut receiver) = mpsc::channel::<FaultEvent>(EVENT_QUEUE);
    let recorder = Recorder::new(
        client,
        Reporter {
            controller: crate::node_status::FIELD_MANAGER.to_owned(),
            instance: Some(node.to_owned()),
        },
    );
    tokio::spawn(async move {
        while let Some(fault) = receiver.recv().await {
            let event = Event {
                type_: EventType::Warning,
                reason: fault.reason.to_owned(),
                note: Some(fault.note.clone()),
                action: "Route".to_owned(),
                secondary: None,
            };
            match tokio::time::timeout(EVENT_TIMEOUT, recorder.publish(&event, &fault.regarding))
                .await
            {
                Ok(Ok(())) => {}
                Ok(Err(error)) => {
                    tracing::warn!(%error, reason = fault.reason, "publishing an Event failed")
                }
                Err(_) => tracing::warn!(reason = fault.reason, "publishing an Event timed out"),
            }
        }
    });
    sender
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataplane::Part;
    use crate::trust::Refusal;

    fn report() -> SyncReport {
        SyncReport {
            refused: vec![Refusal {
                kind: RefusedKind::Node,
                name: "bad".into(),
                reason: "annotation: not a unicast address".into(),
            }],
            peer_faults: BTreeMap::from([(
                "far".into(),
                "Invalid argument (failed 1 times; next try in 500ms)".into(),
            )]),
            ..SyncReport::default()
        }
    }

    #[test]
    fn a_fault_is_reported_once_until_it_changes_or_clears() {
        let metrics = Metrics::new();
        let mut faults = Faults::default();
        let now = Instant::now();
        let first = faults.observe(&report(), &metrics, None, now);
        assert_eq!(first.len(), 2);
        assert_eq!(first[0].reason, "WeftNodeRefused");
        assert_eq!(first[0].regarding.kind.as_deref(), Some("Node"));
        assert_eq!(first[1].reason, "WeftPeerUnreachable");
        // The same faults, a retry countdown later: nothing new.
        let mut later = report();
        later.peer_faults.insert(
            "far".into(),
            "Invalid argument (failed 2 times; next try in 1s)".into(),
        );
        assert!(
            faults
                .observe(&later, &metrics, None, now + Duration::from_secs(1))
                .is_empty()
        );
        assert!(
            metrics
                .encode()
                .contains("weft_agent_refused{kind=\"Node\"} 1")
        );
        // Cleared, then back: reported again.
        assert!(
            faults
                .observe(&SyncReport::default(), &metrics, None, now)
                .is_empty()
        );
        assert!(
            metrics
                .encode()
                .contains("weft_agent_refused{kind=\"Node\"} 0")
        );
        assert_eq!(faults.observe(&report(), &metrics, None, now).len(), 2);
    }

    #[test]
    fn a_part_of_the_node_is_a_metric_and_a_log_not_an_event() {
        let metrics = Metrics::new();
        let mut report = SyncReport::default();
        report
            .node_faults
            .insert(Part::Policy, "nft: syntax".into());
        let events = Faults::default().observe(&report, &metrics, None, Instant::now());
        assert!(events.is_empty());
        assert!(
            metrics
                .encode()
                .contains("weft_agent_dataplane_fault{part=\"policy\"} 1")
        );
    }
}
