//! Skipping reconciles that cannot change anything. Every object the operator manages, every IP
//! pool and every node MTU is watched (metadata only); each event of those watches advances an
//! epoch. A full sync that ends with everything in place and Available records the
//! Installation's uid and generation and the epoch it started at. A later reconcile of the same
//! generation with no watch event since (e.g. an annotation changed on the Installation, or the
//! operator's own status write) has nothing to compare that the last sync did not already see,
//! so it returns without a single API request. A changed spec, any event of a managed object
//! (a hand edit, a deletion, a pod becoming ready), a failed or unfinished sync, or the resync
//! period passing makes the next reconcile a full one again.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use kube::ResourceExt;
use weft_api::Installation;

/// The last full sync that left everything in place.
#[derive(Debug, Clone, PartialEq)]
struct Mark {
    uid: String,
    generation: Option<i64>,
    epoch: u64,
    at: Instant,
}

#[derive(Debug, Default)]
pub struct Steady {
    epoch: AtomicU64,
    last: Mutex<Option<Mark>>,
}

impl Steady {
    /// A watched object changed (or a watch restarted): the last sync may be stale.
    pub fn bump(&self) {
        self.epoch.fetch_add(1, Ordering::SeqCst);
    }

    /// The epoch to record if the sync starting now completes in steady state.
    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::SeqCst)
    }

    /// Whether a sync of `installation` starting now would repeat the last one: same object and
    /// generation, no watch event since that sync started, and younger than `resync`.
    pub fn holds(&self, installation: &Installation, resync: Duration) -> bool {
        let last = self.last.lock().expect("steady mark");
        last.as_ref().is_some_and(|mark| {
            Some(&mark.uid) == installation.metadata.uid.as_ref()
                && mark.generation == installation.metadata.generation
                && mark.epoch == self.epoch()
                && mark.at.elapsed() < resync
        })
    }

    /// Records a full sync of `installation` that started at `epoch` and left everything in
    /// place; `None` forgets the last one.
    pub fn record(&self, installation: Option<(&Installation, u64)>) {
        let mark = installation.map(|(installation, epoch)| Mark {
            uid: installation.uid().unwrap_or_default(),
            generation: installation.metadata.generation,
            epoch,
            at: Instant::now(),
        });
        *self.last.lock().expect("steady mark") = mark;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn installation(generation: i64) -> Installation {
        let mut installation = Installation::new("default", Default::default());
        installation.metadata.uid = Some("u1".into());
        installation.metadata.generation = Some(generation);
        installation
    }

    #[test]
    fn holds_only_for_the_same_generation_without_events() {
        let steady = Steady::default();
        let resync = Duration::from_secs(300);
        assert!(
            !steady.holds(&installation(1), resync),
            "nothing recorded yet"
        );
        let epoch = steady.epoch();
        steady.record(Some((&installation(1), epoch)));
        assert!(steady.holds(&installation(1), resync));
        assert!(!steady.holds(&installation(2), resync), "spec changed");
        steady.bump();
        assert!(
            !steady.holds(&installation(1), resync),
            "a watched object changed"
        );
    }

    #[test]
    fn an_event_during_the_sync_makes_the_next_one_full() {
        let steady = Steady::default();
        let epoch = steady.epoch();
        steady.bump(); // e.g. the sync's own write, seen by a watch
        steady.record(Some((&installation(1), epoch)));
        assert!(!steady.holds(&installation(1), Duration::from_secs(300)));
    }

    #[test]
    fn resync_period_and_forgetting_end_it() {
        let steady = Steady::default();
        steady.record(Some((&installation(1), steady.epoch())));
        assert!(!steady.holds(&installation(1), Duration::ZERO));
        steady.record(None);
        assert!(!steady.holds(&installation(1), Duration::from_secs(300)));
    }
}
