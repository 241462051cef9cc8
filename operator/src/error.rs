//! The reconcile's errors, one variant per step, and how each is handled: invalid input is
//! reported (Degraded + Event) and waits for the next change; API failures, finalizer failures
//! included, are retried with backoff ([`crate::backoff`]); a teardown still in progress is
//! polled.

use crate::apply::ApplyError;
use crate::validate::ValidationErrors;

/// What a failed reconcile step means for the next attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Policy {
    /// Nothing will change until the Installation does: report and wait.
    WaitForChange,
    /// Transient: try again with backoff.
    Retry,
    /// Expected waiting (teardown in progress): check again soon, not a failure.
    Poll,
}

/// Why the finalizer could not be added or removed.
#[derive(Debug, thiserror::Error)]
pub enum FinalizerError {
    #[error("adding the finalizer: {0}")]
    Add(#[source] kube::Error),
    #[error("removing the finalizer: {0}")]
    Remove(#[source] kube::Error),
    /// The finalizer helper refused the object (no name) or the finalizer's patch path.
    #[error("the finalizer helper refused the object: {0}")]
    Refused(String),
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("the Installation is invalid: {0}")]
    Invalid(#[source] ValidationErrors),
    #[error("reading cluster facts: {0}")]
    Facts(#[source] kube::Error),
    #[error(transparent)]
    Apply(#[from] ApplyError),
    #[error("managing IP pools: {0}")]
    Pools(#[source] kube::Error),
    #[error("writing the Installation status: {0}")]
    Status(#[source] kube::Error),
    #[error("updating the Installation's finalizer: {0}")]
    Finalizer(#[source] FinalizerError),
    #[error("teardown in progress: waiting for {}", .0.join(", "))]
    TeardownPending(Vec<String>),
}

impl Error {
    /// A short stable label for metrics (`reconcile_failures_total{kind=...}`).
    pub fn kind(&self) -> &'static str {
        match self {
            Error::Invalid(_) => "invalid",
            Error::Facts(_) => "facts",
            Error::Apply(_) => "apply",
            Error::Pools(_) => "pools",
            Error::Status(_) => "status",
            Error::Finalizer(_) => "finalizer",
            Error::TeardownPending(_) => "teardown_pending",
        }
    }

    pub fn policy(&self) -> Policy {
        match self {
            Error::Invalid(_) => Policy::WaitForChange,
            Error::TeardownPending(_) => Policy::Poll,
            Error::Facts(_)
            | Error::Apply(_)
            | Error::Pools(_)
            | Error::Status(_)
            | Error::Finalizer(_) => Policy::Retry,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validate::FieldError;

    #[test]
    fn invalid_input_waits_teardown_polls_and_finalizer_failures_retry() {
        let invalid = Error::Invalid(ValidationErrors(vec![FieldError {
            field: "spec.network.mtu".into(),
            message: "must be at least 576".into(),
        }]));
        assert_eq!(invalid.policy(), Policy::WaitForChange);
        assert_eq!(
            invalid.to_string(),
            "the Installation is invalid: spec.network.mtu: must be at least 576"
        );
        let pending = Error::TeardownPending(vec!["DaemonSet weft-node".into()]);
        assert_eq!(pending.policy(), Policy::Poll);
        assert_eq!(pending.kind(), "teardown_pending");
        assert_eq!(
            pending.to_string(),
            "teardown in progress: waiting for DaemonSet weft-node"
        );
        let refused = Error::Finalizer(FinalizerError::Refused("object has no name".into()));
        assert_eq!(refused.policy(), Policy::Retry);
    }
}
