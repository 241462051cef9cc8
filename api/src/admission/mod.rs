//! Offline admission: judges an object as the API server would with weft's CRDs installed, so
//! `weftctl render` refuses what `kubectl apply` would refuse, with the same field paths. The
//! OpenAPI part walks the generated CRD schemas themselves ([`schema`]); the CEL rules and
//! patterns have Rust twins ([`rules`], [`patterns`]) that must exist for every rule and pattern
//! in the schemas ([`unimplemented_rules`]), and a test runs the admission catalogue against
//! both this and a real API server, requiring the same verdict and field for every case.

mod patterns;
pub mod rules;
mod schema;

use std::fmt;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceDefinition, JSONSchemaProps, JSONSchemaPropsOrArray, JSONSchemaPropsOrBool,
};
use serde_json::Value;

/// One refused field: its path as the API server writes it, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    /// `spec.network.mtu`; empty for a rule on the whole object.
    pub field: String,
    pub message: String,
}

impl FieldError {
    fn new(field: &str, message: String) -> Self {
        Self {
            field: field.to_owned(),
            message,
        }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.field, self.message)
        }
    }
}

/// Why an object would be refused at admission.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AdmissionError {
    #[error("apiVersion/kind: {api_version}/{kind} is not a weft kind")]
    UnknownKind { api_version: String, kind: String },
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Refused(Vec<FieldError>),
}

/// The CRD serving `apiVersion`/`kind`, from [`crate::crds()`].
fn crd_for(api_version: &str, kind: &str) -> Option<(CustomResourceDefinition, JSONSchemaProps)> {
    let (group, version) = api_version.split_once('/')?;
    crate::crds().into_iter().find_map(|crd| {
        if crd.spec.group != group || crd.spec.names.kind != kind {
            return None;
        }
        let schema = crd
            .spec
            .versions
            .iter()
            .find(|v| v.name == version)?
            .schema
            .as_ref()?
            .open_api_v3_schema
            .clone()?;
        Some((crd, schema))
    })
}

/// Judges `object` (any weft kind, as JSON) as the API server would at creation.
pub fn admit(object: &Value) -> Result<(), AdmissionError> {
    let text = |field: &str| {
        object
            .get(field)
            .and_then(Value::as_str)
            .unwrap_or("<missing>")
            .to_owned()
    };
    let (api_version, kind) = (text("apiVersion"), text("kind"));
    let Some((_, mut root)) = crd_for(&api_version, &kind) else {
        return Err(AdmissionError::UnknownKind { api_version, kind });
    };
    // The server checks metadata itself (names are validated elsewhere); the schema only holds
    // `type: object` for it.
    if let Some(properties) = root.properties.as_mut() {
        properties.remove("metadata");
        properties.remove("status");
    }
    let mut checked = object.clone();
    if let Some(map) = checked.as_object_mut() {
        map.remove("metadata");
        map.remove("status");
        map.remove("apiVersion");
        map.remove("kind");
    }
    let mut findings = schema::Findings::default();
    // Rules on the root see the whole object.
    let rules = root.x_kubernetes_validations.take();
    schema::check(&root, &checked, "", &mut findings);
    if let Some(rules) = rules {
        let whole = JSONSchemaProps {
            x_kubernetes_validations: Some(rules),
            ..Default::default()
        };
        schema::check(&whole, object, "", &mut findings);
    }
    let errors = if findings.shape.is_empty() {
        findings.values
    } else {
        findings.shape
    };
    if errors.is_empty() {
        Ok(())
    } else {
        Err(AdmissionError::Refused(errors))
    }
}

/// Every CEL rule and pattern of the CRDs' schemas that has no offline twin (transition rules
/// excepted), as `kind: rule`.
pub fn unimplemented_rules() -> Vec<String> {
    let mut missing = Vec::new();
    for crd in crate::crds() {
        for version in &crd.spec.versions {
            if let Some(schema) = version
                .schema
                .as_ref()
                .and_then(|s| s.open_api_v3_schema.as_ref())
            {
                collect_missing(&crd.spec.names.kind, schema, &mut missing);
            }
        }
    }
    missing
}

fn collect_missing(kind: &str, schema: &JSONSchemaProps, missing: &mut Vec<String>) {
    for validation in schema.x_kubernetes_validations.iter().flatten() {
        if !rules::is_transition(&validation.rule) && rules::rule(&validation.rule).is_none() {
            missing.push(format!("{kind}: {}", validation.rule));
        }
    }
    if let Some(pattern) = &schema.pattern
        && patterns::matches(pattern, "").is_none()
    {
        missing.push(format!("{kind}: pattern {pattern}"));
    }
    let children = schema
        .properties
        .iter()
        .flat_map(|properties| properties.values())
        .chain(match &schema.items {
            Some(JSONSchemaPropsOrArray::Schema(items)) => vec![items.as_ref()],
            Some(JSONSchemaPropsOrArray::Schemas(list)) => list.iter().collect(),
            None => Vec::new(),
        })
        .chain(match &schema.additional_properties {
            Some(JSONSchemaPropsOrBool::Schema(values)) => Some(values.as_ref()),
            _ => None,
        });
    for child in children {
        collect_missing(kind, child, missing);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_rule_and_pattern_of_the_schemas_has_an_offline_twin() {
        assert_eq!(unimplemented_rules(), Vec::<String>::new());
    }

    #[test]
    fn an_mtu_below_the_minimum_is_refused_with_its_path() {
        let installation = json!({"apiVersion": "operator.weft.dev/v1", "kind": "Installation",
            "metadata": {"name": "default"}, "spec": {"network": {"mtu": 100}}});
        let error = admit(&installation).unwrap_err();
        assert_eq!(
            error.to_string(),
            "spec.network.mtu: should be greater than or equal to 576"
        );
        let fine = json!({"apiVersion": "operator.weft.dev/v1", "kind": "Installation",
            "metadata": {"name": "default"}, "spec": {"network": {"mtu": 1450}}});
        assert_eq!(admit(&fine), Ok(()));
    }
}
