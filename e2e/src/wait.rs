//! Polling for readiness: conditions are waited for, never slept for, and a control-plane process
//! that dies while we wait ends the wait with its log.

use std::future::Future;
use std::time::Duration;

use crate::{Error, LocalCluster};

const POLL: Duration = Duration::from_millis(100);

/// Polls `check` until it returns `Some`, failing when `timeout` passes or a process exits.
pub async fn wait_until<T, F, Fut>(
    cluster: &LocalCluster,
    what: &str,
    timeout: Duration,
    mut check: F,
) -> Result<T, Error>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Option<T>, Error>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        cluster.ensure_running()?;
        if let Some(value) = check().await? {
            return Ok(value);
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(Error::Timeout {
                what: what.to_string(),
                seconds: timeout.as_secs(),
            });
        }
        tokio::time::sleep(POLL).await;
    }
}
