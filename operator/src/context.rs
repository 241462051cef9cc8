//! What every reconcile shares: the API client, Events, metrics and the operator's settings.

use std::time::Duration;

use kube::Client;

use crate::backoff::{Retries, RetryPolicy};
use crate::events::Events;
use crate::metrics::Metrics;

/// How long failing pods are given before their component is Degraded (the Tigera operator's).
pub const DEGRADED_GRACE: Duration = Duration::from_secs(60);

/// Settings of the operator process.
#[derive(Clone, Debug)]
pub struct Settings {
    /// How long teardown may take before the finalizer lets go and reports what is left.
    pub teardown_timeout: Duration,
    /// How often a healthy Installation is checked even without any change.
    pub resync: Duration,
    /// How transient failures are retried.
    pub retry: RetryPolicy,
    /// How long a component's pods may fail (crash loop, image pull, OOM kill) before the
    /// component and the Installation are Degraded rather than Progressing.
    pub degraded_grace: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            teardown_timeout: Duration::from_secs(120),
            resync: Duration::from_secs(300),
            retry: RetryPolicy::default(),
            degraded_grace: DEGRADED_GRACE,
        }
    }
}

pub struct Context {
    pub client: Client,
    pub events: Events,
    pub metrics: Metrics,
    pub settings: Settings,
    /// The pod MTU each node's agent publishes.
    pub node_mtus: crate::node_mtu::NodeMtus,
    /// Consecutive transient failures per Installation, for the retry backoff.
    pub retries: Retries,
    /// Since when each component's rollout has shown the same progress ([`crate::progress`]).
    pub progress: crate::progress::Progress,
    /// Whether anything watched changed since the last full sync ([`crate::steady`]).
    pub steady: std::sync::Arc<crate::steady::Steady>,
}
