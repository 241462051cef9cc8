//! One [`LocalCluster`] per test binary, started on first use and stopped when the process exits.

use tokio::sync::OnceCell;

use crate::{ClusterOptions, Error, LocalCluster};

static SHARED: OnceCell<LocalCluster> = OnceCell::const_new();

impl LocalCluster {
    /// The test binary's shared cluster (no nodes until a test adds some). Tests sharing it use
    /// unique names. Its processes are killed and its directory removed when the process exits.
    pub async fn shared() -> Result<&'static LocalCluster, Error> {
        SHARED
            .get_or_try_init(|| LocalCluster::start(ClusterOptions::default()))
            .await
    }
}
