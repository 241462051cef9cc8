//! Whether a component's rollout is moving. A rollout that makes progress needs no explanation,
//! so the pods of a component are examined (a paged list of all of them, see
//! [`crate::diagnose`]) only once its progress message has stood still for [`STALL`]. On
//! thousands of nodes a healthy rollout then costs no pod listing at all, while a stuck one is
//! explained a few seconds after it stopped moving.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a component's progress message must stay the same before its pods are examined.
pub const STALL: Duration = Duration::from_secs(5);

/// The last progress message of each component and since when it has been shown.
#[derive(Debug, Default)]
pub struct Progress(Mutex<HashMap<String, (String, Instant)>>);

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
        let mut seen = self.0.lock().unwrap_or_else(|poison| poison.into_inner());
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

    /// Forgets `component` (it is available), so a later rollout starts a fresh clock.
    pub fn forget(&self, component: &str) {
        let mut seen = self.0.lock().unwrap_or_else(|poison| poison.into_inner());
        seen.remove(component);
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
}
