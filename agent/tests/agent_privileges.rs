//! The agent's own API writes pass the least-privilege policy the operator renders: with the
//! rendered `weft-node` RBAC and ValidatingAdmissionPolicy `weft-node-scope` on the local API
//! server, the agent's functions, called with a `weft-node` token bound to a pod on one node,
//! publish that node's annotations and condition and claim and release its blocks, and the same
//! functions aimed at another node are refused by the policy.

use std::time::{Duration, Instant};

use k8s_openapi::api::authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Node, Pod, ServiceAccount};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::json;
use weft_agent::node_status::{desired_annotations, publish, set_network_available};
use weft_api::{ClusterFacts, InstallationSpec, IpPool, defaults};
use weft_cni::claim::{claim_block, release_block};
use weft_e2e::LocalCluster;
use weft_operator::apply::Applier;
use weft_operator::labels::NAMESPACE;
use weft_operator::render::{NODE_SCOPE_POLICY, node_scope_rule, render};

const AGENT: &str = "weft-node";
const POOL: &str = "agent-privileges-pool";

/// Applies the rendered namespace, the agent's identity and RBAC, and the policy.
async fn apply_agent_identity(admin: &Client) {
    let computed = defaults(&InstallationSpec::default(), &ClusterFacts::default());
    let rendered = render(&computed, &ClusterFacts::default(), None);
    Applier::cluster(admin.clone())
        .apply(&rendered.namespace)
        .await
        .expect("namespace");
    for account in rendered
        .service_accounts
        .iter()
        .filter(|a| a.name_any() == AGENT)
    {
        Applier::<ServiceAccount>::namespaced(admin.clone(), NAMESPACE)
            .apply(account)
            .await
            .expect("service account");
    }
    for role in rendered
        .cluster_roles
        .iter()
        .filter(|r| r.name_any() == AGENT)
    {
        Applier::cluster(admin.clone())
            .apply(role)
            .await
            .expect("role");
    }
    for binding in rendered
        .cluster_role_bindings
        .iter()
        .filter(|b| b.name_any() == AGENT)
    {
        Applier::cluster(admin.clone())
            .apply(binding)
            .await
            .expect("role binding");
    }
    for policy in &rendered.validating_admission_policies {
        Applier::cluster(admin.clone())
            .apply(policy)
            .await
            .expect("policy");
    }
    for binding in &rendered.validating_admission_policy_bindings {
        Applier::cluster(admin.clone())
            .apply(binding)
            .await
            .expect("policy binding");
    }
}

/// A `weft-node` token bound to a pod of that account on `node`, as the kubelet mounts it.
async fn bound_token(admin: &Client, node: &str) -> String {
    let pod: Pod = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": format!("agent-privileges-{node}"), "namespace": NAMESPACE},
        "spec": {
            "serviceAccountName": AGENT,
            "nodeName": node,
            "tolerations": [{"operator": "Exists"}],
            "containers": [{"name": "agent", "image": "weft-agent:test"}],
        },
    }))
    .expect("pod manifest");
    let pod = Api::<Pod>::namespaced(admin.clone(), NAMESPACE)
        .create(&PostParams::default(), &pod)
        .await
        .expect("create the agent's pod");
    let request = TokenRequest {
        spec: Some(TokenRequestSpec {
            bound_object_ref: Some(BoundObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Pod".into()),
                name: Some(pod.name_any()),
                uid: pod.uid(),
            }),
            expiration_seconds: Some(3600),
            ..Default::default()
        }),
        ..Default::default()
    };
    Api::<ServiceAccount>::namespaced(admin.clone(), NAMESPACE)
        .create_token_request(AGENT, &PostParams::default(), &request)
        .await
        .expect("TokenRequest")
        .status
        .and_then(|status| status.token)
        .expect("a token")
}

fn assert_refused<T: std::fmt::Debug, E: std::fmt::Display>(
    what: &str,
    rule: &str,
    result: Result<T, E>,
) {
    let message = match result {
        Ok(value) => panic!("{what}: allowed ({value:?}), but must be refused"),
        Err(error) => error.to_string(),
    };
    assert!(
        message.contains(NODE_SCOPE_POLICY) && message.contains(&format!("{rule}: ")),
        "{what}: not refused by {NODE_SCOPE_POLICY} rule {rule}: {message}"
    );
}

#[tokio::test]
async fn the_agents_own_writes_pass_the_policy_and_another_nodes_do_not() {
    let cluster = LocalCluster::shared()
        .await
        .expect("the local control plane is required for this test");
    let admin = cluster.client().await.expect("admin client");
    weft_e2e::install_crds(&admin, weft_api::crds(), "weft-agent-tests")
        .await
        .expect("install the CRDs");
    apply_agent_identity(&admin).await;
    let nodes = cluster
        .add_nodes(2, &Default::default())
        .await
        .expect("two kwok nodes");
    let (own, other) = (&nodes[0], &nodes[1]);
    let agent = cluster
        .client_with_token(&bound_token(&admin, own).await)
        .await
        .expect("agent client");
    let wanted = desired_annotations(&"192.0.2.10/24".parse().unwrap(), Some(&[2; 6]), 1450);

    // A new policy takes a moment to load: wait until another node's annotations are refused.
    let started = Instant::now();
    while publish(&agent, other, &wanted).await.is_ok() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the API server never enforced {NODE_SCOPE_POLICY}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    publish(&agent, own, &wanted)
        .await
        .expect("the agent publishes its own node's annotations");
    let without_mac = desired_annotations(&"192.0.2.10/24".parse().unwrap(), None, 1450);
    publish(&agent, own, &without_mac)
        .await
        .expect("the agent removes its VXLAN MAC annotation");
    set_network_available(&agent, own)
        .await
        .expect("the agent sets its own node's NetworkUnavailable condition");
    let node = Api::<Node>::all(admin.clone()).get(own).await.unwrap();
    let annotations = node.annotations();
    assert_eq!(
        annotations
            .get("network.weft.dev/ipv4-address")
            .map(String::as_str),
        Some("192.0.2.10/24")
    );
    assert!(!annotations.contains_key("network.weft.dev/vxlan-mac"));

    assert_refused(
        "publishing another node's annotations",
        node_scope_rule::OWN_NODE_ONLY,
        publish(&agent, other, &wanted).await,
    );
    assert_refused(
        "setting another node's condition",
        node_scope_rule::OWN_NODE_ONLY,
        set_network_available(&agent, other).await,
    );

    Api::<IpPool>::all(admin.clone())
        .patch(
            POOL,
            &PatchParams::apply("weft-agent-tests").force(),
            &Patch::Apply(json!({
                "apiVersion": "network.weft.dev/v1", "kind": "IPPool",
                "metadata": {"name": POOL},
                "spec": {"cidr": "10.252.0.0/24", "blockSize": 28},
            })),
        )
        .await
        .expect("pool");
    let block = claim_block(&agent, POOL, own)
        .await
        .expect("the agent claims a block for its own node");
    assert_refused(
        "claiming a block for another node",
        node_scope_rule::OWN_BLOCKS_ONLY,
        claim_block(&agent, POOL, other).await,
    );
    assert!(
        release_block(&agent, block, own)
            .await
            .expect("the agent releases its own block")
    );
}
