//! The dataplane through disruption on real nodes.
//!
//! - **Rolling update**: a TCP stream between pods on nodes of different subnets (so through
//!   `weft.vxlan`) runs while the weft-node DaemonSet rolls to another image; every agent pod is
//!   replaced, and the stream must see no reset, no lost or reordered echo, and no stall; at no
//!   moment may more nodes be without a ready agent than the DaemonSet's `maxUnavailable`.
//! - **Worker deletion**: a worker's container is stopped and its Node deleted; the other nodes
//!   drop their routes to its blocks, and weft's controllers release its blocks after their grace
//!   period (`BlockReleased`), shortened to 20 s for the suite.

use std::collections::BTreeSet;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, ListParams, LogParams, Patch, PatchParams, PostParams};
use serde_json::json;
use weft_api::IpamBlock;

use super::{Suite, pod_ready, poll, run};

const NAMESPACE: &str = "weft-disruption";
const PORT: u16 = 9000;
/// The controllers' grace period before they release a deleted node's blocks, for this suite
/// (300 s by default: waiting that out is not a test step).
const RELEASE_SECONDS: u64 = 20;
/// Longest wait for one echo before the stream counts as stalled: a rolling update of the agents
/// must not hold a pod's connection up for longer than this.
const STALL_SECONDS: u32 = 1;

/// A line echo server: one process per connection.
const SERVER: &str = r#"
use IO::Socket::INET; $SIG{CHLD} = 'IGNORE';
my $listener = IO::Socket::INET->new(LocalPort => $ARGV[0], Listen => 16, ReuseAddr => 1) or die "listen: $!";
while (my $conn = $listener->accept) {
  next if fork;
  $conn->autoflush(1);
  while (my $line = <$conn>) { print $conn $line }
  exit 0;
}
"#;

/// Sends a numbered line every 50 ms over one connection and expects it back, until
/// /tmp/stop exists; prints `STREAM OK` with the count and the slowest round trip, or
/// `STREAM BROKEN` or `STREAM STALLED` naming what happened (bash: the image's perl lacks Time::HiRes).
const CLIENT: &str = r#"
host=$1 port=$2 stall=$3
exec 3<>"/dev/tcp/$host/$port" || { echo "STREAM BROKEN: connect to $host:$port failed"; exit 1; }
echo CONNECTED
n=0 slowest=0
until [ -e /tmp/stop ]; do
  sent=${EPOCHREALTIME/./}
  echo "$n" >&3 || { echo "STREAM BROKEN: write of $n failed"; exit 1; }
  read -r -t "$stall" line <&3; status=$?
  if [ $status -gt 128 ]; then echo "STREAM STALLED: no echo of $n within $stall s"; exit 1; fi
  if [ $status -ne 0 ]; then echo "STREAM BROKEN: connection closed or reset at $n"; exit 1; fi
  [ "$line" = "$n" ] || { echo "STREAM BROKEN: sent $n, got $line"; exit 1; }
  took=$(( ${EPOCHREALTIME/./} - sent ))
  [ $took -gt $slowest ] && slowest=$took
  n=$((n + 1))
  sleep 0.05
done
echo "STREAM OK $n round trips, slowest $((slowest / 1000)) ms"
"#;

/// A pod on `node` running `script` with `interpreter` (`perl -e` or `bash -c`; bash's first
/// argument after the script is `$0`).
fn script_pod(
    suite: &Suite,
    name: &str,
    node: &str,
    interpreter: [&str; 2],
    args: Vec<String>,
) -> anyhow::Result<Pod> {
    let mut command: Vec<String> = interpreter.iter().map(|part| (*part).to_owned()).collect();
    command.extend(args);
    Ok(serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": NAMESPACE, "labels": {"app": name}},
        "spec": {
            "nodeSelector": {"kubernetes.io/hostname": node},
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 1,
            "containers": [{
                "name": name, "image": suite.agnhost, "imagePullPolicy": "IfNotPresent",
                "command": command,
                "readinessProbe": if name == "server" {
                    json!({"tcpSocket": {"port": PORT}, "periodSeconds": 1})
                } else { json!(null) },
            }],
        },
    }))?)
}

async fn logs(pods: &Api<Pod>, name: &str) -> String {
    pods.logs(name, &LogParams::default())
        .await
        .unwrap_or_default()
}

/// The weft-node pods' UIDs once the DaemonSet has rolled out every pod of its current
/// generation and all are available.
async fn rolled_out(suite: &Suite, after_generation: i64) -> anyhow::Result<BTreeSet<String>> {
    let daemon_sets: Api<DaemonSet> = Api::namespaced(suite.client.clone(), "weft-system");
    poll("weft-node rolled out", Duration::from_secs(300), || async {
        let daemon_set = daemon_sets.get("weft-node").await?;
        let generation = daemon_set.metadata.generation.unwrap_or_default();
        let status = daemon_set.status.clone().unwrap_or_default();
        let done = generation > after_generation
            && status.observed_generation == Some(generation)
            && status.updated_number_scheduled == Some(status.desired_number_scheduled)
            && status.number_available == Some(status.desired_number_scheduled);
        if !done {
            return Ok(Err(format!(
                "generation {generation}, updated {:?}/{}, available {:?}",
                status.updated_number_scheduled,
                status.desired_number_scheduled,
                status.number_available
            )));
        }
        Ok(Ok(node_agent_pods(suite).await?))
    })
    .await
}

/// The DaemonSet's rolling-update `maxUnavailable` as a number of nodes (a percentage of
/// `desired` rounds up, as the DaemonSet controller scales it; absent means 1).
fn max_unavailable(daemon_set: &DaemonSet, desired: usize) -> anyhow::Result<usize> {
    let value = daemon_set
        .spec
        .as_ref()
        .and_then(|spec| spec.update_strategy.as_ref()?.rolling_update.as_ref())
        .and_then(|rolling| rolling.max_unavailable.clone());
    Ok(match value {
        None => 1,
        Some(IntOrString::Int(count)) => usize::try_from(count)?,
        Some(IntOrString::String(text)) => {
            let percent: usize = text
                .strip_suffix('%')
                .and_then(|number| number.parse().ok())
                .with_context(|| {
                    format!("maxUnavailable {text:?} is neither a count nor a percentage")
                })?;
            (desired * percent).div_ceil(100)
        }
    })
}

/// Until `stop` is set, lists the weft-node pods every 200 ms and counts the nodes that have
/// no ready agent (a pod terminating does not count as ready); returns the most seen at once.
async fn most_agents_down(
    client: kube::Client,
    desired: usize,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<usize> {
    let pods: Api<Pod> = Api::namespaced(client, "weft-system");
    let selector = ListParams::default().labels("app.kubernetes.io/name=weft-node");
    let mut most = 0;
    while !stop.load(Ordering::Relaxed) {
        let list = pods.list(&selector).await?;
        let nodes_with_ready_agent: BTreeSet<String> = list
            .items
            .iter()
            .filter(|pod| pod.metadata.deletion_timestamp.is_none() && pod_ready(pod))
            .filter_map(|pod| pod.spec.as_ref()?.node_name.clone())
            .collect();
        most = most.max(desired.saturating_sub(nodes_with_ready_agent.len()));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(most)
}

async fn node_agent_pods(suite: &Suite) -> anyhow::Result<BTreeSet<String>> {
    let pods: Api<Pod> = Api::namespaced(suite.client.clone(), "weft-system");
    let list = pods
        .list(&ListParams::default().labels("app.kubernetes.io/name=weft-node"))
        .await?;
    Ok(list.items.iter().filter_map(|pod| pod.uid()).collect())
}

/// Rolls the weft-node DaemonSet to the images under `rollout_registry` (already on every
/// node) while a cross-subnet TCP stream runs, then back; returns the report line.
pub async fn rolling_update(suite: &Suite, rollout_registry: &str) -> anyhow::Result<String> {
    suite.wait_available(Duration::from_secs(180)).await?;
    suite.fresh_namespace(NAMESPACE).await?;
    let workers = suite.workers();
    let (client_node, server_node) = (&workers[0], &workers[1]);
    let pods: Api<Pod> = Api::namespaced(suite.client.clone(), NAMESPACE);
    let server = script_pod(
        suite,
        "server",
        server_node,
        ["perl", "-e"],
        vec![SERVER.into(), PORT.to_string()],
    )?;
    pods.create(&PostParams::default(), &server).await?;
    let server = suite.wait_pod_ready(NAMESPACE, "server").await?;
    let server_ip = server
        .status
        .and_then(|status| status.pod_ip)
        .context("the server pod has no IP")?;
    let client = script_pod(
        suite,
        "client",
        client_node,
        ["bash", "-c"],
        vec![
            CLIENT.into(),
            "client".into(),
            server_ip.clone(),
            PORT.to_string(),
            STALL_SECONDS.to_string(),
        ],
    )?;
    pods.create(&PostParams::default(), &client).await?;
    poll("stream connected", Duration::from_secs(120), || async {
        let text = logs(&pods, "client").await;
        Ok(if text.contains("CONNECTED") {
            Ok(())
        } else {
            Err(text)
        })
    })
    .await?;

    let before = node_agent_pods(suite).await?;
    let daemon_sets: Api<DaemonSet> = Api::namespaced(suite.client.clone(), "weft-system");
    let daemon_set = daemon_sets.get("weft-node").await?;
    let generation = daemon_set.metadata.generation.unwrap_or_default();
    let desired = daemon_set
        .status
        .as_ref()
        .map_or(0, |status| status.desired_number_scheduled) as usize;
    let allowed = max_unavailable(&daemon_set, desired)?;
    let stop_sampling = Arc::new(AtomicBool::new(false));
    let sampling = tokio::spawn(most_agents_down(
        suite.client.clone(),
        desired,
        stop_sampling.clone(),
    ));
    let started = Instant::now();
    suite
        .patch_spec(json!({"registry": rollout_registry}))
        .await?;
    let after = rolled_out(suite, generation).await;
    stop_sampling.store(true, Ordering::Relaxed);
    let most_down = sampling.await??;
    let after = after?;
    let rollout = started.elapsed();
    if !before.is_disjoint(&after) {
        bail!("the rollout kept agent pods: before {before:?}, after {after:?}");
    }
    if most_down > allowed {
        bail!(
            "the rollout had {most_down} of {desired} nodes without a ready agent at once; \
             the DaemonSet's maxUnavailable allows {allowed}"
        );
    }
    // A little more traffic over the new agents before the stream ends.
    tokio::time::sleep(Duration::from_secs(3)).await;
    run(Command::new("kubectl").args([
        "exec",
        "-n",
        NAMESPACE,
        "client",
        "--",
        "touch",
        "/tmp/stop",
    ]))?;
    let finished = poll("client finished", Duration::from_secs(60), || async {
        let pod = pods.get("client").await?;
        let phase = pod
            .status
            .and_then(|status| status.phase)
            .unwrap_or_default();
        Ok(match phase.as_str() {
            "Succeeded" | "Failed" => Ok(phase),
            _ => Err(phase),
        })
    })
    .await?;
    let text = logs(&pods, "client").await;
    let verdict = text
        .lines()
        .find(|line| line.starts_with("STREAM"))
        .unwrap_or("no verdict")
        .to_owned();
    if finished != "Succeeded" || !verdict.starts_with("STREAM OK") {
        bail!("rolling update broke the stream {client_node} -> {server_node}: {verdict}");
    }
    suite.patch_spec(json!({"registry": null})).await?;
    suite.wait_available(Duration::from_secs(300)).await?;
    let namespaces: Api<Namespace> = Api::all(suite.client.clone());
    namespaces
        .delete(NAMESPACE, &DeleteParams::default())
        .await?;
    Ok(format!(
        "PASS rolling update of {} agent pods in {:.0}s, at most {most_down} of {desired} nodes without a ready agent at once (maxUnavailable {allowed}), stream {client_node} -> {server_node} ({server_ip}:{PORT}): {verdict}",
        after.len(),
        rollout.as_secs_f64()
    ))
}

/// The CIDRs of the IPAM blocks affine to `node`.
async fn node_blocks(blocks: &Api<IpamBlock>, node: &str) -> anyhow::Result<Vec<String>> {
    let list = blocks.list(&ListParams::default()).await?;
    Ok(list
        .items
        .into_iter()
        .filter(|block| block.spec.node == node)
        .map(|block| block.spec.cidr)
        .collect())
}

/// Sets the controllers' block release grace to [`RELEASE_SECONDS`] (an env entry of the suite's
/// own field manager, which the operator's apply leaves alone) and waits for their rollout.
async fn shorten_block_release(suite: &Suite) -> anyhow::Result<()> {
    let deployments: Api<Deployment> = Api::namespaced(suite.client.clone(), "weft-system");
    let patch = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "weft-controllers", "namespace": "weft-system"},
        "spec": {"template": {"spec": {"containers": [{
            "name": "weft-controllers",
            "env": [{"name": "WEFT_BLOCK_RELEASE_SECONDS", "value": RELEASE_SECONDS.to_string()}],
        }]}}},
    });
    let patched = deployments
        .patch(
            "weft-controllers",
            &PatchParams::apply("weft-kind-suite").force(),
            &Patch::Apply(patch),
        )
        .await
        .context("setting the controllers' block release grace")?;
    let generation = patched.metadata.generation.unwrap_or_default();
    poll(
        "weft-controllers rolled out",
        Duration::from_secs(180),
        || async {
            let deployment = deployments.get("weft-controllers").await?;
            // Rolled out as the operator itself judges it: current generation, every replica
            // updated and available, no old one left.
            let status = weft_operator::status::controllers_status(Some(&deployment));
            let current = deployment.metadata.generation.unwrap_or_default() >= generation;
            Ok(if current && status.available && !status.progressing {
                Ok(())
            } else {
                Err(status.message.unwrap_or_default())
            })
        },
    )
    .await
}

/// Stops the last worker and deletes its Node; the others must drop their routes to its blocks
/// and the controllers must release them. Returns the report line.
pub async fn worker_deletion(suite: &Suite) -> anyhow::Result<String> {
    let workers = suite.workers();
    let gone = workers.last().context("no workers")?.clone();
    let blocks: Api<IpamBlock> = Api::all(suite.client.clone());
    let owned = node_blocks(&blocks, &gone).await?;
    if owned.is_empty() {
        bail!("{gone} holds no IPAM block to release");
    }
    shorten_block_release(suite).await?;
    run(Command::new("docker").args(["stop", "--time", "5", &gone]))?;
    let nodes: Api<Node> = Api::all(suite.client.clone());
    nodes.delete(&gone, &DeleteParams::default()).await?;
    let deleted = Instant::now();

    for peer in &workers[..workers.len() - 1] {
        poll(
            &format!("{peer} drops the routes to {gone}'s blocks"),
            Duration::from_secs(60),
            || async {
                let routes = run(Command::new("docker").args(["exec", peer, "ip", "-4", "route"]))?;
                let left: Vec<&String> = owned
                    .iter()
                    .filter(|cidr| routes.contains(cidr.as_str()))
                    .collect();
                Ok(if left.is_empty() {
                    Ok(())
                } else {
                    Err(format!("still routed: {left:?}"))
                })
            },
        )
        .await?;
    }
    let routes_gone = deleted.elapsed();

    poll(
        &format!("{gone}'s blocks released"),
        Duration::from_secs(RELEASE_SECONDS + 120),
        || async {
            let left = node_blocks(&blocks, &gone).await?;
            Ok(if left.is_empty() {
                Ok(())
            } else {
                Err(format!("{left:?}"))
            })
        },
    )
    .await?;
    Ok(format!(
        "PASS worker {gone} deleted: routes to its blocks {owned:?} gone from the other workers after {:.1}s, blocks released after {:.0}s",
        routes_gone.as_secs_f64(),
        deleted.elapsed().as_secs_f64()
    ))
}
