//! The chart's checks against the live cluster, on the local control plane with Helm 3 and Helm 4:
//! an install into a namespace whose Pod Security level refuses the operator fails before anything
//! is created, naming the label and the fix; an upgrade whose `installation.spec` sets a field the
//! installed Installation CRD lacks is refused naming the field (instead of the API server
//! dropping it), and succeeds with the field kept once the CRDs are upgraded as the message says.
//! No operator runs here: these are Helm, the API server and the chart.

use std::process::Output;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams,
};
use kube::{Client, ResourceExt};
use serde_json::json;
use weft_api::Installation;
use weft_e2e::{Helm, HelmMajor, LocalCluster};

use super::lifecycle::SERIAL;
use super::{BOTH, chart_dir, helm};

const INSTALLATION_CRD: &str = "installations.operator.weft.dev";
/// The field the "installed" Installation CRD of the upgrade test lacks.
const NEW_FIELD: &str = "logging";
/// A field of the IP pools (list items) it lacks too: the check follows lists and objects.
const NEW_POOL_FIELD: &str = "disableNewAllocations";

struct Ctx {
    helm: Helm,
    state: tempfile::TempDir,
    cluster: &'static LocalCluster,
    client: Client,
}

impl Ctx {
    async fn new(major: HelmMajor) -> anyhow::Result<Self> {
        let cluster = LocalCluster::shared()
            .await
            .context("the local control plane is required for this test")?;
        Ok(Self {
            helm: helm(major),
            state: tempfile::tempdir()?,
            client: cluster.client().await?,
            cluster,
        })
    }

    fn run(&self, args: &[&str]) -> anyhow::Result<Output> {
        let started = Instant::now();
        let output = self
            .helm
            .command(self.state.path(), self.cluster.kubeconfig())
            .args(args)
            .output()
            .context("running helm")?;
        println!(
            "$ helm {} ({}, {:.1}s, {})\n{}{}",
            args.join(" "),
            self.helm.version,
            started.elapsed().as_secs_f64(),
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        Ok(output)
    }

    fn ok(&self, args: &[&str]) -> anyhow::Result<String> {
        let output = self.run(args)?;
        ensure!(
            output.status.success(),
            "helm {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr)
        );
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }
}

fn block_on<F: std::future::Future<Output = anyhow::Result<()>>>(major: HelmMajor, test: F) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    if let Err(error) = runtime.block_on(test) {
        panic!("helm {major:?}: {error:#}");
    }
}

fn tag(major: HelmMajor) -> &'static str {
    match major {
        HelmMajor::V3 => "helm3",
        HelmMajor::V4 => "helm4",
    }
}

#[test]
fn an_install_into_a_namespace_enforcing_baseline_fails_early_naming_the_label() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    for major in BOTH {
        block_on(major, async move {
            let ctx = Ctx::new(major).await?;
            let namespace = format!("psa-{}", tag(major));
            let release = namespace.clone();
            let namespaces: Api<Namespace> = Api::all(ctx.client.clone());
            let object: Namespace = serde_json::from_value(json!({
                "metadata": {"name": namespace, "labels": {
                    "pod-security.kubernetes.io/enforce": "baseline"}}
            }))?;
            namespaces.create(&PostParams::default(), &object).await?;
            let chart = chart_dir().display().to_string();
            let install = [
                "install",
                &release,
                &chart,
                "-n",
                &namespace,
                "--skip-crds",
                "--set",
                "installation.enabled=false",
            ];
            let outcome = psa_refusal(&ctx, &install, &namespace).await;
            if ctx
                .run(&["status", &release, "-n", &namespace])?
                .status
                .success()
            {
                ctx.ok(&["uninstall", &release, "-n", &namespace, "--no-hooks"])?;
            }
            namespaces
                .delete(&namespace, &DeleteParams::default())
                .await?;
            outcome
        });
    }
}

async fn psa_refusal(ctx: &Ctx, install: &[&str], namespace: &str) -> anyhow::Result<()> {
    let output = ctx.run(install)?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    ensure!(
        !output.status.success(),
        "helm installed into a namespace enforcing baseline"
    );
    for part in [
        "pod-security.kubernetes.io/enforce",
        "\"baseline\"",
        "only the \"privileged\" level admits",
        &format!(
            "kubectl label namespace {namespace} pod-security.kubernetes.io/enforce=privileged --overwrite"
        ),
    ] {
        ensure!(stderr.contains(part), "the refusal says {part:?}: {stderr}");
    }
    let release = install[1];
    ensure!(
        !ctx.run(&["status", release, "-n", namespace])?
            .status
            .success(),
        "no release {release} was recorded"
    );
    let deployments: Api<Deployment> = Api::namespaced(ctx.client.clone(), namespace);
    ensure!(
        deployments
            .list(&ListParams::default())
            .await?
            .items
            .is_empty(),
        "no operator Deployment was created"
    );
    // Labelled as the message says, the same install passes the check.
    let namespaces: Api<Namespace> = Api::all(ctx.client.clone());
    let patch = json!({"metadata": {"labels": {
        "pod-security.kubernetes.io/enforce": "privileged"}}});
    namespaces
        .patch(namespace, &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    let mut dry_run = install.to_vec();
    dry_run.push("--dry-run=server");
    ctx.ok(&dry_run)?;
    println!("namespace {namespace}: refused while baseline, accepted once privileged");
    Ok(())
}

#[test]
fn an_upgrade_setting_a_field_the_installed_crd_lacks_is_refused_until_the_crds_are_upgraded() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    for major in BOTH {
        block_on(major, async move {
            let ctx = Ctx::new(major).await?;
            let namespace = format!("crd-check-{}", tag(major));
            let release = namespace.clone();
            let outcome = upgrade_with_a_new_field(&ctx, &release, &namespace).await;
            if ctx
                .run(&["status", &release, "-n", &namespace])?
                .status
                .success()
            {
                ctx.ok(&["uninstall", &release, "-n", &namespace, "--no-hooks"])?;
            }
            remove_crds_and_namespace(&ctx, &namespace).await?;
            outcome
        });
    }
}

/// The Installation CRD this chart carries, without `NEW_FIELD`: the CRD of an earlier release.
fn older_installation_crd() -> anyhow::Result<String> {
    let path = chart_dir()
        .join("crds")
        .join(format!("{INSTALLATION_CRD}.yaml"));
    let mut crd: serde_json::Value = serde_saphyr::from_str(&std::fs::read_to_string(&path)?)?;
    let properties = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
        ["properties"]
        .as_object_mut()
        .context("Installation CRD spec properties")?;
    ensure!(
        properties.remove(NEW_FIELD).is_some(),
        "the CRD has {NEW_FIELD}"
    );
    let pool = properties
        .get_mut("network")
        .and_then(|n| n["properties"]["ipPools"]["items"]["properties"].as_object_mut())
        .context("Installation CRD IP pool properties")?;
    ensure!(
        pool.remove(NEW_POOL_FIELD).is_some(),
        "the CRD has {NEW_POOL_FIELD}"
    );
    Ok(serde_json::to_string(&crd)?)
}

async fn spec_has_new_field(client: &Client) -> anyhow::Result<Option<serde_json::Value>> {
    let installations: Api<Installation> = Api::all(client.clone());
    let live = serde_json::to_value(installations.get("default").await?)?;
    let field = &live["spec"][NEW_FIELD];
    Ok((!field.is_null()).then(|| field.clone()))
}

async fn upgrade_with_a_new_field(ctx: &Ctx, release: &str, namespace: &str) -> anyhow::Result<()> {
    let installations: Api<Installation> = Api::all(ctx.client.clone());
    ensure!(
        installations
            .get_opt("default")
            .await
            .ok()
            .flatten()
            .is_none(),
        "no Installation/default before the test"
    );
    weft_operator::manifests::apply_yaml(
        &ctx.client,
        "older Installation CRD",
        &older_installation_crd()?,
        "chart-test",
    )
    .await?;
    wait_established(&ctx.client).await?;
    let chart = chart_dir().display().to_string();
    let base = ["-n", namespace, "--skip-crds"];
    let mut install = vec!["install", release, &chart, "--create-namespace"];
    install.extend(base);
    ctx.ok(&install)?;
    ensure!(spec_has_new_field(&ctx.client).await?.is_none());

    let mut upgrade = vec!["upgrade", release, &chart];
    upgrade.extend(base);
    upgrade.extend(["--set", "installation.spec.logging.level=Debug"]);
    let output = ctx.run(&upgrade)?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    let live = spec_has_new_field(&ctx.client).await?;
    ensure!(
        !output.status.success(),
        "the upgrade was accepted against the older CRD; the live Installation's {NEW_FIELD}: {live:?}"
    );
    for part in [
        "installation.spec.logging: the installed Installation CRD",
        "has no such field",
        "kubectl apply --server-side --force-conflicts -f",
    ] {
        ensure!(stderr.contains(part), "the refusal says {part:?}: {stderr}");
    }
    ensure!(live.is_none(), "the refused upgrade changed nothing");

    // A field inside a list item is found too, with its index.
    let mut nested = vec!["upgrade", release, &chart];
    nested.extend(base);
    nested.extend([
        "--set-json",
        r#"installation.spec.network.ipPools=[{"name":"p","cidr":"10.240.0.0/16","disableNewAllocations":true}]"#,
    ]);
    let output = ctx.run(&nested)?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    ensure!(
        !output.status.success(),
        "the upgrade with a new pool field was accepted"
    );
    let part = format!("installation.spec.network.ipPools[0].{NEW_POOL_FIELD}: the installed");
    ensure!(
        stderr.contains(&part),
        "the refusal says {part:?}: {stderr}"
    );
    let history = ctx.ok(&["history", release, "-n", namespace, "-o", "json"])?;
    let history: serde_json::Value = serde_json::from_str(&history)?;
    ensure!(
        history.as_array().map(Vec::len) == Some(1),
        "the refused upgrade recorded no revision: {history}"
    );

    // What the message says: upgrade the CRDs from this chart, then the same upgrade.
    let kubectl = ctx.cluster.binaries().path("kubectl");
    let crds = chart_dir().join("crds");
    let applied = std::process::Command::new(&kubectl)
        .arg("--kubeconfig")
        .arg(ctx.cluster.kubeconfig())
        .args(["apply", "--server-side", "--force-conflicts", "-f"])
        .arg(&crds)
        .output()?;
    ensure!(
        applied.status.success(),
        "kubectl apply of the chart's CRDs: {}",
        String::from_utf8_lossy(&applied.stderr)
    );
    wait_for_field_in_crd(&ctx.client).await?;
    ctx.ok(&upgrade)?;
    let live = spec_has_new_field(&ctx.client).await?;
    ensure!(
        live == Some(json!({"level": "Debug"})),
        "the live Installation keeps spec.{NEW_FIELD}: {live:?}"
    );
    println!(
        "upgrade refused against the older CRD; after the CRD upgrade spec.{NEW_FIELD} = {live:?}"
    );
    Ok(())
}

async fn wait_established(client: &Client) -> anyhow::Result<()> {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    poll("the Installation CRD to be Established", || async {
        let crd = crds.get(INSTALLATION_CRD).await?;
        Ok(crd
            .status
            .and_then(|s| s.conditions)
            .unwrap_or_default()
            .iter()
            .any(|c| c.type_ == "Established" && c.status == "True"))
    })
    .await
}

async fn wait_for_field_in_crd(client: &Client) -> anyhow::Result<()> {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    poll("the Installation CRD to have the field", || async {
        let crd = serde_json::to_value(crds.get(INSTALLATION_CRD).await?)?;
        let spec = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"];
        Ok(!spec["properties"][NEW_FIELD].is_null())
    })
    .await
}

async fn poll<F, Fut>(what: &str, mut check: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<bool>>,
{
    let started = Instant::now();
    while !check().await? {
        if started.elapsed() > Duration::from_secs(60) {
            bail!("timed out waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(())
}

/// The resource of `crd`'s objects (its first version).
fn api_resource(crd: &CustomResourceDefinition) -> ApiResource {
    let group = crd.spec.group.clone();
    let version = crd.spec.versions[0].name.clone();
    ApiResource {
        api_version: format!("{group}/{version}"),
        group,
        version,
        kind: crd.spec.names.kind.clone(),
        plural: crd.spec.names.plural.clone(),
    }
}

/// Leaves the cluster as the lifecycle scenarios expect it: no Installation, no weft CRD.
async fn remove_crds_and_namespace(ctx: &Ctx, namespace: &str) -> anyhow::Result<()> {
    let installations: Api<Installation> = Api::all(ctx.client.clone());
    if installations
        .get_opt("default")
        .await
        .ok()
        .flatten()
        .is_some()
    {
        installations
            .delete("default", &DeleteParams::default())
            .await?;
    }
    let crds: Api<CustomResourceDefinition> = Api::all(ctx.client.clone());
    for crd in weft_api::crds() {
        if crds.get_opt(&crd.name_any()).await?.is_some() {
            // A CRD deleted before the API server can list its objects stays Terminating
            // ("storage is (re)initializing") for minutes: the chart created these just now.
            let objects = Api::<DynamicObject>::all_with(ctx.client.clone(), &api_resource(&crd));
            poll(&format!("{} listable", crd.name_any()), || async {
                Ok(objects.list(&ListParams::default().limit(1)).await.is_ok())
            })
            .await?;
            crds.delete(&crd.name_any(), &DeleteParams::default())
                .await?;
        }
    }
    let gone = poll("weft's CRDs to be gone", || async {
        for crd in weft_api::crds() {
            if crds.get_opt(&crd.name_any()).await?.is_some() {
                return Ok(false);
            }
        }
        Ok(true)
    })
    .await;
    if let Err(error) = gone {
        let mut left = Vec::new();
        for crd in weft_api::crds() {
            if let Some(live) = crds.get_opt(&crd.name_any()).await? {
                let conditions = live.status.and_then(|status| status.conditions);
                left.push(format!("{}: {conditions:?}", crd.name_any()));
            }
        }
        bail!("{error}; left: {}", left.join("; "));
    }
    let namespaces: Api<Namespace> = Api::all(ctx.client.clone());
    if namespaces.get_opt(namespace).await?.is_some() {
        namespaces
            .delete(namespace, &DeleteParams::default())
            .await?;
    }
    Ok(())
}
