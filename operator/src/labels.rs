//! Names, labels and the owner reference shared by everything the operator renders and applies.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::{Resource, ResourceExt};

/// The server-side apply field manager of every write the operator makes.
pub const FIELD_MANAGER: &str = "weft-operator";
/// The namespace holding the node agent, the controllers and their configuration.
pub const NAMESPACE: &str = "weft-system";
/// The name of the only Installation the operator acts on.
pub const INSTALLATION_NAME: &str = "default";

pub const MANAGED_BY_KEY: &str = "app.kubernetes.io/managed-by";
pub const PART_OF_KEY: &str = "app.kubernetes.io/part-of";
pub const NAME_KEY: &str = "app.kubernetes.io/name";
pub const COMPONENT_KEY: &str = "app.kubernetes.io/component";
pub const INSTANCE_KEY: &str = "app.kubernetes.io/instance";
pub const VERSION_KEY: &str = "app.kubernetes.io/version";

/// `app.kubernetes.io/managed-by` value on every object the operator owns.
pub const MANAGED_BY: &str = "weft-operator";
pub const PART_OF: &str = "weft";

/// The label selector matching every object the operator created (used to find orphans).
pub fn managed_selector() -> String {
    format!("{MANAGED_BY_KEY}={MANAGED_BY},{PART_OF_KEY}={PART_OF}")
}

/// The standard `app.kubernetes.io/*` labels for an object of `component` (for example `node`).
pub fn standard_labels(name: &str, component: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (MANAGED_BY_KEY.to_owned(), MANAGED_BY.to_owned()),
        (PART_OF_KEY.to_owned(), PART_OF.to_owned()),
        (NAME_KEY.to_owned(), name.to_owned()),
        (COMPONENT_KEY.to_owned(), component.to_owned()),
        (INSTANCE_KEY.to_owned(), INSTALLATION_NAME.to_owned()),
        (VERSION_KEY.to_owned(), env!("CARGO_PKG_VERSION").to_owned()),
    ])
}

/// The labels a workload's pods are selected by: stable across operator versions, so they never
/// change a selector (selectors are immutable).
pub fn selector_labels(name: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (NAME_KEY.to_owned(), name.to_owned()),
        (PART_OF_KEY.to_owned(), PART_OF.to_owned()),
    ])
}

/// A controller owner reference to `owner`, or `None` when it has no uid yet (offline rendering
/// of an Installation read from a file).
pub fn controller_owner_ref<K: Resource<DynamicType = ()>>(owner: &K) -> Option<OwnerReference> {
    owner.uid()?;
    owner.controller_owner_ref(&())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selector_matches_standard_labels() {
        let labels = standard_labels("weft-node", "node");
        for (key, value) in selector_labels("weft-node") {
            assert_eq!(labels.get(&key), Some(&value));
        }
        let selector = managed_selector();
        assert!(selector.contains("app.kubernetes.io/managed-by=weft-operator"));
    }
}
