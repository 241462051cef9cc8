//! Policy fails closed on real nodes: a new pod sends nothing before the agent has programmed
//! it (not in its first milliseconds, not while the agent is down), is programmed from what
//! ADD recorded without waiting for the kubelet's status, and a pod cannot send from another
//! pod's address even where the host's reverse-path filter is loose.

mod common;

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use common::policy::*;
use common::*;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::PostParams;
use serde_json::json;

/// Wires a pod on node `index` as the kubelet does up to ADD (Pod object, then ADD with the
/// pod's names) and, the moment ADD returns, connects from it to `to:port`. Returns the pod,
/// how long after ADD the connect started and whether it connected. The Pod's IP is not
/// posted: the agent has only ADD's record to go by.
async fn wire_and_connect_at_once(
    nodes: &mut NodeCluster,
    index: usize,
    name: &str,
    labels: serde_json::Value,
    to: Ipv4Addr,
    port: u16,
) -> (String, Duration, bool) {
    let node = &nodes.nodes[index];
    let netns = format!("{}-{name}", node.netns);
    sh(&["ip", "netns", "add", &netns]);
    sh(&["ip", "-n", &netns, "link", "set", "lo", "up"]);
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": name, "labels": labels},
        "spec": {"nodeName": node.name, "containers": [{"name": "c", "image": "none:0"}],
                 "tolerations": [{"operator": "Exists"}]},
    }))
    .unwrap();
    Api::<Pod>::namespaced(nodes.client.clone(), &nodes.namespace)
        .create(&PostParams::default(), &pod)
        .await
        .expect("create Pod");
    let args = format!("K8S_POD_NAMESPACE={};K8S_POD_NAME={name}", nodes.namespace);
    let container_id = format!("{}-{name}", nodes.namespace);
    cni_with_args(node, "ADD", &container_id, &netns, &args)
        .unwrap_or_else(|error| panic!("ADD of {name}: {error}"));
    let added = Instant::now();
    let probe_netns = netns.clone();
    let (started, connected) = inside(&probe_netns, move || {
        let started = added.elapsed();
        let address = std::net::SocketAddr::from((to, port));
        let connected =
            std::net::TcpStream::connect_timeout(&address, Duration::from_millis(500)).is_ok();
        (started, connected)
    });
    nodes.pods.push(TestPod {
        name: name.to_owned(),
        namespace: nodes.namespace.clone(),
        netns: netns.clone(),
        node: index,
        ip: Ipv4Addr::UNSPECIFIED,
        container_id,
    });
    (netns, started, connected)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_new_pod_under_default_deny_egress_cannot_connect_in_its_first_milliseconds() {
    let mut nodes = nodes_in_two_subnets().await;
    let server = nodes.add_pod(1, "server", &[("app", "server")]).await;
    serve_tcp(&server.netns, 8080);
    let before = nodes.add_pod(0, "before", &[("app", "client")]).await;
    assert!(
        tcp_probe_eventually(&before.netns, server.ip, 8080, 25).is_some(),
        "the path to the server works before any policy"
    );
    create_kube_policy(
        &nodes,
        "deny-egress",
        json!({"podSelector": {"matchLabels": {"app": "client"}}, "policyTypes": ["Egress"]}),
    )
    .await;
    create_kube_policy(
        &nodes,
        "allow-egress-to-server",
        json!({"podSelector": {"matchLabels": {"app": "allowed"}}, "policyTypes": ["Egress"],
               "egress": [{"to": [{"podSelector": {"matchLabels": {"app": "server"}}}]}]}),
    )
    .await;
    nodes
        .until(
            "the egress policy is programmed",
            Duration::from_secs(10),
            || tcp_probe(&before.netns, server.ip, 8080).is_none(),
        )
        .await;

    for attempt in 0..5 {
        let name = format!("fresh-{attempt}");
        let (netns, started, connected) = wire_and_connect_at_once(
            &mut nodes,
            0,
            &name,
            json!({"app": "client"}),
            server.ip,
            8080,
        )
        .await;
        assert!(
            started < Duration::from_millis(10),
            "the connect started {started:?} after ADD"
        );
        assert!(
            !connected,
            "{name} connected out in its first milliseconds despite default-deny egress"
        );
        assert!(
            tcp_probe(&netns, server.ip, 8080).is_none(),
            "{name} connected out later on"
        );
    }

    // Programmed from ADD's record alone (no Pod IP posted): a pod whose egress is allowed
    // reaches the server.
    let (netns, _, _) = wire_and_connect_at_once(
        &mut nodes,
        0,
        "allowed",
        json!({"app": "allowed"}),
        server.ip,
        8080,
    )
    .await;
    let elapsed = nodes
        .until(
            "the allowed pod connects before its IP is posted",
            Duration::from_secs(5),
            || tcp_probe(&netns, server.ip, 8080).is_some(),
        )
        .await;
    eprintln!("allowed pod connected {elapsed:?} after ADD");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pod_started_while_the_agent_is_down_stays_closed_until_the_agent_is_back() {
    let mut nodes = nodes_in_two_subnets().await;
    let server = nodes.add_pod(1, "server", &[("app", "server")]).await;
    serve_tcp(&server.netns, 8080);
    let early = nodes.add_pod(0, "early", &[]).await;
    assert!(
        tcp_probe_eventually(&early.netns, server.ip, 8080, 25).is_some(),
        "the path from node 0 to the server works"
    );
    create_kube_policy(
        &nodes,
        "server-from-late-only",
        json!({"podSelector": {"matchLabels": {"app": "server"}}, "policyTypes": ["Ingress"],
               "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "late"}}}]}]}),
    )
    .await;
    nodes
        .until(
            "the server's policy is programmed",
            Duration::from_secs(10),
            || tcp_probe(&early.netns, server.ip, 8080).is_none(),
        )
        .await;

    nodes.stop_agent(0, libc::SIGKILL);
    let late = nodes.attach_pod(0, "late", &[("app", "late")]).await;
    serve_tcp(&late.netns, 8081);
    for _ in 0..5 {
        assert!(
            tcp_probe(&late.netns, server.ip, 8080).is_none(),
            "a pod started while its agent is down connected out"
        );
        assert!(
            tcp_probe(&server.netns, late.ip, 8081).is_none(),
            "a pod started while its agent is down was reached"
        );
    }
    assert!(
        tcp_probe(&early.netns, late.ip, 8081).is_none(),
        "a pod started while its agent is down was reached from its own node"
    );

    nodes.start_agent(0);
    nodes.wait_ready(0).await;
    nodes.until_programmed(&late).await;
    assert!(
        tcp_probe_eventually(&late.netns, server.ip, 8080, 25).is_some(),
        "the policy allows late → server once the agent is back"
    );
    assert!(
        tcp_probe(&early.netns, server.ip, 8080).is_none(),
        "the policy still denies early → server"
    );
    assert!(
        tcp_probe(&nodes.nodes[0].netns.clone(), late.ip, 8081).is_some(),
        "the node reaches its programmed pod (kubelet probes)"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_node_whose_agent_never_ran_wires_no_pod_until_the_guard_is_installed() {
    let mut nodes = NodeCluster::new(shared_cluster().await, &[1], "VXLAN", "Enabled").await;
    let node = &nodes.nodes[0];
    let netns = format!("{}-first", node.netns);
    sh(&["ip", "netns", "add", &netns]);
    let error = cni(node, "ADD", "first", &netns).expect_err("ADD before the agent ever ran");
    assert!(error.contains("\"code\":11"), "{error}");
    assert!(
        error.contains("has not yet installed policy enforcement"),
        "{error}"
    );
    assert!(
        try_sh(&["ip", "-n", &netns, "link", "show", "eth0"]).is_none(),
        "the refused ADD wired the pod"
    );
    nodes.start_agents().await;
    let result = cni(&nodes.nodes[0], "ADD", "first", &netns);
    let _ = try_sh(&["ip", "netns", "del", &netns]);
    result.expect("ADD once the agent has installed the guard");
}

/// A pod wired before ADD wrote endpoint records (an upgrade) has no record: the agent adopts it
/// from its host route instead of cutting it off.
#[tokio::test(flavor = "multi_thread")]
async fn a_pod_wired_without_a_record_is_adopted_from_its_host_route() {
    let mut nodes = nodes_in_two_subnets().await;
    let server = nodes.add_pod(1, "server", &[]).await;
    serve_tcp(&server.netns, 8080);
    let old = nodes.add_pod(0, "old", &[]).await;
    assert!(tcp_probe_eventually(&old.netns, server.ip, 8080, 25).is_some());
    nodes.stop_agent(0, libc::SIGKILL);
    let dir = nodes.nodes[0].state_dir().join("endpoints");
    let records: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .filter(|entry| !entry.file_name().to_string_lossy().starts_with('.'))
        .collect();
    assert_eq!(records.len(), 1, "one pod on node 0");
    let record = records[0].path();
    std::fs::remove_file(&record).unwrap();

    nodes.start_agent(0);
    nodes.wait_ready(0).await;
    assert!(
        tcp_probe_eventually(&old.netns, server.ip, 8080, 10).is_some(),
        "the adopted pod still reaches the server"
    );
    nodes
        .until(
            "the pod's record is written again",
            Duration::from_secs(10),
            || record.exists(),
        )
        .await;
    assert!(nodes.is_programmed(&old), "the adopted pod is bound");
}
