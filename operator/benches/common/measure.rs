//! One measurement of one operator on the current cluster: start it, apply its Installation,
//! time apply → Available, count what it created, then an idle window and a window of no-op
//! reconcile triggers of the same length (an annotation on the Installation), counted in the
//! audit log by its user and in its own metrics, then a window of the second trigger (a label on
//! the node agent's DaemonSet); finally its peak RSS, and teardown.

use std::time::{Duration, Instant};

use kube::Client;
use weft_e2e::LocalCluster;

use super::Case;
use super::audit::{AuditLog, Counts};
use super::metrics::{growth_by, scrape, sum};
use super::operators::Operator;
use super::peak_rss_kib;

/// No-op reconcile triggers per measurement, and their spacing (beyond weft's 0.15 s debounce).
pub const TRIGGERS: u64 = 20;
const TRIGGER_SPACING: Duration = Duration::from_millis(800);
/// Wait after Available before counting (status writes and late watches settle).
const SETTLE: Duration = Duration::from_secs(5);
/// Wait after the last trigger, for its reconcile to finish.
const DRAIN: Duration = Duration::from_secs(2);
const AVAILABLE_LIMIT: Duration = Duration::from_secs(1800);

/// What one operator measured at one size.
#[derive(Debug, Clone)]
pub struct Figures {
    pub case: Case,
    pub operator: &'static str,
    /// Apply → every rendered object exists (when the operator tells that apart).
    pub to_applied: Option<Duration>,
    pub to_available: Duration,
    pub peak_rss_kib: u64,
    /// From the audit log, per trigger: an annotation on the Installation.
    pub requests_per_noop: f64,
    pub writes_per_noop: f64,
    /// The same for the second trigger: a label on the node agent's DaemonSet.
    pub managed_requests_per_noop: f64,
    pub managed_writes_per_noop: f64,
    /// Requests in an idle window as long as the trigger window, per trigger's share.
    pub idle_per_noop: f64,
    /// Successful creates from apply until Available.
    pub created: u64,
    /// The operator's own reconcile counter, per trigger, and by controller.
    pub reconciles_per_noop: f64,
    pub reconciles_by: String,
    /// The operator's own request counter, per trigger.
    pub own_requests_per_noop: f64,
    /// The most frequent requests of the trigger window.
    pub top_requests: String,
}

impl Figures {
    pub fn peak_rss_mib(&self) -> f64 {
        self.peak_rss_kib as f64 / 1024.0
    }
}

async fn wait_log_flushed() {
    // The audit backend writes each event as the request ends; leave it a moment.
    tokio::time::sleep(Duration::from_millis(500)).await;
}

/// `TRIGGERS` no-op triggers `TRIGGER_SPACING` apart, then `DRAIN` for the last reconcile.
async fn trigger_window<F, Fut>(mut trigger: F) -> anyhow::Result<()>
where
    F: FnMut(u64) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    for tick in 0..TRIGGERS {
        trigger(tick).await?;
        tokio::time::sleep(TRIGGER_SPACING).await;
    }
    tokio::time::sleep(DRAIN).await;
    Ok(())
}

/// Measures `operator` on `cluster` (already grown to `case`).
pub async fn measure(
    cluster: &LocalCluster,
    client: &Client,
    operator: &Operator,
    case: Case,
) -> anyhow::Result<Figures> {
    let audit = AuditLog::new(&cluster.audit_log());
    let user = operator.user();
    let running = operator.start(cluster, client).await?;
    eprintln!("{case}: {} started", operator.name());

    let applied_from = audit.offset();
    let started = Instant::now();
    operator.apply_installation(client).await?;
    let mut to_applied = None;
    loop {
        if to_applied.is_none() && operator.all_applied(client).await? == Some(true) {
            to_applied = Some(started.elapsed());
        }
        if operator.available(client).await? {
            break;
        }
        anyhow::ensure!(
            started.elapsed() < AVAILABLE_LIMIT,
            "{} not Available after {AVAILABLE_LIMIT:?}",
            operator.name()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let to_available = started.elapsed();
    eprintln!(
        "{case}: {} Available after {:.2}s",
        operator.name(),
        to_available.as_secs_f64()
    );
    wait_log_flushed().await;
    let created = audit.count(user, applied_from, audit.offset())?.created;

    tokio::time::sleep(SETTLE).await;
    let window = TRIGGER_SPACING * TRIGGERS as u32 + DRAIN;
    let idle_from = audit.offset();
    tokio::time::sleep(window).await;
    let idle = audit.count(user, idle_from, audit.offset())?;

    let before = scrape(running.metrics_port).await?;
    let from = audit.offset();
    trigger_window(|tick| operator.touch(client, tick)).await?;
    let after = scrape(running.metrics_port).await?;
    wait_log_flushed().await;
    let counts: Counts = audit.count(user, from, audit.offset())?;
    let peak_rss_kib = peak_rss_kib(running.pid)?;

    // The second trigger: an object the operator manages changed where it owns nothing.
    tokio::time::sleep(SETTLE).await;
    let managed_from = audit.offset();
    trigger_window(|tick| operator.touch_managed(client, tick)).await?;
    wait_log_flushed().await;
    let managed: Counts = audit.count(user, managed_from, audit.offset())?;

    let (reconciles, by) = operator.reconcile_metric();
    let (requests, _) = operator.request_metric();
    let reconciled = growth_by(&before, &after, reconciles, by);
    let triggers = TRIGGERS as f64;
    let figures = Figures {
        case,
        operator: operator.name(),
        to_applied,
        to_available,
        peak_rss_kib,
        requests_per_noop: counts.requests as f64 / triggers,
        writes_per_noop: counts.writes as f64 / triggers,
        managed_requests_per_noop: managed.requests as f64 / triggers,
        managed_writes_per_noop: managed.writes as f64 / triggers,
        idle_per_noop: idle.requests as f64 / triggers,
        created,
        reconciles_per_noop: reconciled.iter().map(|(_, n)| n).sum::<f64>() / triggers,
        reconciles_by: reconciled
            .iter()
            .map(|(name, n)| format!("{name}×{n}"))
            .collect::<Vec<_>>()
            .join(", "),
        own_requests_per_noop: (sum(&after, requests, &[]) - sum(&before, requests, &[]))
            / triggers,
        top_requests: counts.top(6),
    };
    operator.teardown(client, running).await?;
    eprintln!("{case}: {} torn down", operator.name());
    Ok(figures)
}
