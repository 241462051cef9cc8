//! Applies the desired routes, neighbour and FDB entries one peer at a time: an operation the
//! kernel refuses costs only the peer it belongs to. That peer is retried with exponential
//! backoff (its routes are left as they are meanwhile) while every other peer, the node's own
//! blackholes, NAT and policy are still programmed.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use ipnet::Ipv4Net;

use crate::kernel::netlink::{self as nl, EntryTable, KernelRoute, StaticEntry};
use crate::kernel::{Kernel, KernelError};
use crate::routes::{self, DesiredRoutes};

/// First wait before a refused peer is tried again; doubled per failure up to [`MAX_BACKOFF`].
pub const FIRST_BACKOFF: Duration = Duration::from_millis(500);
pub const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// A peer the kernel refused, and when it is tried again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerRetry {
    pub failures: u32,
    pub next_attempt: Instant,
    pub error: String,
}

impl PeerRetry {
    fn after(previous: Option<&PeerRetry>, error: String, now: Instant) -> PeerRetry {
        let failures = previous.map_or(1, |retry| retry.failures.saturating_add(1));
        let wait = FIRST_BACKOFF
            .saturating_mul(2u32.saturating_pow(failures.saturating_sub(1).min(16)))
            .min(MAX_BACKOFF);
        PeerRetry {
            failures,
            next_attempt: now + wait,
            error,
        }
    }
}

/// What one pass did.
#[derive(Debug, Default)]
pub struct RouteOutcome {
    pub routes_changed: usize,
    pub entries_changed: usize,
    /// Peers whose operations failed in this pass, or who wait for their retry.
    pub peer_faults: BTreeMap<String, String>,
    /// Errors not tied to one peer (listing the kernel's state, the node's own blackholes,
    /// deleting what is no longer wanted).
    pub node_errors: Vec<String>,
}

/// Who each desired route and entry is for: route destination → node, peer address → node.
#[derive(Debug, Default)]
pub struct Owners {
    pub routes: BTreeMap<Ipv4Net, String>,
    pub peers: BTreeMap<Ipv4Addr, String>,
}

/// Programs `desired` on `vxlan` (when it exists), leaving peers in `retries` alone until their
/// time comes; updates `retries` with this pass's failures and successes.
pub fn apply(
    kernel: &Kernel,
    desired: &DesiredRoutes,
    owners: &Owners,
    vxlan: Option<u32>,
    retries: &mut BTreeMap<String, PeerRetry>,
    now: Instant,
) -> RouteOutcome {
    let mut outcome = RouteOutcome::default();
    // Peers waiting for their retry are skipped whole this pass.
    let waiting: BTreeSet<String> = retries
        .iter()
        .filter(|(_, retry)| retry.next_attempt > now)
        .map(|(peer, _)| peer.clone())
        .collect();
    for peer in &waiting {
        let retry = &retries[peer];
        outcome.peer_faults.insert(
            peer.clone(),
            format!(
                "{} (failed {} times; next try in {:?})",
                retry.error,
                retry.failures,
                retry.next_attempt.saturating_duration_since(now)
            ),
        );
    }
    let mut failed: BTreeMap<String, String> = BTreeMap::new();
    let skip = |owner: Option<&String>| owner.is_some_and(|peer| waiting.contains(peer));
    if let Some(index) = vxlan {
        for (table, wanted) in [
            (EntryTable::Neighbour, &desired.neighbours),
            (EntryTable::Fdb, &desired.fdb),
        ] {
            let present: BTreeSet<StaticEntry> =
                match kernel.netlink(|netlink| nl::static_entries(netlink, table, index)) {
                    Ok(entries) => entries.into_iter().collect(),
                    Err(error) => {
                        outcome
                            .node_errors
                            .push(format!("listing {table:?} entries: {error}"));
                        continue;
                    }
                };
            let (add, delete) = routes::diff(&present, wanted);
            for entry in &add {
                let owner = owners.peers.get(&entry.ip);
                if skip(owner) {
                    continue;
                }
                match kernel.netlink(|netlink| nl::add_entry(netlink, table, index, entry)) {
                    Ok(()) => outcome.entries_changed += 1,
                    Err(error) => record(&mut failed, &mut outcome, owner, error),
                }
            }
            for entry in &delete {
                // A stale entry of a peer waiting for its retry stays until it is retried.
                if skip(owners.peers.get(&entry.ip)) {
                    continue;
                }
                match kernel.netlink(|netlink| nl::delete_entry(netlink, table, index, entry)) {
                    Ok(()) => outcome.entries_changed += 1,
                    Err(error) => outcome
                        .node_errors
                        .push(format!("deleting {table:?} entry {}: {error}", entry.ip)),
                }
            }
        }
    }
    let current = match kernel.netlink(nl::weft_routes) {
        Ok(current) => current,
        Err(error) => {
            outcome.node_errors.push(format!("listing routes: {error}"));
            return finish(outcome, failed, retries, now);
        }
    };
    let current_set: BTreeSet<KernelRoute> = current.iter().copied().collect();
    for route in desired.routes.difference(&current_set) {
        let owner = owners.routes.get(&route.destination);
        if skip(owner) {
            continue;
        }
        match kernel.netlink(|netlink| nl::replace_route(netlink, route)) {
            Ok(()) => outcome.routes_changed += 1,
            Err(error) => record(&mut failed, &mut outcome, owner, error),
        }
    }
    for route in routes::stale_routes(&current, &desired.routes) {
        match kernel.netlink(|netlink| nl::delete_route(netlink, &route)) {
            Ok(()) => outcome.routes_changed += 1,
            Err(error) => outcome
                .node_errors
                .push(format!("deleting route {}: {error}", route.destination)),
        }
    }
    finish(outcome, failed, retries, now)
}

fn record(
    failed: &mut BTreeMap<String, String>,
    outcome: &mut RouteOutcome,
    owner: Option<&String>,
    error: KernelError,
) {
    match owner {
        Some(peer) => {
            failed
                .entry(peer.clone())
                .or_insert_with(|| error.to_string());
        }
        None => outcome.node_errors.push(error.to_string()),
    }
}

fn finish(
    mut outcome: RouteOutcome,
    failed: BTreeMap<String, String>,
    retries: &mut BTreeMap<String, PeerRetry>,
    now: Instant,
) -> RouteOutcome {
    // A peer tried this pass without failure is healthy again.
    retries.retain(|peer, retry| retry.next_attempt > now || failed.contains_key(peer));
    for (peer, error) in failed {
        let retry = PeerRetry::after(retries.get(&peer), error, now);
        outcome.peer_faults.insert(
            peer.clone(),
            format!(
                "{} (failed {} times; next try in {:?})",
                retry.error,
                retry.failures,
                retry.next_attempt.saturating_duration_since(now)
            ),
        );
        retries.insert(peer, retry);
    }
    outcome
}

/// When the earliest waiting peer is due, if any.
pub fn next_retry(retries: &BTreeMap<String, PeerRetry>) -> Option<Instant> {
    retries.values().map(|retry| retry.next_attempt).min()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_half_a_second_up_to_a_minute() {
        let now = Instant::now();
        let mut retry = PeerRetry::after(None, "refused".into(), now);
        assert_eq!(retry.next_attempt - now, FIRST_BACKOFF);
        let mut waits = vec![];
        for _ in 0..10 {
            retry = PeerRetry::after(Some(&retry), "refused".into(), now);
            waits.push((retry.next_attempt - now).as_millis());
        }
        assert_eq!(&waits[..4], &[1000, 2000, 4000, 8000]);
        assert_eq!(*waits.last().unwrap(), MAX_BACKOFF.as_millis());
    }

    #[test]
    fn a_peer_tried_again_without_failure_leaves_the_retry_list() {
        let now = Instant::now();
        let mut retries = BTreeMap::from([(
            "b".to_owned(),
            PeerRetry {
                failures: 2,
                next_attempt: now - Duration::from_millis(1),
                error: "refused".into(),
            },
        )]);
        let outcome = finish(RouteOutcome::default(), BTreeMap::new(), &mut retries, now);
        assert!(retries.is_empty());
        assert!(outcome.peer_faults.is_empty());
    }
}
