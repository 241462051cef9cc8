//! The node agent's least privilege, enforced by the API server: with the rendered RBAC and the
//! ValidatingAdmissionPolicy `weft-node-scope` applied (by the operator's own ServiceAccount, as
//! the operator applies them), a `weft-node` token bound to a pod on one node may write that
//! node's `network.weft.dev/*` annotations and `NetworkUnavailable` condition and claim and
//! release that node's blocks — exactly what the agent writes — and nothing of another node.
//! Every refusal names the rule that refused it.

mod common;

use std::time::Duration;

use anyhow::{Context as _, bail};
use k8s_openapi::api::admissionregistration::v1::ValidatingAdmissionPolicy;
use k8s_openapi::api::authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Node, Pod, ServiceAccount};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::json;
use weft_api::{ClusterFacts, InstallationSpec, IpPool, IpamBlock, defaults};
use weft_cni::claim::{claim_block, release_block};
use weft_operator::apply::Applier;
use weft_operator::labels::NAMESPACE;
use weft_operator::render::{NODE_SCOPE_POLICY, node_scope_rule as rule, render};

const AGENT: &str = "weft-node";
/// The pool the test's blocks come from (no other test of this binary uses it).
const POOL: &str = "node-scope-pool";
const POOL_CIDR: &str = "10.251.0.0/24";

/// Applies, as the operator's ServiceAccount, the rendered namespace, the agent's identity and
/// RBAC, and the admission policy with its binding.
async fn apply_agent_identity(operator: &Client) -> anyhow::Result<()> {
    let computed = defaults(&InstallationSpec::default(), &ClusterFacts::default());
    let rendered = render(&computed, &ClusterFacts::default(), None);
    Applier::cluster(operator.clone())
        .apply(&rendered.namespace)
        .await?;
    let service_account = rendered
        .service_accounts
        .iter()
        .find(|account| account.name_any() == AGENT)
        .context("no weft-node ServiceAccount rendered")?;
    Applier::<ServiceAccount>::namespaced(operator.clone(), NAMESPACE)
        .apply(service_account)
        .await?;
    for role in rendered
        .cluster_roles
        .iter()
        .filter(|r| r.name_any() == AGENT)
    {
        Applier::cluster(operator.clone()).apply(role).await?;
    }
    for binding in rendered
        .cluster_role_bindings
        .iter()
        .filter(|b| b.name_any() == AGENT)
    {
        Applier::cluster(operator.clone()).apply(binding).await?;
    }
    for policy in &rendered.validating_admission_policies {
        Applier::cluster(operator.clone()).apply(policy).await?;
    }
    for binding in &rendered.validating_admission_policy_bindings {
        Applier::cluster(operator.clone()).apply(binding).await?;
    }
    Ok(())
}

/// A pod of the agent's ServiceAccount bound to `node` (kwok plays it), as the DaemonSet's pod.
async fn agent_pod(admin: &Client, name: &str, node: &str) -> anyhow::Result<Pod> {
    let pod: Pod = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {
            "serviceAccountName": AGENT,
            "nodeName": node,
            "tolerations": [{"operator": "Exists"}],
            "containers": [{"name": "agent", "image": "weft-agent:test"}],
        },
    }))?;
    Ok(Api::<Pod>::namespaced(admin.clone(), NAMESPACE)
        .create(&PostParams::default(), &pod)
        .await?)
}

/// A token of the agent's ServiceAccount, bound to `pod` when given (as the kubelet's projected
/// token is), else unbound.
async fn agent_token(admin: &Client, pod: Option<&Pod>) -> anyhow::Result<String> {
    let bound = pod.map(|pod| BoundObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Pod".into()),
        name: Some(pod.name_any()),
        uid: pod.uid(),
    });
    let request = TokenRequest {
        spec: Some(TokenRequestSpec {
            bound_object_ref: bound,
            expiration_seconds: Some(3600),
            ..Default::default()
        }),
        ..Default::default()
    };
    let answer = Api::<ServiceAccount>::namespaced(admin.clone(), NAMESPACE)
        .create_token_request(AGENT, &PostParams::default(), &request)
        .await?;
    answer
        .status
        .and_then(|status| status.token)
        .context("TokenRequest answered without a token")
}

/// The message of a refused request; fails when the request succeeded.
fn refusal<T>(what: &str, result: Result<T, kube::Error>) -> anyhow::Result<String> {
    match result {
        Ok(_) => bail!("{what}: allowed, but must be refused"),
        Err(kube::Error::Api(status)) => Ok(format!("{} {}", status.code, status.message)),
        Err(error) => bail!("{what}: {error}"),
    }
}

/// Asserts that `result` was refused by the policy's rule `name`.
fn assert_refused_by<T>(what: &str, name: &str, result: Result<T, kube::Error>) {
    let message = refusal(what, result).unwrap_or_else(|error| panic!("{error:#}"));
    assert!(
        message.starts_with("403") && message.contains(NODE_SCOPE_POLICY),
        "{what}: not refused by {NODE_SCOPE_POLICY}: {message}"
    );
    assert!(
        message.contains(&format!("{name}: ")),
        "{what}: refused, but not by rule {name}: {message}"
    );
}

fn merge(value: serde_json::Value) -> Patch<serde_json::Value> {
    Patch::Merge(value)
}

/// The agent's annotation patch (`agent/src/node_status.rs` `publish`).
fn weft_annotations(address: &str) -> Patch<serde_json::Value> {
    merge(json!({"metadata": {"annotations": {
        "network.weft.dev/ipv4-address": address,
        "network.weft.dev/vxlan-mac": "66:6e:e1:00:00:01",
        "network.weft.dev/mtu": "1450",
    }}}))
}

/// The agent's condition patch (`agent/src/node_status.rs` `set_network_available`).
fn network_available() -> Patch<serde_json::Value> {
    let now = jiff::Timestamp::now().to_string();
    Patch::Strategic(json!({"status": {"conditions": [{
        "type": "NetworkUnavailable",
        "status": "False",
        "reason": "WeftIsUp",
        "message": "weft-agent programmed this node's pod network",
        "lastTransitionTime": now,
        "lastHeartbeatTime": now,
    }]}}))
}

/// Waits until the API server enforces the policy (a new policy takes a moment to load): until
/// the agent's annotation patch of `other` is refused.
async fn wait_enforced(nodes: &Api<Node>, other: &str) -> anyhow::Result<()> {
    common::wait_for(
        "the API server to enforce weft-node-scope",
        Duration::from_secs(30),
        || async {
            let result = nodes
                .patch(
                    other,
                    &PatchParams::default(),
                    &weft_annotations("192.0.2.9"),
                )
                .await;
            Ok(result.is_err().then_some(()))
        },
    )
    .await
}

/// The API server type-checked every expression of the policy against the Node and IPAMBlock
/// schemas without a warning.
async fn assert_type_checked(admin: &Client) -> anyhow::Result<()> {
    let policies: Api<ValidatingAdmissionPolicy> = Api::all(admin.clone());
    let status = common::wait_for(
        "the policy's type checking",
        Duration::from_secs(30),
        || async {
            let policy = policies.get(NODE_SCOPE_POLICY).await?;
            let generation = policy.metadata.generation;
            Ok(policy
                .status
                .filter(|status| status.observed_generation == generation))
        },
    )
    .await?;
    let warnings = status
        .type_checking
        .and_then(|checking| checking.expression_warnings)
        .unwrap_or_default();
    assert!(warnings.is_empty(), "type-checking warnings: {warnings:#?}");
    Ok(())
}

#[tokio::test]
async fn the_agent_writes_only_its_own_node_and_blocks() -> anyhow::Result<()> {
    let cluster = common::cluster().await?;
    let admin = cluster.client().await?;
    let operator = cluster
        .client_as_service_account(common::OPERATOR_NAMESPACE, common::OPERATOR_ACCOUNT)
        .await?;
    apply_agent_identity(&operator).await?;
    let [own, other] = <[String; 2]>::try_from(
        cluster
            .add_nodes(2, &Default::default())
            .await
            .context("two kwok nodes")?,
    )
    .map_err(|names| anyhow::anyhow!("expected two nodes, got {names:?}"))?;
    let pod = agent_pod(&admin, "weft-node-scope-test", &own).await?;
    let agent = cluster
        .client_with_token(&agent_token(&admin, Some(&pod)).await?)
        .await?;
    let nodes: Api<Node> = Api::all(agent.clone());
    let patch = PatchParams::default();
    wait_enforced(&nodes, &other).await?;
    assert_type_checked(&admin).await?;

    // What the agent writes about its own node is allowed.
    nodes
        .patch(&own, &patch, &weft_annotations("192.0.2.1"))
        .await
        .context("the agent's annotations on its own Node")?;
    nodes
        .patch_status(&own, &patch, &network_available())
        .await
        .context("the agent's NetworkUnavailable condition on its own Node")?;
    nodes
        .patch(
            &own,
            &patch,
            &merge(json!({"metadata": {"annotations": {"network.weft.dev/vxlan-mac": null}}})),
        )
        .await
        .context("removing a weft annotation of its own Node")?;

    // Nothing of another node.
    let other_writes = [
        ("annotations", weft_annotations("192.0.2.2")),
        (
            "labels",
            merge(json!({"metadata": {"labels": {"scope-test": "x"}}})),
        ),
        (
            "taints",
            merge(json!({"spec": {"taints": [{"key": "scope-test", "effect": "NoSchedule"}]}})),
        ),
    ];
    for (what, body) in &other_writes {
        let result = nodes.patch(&other, &patch, body).await;
        assert_refused_by(
            &format!("{what} of another Node"),
            rule::OWN_NODE_ONLY,
            result,
        );
    }
    let result = nodes
        .patch_status(&other, &patch, &network_available())
        .await;
    assert_refused_by("another Node's condition", rule::OWN_NODE_ONLY, result);

    // Nothing but weft's annotations and condition of its own node.
    let own_writes = [
        (
            "a label",
            rule::NODE_LABELS_UNCHANGED,
            merge(json!({"metadata": {"labels": {"scope-test": "x"}}})),
        ),
        (
            "a foreign annotation",
            rule::NODE_WEFT_ANNOTATIONS_ONLY,
            merge(json!({"metadata": {"annotations": {"example.com/owner": "agent"}}})),
        ),
        (
            "a taint",
            rule::NODE_SPEC_UNCHANGED,
            merge(json!({"spec": {"taints": [{"key": "scope-test", "effect": "NoSchedule"}]}})),
        ),
        (
            "a finalizer",
            rule::NODE_METADATA_UNCHANGED,
            merge(json!({"metadata": {"finalizers": ["example.com/keep"]}})),
        ),
    ];
    for (what, name, body) in &own_writes {
        let result = nodes.patch(&own, &patch, body).await;
        assert_refused_by(&format!("{what} on its own Node"), name, result);
    }
    let ready = Patch::Strategic(json!({"status": {"conditions": [{
        "type": "Ready", "status": "False", "reason": "Test", "message": "set by the agent",
    }]}}));
    let result = nodes.patch_status(&own, &patch, &ready).await;
    assert_refused_by(
        "the Ready condition of its own Node",
        rule::NODE_STATUS_NETWORK_CONDITION_ONLY,
        result,
    );
    let result = nodes
        .patch_status(
            &own,
            &patch,
            &merge(
                json!({"status": {"addresses": [{"type": "InternalIP", "address": "192.0.2.7"}]}}),
            ),
        )
        .await;
    assert_refused_by(
        "the addresses of its own Node",
        rule::NODE_STATUS_NETWORK_CONDITION_ONLY,
        result,
    );

    // Blocks: its own are claimed and released with the agent's own code; another node's are
    // neither created nor deleted.
    Api::<IpPool>::all(admin.clone())
        .patch(
            POOL,
            &PatchParams::apply(common::TEST_MANAGER).force(),
            &Patch::Apply(json!({
                "apiVersion": "network.weft.dev/v1", "kind": "IPPool",
                "metadata": {"name": POOL},
                "spec": {"cidr": POOL_CIDR, "blockSize": 28},
            })),
        )
        .await?;
    let mine = claim_block(&agent, POOL, &own)
        .await
        .context("the agent claims a block for its own node")?;
    let blocks_as_agent: Api<IpamBlock> = Api::all(agent.clone());
    let theirs = IpamBlock::for_cidr("10.251.0.240/28".parse()?, POOL, &other);
    let result = blocks_as_agent
        .create(&PostParams::default(), &theirs)
        .await;
    assert_refused_by(
        "creating another node's block",
        rule::OWN_BLOCKS_ONLY,
        result,
    );
    let theirs = Api::<IpamBlock>::all(admin.clone())
        .create(&PostParams::default(), &theirs)
        .await?;
    let result = blocks_as_agent
        .delete(&theirs.name_any(), &DeleteParams::default())
        .await;
    assert_refused_by(
        "deleting another node's block",
        rule::OWN_BLOCKS_ONLY,
        result,
    );
    let mut moved = theirs.clone();
    moved.spec.node = own.clone();
    let result = blocks_as_agent
        .replace(&theirs.name_any(), &PostParams::default(), &moved)
        .await;
    let message = refusal("taking over another node's block", result)?;
    assert!(message.starts_with("403"), "{message}");
    assert!(
        release_block(&agent, mine, &own).await?,
        "the agent releases its own block"
    );

    // A token of the agent's account that is not bound to a pod on a node may write nothing.
    let unbound = cluster
        .client_with_token(&agent_token(&admin, None).await?)
        .await?;
    let result = Api::<Node>::all(unbound)
        .patch(&own, &patch, &weft_annotations("192.0.2.3"))
        .await;
    assert_refused_by("an unbound token", rule::TOKEN_BOUND_TO_NODE, result);

    // Other users are not evaluated: an admin still labels the node.
    Api::<Node>::all(admin.clone())
        .patch(
            &other,
            &patch,
            &merge(json!({"metadata": {"labels": {"scope-test": "admin"}}})),
        )
        .await
        .context("an admin's write is not limited by the policy")?;
    Api::<IpamBlock>::all(admin.clone())
        .delete(&theirs.name_any(), &DeleteParams::default())
        .await?;
    Ok(())
}
