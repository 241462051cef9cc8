//! The steps of one Helm version's scenario, in order, each checking what the issue asks of it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use super::*;

pub(super) async fn run(s: &Scenario) -> anyhow::Result<()> {
    let previous = previous_chart(s.state.path())?;
    install_previous(s, &previous).await?;
    upgrade_brings_the_new_crd(s).await?;
    upgrade_log_level_rolls_the_operator(s).await?;
    helm_test_passes(s).await?;
    uninstall_leaves_nothing(s).await?;
    refused_install_changes_nothing(s).await?;
    install_again(s).await?;
    remove_everything(s).await
}

fn chart() -> String {
    chart_dir().display().to_string()
}

/// After an uninstall (the CRDs and the release namespace exist), an install with a value the
/// schema refuses creates nothing: no release, no operator, no Installation. (On a cluster without
/// weft's CRDs, Helm would create those first: it installs crds/ before it checks the values.)
async fn refused_install_changes_nothing(s: &Scenario) -> anyhow::Result<()> {
    let mut args: Vec<String> = ["install", RELEASE, &chart(), "-n", NAMESPACE]
        .iter()
        .map(|a| a.to_string())
        .collect();
    args.extend(["--set".into(), "installation.spec.network.mtu=5".into()]);
    let output = s.helm_output(&args).await?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    ensure!(!output.status.success(), "helm install accepted mtu 5");
    ensure!(
        stderr.contains("/installation/spec/network/mtu"),
        "the refusal names the key: {stderr}"
    );
    let releases = s.helm(&["list", "-A", "-q"], false).await?;
    ensure!(
        releases.trim().is_empty(),
        "no release after a refusal: {releases}"
    );
    let deployments: Api<Deployment> = Api::all(s.client.clone());
    let weft = ListParams::default().labels("app.kubernetes.io/part-of=weft");
    ensure!(
        deployments.list(&weft).await?.items.is_empty(),
        "the refused install created no operator"
    );
    let installations: Api<Installation> = Api::all(s.client.clone());
    ensure!(
        installations.get_opt("default").await?.is_none(),
        "the refused install created no Installation"
    );
    println!("helm install with mtu 5 refused: no release, operator or Installation created");
    Ok(())
}

async fn delete_crds(s: &Scenario) -> anyhow::Result<()> {
    let crds: Api<CustomResourceDefinition> = Api::all(s.client.clone());
    for crd in weft_api::crds() {
        match crds.delete(&crd.name_any(), &DeleteParams::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(response)) if response.code == 404 => {}
            Err(error) => return Err(error.into()),
        }
    }
    wait_for("weft's CRDs to be gone", AVAILABLE_WITHIN, || async {
        for crd in weft_api::crds() {
            if crds.get_opt(&crd.name_any()).await?.is_some() {
                return Ok(None);
            }
        }
        Ok(Some(()))
    })
    .await
}

async fn install_previous(s: &Scenario, previous: &Path) -> anyhow::Result<()> {
    let previous = previous.display().to_string();
    s.helm(
        &[
            "install",
            RELEASE,
            &previous,
            "-n",
            NAMESPACE,
            "--create-namespace",
            "--set",
            "manageCRDs=false",
        ],
        true,
    )
    .await?;
    let took = wait_available(&s.client).await?;
    println!(
        "chart 0.0.9 installed: Installation Available after {:.1}s",
        took.as_secs_f64()
    );
    let runs = s.operator_runs();
    ensure!(runs.len() == 1, "one operator process runs: {runs:?}");
    ensure!(
        !runs[0].args.iter().any(|a| a == "--manage-crds"),
        "the previous chart ran the operator without --manage-crds: {:?}",
        runs[0].args
    );
    if crd_has_field(&s.client).await? {
        let crds: Api<CustomResourceDefinition> = Api::all(s.client.clone());
        let crd = crds.get(GNP_CRD).await?;
        bail!(
            "the previous chart's CRD should lack {NEW_FIELD}; managers: {:?}",
            crd.metadata.managed_fields
        );
    }
    weft_operator::manifests::apply_yaml(&s.client, "user objects", USER_OBJECTS, "chart-test")
        .await?;
    Ok(())
}

async fn upgrade_brings_the_new_crd(s: &Scenario) -> anyhow::Result<()> {
    s.helm(&["upgrade", RELEASE, &chart(), "-n", NAMESPACE], true)
        .await?;
    wait_for(
        "an operator run with --manage-crds",
        AVAILABLE_WITHIN,
        || async {
            let runs = s.operator_runs();
            Ok(runs
                .last()
                .filter(|run| {
                    run.exit_code.is_none() && run.args.iter().any(|a| a == "--manage-crds")
                })
                .map(|_| ()))
        },
    )
    .await?;
    wait_for(
        "the live CRD to gain doNotTrack",
        AVAILABLE_WITHIN,
        || async { Ok(crd_has_field(&s.client).await?.then_some(())) },
    )
    .await?;
    let runs = s.operator_runs();
    ensure!(runs.len() == 2, "the operator rolled once: {runs:?}");
    ensure!(
        runs[0].exit_code.is_some(),
        "the previous operator stopped: {runs:?}"
    );
    wait_available(&s.client).await?;
    println!("upgrade to chart 0.1.0: the operator rolled and applied {GNP_CRD} with {NEW_FIELD}");
    user_objects_exist(s).await
}

async fn user_objects_exist(s: &Scenario) -> anyhow::Result<()> {
    let pools: Api<IpPool> = Api::all(s.client.clone());
    let policies: Api<GlobalNetworkPolicy> = Api::all(s.client.clone());
    ensure!(
        pools.get_opt("user-pool").await?.is_some(),
        "IPPool user-pool exists"
    );
    ensure!(
        policies.get_opt("user-policy").await?.is_some(),
        "GlobalNetworkPolicy user-policy exists"
    );
    Ok(())
}

async fn upgrade_log_level_rolls_the_operator(s: &Scenario) -> anyhow::Result<()> {
    let unavailable = Arc::new(AtomicUsize::new(0));
    let samples = Arc::new(AtomicUsize::new(0));
    let sampling = Arc::new(AtomicBool::new(true));
    let sampler = {
        let (unavailable, samples, sampling) =
            (unavailable.clone(), samples.clone(), sampling.clone());
        let installations: Api<Installation> = Api::all(s.client.clone());
        tokio::spawn(async move {
            while sampling.load(Ordering::SeqCst) {
                if let Ok(installation) = installations.get("default").await {
                    samples.fetch_add(1, Ordering::SeqCst);
                    if !installation.is_available() {
                        unavailable.fetch_add(1, Ordering::SeqCst);
                    }
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    s.helm(
        &[
            "upgrade",
            RELEASE,
            &chart(),
            "-n",
            NAMESPACE,
            "--set",
            "log.level=debug",
        ],
        true,
    )
    .await?;
    wait_for(
        "an operator run with --log-level=debug",
        AVAILABLE_WITHIN,
        || async {
            let runs = s.operator_runs();
            Ok(runs
                .last()
                .filter(|run| {
                    run.exit_code.is_none() && run.args.iter().any(|a| a == "--log-level=debug")
                })
                .map(|_| ()))
        },
    )
    .await?;
    // The new operator re-reconciles the Installation; keep watching it for a while.
    tokio::time::sleep(Duration::from_secs(5)).await;
    sampling.store(false, Ordering::SeqCst);
    sampler.await?;
    let runs = s.operator_runs();
    ensure!(runs.len() == 3, "the operator rolled again: {runs:?}");
    ensure!(
        runs[1].exit_code.is_some(),
        "the info-level operator stopped: {runs:?}"
    );
    let (unavailable, samples) = (
        unavailable.load(Ordering::SeqCst),
        samples.load(Ordering::SeqCst),
    );
    println!(
        "log.level=debug: the operator rolled; Installation Available in {} of {samples} samples",
        samples - unavailable
    );
    ensure!(
        samples > 0 && unavailable == 0,
        "Installation/default stayed Available through the roll ({unavailable} of {samples} samples were not)"
    );
    wait_available(&s.client).await?;
    Ok(())
}

async fn helm_test_passes(s: &Scenario) -> anyhow::Result<()> {
    s.helm(&["test", RELEASE, "-n", NAMESPACE], false).await?;
    let runs = s.kubectl_runs();
    let test = runs
        .iter()
        .find(|run| run.args.first().is_some_and(|a| a == "wait"))
        .context("helm test ran `kubectl wait` on the runner node")?;
    ensure!(
        test.exit_code == Some(0),
        "kubectl wait succeeded: {test:?}"
    );
    let pods: Api<Pod> = Api::namespaced(s.client.clone(), NAMESPACE);
    wait_for(
        "the test pod to be deleted (hook-succeeded)",
        AVAILABLE_WITHIN,
        || async {
            Ok(pods
                .get_opt("weft-test-installation-available")
                .await?
                .is_none()
                .then_some(()))
        },
    )
    .await?;
    Ok(())
}

async fn uninstall_leaves_nothing(s: &Scenario) -> anyhow::Result<()> {
    let runs_before = s.kubectl_runs().len();
    s.helm(
        &["uninstall", RELEASE, "-n", NAMESPACE, "--timeout", "5m"],
        false,
    )
    .await?;
    let runs = s.kubectl_runs();
    let hook = runs[runs_before..]
        .iter()
        .find(|run| run.args.first().is_some_and(|a| a == "delete"))
        .context("the pre-delete hook ran `kubectl delete installation` on the runner node")?;
    ensure!(
        hook.exit_code == Some(0),
        "the pre-delete hook succeeded: {hook:?}"
    );
    assert_nothing_left(s).await?;
    user_objects_exist(s).await?;
    let pools: Api<IpPool> = Api::all(s.client.clone());
    let pool_names: Vec<String> = pools
        .list(&ListParams::default())
        .await?
        .iter()
        .map(|p| p.name_any())
        .collect();
    println!("after helm uninstall: IP pools kept: {pool_names:?}; CRDs kept");
    Ok(())
}

async fn assert_nothing_left(s: &Scenario) -> anyhow::Result<()> {
    let client = &s.client;
    let installations: Api<Installation> = Api::all(client.clone());
    ensure!(
        installations.get_opt("default").await?.is_none(),
        "Installation/default is gone"
    );
    let namespaces: Api<Namespace> = Api::all(client.clone());
    ensure!(
        namespaces.get_opt("weft-system").await?.is_none(),
        "namespace weft-system is gone"
    );
    let terminating: Vec<String> = namespaces
        .list(&ListParams::default())
        .await?
        .iter()
        .filter(|n| n.metadata.deletion_timestamp.is_some())
        .map(|n| n.name_any())
        .collect();
    ensure!(
        terminating.is_empty(),
        "no namespace is Terminating: {terminating:?}"
    );
    let weft = ListParams::default().labels("app.kubernetes.io/part-of=weft");
    let daemon_sets: Api<DaemonSet> = Api::all(client.clone());
    let deployments: Api<Deployment> = Api::all(client.clone());
    let jobs: Api<Job> = Api::all(client.clone());
    let roles: Api<ClusterRole> = Api::all(client.clone());
    ensure!(
        daemon_sets.list(&weft).await?.items.is_empty(),
        "no weft DaemonSet"
    );
    ensure!(
        deployments.list(&weft).await?.items.is_empty(),
        "no weft Deployment"
    );
    ensure!(jobs.list(&weft).await?.items.is_empty(), "no hook Job");
    let left: Vec<String> = roles
        .list(&weft)
        .await?
        .iter()
        .map(|r| r.name_any())
        .collect();
    ensure!(left.is_empty(), "no weft ClusterRole: {left:?}");
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), NAMESPACE);
    let left: Vec<String> = accounts
        .list(&ListParams::default())
        .await?
        .iter()
        .map(|a| a.name_any())
        .filter(|name| name != "default")
        .collect();
    ensure!(
        left.is_empty(),
        "no ServiceAccount left in {NAMESPACE}: {left:?}"
    );
    let pods: Api<Pod> = Api::namespaced(client.clone(), NAMESPACE);
    wait_for(
        "the operator's pods to be gone",
        AVAILABLE_WITHIN,
        || async {
            Ok(pods
                .list(&ListParams::default())
                .await?
                .items
                .is_empty()
                .then_some(()))
        },
    )
    .await?;
    let running: Vec<_> = s
        .runner
        .runs()
        .into_iter()
        .filter(|run| run.exit_code.is_none())
        .collect();
    ensure!(
        running.is_empty(),
        "no process of the release still runs: {running:?}"
    );
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in weft_api::crds() {
        ensure!(
            crds.get_opt(&crd.name_any()).await?.is_some(),
            "CRD {} is kept",
            crd.name_any()
        );
    }
    let releases = s.helm(&["list", "-A", "-q"], false).await?;
    ensure!(releases.trim().is_empty(), "no release is left: {releases}");
    Ok(())
}

async fn install_again(s: &Scenario) -> anyhow::Result<()> {
    s.helm(
        &[
            "install",
            RELEASE,
            &chart(),
            "-n",
            NAMESPACE,
            "--create-namespace",
        ],
        true,
    )
    .await?;
    let took = wait_available(&s.client).await?;
    println!(
        "installed again: Installation Available after {:.1}s",
        took.as_secs_f64()
    );
    s.helm(
        &["uninstall", RELEASE, "-n", NAMESPACE, "--timeout", "5m"],
        false,
    )
    .await?;
    assert_nothing_left(s).await
}

/// What a user does to remove weft completely: delete the CRDs (and with them every IP pool and
/// policy), then the release namespace Helm created. The next scenario starts from scratch.
async fn remove_everything(s: &Scenario) -> anyhow::Result<()> {
    delete_crds(s).await?;
    let namespaces: Api<Namespace> = Api::all(s.client.clone());
    namespaces
        .delete(NAMESPACE, &DeleteParams::default())
        .await?;
    wait_for(
        "the release namespace to be gone",
        AVAILABLE_WITHIN,
        || async { Ok(namespaces.get_opt(NAMESPACE).await?.is_none().then_some(())) },
    )
    .await
}
