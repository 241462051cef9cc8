//! The agent's Prometheus metrics: dataplane apply time per part, syncs by result, blocks and
//! addresses per pool on this node, and what the controllers free.

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PartLabel {
    pub part: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PoolLabel {
    pub pool: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    pub kind: String,
}

/// Every metric, cheap to clone.
#[derive(Clone)]
pub struct Metrics {
    pub apply_seconds: Family<PartLabel, Histogram>,
    pub syncs: Family<ResultLabel, Counter>,
    pub blocks: Family<PoolLabel, Gauge>,
    pub addresses: Family<PoolLabel, Gauge>,
    pub freed: Family<KindLabel, Counter>,
    pub refused: Family<KindLabel, Gauge>,
    pub part_faults: Family<PartLabel, Gauge>,
    pub registry: Arc<Registry>,
}

impl Metrics {
    pub fn new() -> Self {
        let apply_seconds = Family::<PartLabel, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.0005, 2.0, 14))
        });
        let syncs = Family::<ResultLabel, Counter>::default();
        let blocks = Family::<PoolLabel, Gauge>::default();
        let addresses = Family::<PoolLabel, Gauge>::default();
        let freed = Family::<KindLabel, Counter>::default();
        let refused = Family::<KindLabel, Gauge>::default();
        let part_faults = Family::<PartLabel, Gauge>::default();
        let mut registry = Registry::with_prefix("weft_agent");
        registry.register(
            "dataplane_apply_seconds",
            "Time to program one part of the dataplane (routes, nat, policy)",
            apply_seconds.clone(),
        );
        registry.register("syncs", "Dataplane syncs by result", syncs.clone());
        registry.register(
            "blocks",
            "IPAM blocks this node holds, by pool",
            blocks.clone(),
        );
        registry.register(
            "addresses",
            "Pod addresses allocated on this node, by pool",
            addresses.clone(),
        );
        registry.register(
            "freed",
            "Blocks and addresses released by garbage collection",
            freed.clone(),
        );
        registry.register(
            "refused",
            "Objects not routed by because they cannot be trusted (IPAMBlock, Node), and peers whose routes the kernel refused (peer)",
            refused.clone(),
        );
        registry.register(
            "dataplane_fault",
            "1 while a part of this node's own dataplane cannot be programmed",
            part_faults.clone(),
        );
        Self {
            apply_seconds,
            syncs,
            blocks,
            addresses,
            freed,
            refused,
            part_faults,
            registry: Arc::new(registry),
        }
    }

    pub fn observe_apply(&self, part: &str, elapsed: Duration) {
        self.apply_seconds
            .get_or_create(&PartLabel { part: part.into() })
            .observe(elapsed.as_secs_f64());
    }

    pub fn count_sync(&self, result: &str) {
        self.syncs
            .get_or_create(&ResultLabel {
                result: result.into(),
            })
            .inc();
    }

    pub fn count_freed(&self, kind: &str, count: u64) {
        self.freed
            .get_or_create(&KindLabel { kind: kind.into() })
            .inc_by(count);
    }

    pub fn set_refused(&self, kind: &str, count: i64) {
        self.refused
            .get_or_create(&KindLabel { kind: kind.into() })
            .set(count);
    }

    pub fn set_part_fault(&self, part: &str, faulty: bool) {
        self.part_faults
            .get_or_create(&PartLabel { part: part.into() })
            .set(i64::from(faulty));
    }

    pub fn encode(&self) -> String {
        let mut text = String::new();
        // Encoding into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
