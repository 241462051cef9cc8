//! Whether a component's rollout is moving. A rollout that makes progress needs no explanation,
//! so the pods of a component are examined (a paged list of all of them, see
//! [`crate::diagnose`]) only once its progress message has stood still for [`STALL`]. On
//! thousands of nodes a healthy rollout then costs no pod listing at all, while a stuck one is
//! explained a few seconds after it stopped moving.
//!
//! It also remembers since when a component's pods have been failing (crash loops, image pull
//! failures, OOM kills: see [`crate::diagnose`]); past the operator's grace period (60 s by
//! default, as the Tigera operator's) the component is Degraded rather than Progressing.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a component's progress message must stay the same before its pods are examined.
pub const STALL: Duration = Duration::from_secs(5);

/// The last progress message of each component and since when it has been shown, and since when
/// its pods have been failing.
#[derive(Debug, Default)]
pub struct Progress {
    seen: Mutex<HashMap<String, (String, Instant)>>,
    failing: Mutex<HashMap<String, Instant>>,
}

/// What to do about a component that is not available yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// It has not moved for [`STALL`]: find out why.
    Examine,
    /// It moved recently; look again after this long if nothing else happens.
    WaitFor(Duration),
}

impl Progress {
    /// Records `message` as `component`'s progress at `now` and says whether it has stalled.
    pub fn observe(&self, component: &str, message: &str, now: Instant) -> Verdict {
        let mut seen = self
            .seen
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        let since = match seen.get(component) {
            Some((last, since)) if last == message => *since,
            _ => {
                seen.insert(component.to_owned(), (message.to_owned(), now));
                now
            }
        };
        let still = now.saturating_duration_since(since);
        if still >= STALL {
            Verdict::Examine
        } else {
            Verdict::WaitFor(STALL - still)
        }
    }

    /// Records whether `component`'s pods were found failing at `now`, and says for how long
    /// they have failed without a look finding them healthy (None: not failing).
    pub fn failing_for(&self, component: &str, failing: bool, now: Instant) -> Option<Duration> {
        let mut since = self
            .failing
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        if !failing {
            since.remove(component);
            return None;
        }
        let first = *since.entry(component.to_owned()).or_insert(now);
        Some(now.saturating_duration_since(first))
    }

    /// Forgets `component` (it is available), so a later rollout starts a fresh clock.
    pub fn forget(&self, component: &str) {
        let mut seen = self
            .seen
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        seen.remove(component);
        drop(seen);
        let mut failing = self
            .failing
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        failing.remove(component);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_moving_rollout_is_left_alone_and_a_still_one_is_examined() {
        let progress = Progress::default();
        let start = Instant::now();
        let node = "node";
        let rolling =
            |n: u32| format!("DaemonSet weft-system/weft-node is rolling out ({n} of 9 updated)");
        assert_eq!(
            progress.observe(node, &rolling(1), start),
            Verdict::WaitFor(STALL)
        );
        let later = start + Duration::from_secs(3);
        assert_eq!(
            progress.observe(node, &rolling(1), later),
            Verdict::WaitFor(Duration::from_secs(2))
        );
        // Progress restarts the clock.
        let moved = start + Duration::from_secs(4);
        assert_eq!(
            progress.observe(node, &rolling(2), moved),
            Verdict::WaitFor(STALL)
        );
        assert_eq!(
            progress.observe(node, &rolling(2), moved + STALL),
            Verdict::Examine
        );
        // Components are timed apart.
        assert_eq!(
            progress.observe("controllers", "x", moved + STALL),
            Verdict::WaitFor(STALL)
        );
        progress.forget(node);
        assert_eq!(
            progress.observe(node, &rolling(2), moved + STALL * 3),
            Verdict::WaitFor(STALL)
        );
    }

    #[test]
    fn failing_is_timed_from_the_first_look_and_cleared_by_a_healthy_one() {
        let progress = Progress::default();
        let start = Instant::now();
        assert_eq!(progress.failing_for("node", false, start), None);
        assert_eq!(
            progress.failing_for("node", true, start),
            Some(Duration::ZERO)
        );
        let later = start + Duration::from_secs(61);
        assert_eq!(
            progress.failing_for("node", true, later),
            Some(Duration::from_secs(61))
        );
        // A look that finds the pods healthy restarts the clock.
        assert_eq!(progress.failing_for("node", false, later), None);
        assert_eq!(
            progress.failing_for("node", true, later),
            Some(Duration::ZERO)
        );
        // Availability forgets it too.
        progress.forget("node");
        let again = later + Duration::from_secs(5);
        assert_eq!(
            progress.failing_for("node", true, again),
            Some(Duration::ZERO)
        );
    }
}
