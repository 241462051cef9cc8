//! Prometheus metrics of the operator: reconciles, failures by error kind, reconcile duration,
//! per-component status and API requests by verb, encoded in the OpenMetrics text format.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    pub kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ComponentLabels {
    pub component: String,
    pub condition: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub verb: String,
}

/// The operator's metrics. Cheap to clone: every metric is a shared handle.
#[derive(Clone)]
pub struct Metrics {
    pub reconciles: Counter,
    pub failures: Family<ErrorLabels, Counter>,
    pub duration: Histogram,
    pub components: Family<ComponentLabels, Gauge>,
    pub api_requests: Family<RequestLabels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            reconciles: Counter::default(),
            failures: Family::default(),
            duration: Histogram::new(exponential_buckets(0.005, 2.0, 12)),
            components: Family::default(),
            api_requests: Family::default(),
        }
    }
}

impl Metrics {
    /// Registers every metric under the `weft_operator` prefix.
    pub fn register(&self, registry: &mut Registry) {
        let registry = registry.sub_registry_with_prefix("weft_operator");
        registry.register(
            "reconciles",
            "Reconciles of the Installation",
            self.reconciles.clone(),
        );
        registry.register(
            "reconcile_failures",
            "Failed reconciles by error kind",
            self.failures.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Time one reconcile took",
            self.duration.clone(),
        );
        registry.register(
            "component_condition",
            "1 when the component has the condition, else 0",
            self.components.clone(),
        );
        registry.register(
            "api_requests",
            "Requests the operator sent to the API server, by verb",
            self.api_requests.clone(),
        );
    }

    pub fn observe_reconcile(&self, took: Duration) {
        self.reconciles.inc();
        self.duration.observe(took.as_secs_f64());
    }

    pub fn observe_failure(&self, kind: &str) {
        self.failures
            .get_or_create(&ErrorLabels {
                kind: kind.to_owned(),
            })
            .inc();
    }

    /// Sets the gauges of one component: exactly one of its conditions is 1.
    pub fn set_component(&self, component: &str, condition: &str) {
        for candidate in ["Available", "Progressing", "Degraded"] {
            let labels = ComponentLabels {
                component: component.to_owned(),
                condition: candidate.to_owned(),
            };
            self.components
                .get_or_create(&labels)
                .set(i64::from(candidate == condition));
        }
    }

    /// Total requests sent so far with `verb` (for example `GET` or `PATCH`).
    pub fn requests(&self, verb: &str) -> u64 {
        self.api_requests
            .get_or_create(&RequestLabels {
                verb: verb.to_owned(),
            })
            .get()
    }
}

/// Encodes `registry` in the OpenMetrics text format.
pub fn encode(registry: &Registry) -> String {
    let mut text = String::new();
    // Writing into a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut text, registry);
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_counters_and_component_gauges() {
        let metrics = Metrics::default();
        let mut registry = Registry::default();
        metrics.register(&mut registry);
        metrics.observe_reconcile(Duration::from_millis(20));
        metrics.observe_failure("apply");
        metrics.set_component("node", "Progressing");
        let text = encode(&registry);
        assert!(text.contains("weft_operator_reconciles_total 1"), "{text}");
        assert!(text.contains("weft_operator_reconcile_failures_total{kind=\"apply\"} 1"));
        assert!(text.contains(
            "weft_operator_component_condition{component=\"node\",condition=\"Progressing\"} 1"
        ));
        assert!(text.contains(
            "weft_operator_component_condition{component=\"node\",condition=\"Available\"} 0"
        ));
    }
}
