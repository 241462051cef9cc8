//! Applies the rendered set kind by kind, in dependency order (namespace and identities before
//! the workloads that use them), and tears it down in the reverse, safe order.

use k8s_openapi::api::admissionregistration::v1::{
    ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding,
};
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, ServiceAccount};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
use kube::Client;
use weft_api::IpPool;

use crate::apply::{Applier, ApplyError, Write};
use crate::labels::NAMESPACE;
use crate::render::Rendered;

/// The live workloads after applying, for status.
#[derive(Debug, Default)]
pub struct Workloads {
    pub daemon_sets: Vec<DaemonSet>,
    pub deployments: Vec<Deployment>,
}

/// Applies every rendered object except the pools (returned for the pool step). The rendered
/// set is destructured without `..`, so a new kind of object cannot be left unapplied.
pub async fn apply_all(
    client: &Client,
    rendered: Rendered,
    writes: &mut Vec<Write>,
) -> Result<(Workloads, Vec<IpPool>), ApplyError> {
    let Rendered {
        namespace,
        service_accounts,
        cluster_roles,
        cluster_role_bindings,
        validating_admission_policies,
        validating_admission_policy_bindings,
        config_maps,
        daemon_sets,
        deployments,
        pod_disruption_budgets,
        ip_pools,
    } = rendered;
    Applier::<Namespace>::cluster(client.clone())
        .sync(&[namespace], writes)
        .await?;
    Applier::<ServiceAccount>::namespaced(client.clone(), NAMESPACE)
        .sync(&service_accounts, writes)
        .await?;
    Applier::<ClusterRole>::cluster(client.clone())
        .sync(&cluster_roles, writes)
        .await?;
    Applier::<ClusterRoleBinding>::cluster(client.clone())
        .sync(&cluster_role_bindings, writes)
        .await?;
    // Before the agent's DaemonSet: no agent ever runs without the policy limiting its writes.
    Applier::<ValidatingAdmissionPolicy>::cluster(client.clone())
        .sync(&validating_admission_policies, writes)
        .await?;
    Applier::<ValidatingAdmissionPolicyBinding>::cluster(client.clone())
        .sync(&validating_admission_policy_bindings, writes)
        .await?;
    Applier::<ConfigMap>::namespaced(client.clone(), NAMESPACE)
        .sync(&config_maps, writes)
        .await?;
    let daemon_sets = Applier::<DaemonSet>::namespaced(client.clone(), NAMESPACE)
        .sync(&daemon_sets, writes)
        .await?;
    let deployments = Applier::<Deployment>::namespaced(client.clone(), NAMESPACE)
        .sync(&deployments, writes)
        .await?;
    Applier::<PodDisruptionBudget>::namespaced(client.clone(), NAMESPACE)
        .sync(&pod_disruption_budgets, writes)
        .await?;
    Ok((
        Workloads {
            daemon_sets,
            deployments,
        },
        ip_pools,
    ))
}

/// One teardown stage: deletes what it manages and returns `kind/name` of what still exists.
async fn stage<K>(applier: Applier<K>, left: &mut Vec<String>) -> Result<(), ApplyError>
where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + serde::Serialize
        + serde::de::DeserializeOwned,
{
    for name in applier.remaining().await? {
        applier.delete(&name).await?;
        left.push(format!("{} {name}", applier.kind()));
    }
    Ok(())
}

/// Deletes the managed objects in a safe order: workloads first (pods stop using the CNI), then
/// configuration, then identities and the namespace. Each call moves as far as it can; it returns
/// what still exists, empty when teardown is complete.
pub async fn teardown(client: &Client) -> Result<Vec<String>, ApplyError> {
    let mut left = Vec::new();
    stage(
        Applier::<DaemonSet>::namespaced(client.clone(), NAMESPACE),
        &mut left,
    )
    .await?;
    stage(
        Applier::<Deployment>::namespaced(client.clone(), NAMESPACE),
        &mut left,
    )
    .await?;
    stage(
        Applier::<PodDisruptionBudget>::namespaced(client.clone(), NAMESPACE),
        &mut left,
    )
    .await?;
    if !left.is_empty() {
        return Ok(left);
    }
    stage(
        Applier::<ConfigMap>::namespaced(client.clone(), NAMESPACE),
        &mut left,
    )
    .await?;
    if !left.is_empty() {
        return Ok(left);
    }
    stage(
        Applier::<ClusterRoleBinding>::cluster(client.clone()),
        &mut left,
    )
    .await?;
    stage(Applier::<ClusterRole>::cluster(client.clone()), &mut left).await?;
    stage(
        Applier::<ValidatingAdmissionPolicyBinding>::cluster(client.clone()),
        &mut left,
    )
    .await?;
    stage(
        Applier::<ValidatingAdmissionPolicy>::cluster(client.clone()),
        &mut left,
    )
    .await?;
    stage(
        Applier::<ServiceAccount>::namespaced(client.clone(), NAMESPACE),
        &mut left,
    )
    .await?;
    stage(Applier::<Namespace>::cluster(client.clone()), &mut left).await?;
    Ok(left)
}
