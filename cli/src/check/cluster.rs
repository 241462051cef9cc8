//! The cluster side of `weftctl check`: choosing nodes, creating the objects, waiting for the
//! pods and saying why one is not ready, and cleaning up.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Event, Namespace, Node, Pod, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::Client;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use serde::Deserialize;

use super::CheckError;

/// A node pods can be placed on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeInfo {
    pub name: String,
    /// The node's InternalIP (first one listed).
    pub address: Option<String>,
    /// Carries the control-plane NoSchedule taint (used only when nothing else is Ready).
    pub control_plane: bool,
}

fn ready(node: &Node) -> bool {
    let conditions = node.status.as_ref().and_then(|s| s.conditions.as_ref());
    conditions.is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Nodes a pod can run on, workers first, by name. Nodes need not be Ready: a cluster whose pod
/// network is not up yet still gets checked, and its failures name the cause.
pub async fn nodes(client: &Client) -> Result<Vec<NodeInfo>, CheckError> {
    let list = Api::<Node>::all(client.clone())
        .list(&ListParams::default())
        .await?;
    let mut nodes: Vec<(bool, NodeInfo)> = list
        .items
        .iter()
        .filter(|node| {
            !node
                .spec
                .as_ref()
                .and_then(|s| s.unschedulable)
                .unwrap_or(false)
        })
        .map(|node| {
            let taints = node
                .spec
                .as_ref()
                .and_then(|s| s.taints.clone())
                .unwrap_or_default();
            let address = node
                .status
                .as_ref()
                .and_then(|s| s.addresses.as_ref())
                .and_then(|a| {
                    a.iter()
                        .find(|a| a.type_ == "InternalIP")
                        .map(|a| a.address.clone())
                });
            let info = NodeInfo {
                name: node.metadata.name.clone().unwrap_or_default(),
                address,
                control_plane: taints
                    .iter()
                    .any(|t| t.key == "node-role.kubernetes.io/control-plane"),
            };
            (ready(node), info)
        })
        .collect();
    nodes.sort_by(|(ra, a), (rb, b)| {
        (a.control_plane, !ra, &a.name).cmp(&(b.control_plane, !rb, &b.name))
    });
    let nodes: Vec<NodeInfo> = nodes.into_iter().map(|(_, node)| node).collect();
    if nodes.is_empty() {
        return Err(CheckError::NoNodes);
    }
    Ok(nodes)
}

/// Whether `ip -j route get` output says the destination is reached through a gateway (a
/// `gateway` in the route: another subnet); an error when the output is not such a route.
pub fn routed(route_get: &str) -> Result<bool, String> {
    let routes: Vec<serde_json::Map<String, serde_json::Value>> =
        serde_json::from_str(route_get)
            .map_err(|error| format!("ip -j route get printed {route_get:?}: {error}"))?;
    let route = routes
        .first()
        .ok_or_else(|| format!("ip -j route get printed no route: {route_get:?}"))?;
    Ok(route.contains_key("gateway"))
}

#[derive(Deserialize)]
struct ShellAnswer {
    #[serde(default)]
    output: String,
    #[serde(default)]
    error: String,
}

/// Runs `ip -j -4 route get ADDRESS` in the host-network pod: is `address` in another subnet?
pub async fn other_subnet(
    client: &Client,
    namespace: &str,
    host_pod: &str,
    port: u16,
    address: &str,
) -> Result<bool, String> {
    let path = format!(
        "/api/v1/namespaces/{namespace}/pods/{host_pod}:{port}/proxy/shell?shellCommand=ip%20-j%20-4%20route%20get%20{address}"
    );
    let request = http::Request::get(path)
        .body(Vec::new())
        .map_err(|e| e.to_string())?;
    let body = client
        .request_text(request)
        .await
        .map_err(|e| e.to_string())?;
    let answer: ShellAnswer = serde_json::from_str(&body).map_err(|e| format!("{body:?}: {e}"))?;
    if !answer.error.is_empty() && answer.output.is_empty() {
        return Err(answer.error);
    }
    routed(&answer.output)
}

/// Creates the namespace, then the Service and pods in it.
pub async fn create(
    client: &Client,
    namespace: &Namespace,
    service: &Service,
    pods: &[Pod],
) -> Result<(), CheckError> {
    let name = namespace.metadata.name.clone().unwrap_or_default();
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), namespace)
        .await?;
    Api::<Service>::namespaced(client.clone(), &name)
        .create(&PostParams::default(), service)
        .await?;
    create_pods(client, &name, pods).await
}

/// Creates pods in the check's namespace.
pub async fn create_pods(client: &Client, namespace: &str, pods: &[Pod]) -> Result<(), CheckError> {
    let api = Api::<Pod>::namespaced(client.clone(), namespace);
    for pod in pods {
        api.create(&PostParams::default(), pod).await?;
    }
    Ok(())
}

fn pod_ready(pod: &Pod) -> bool {
    let conditions = pod.status.as_ref().and_then(|s| s.conditions.as_ref());
    conditions.is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Why a pod is not ready, from its status and its newest warning Event.
pub fn diagnose(pod: &Pod, events: &[Event]) -> String {
    let name = pod.metadata.name.clone().unwrap_or_default();
    let node = pod
        .spec
        .as_ref()
        .and_then(|s| s.node_name.clone())
        .unwrap_or_default();
    let status = pod.status.as_ref();
    let phase = status
        .and_then(|s| s.phase.clone())
        .unwrap_or_else(|| "Unknown".to_owned());
    let waiting = status
        .and_then(|s| s.container_statuses.as_ref())
        .into_iter()
        .flatten()
        .find_map(|c| c.state.as_ref()?.waiting.as_ref()?.reason.clone());
    let warning = events
        .iter()
        .filter(|e| {
            e.involved_object.name.as_deref() == Some(name.as_str())
                && e.type_.as_deref() == Some("Warning")
        })
        .max_by_key(|e| e.last_timestamp.as_ref().map(|t| t.0))
        .map(|e| {
            format!(
                "{}: {}",
                e.reason.clone().unwrap_or_default(),
                e.message.clone().unwrap_or_default()
            )
        });
    let mut text = format!("pod {name} on {node}: {phase}");
    if let Some(reason) = waiting {
        text.push_str(&format!(" ({reason})"));
    }
    if let Some(warning) = warning {
        text.push_str(&format!("; {warning}"));
    }
    text
}

/// Waits until every named pod is Ready; returns their IPs, or why some are not ready.
pub async fn wait_ready(
    client: &Client,
    namespace: &str,
    names: &[String],
    timeout: Duration,
) -> Result<BTreeMap<String, String>, String> {
    let api = Api::<Pod>::namespaced(client.clone(), namespace);
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let mut ips = BTreeMap::new();
        let mut waiting = Vec::new();
        for name in names {
            match api.get(name).await {
                Ok(pod) if pod_ready(&pod) => {
                    let ip = pod
                        .status
                        .as_ref()
                        .and_then(|s| s.pod_ip.clone())
                        .unwrap_or_default();
                    ips.insert(name.clone(), ip);
                }
                Ok(pod) => waiting.push(pod),
                Err(error) => return Err(format!("pod {name}: {error}")),
            }
        }
        if waiting.is_empty() {
            return Ok(ips);
        }
        if tokio::time::Instant::now() >= deadline {
            let events = Api::<Event>::namespaced(client.clone(), namespace)
                .list(&ListParams::default())
                .await
                .map(|l| l.items)
                .unwrap_or_default();
            let reasons: Vec<String> = waiting.iter().map(|pod| diagnose(pod, &events)).collect();
            return Err(format!(
                "not ready after {}s: {}",
                timeout.as_secs(),
                reasons.join(" | ")
            ));
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

/// Creates a Kubernetes NetworkPolicy in the check's namespace.
pub async fn add_policy(
    client: &Client,
    namespace: &str,
    policy: &NetworkPolicy,
) -> Result<(), kube::Error> {
    Api::<NetworkPolicy>::namespaced(client.clone(), namespace)
        .create(&PostParams::default(), policy)
        .await?;
    Ok(())
}

/// Deletes every Kubernetes and weft NetworkPolicy of the check's namespace.
pub async fn clear_policies(client: &Client, namespace: &str) -> Result<(), kube::Error> {
    let params = DeleteParams::default();
    let all = ListParams::default();
    Api::<NetworkPolicy>::namespaced(client.clone(), namespace)
        .delete_collection(&params, &all)
        .await?;
    Api::<weft_api::NetworkPolicy>::namespaced(client.clone(), namespace)
        .delete_collection(&params, &all)
        .await?;
    Ok(())
}

/// Deletes the check's namespace (and so everything in it).
pub async fn delete_namespace(client: &Client, namespace: &str) -> Result<(), kube::Error> {
    Api::<Namespace>::all(client.clone())
        .delete(namespace, &DeleteParams::default())
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{
        ContainerState, ContainerStateWaiting, ContainerStatus, ObjectReference, PodSpec, PodStatus,
    };

    #[test]
    fn a_route_through_a_gateway_is_another_subnet() {
        let via = r#"[{"dst":"172.30.2.3","gateway":"172.30.1.1","dev":"eth0","prefsrc":"172.30.1.2","flags":[],"uid":0,"cache":[]}]"#;
        assert_eq!(routed(via), Ok(true));
        let direct = r#"[{"dst":"172.30.1.3","dev":"eth0","prefsrc":"172.30.1.2","flags":[],"uid":0,"cache":[]}]"#;
        assert_eq!(routed(direct), Ok(false));
        // A device or host whose name is "via" is no gateway.
        let named = r#"[{"dst":"172.30.1.3","dev":"via","prefsrc":"172.30.1.2","flags":[],"uid":0,"cache":[]}]"#;
        assert_eq!(routed(named), Ok(false));
        assert!(routed("172.30.2.3 via 172.30.1.1 dev eth0").is_err());
        assert!(routed("[]").is_err());
    }

    #[test]
    fn diagnosis_names_pod_node_reason_and_warning() {
        let pod = Pod {
            metadata: kube::api::ObjectMeta {
                name: Some("client".into()),
                ..Default::default()
            },
            spec: Some(PodSpec {
                node_name: Some("w1".into()),
                ..Default::default()
            }),
            status: Some(PodStatus {
                phase: Some("Pending".into()),
                container_statuses: Some(vec![ContainerStatus {
                    state: Some(ContainerState {
                        waiting: Some(ContainerStateWaiting {
                            reason: Some("ContainerCreating".into()),
                            message: None,
                        }),
                        ..Default::default()
                    }),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
        };
        let event = Event {
            involved_object: ObjectReference {
                name: Some("client".into()),
                ..Default::default()
            },
            type_: Some("Warning".into()),
            reason: Some("FailedCreatePodSandBox".into()),
            message: Some("cni config uninitialized".into()),
            ..Default::default()
        };
        assert_eq!(
            diagnose(&pod, &[event]),
            "pod client on w1: Pending (ContainerCreating); FailedCreatePodSandBox: cni config uninitialized"
        );
    }
}
