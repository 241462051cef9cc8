//! The dataplane demo from start to end: control plane and operator, three namespace nodes on
//! two subnets with their agents, the sample Installation until Available with its MTU, five
//! pods attached by the installed plugin, the connectivity matrix before and after the seed's
//! blue policy, and `weftctl policy explain` for a denied and an allowed flow. Everything it
//! made goes away when [`demo`]'s future completes or is dropped (Ctrl-C).

use std::future::Future;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::json;
use weft_api::Installation;
use weft_operator::manifests::apply_yaml;

use super::host::{serve_tcp, sh};
use super::kubelet::Kubelet;
use super::kwok::{FIELD_MANAGER, Installed};
use super::matrix::{Endpoint, Matrix};
use super::report::{component_table, kubectl, pool_table};
use super::underlay::{self, Underlay};
use super::{Error, api, cni};

/// The pods' namespace: the one the seed's blue policy is written for.
pub const POD_NAMESPACE: &str = "production";
/// The demo's pods: name, node index, `color` label.
pub const PODS: [(&str, usize, &str); 5] = [
    ("blue-0", 0, "blue"),
    ("green-0", 0, "green"),
    ("red-1", 1, "red"),
    ("green-2", 2, "green"),
    ("red-2", 2, "red"),
];
/// The nodes: name and underlay subnet (node-0 and node-1 share one, node-2 is across the router).
const NODES: [(&str, u8); 3] = [("node-0", 1), ("node-1", 1), ("node-2", 2)];
const PORT: u16 = 80;

/// What to run.
#[derive(Clone, Debug)]
pub struct Settings {
    pub installation: PathBuf,
    pub policy: PathBuf,
    /// Where `weft-agent`, `weft`, `weft-ipam` and `weftctl` are.
    pub binaries: PathBuf,
    /// Keep everything up until Ctrl-C once the output is printed.
    pub keep: bool,
    pub timeout: Duration,
}

/// Runs `check` (after a kubelet pass) until it yields a value, or fails after `limit`.
async fn until<T, F, Fut>(
    kubelet: &mut Kubelet,
    what: &str,
    limit: Duration,
    mut check: F,
) -> Result<T, Error>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Option<T>, Error>>,
{
    let started = Instant::now();
    loop {
        kubelet.sync().await?;
        if let Some(value) = check().await? {
            return Ok(value);
        }
        if started.elapsed() > limit {
            return Err(Error::Timeout {
                what: what.to_owned(),
                seconds: limit.as_secs(),
            });
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn stamp(started: Instant, what: &str) {
    println!("[{:>5.1}s] {what}", started.elapsed().as_secs_f64());
}

/// The dataplane demo.
pub async fn demo(settings: Settings) -> Result<(), Error> {
    let started = Instant::now();
    println!(
        "Starting a local control plane (etcd, kube-apiserver, controller-manager, scheduler)..."
    );
    let installed = Installed::start(0).await?;
    let admin = installed.admin.clone();
    let dir = installed.cluster.dir().join("demo");
    installed.apply(&settings.installation).await?;
    stamp(
        started,
        &format!("applied {}", settings.installation.display()),
    );

    let stale = underlay::remove_stale();
    if !stale.is_empty() {
        println!(
            "Removed namespaces an earlier, killed demo left: {}",
            stale.join(" ")
        );
    }
    let prefix = underlay::prefix_of(std::process::id());
    let mut underlay = Underlay::new(&prefix)?;
    let kubeconfig = installed.cluster.kubeconfig().to_owned();
    let mut kubelet = Kubelet::new(admin.clone(), &kubeconfig, &settings.binaries);
    for (index, (name, subnet)) in NODES.iter().enumerate() {
        let netns = underlay.add_node(index as u8, *subnet)?;
        kubelet.register(name, netns, &dir).await?;
    }
    stamp(
        started,
        "3 nodes registered: node-0 and node-1 on 10.150.1.0/24, node-2 on 10.150.2.0/24",
    );
    let conflist = until(
        &mut kubelet,
        "the operator's CNI conflist",
        settings.timeout,
        || cni::rendered_conflist(&admin),
    )
    .await?;
    for index in 0..kubelet.nodes.len() {
        cni::install(&settings.binaries, &kubelet.nodes[index], &conflist)?;
        kubelet.start_agent(index)?;
    }
    stamp(
        started,
        "CNI files installed by weft-agent install-cni; agents started",
    );
    let installations: Api<Installation> = Api::all(admin.clone());
    let installation = until(
        &mut kubelet,
        "Installation/default Available with its MTU",
        settings.timeout,
        || async {
            let current = installations
                .get_opt("default")
                .await
                .map_err(api("get Installation/default".into()))?;
            Ok(current.filter(|current| {
                current.is_available()
                    && current
                        .status
                        .as_ref()
                        .is_some_and(|status| status.mtu.is_some())
            }))
        },
    )
    .await;
    let installation = match installation {
        Ok(installation) => installation,
        Err(error) => {
            let current = installations.get_opt("default").await.ok().flatten();
            let table = current.as_ref().map(component_table).unwrap_or_default();
            let mtu = current
                .and_then(|current| current.status)
                .and_then(|status| status.mtu);
            return Err(Error::Setup(format!(
                "{error}\nstatus.mtu: {mtu:?}\n{table}{}",
                kubelet.diagnose()
            )));
        }
    };
    stamp(started, "Installation/default Available\n");
    let cluster = &installed.cluster;
    println!(
        "$ kubectl get installation\n{}",
        kubectl(cluster, &["get", "installation"])?
    );
    println!("Components:\n{}", component_table(&installation));
    println!(
        "$ kubectl -n weft-system get pods -o wide\n{}",
        kubectl(cluster, &["-n", "weft-system", "get", "pods", "-o", "wide"])?
    );
    println!(
        "IP pools (allocated blocks: the IPAMBlocks the nodes claimed):\n{}",
        pool_table(&admin).await?
    );
    println!(
        "$ kubectl get nodes -o wide\n{}",
        kubectl(cluster, &["get", "nodes", "-o", "wide"])?
    );

    let mut pods = Vec::new();
    create_namespace(&admin).await?;
    for (name, node, color) in PODS {
        let netns = underlay.add_pod(name)?;
        let ip = attach(&admin, &kubelet, node, name, color, &netns).await?;
        pods.push(Endpoint {
            name: name.into(),
            netns,
            ip,
        });
    }
    let mut targets = pods.clone();
    for node in &kubelet.nodes {
        serve_tcp(&node.underlay.netns, PORT)?;
        targets.push(Endpoint {
            name: node.name.clone(),
            netns: node.underlay.netns.clone(),
            ip: node.underlay.address,
        });
    }
    stamp(started, "5 pods attached by the installed weft plugin\n");
    println!(
        "$ kubectl -n {POD_NAMESPACE} get pods -o wide -L color\n{}",
        kubectl(
            cluster,
            &[
                "-n",
                POD_NAMESPACE,
                "get",
                "pods",
                "-o",
                "wide",
                "-L",
                "color"
            ]
        )?
    );
    println!("{}", placement(&kubelet));

    let before = tokio::task::block_in_place(|| Matrix::probe(&pods, &targets, PORT, 25));
    println!(
        "Connectivity, pod → pod and pod → node, no policy:\n{}",
        before.to_table()
    );
    if !before.denied().is_empty() {
        return Err(Error::Setup(format!(
            "without policy these did not connect: {}",
            before.denied().join(", ")
        )));
    }
    let policy_text = std::fs::read_to_string(&settings.policy).map_err(|source| Error::Io {
        what: settings.policy.display().to_string(),
        source,
    })?;
    let source = settings.policy.display().to_string();
    apply_yaml(&admin, &source, &policy_text, FIELD_MANAGER)
        .await
        .map_err(|error| Error::Setup(format!("applying {source}: {error}")))?;
    println!("$ kubectl apply -f {source}\n{policy_text}");
    let (green, blue) = (pods[1].clone(), pods[0].clone());
    until(
        &mut kubelet,
        "the blue policy to reach node-0",
        settings.timeout,
        || {
            let (green, blue) = (green.clone(), blue.clone());
            async move {
                let open =
                    tokio::task::block_in_place(|| Matrix::probe(&[green], &[blue], PORT, 1));
                Ok((open.cells[0][0] == Some(false)).then_some(()))
            }
        },
    )
    .await?;
    let after = tokio::task::block_in_place(|| Matrix::probe(&pods, &targets, PORT, 3));
    println!(
        "Connectivity with the blue policy (blue accepts TCP 80 from red only):\n{}",
        after.to_table()
    );
    println!("Denied: {}\n", after.denied().join(", "));
    explain(&settings, &dir, &pods)?;
    where_it_ran(&installed.cluster, &underlay, &kubelet, started);
    if settings.keep {
        println!("Up until Ctrl-C.");
        loop {
            kubelet.sync().await?;
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
    kubelet.stop();
    drop(kubelet);
    drop(underlay);
    let cluster = installed.stop_operator().await?;
    drop(cluster);
    println!(
        "Cleaned up: processes stopped, namespaces {prefix}-* deleted, control plane stopped."
    );
    Ok(())
}

async fn create_namespace(client: &Client) -> Result<(), Error> {
    let namespace: Namespace = serde_json::from_value(json!({"metadata": {"name": POD_NAMESPACE}}))
        .map_err(|error| Error::Setup(error.to_string()))?;
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &namespace)
        .await
        .map_err(api(format!("create Namespace {POD_NAMESPACE}")))?;
    Ok(())
}

/// Attaches pod `name` to node `node` as the kubelet does: the Pod object first, then the
/// plugin's ADD with the pod's names in `CNI_ARGS`, then the Pod's IP in its status.
async fn attach(
    client: &Client,
    kubelet: &Kubelet,
    node: usize,
    name: &str,
    color: &str,
    netns: &str,
) -> Result<Ipv4Addr, Error> {
    let node = &kubelet.nodes[node];
    let pods: Api<Pod> = Api::namespaced(client.clone(), POD_NAMESPACE);
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"color": color}},
        "spec": {"nodeName": node.name, "containers": [{"name": "app", "image": "none:0"}],
                 "tolerations": [{"operator": "Exists"}]},
    }))
    .map_err(|error| Error::Setup(error.to_string()))?;
    pods.create(&PostParams::default(), &pod)
        .await
        .map_err(api(format!("create Pod {POD_NAMESPACE}/{name}")))?;
    let args = format!("K8S_POD_NAMESPACE={POD_NAMESPACE};K8S_POD_NAME={name}");
    let container = format!("{POD_NAMESPACE}-{name}");
    let result =
        tokio::task::block_in_place(|| cni::plugin(node, "ADD", &container, netns, &args))?;
    let ip: Ipv4Addr = result["ips"][0]["address"]
        .as_str()
        .and_then(|text| text.split('/').next())
        .and_then(|text| text.parse().ok())
        .ok_or_else(|| Error::Setup(format!("ADD of {name} returned no IPv4 address: {result}")))?;
    // The pod's one container: a TCP server in its namespace.
    serve_tcp(netns, PORT)?;
    let now = super::kubelet::now_rfc3339();
    let condition = |kind: &str| json!({"type": kind, "status": "True", "lastTransitionTime": now});
    let status = json!({"status": {"phase": "Running", "podIP": ip.to_string(),
        "hostIP": node.underlay.address.to_string(), "podIPs": [{"ip": ip.to_string()}],
        "startTime": now,
        "conditions": [condition("PodScheduled"), condition("Initialized"),
                       condition("ContainersReady"), condition("Ready")],
        "containerStatuses": [{"name": "app", "image": "none:0", "imageID": "", "ready": true,
            "restartCount": 0, "started": true, "state": {"running": {"startedAt": now}}}]}});
    pods.patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
        .await
        .map_err(api(format!("set the IP of Pod {POD_NAMESPACE}/{name}")))?;
    Ok(ip)
}

/// `weftctl policy explain` for green-0 → blue-0 (denied) and red-2 → blue-0 (allowed), on the
/// pods as the API has them and the policy file.
fn explain(settings: &Settings, dir: &Path, pods: &[Endpoint]) -> Result<(), Error> {
    let mut text =
        format!("apiVersion: v1\nkind: Namespace\nmetadata: {{name: {POD_NAMESPACE}}}\n");
    for (pod, (_, _, color)) in pods.iter().zip(PODS) {
        text.push_str(&format!(
            "---\napiVersion: v1\nkind: Pod\nmetadata: {{name: {}, namespace: {POD_NAMESPACE}, labels: {{color: {color}}}}}\nstatus: {{podIP: {}}}\n",
            pod.name, pod.ip
        ));
    }
    let file = dir.join("pods.yaml");
    std::fs::write(&file, text).map_err(|source| Error::Io {
        what: file.display().to_string(),
        source,
    })?;
    let weftctl = settings.binaries.join("weftctl");
    for from in ["green-0", "red-2"] {
        let (from, to) = (
            format!("{POD_NAMESPACE}/{from}"),
            format!("{POD_NAMESPACE}/blue-0"),
        );
        let args = [
            weftctl.to_str().unwrap_or("weftctl"),
            "policy",
            "explain",
            "-f",
            file.to_str().unwrap_or_default(),
            settings.policy.to_str().unwrap_or_default(),
            "--from",
            &from,
            "--to",
            &to,
            "--port",
            "80",
        ];
        println!(
            "$ weftctl policy explain -f pods.yaml {} --from {from} --to {to} --port 80\n{}",
            settings.policy.display(),
            sh(&args)?
        );
    }
    Ok(())
}

/// Which pods are where: the matrix's same node, other node and other subnet.
fn placement(kubelet: &Kubelet) -> String {
    let mut text = String::from("Placement:");
    for (index, node) in kubelet.nodes.iter().enumerate() {
        let pods: Vec<&str> = PODS
            .iter()
            .filter(|(_, at, _)| *at == index)
            .map(|(name, _, _)| *name)
            .collect();
        text.push_str(&format!(
            "\n  {} (10.150.{}.0/24, {}): {}",
            node.name,
            node.underlay.subnet,
            node.underlay.address,
            pods.join(", ")
        ));
    }
    text.push_str(
        "\nSo blue-0 is reached from the same node (green-0), another node on its subnet (red-1) \
         and the other subnet (green-2, red-2); node-N columns are the nodes' own addresses.\n",
    );
    text
}

fn where_it_ran(
    cluster: &crate::LocalCluster,
    underlay: &Underlay,
    kubelet: &Kubelet,
    started: Instant,
) {
    println!(
        "Where it ran: this host, in network namespaces {} (`ip netns list`);",
        underlay.namespaces().join(" ")
    );
    println!(
        "the control plane on 127.0.0.1 (state in {}, KUBECONFIG={});",
        cluster.dir().display(),
        cluster.kubeconfig().display()
    );
    println!(
        "processes (weft-agent run per node, weft-agent controllers): {:?}; the operator in this process.",
        kubelet.pids()
    );
    println!(
        "Everything in {:.1}s. To keep it up and explore (Ctrl-C cleans up): make demo DEMO_ARGS=--keep, then e.g.",
        started.elapsed().as_secs_f64()
    );
    println!(
        "  KUBECONFIG={} kubectl get pods -A -o wide",
        cluster.kubeconfig().display()
    );
    println!(
        "  ip netns exec {}-p-red-1 ping -c1 <blue-0's IP>\n",
        underlay.prefix()
    );
}
