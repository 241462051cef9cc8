//! Another workload beside the network: plain pods bound to the kwok nodes round-robin, in
//! namespaces of their own. kwok runs them (no image is pulled), so the cluster holds as many
//! Running pods as a real one would.

use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::Client;
use kube::api::{Api, ListParams, PostParams};

const NAMESPACES: usize = 20;
const IN_FLIGHT: usize = 16;

fn namespace(index: usize) -> String {
    format!("bench-workload-{}", index % NAMESPACES)
}

fn pod(index: usize, node: &str) -> anyhow::Result<Pod> {
    Ok(serde_json::from_value(serde_json::json!({
        "metadata": {
            "name": format!("workload-{index}"),
            "namespace": namespace(index),
            "labels": {"app": format!("app-{}", index % 100)},
        },
        "spec": {
            "nodeName": node,
            "containers": [{"name": "app", "image": "registry.k8s.io/pause:3.10"}],
        },
    }))?)
}

fn exists(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(status) if status.code == 409)
}

/// Makes sure pods `workload-0..count` exist, bound round-robin to `nodes`, and waits until
/// `count` of them run.
pub async fn ensure_pods(client: &Client, nodes: &[String], count: usize) -> anyhow::Result<()> {
    anyhow::ensure!(!nodes.is_empty(), "workload pods need nodes");
    let namespaces: Api<Namespace> = Api::all(client.clone());
    for index in 0..NAMESPACES.min(count) {
        let object: Namespace =
            serde_json::from_value(serde_json::json!({"metadata": {"name": namespace(index)}}))?;
        match namespaces.create(&PostParams::default(), &object).await {
            Err(error) if !exists(&error) => return Err(error.into()),
            _ => {}
        }
    }
    futures::stream::iter(0..count)
        .map(|index| {
            let pods: Api<Pod> = Api::namespaced(client.clone(), &namespace(index));
            let node = &nodes[index % nodes.len()];
            async move {
                match pods
                    .create(&PostParams::default(), &pod(index, node)?)
                    .await
                {
                    Err(error) if !exists(&error) => Err(anyhow::Error::from(error)),
                    _ => Ok(()),
                }
            }
        })
        .buffer_unordered(IN_FLIGHT)
        .try_collect::<Vec<()>>()
        .await?;
    let pods: Api<Pod> = Api::all(client.clone());
    let started = std::time::Instant::now();
    loop {
        let mut running = 0;
        let mut params = ListParams::default()
            .fields("status.phase=Running")
            .labels("app")
            .limit(1000);
        loop {
            let page = pods.list_metadata(&params).await?;
            running += page.items.len();
            match page.metadata.continue_.filter(|token| !token.is_empty()) {
                Some(token) => params = params.continue_token(&token),
                None => break,
            }
        }
        if running >= count {
            return Ok(());
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(1800),
            "only {running} of {count} workload pods Running after 30 min"
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}
