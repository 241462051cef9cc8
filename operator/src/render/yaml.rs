//! Multi-document YAML of a [`Rendered`] set, in apply order, as `weftctl render` prints it.

use serde::Serialize;

use super::Rendered;

#[derive(Debug, thiserror::Error)]
#[error("encoding {what} as YAML: {source}")]
pub struct RenderYamlError {
    what: String,
    #[source]
    source: serde_saphyr::SerializeError,
}

fn document<T: Serialize>(out: &mut String, what: &str, object: &T) -> Result<(), RenderYamlError> {
    let text = serde_saphyr::to_string(object).map_err(|source| RenderYamlError {
        what: what.to_owned(),
        source,
    })?;
    out.push_str("---\n");
    out.push_str(&text);
    if !text.ends_with('\n') {
        out.push('\n');
    }
    Ok(())
}

fn documents<T: Serialize>(
    out: &mut String,
    what: &str,
    objects: &[T],
) -> Result<(), RenderYamlError> {
    objects
        .iter()
        .try_for_each(|object| document(out, what, object))
}

/// Every object as a YAML document, in the order the operator applies them.
pub fn to_yaml(rendered: &Rendered) -> Result<String, RenderYamlError> {
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
    let mut out = String::new();
    document(&mut out, "Namespace", namespace)?;
    documents(&mut out, "ServiceAccount", service_accounts)?;
    documents(&mut out, "ClusterRole", cluster_roles)?;
    documents(&mut out, "ClusterRoleBinding", cluster_role_bindings)?;
    documents(
        &mut out,
        "ValidatingAdmissionPolicy",
        validating_admission_policies,
    )?;
    documents(
        &mut out,
        "ValidatingAdmissionPolicyBinding",
        validating_admission_policy_bindings,
    )?;
    documents(&mut out, "ConfigMap", config_maps)?;
    documents(&mut out, "DaemonSet", daemon_sets)?;
    documents(&mut out, "Deployment", deployments)?;
    documents(&mut out, "PodDisruptionBudget", pod_disruption_budgets)?;
    documents(&mut out, "IPPool", ip_pools)?;
    Ok(out)
}
