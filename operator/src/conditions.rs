//! Status conditions: building them, merging them with the previous ones so that
//! `lastTransitionTime` only moves when a condition flips, and comparing them ignoring timestamps
//! so status is written only when something an admin can see changed.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

pub const READY: &str = "Ready";
pub const AVAILABLE: &str = "Available";
pub const PROGRESSING: &str = "Progressing";
pub const DEGRADED: &str = "Degraded";
/// kstatus' abnormal-true conditions (read by Flux, Argo CD's kstatus checks and `kpt`): an
/// object with `Reconciling` True is in progress, one with `Stalled` True has failed. They
/// mirror Progressing and Degraded, so a GitOps tool waiting on the Installation sees a rollout
/// as in progress and an invalid configuration, a failed apply or a failing component as failed.
pub const RECONCILING: &str = "Reconciling";
pub const STALLED: &str = "Stalled";

/// A condition as computed by one reconcile, before it is merged with the previous status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Desired {
    pub type_: &'static str,
    pub status: bool,
    pub reason: String,
    pub message: String,
}

impl Desired {
    pub fn new(
        type_: &'static str,
        status: bool,
        reason: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            type_,
            status,
            reason: reason.into(),
            message: message.into(),
        }
    }
}

/// `desired` with [`RECONCILING`] and [`STALLED`] appended, derived from its Progressing and
/// Degraded conditions.
pub fn with_kstatus(mut desired: Vec<Desired>) -> Vec<Desired> {
    let find = |type_: &str| desired.iter().find(|c| c.type_ == type_).cloned();
    let degraded = find(DEGRADED).filter(|c| c.status);
    let progressing = find(PROGRESSING).filter(|c| c.status);
    let reconciling = match (&progressing, &degraded) {
        (Some(progressing), None) => {
            Desired::new(RECONCILING, true, &progressing.reason, &progressing.message)
        }
        _ => Desired::new(RECONCILING, false, "NotReconciling", "see Progressing"),
    };
    let stalled = match degraded {
        Some(degraded) => Desired::new(STALLED, true, degraded.reason, degraded.message),
        None => Desired::new(STALLED, false, "NotStalled", "see Degraded"),
    };
    desired.push(reconciling);
    desired.push(stalled);
    desired
}

fn status_word(status: bool) -> &'static str {
    if status { "True" } else { "False" }
}

/// Merges freshly computed conditions with the previous ones: a condition whose status did not
/// change keeps its `lastTransitionTime`; a flipped or new one gets `now`.
pub fn merge(
    previous: &[Condition],
    desired: &[Desired],
    observed_generation: Option<i64>,
    now: &Time,
) -> Vec<Condition> {
    desired
        .iter()
        .map(|want| {
            let status = status_word(want.status);
            let last_transition_time = previous
                .iter()
                .find(|old| old.type_ == want.type_ && old.status == status)
                .map(|old| old.last_transition_time.clone())
                .unwrap_or_else(|| now.clone());
            Condition {
                type_: want.type_.to_owned(),
                status: status.to_owned(),
                reason: want.reason.clone(),
                message: want.message.clone(),
                observed_generation,
                last_transition_time,
            }
        })
        .collect()
}

/// True when the two condition lists differ in anything but `lastTransitionTime`.
pub fn differ(old: &[Condition], new: &[Condition]) -> bool {
    old.len() != new.len()
        || old.iter().zip(new).any(|(a, b)| {
            a.type_ != b.type_
                || a.status != b.status
                || a.reason != b.reason
                || a.message != b.message
                || a.observed_generation != b.observed_generation
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn time(seconds: i64) -> Time {
        Time(jiff::Timestamp::from_second(seconds).unwrap())
    }

    #[test]
    fn unchanged_status_keeps_transition_time() {
        let first = merge(
            &[],
            &[Desired::new(AVAILABLE, true, "AllAvailable", "ok")],
            Some(1),
            &time(100),
        );
        let second = merge(
            &first,
            &[Desired::new(AVAILABLE, true, "AllAvailable", "still ok")],
            Some(2),
            &time(200),
        );
        assert_eq!(second[0].last_transition_time, time(100));
        assert_eq!(second[0].observed_generation, Some(2));
        assert!(differ(&first, &second));
    }

    #[test]
    fn flipped_status_moves_transition_time() {
        let first = merge(
            &[],
            &[Desired::new(DEGRADED, false, "AsExpected", "")],
            None,
            &time(1),
        );
        let second = merge(
            &first,
            &[Desired::new(DEGRADED, true, "InvalidConfiguration", "bad")],
            None,
            &time(5),
        );
        assert_eq!(second[0].last_transition_time, time(5));
        assert_eq!(second[0].status, "True");
    }

    /// kstatus sees InProgress while rolling out, Failed when degraded, Current otherwise.
    #[test]
    fn kstatus_conditions_follow_progressing_and_degraded() {
        let of = |progressing: bool, degraded: bool| {
            let all = with_kstatus(vec![
                Desired::new(PROGRESSING, progressing, "RollingOut", "rolling"),
                Desired::new(DEGRADED, degraded, "ApplyFailed", "refused"),
            ]);
            let get = |t: &str| all.iter().find(|c| c.type_ == t).unwrap().clone();
            (get(RECONCILING), get(STALLED))
        };
        let (reconciling, stalled) = of(true, false);
        assert!(reconciling.status && !stalled.status);
        assert_eq!(reconciling.message, "rolling");
        let (reconciling, stalled) = of(true, true);
        assert!(!reconciling.status && stalled.status);
        assert_eq!(stalled.reason, "ApplyFailed");
        let (reconciling, stalled) = of(false, false);
        assert!(!reconciling.status && !stalled.status);
    }

    #[test]
    fn only_timestamps_differing_is_no_change() {
        let wanted = [Desired::new(READY, true, "Ready", "all good")];
        let first = merge(&[], &wanted, Some(3), &time(1));
        let mut second = first.clone();
        second[0].last_transition_time = time(99);
        assert!(!differ(&first, &second));
    }
}
