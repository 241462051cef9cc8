//! The install path on its own (`make demo-kwok`, and `make demo` without root): a local control
//! plane, weft's CRDs and the operator's RBAC (config/rbac), the operator in this process as its
//! own ServiceAccount, and the sample Installation until Available on kwok nodes, whose pods
//! are simulated: no packet moves.

use std::path::Path;
use std::time::{Duration, Instant};

use kube::{Api, Client};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use weft_api::Installation;
use weft_operator::manifests::{ManifestError, apply_yaml, install_crds};
use weft_operator::runtime::{Handles, Options, run};

use super::report::{component_table, kubectl};
use super::{Error, api};
use crate::{ClusterOptions, LocalCluster};

pub(crate) const FIELD_MANAGER: &str = "weft-demo";
const OPERATOR_NAMESPACE: &str = "weft-operator";

/// A control plane with weft's CRDs and the operator running.
pub struct Installed {
    pub cluster: LocalCluster,
    pub admin: Client,
    stop: watch::Sender<bool>,
    operator: JoinHandle<Result<(), weft_operator::runtime::RunError>>,
}

impl Installed {
    /// Starts the control plane with `kwok_nodes`, applies the CRDs and config/rbac and starts
    /// the operator as its ServiceAccount.
    pub async fn start(kwok_nodes: usize) -> Result<Self, Error> {
        let options = ClusterOptions {
            nodes: kwok_nodes,
            ..ClusterOptions::default()
        };
        let cluster = LocalCluster::start(options).await?;
        let admin = cluster.client().await?;
        let setup = |error: ManifestError| Error::Setup(format!("installing weft: {error}"));
        install_crds(&admin, FIELD_MANAGER).await.map_err(setup)?;
        for (name, text) in crate::OPERATOR_RBAC {
            apply_yaml(&admin, name, text, FIELD_MANAGER)
                .await
                .map_err(setup)?;
        }
        println!(
            "CRDs and config/rbac applied; starting the operator as ServiceAccount {OPERATOR_NAMESPACE}/weft-operator"
        );
        let operator_client = cluster
            .client_as_service_account(OPERATOR_NAMESPACE, "weft-operator")
            .await?;
        let (stop, shutdown) = watch::channel(false);
        let options = Options {
            health_address: ([127, 0, 0, 1], 0).into(),
            metrics_address: None,
            lease_namespace: Some(OPERATOR_NAMESPACE.into()),
            identity: "weft-demo".into(),
            settings: Default::default(),
        };
        let operator = tokio::spawn(run(operator_client, options, Handles::new(), shutdown));
        Ok(Self {
            cluster,
            admin,
            stop,
            operator,
        })
    }

    /// Applies the Installation manifest at `path`.
    pub async fn apply(&self, path: &Path) -> Result<(), Error> {
        let source = path.display().to_string();
        let manifest = std::fs::read_to_string(path).map_err(|error| Error::Io {
            what: format!("--installation {source}"),
            source: error,
        })?;
        apply_yaml(&self.admin, &source, &manifest, FIELD_MANAGER)
            .await
            .map_err(|error| Error::Setup(format!("applying {source}: {error}")))?;
        Ok(())
    }

    /// Stops the operator.
    pub async fn stop_operator(self) -> Result<LocalCluster, Error> {
        let _ = self.stop.send(true);
        match self.operator.await {
            Ok(Ok(())) => Ok(self.cluster),
            Ok(Err(error)) => Err(Error::Setup(format!("the operator failed: {error}"))),
            Err(error) => Err(Error::Setup(format!("the operator task: {error}"))),
        }
    }
}

/// The kwok demo: `nodes` kwok nodes, the Installation at `installation` until Available.
pub async fn demo(nodes: usize, installation: &Path, limit: Duration) -> Result<(), Error> {
    println!("Starting a local control plane with {nodes} kwok nodes...");
    let installed = Installed::start(nodes).await?;
    let started = Instant::now();
    installed.apply(installation).await?;
    println!(
        "Applied {}; waiting for Available...",
        installation.display()
    );
    let installations: Api<Installation> = Api::all(installed.admin.clone());
    let mut last_table = String::new();
    let installation = loop {
        let current = installations
            .get_opt("default")
            .await
            .map_err(api("get Installation/default".into()))?;
        if let Some(current) = current {
            let table = component_table(&current);
            if table != last_table && current.status.is_some() {
                println!("[{:>5.1}s]\n{table}", started.elapsed().as_secs_f64());
                last_table = table;
            }
            if current.is_available() {
                break current;
            }
        }
        if started.elapsed() > limit {
            return Err(Error::Timeout {
                what: "Installation/default to become Available".into(),
                seconds: limit.as_secs(),
            });
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    println!(
        "Installation/default Available after {:.1}s\n",
        started.elapsed().as_secs_f64()
    );
    let cluster = &installed.cluster;
    println!(
        "$ kubectl get installation\n{}",
        kubectl(cluster, &["get", "installation"])?
    );
    println!("Components:\n{}", component_table(&installation));
    println!(
        "$ kubectl -n weft-system get daemonsets,deployments\n{}",
        kubectl(
            cluster,
            &["-n", "weft-system", "get", "daemonsets,deployments"]
        )?
    );
    println!(
        "$ kubectl get ippools\n{}",
        kubectl(cluster, &["get", "ippools"])?
    );
    installed.stop_operator().await?;
    Ok(())
}
