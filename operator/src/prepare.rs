//! Validation and defaulting of an Installation: the spec as written plus the cluster facts give
//! the configuration the operator renders (recorded in `status.computed`, never in the spec),
//! provided [`crate::validate::validate`] finds nothing wrong with it.

use weft_api::{ClusterFacts, ComputedInstallation, Installation, defaults};

use crate::validate::{ClusterNetworks, ValidationErrors, validate};

/// The computed configuration, or every invalid field with what is allowed.
pub fn prepare(
    installation: &Installation,
    facts: &ClusterFacts,
    networks: &ClusterNetworks,
) -> Result<ComputedInstallation, ValidationErrors> {
    let computed = defaults(&installation.spec, facts);
    validate(&installation.spec, &computed, networks)?;
    Ok(computed)
}

/// Facts for rendering without a cluster (`weftctl render`): this operator's registry and version.
pub fn offline_facts() -> ClusterFacts {
    ClusterFacts {
        operator_registry: crate::facts::OPERATOR_REGISTRY.to_owned(),
        operator_version: crate::facts::OPERATOR_VERSION.to_owned(),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_pool_selector_is_named_with_its_field_path() {
        let installation: Installation = serde_json::from_value(serde_json::json!({
            "apiVersion": "operator.weft.dev/v1", "kind": "Installation",
            "metadata": {"name": "default"},
            "spec": {"network": {"ipPools": [
                {"name": "a", "cidr": "10.0.0.0/16", "nodeSelector": "zone == "}]}}
        }))
        .unwrap();
        let errors =
            prepare(&installation, &offline_facts(), &ClusterNetworks::default()).unwrap_err();
        assert_eq!(
            errors.0[0].field, "spec.network.ipPools[0].nodeSelector",
            "{errors}"
        );
    }
}
