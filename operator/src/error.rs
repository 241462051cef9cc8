//! The reconcile's errors, one variant per step, and how each is handled: invalid input is
//! reported (Degraded + Event) and waits for the next change; API failures are retried with
//! backoff; a teardown still in progress is polled.

use crate::apply::ApplyError;

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

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("reading the Installation: {0}")]
    Read(#[source] kube::Error),
    #[error("the Installation is invalid: {0}")]
    Invalid(String),
    #[error("reading cluster facts: {0}")]
    Facts(#[source] kube::Error),
    #[error(transparent)]
    Apply(#[from] ApplyError),
    #[error("managing IP pools: {0}")]
    Pools(#[source] kube::Error),
    #[error("writing the Installation status: {0}")]
    Status(#[source] kube::Error),
    #[error("updating the Installation's finalizer: {0}")]
    Finalizer(#[source] kube::Error),
    #[error("teardown in progress: {0}")]
    TeardownPending(String),
}

impl Error {
    /// A short stable label for metrics (`reconcile_failures_total{kind=...}`).
    pub fn kind(&self) -> &'static str {
        match self {
            Error::Read(_) => "read",
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
            Error::Read(_)
            | Error::Facts(_)
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

    #[test]
    fn invalid_input_waits_and_teardown_polls() {
        assert_eq!(Error::Invalid("x".into()).policy(), Policy::WaitForChange);
        assert_eq!(Error::TeardownPending("x".into()).policy(), Policy::Poll);
        assert_eq!(
            Error::TeardownPending("x".into()).kind(),
            "teardown_pending"
        );
    }
}
