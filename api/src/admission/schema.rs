//! The structural-schema checks of the API server, driven by a CRD's OpenAPI v3 schema: fields
//! not declared, types, duplicate keys of keyed lists (all refused before anything else, as the
//! server does while it builds the apply patch), then enums, bounds, lengths, patterns, required
//! fields and the CEL rules of every node. Field paths are written as the server writes them
//! (`spec.network.ipPools[0].cidr`).

use std::collections::BTreeMap;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    JSONSchemaProps, JSONSchemaPropsOrArray, JSONSchemaPropsOrBool,
};
use serde_json::Value;

use super::{FieldError, rules};

/// The problems found, split as the server splits them.
#[derive(Default)]
pub struct Findings {
    /// Shape problems (undeclared field, wrong type, duplicate key): the server refuses these
    /// before it validates values.
    pub shape: Vec<FieldError>,
    pub values: Vec<FieldError>,
}

fn child(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

fn items_schema(schema: &JSONSchemaProps) -> Option<&JSONSchemaProps> {
    match schema.items.as_ref()? {
        JSONSchemaPropsOrArray::Schema(items) => Some(items),
        JSONSchemaPropsOrArray::Schemas(list) => list.first(),
    }
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn type_fits(schema: &JSONSchemaProps, value: &Value) -> bool {
    if schema.x_kubernetes_int_or_string == Some(true) {
        return matches!(type_name(value), "integer" | "string");
    }
    match schema.type_.as_deref() {
        None => true,
        Some("number") => value.is_number(),
        Some(wanted) => type_name(value) == wanted,
    }
}

/// Walks `value` at `path` against `schema`, appending to `findings`.
pub fn check(schema: &JSONSchemaProps, value: &Value, path: &str, findings: &mut Findings) {
    if value.is_null() {
        // The server drops null values of fields that are not nullable; nullable ones pass.
        return;
    }
    if !type_fits(schema, value) {
        let wanted = if schema.x_kubernetes_int_or_string == Some(true) {
            "an integer or a string"
        } else {
            schema.type_.as_deref().unwrap_or("any")
        };
        findings.shape.push(FieldError::new(
            path,
            format!("expected {wanted}, got {}", type_name(value)),
        ));
        return;
    }
    match value {
        Value::Object(map) => check_object(schema, map, path, findings),
        Value::Array(items) => check_array(schema, items, path, findings),
        _ => check_scalar(schema, value, path, findings),
    }
    for validation in schema.x_kubernetes_validations.iter().flatten() {
        if rules::is_transition(&validation.rule) {
            continue;
        }
        let Some(rule) = rules::rule(&validation.rule) else {
            findings.values.push(FieldError::new(
                path,
                format!("rule {:?} has no offline implementation", validation.rule),
            ));
            continue;
        };
        if !rule(value) {
            let field = match validation.field_path.as_deref() {
                Some(relative) => format!("{path}{relative}"),
                None => path.to_owned(),
            };
            let message = validation
                .message
                .clone()
                .unwrap_or_else(|| format!("failed rule: {}", validation.rule));
            findings.values.push(FieldError::new(&field, message));
        }
    }
}

fn check_object(
    schema: &JSONSchemaProps,
    map: &serde_json::Map<String, Value>,
    path: &str,
    findings: &mut Findings,
) {
    let empty = BTreeMap::new();
    let properties = schema.properties.as_ref().unwrap_or(&empty);
    let preserve = schema.x_kubernetes_preserve_unknown_fields == Some(true);
    for (key, item) in map {
        let key_path = child(path, key);
        if let Some(property) = properties.get(key) {
            check(property, item, &key_path, findings);
        } else if let Some(JSONSchemaPropsOrBool::Schema(values)) = &schema.additional_properties {
            check(values, item, &key_path, findings);
        } else if !properties.is_empty() && !preserve && schema.additional_properties.is_none() {
            findings.shape.push(FieldError::new(
                &key_path,
                "field not declared in schema".into(),
            ));
        }
    }
    for required in schema.required.iter().flatten() {
        if map.get(required).is_none_or(Value::is_null) {
            findings.values.push(FieldError::new(
                &child(path, required),
                "Required value".into(),
            ));
        }
    }
}

fn check_array(schema: &JSONSchemaProps, items: &[Value], path: &str, findings: &mut Findings) {
    if let Some(max) = schema.max_items
        && items.len() as i64 > max
    {
        findings.values.push(FieldError::new(
            path,
            format!("Too many: {}: must have at most {max} items", items.len()),
        ));
    }
    if let Some(min) = schema.min_items
        && (items.len() as i64) < min
    {
        findings.values.push(FieldError::new(
            path,
            format!("should have at least {min} items"),
        ));
    }
    match schema.x_kubernetes_list_type.as_deref() {
        Some("map") => {
            let keys = schema
                .x_kubernetes_list_map_keys
                .clone()
                .unwrap_or_default();
            let key_of = |item: &Value| -> Vec<String> {
                keys.iter()
                    .map(|key| format!("{key}={}", item.get(key).unwrap_or(&Value::Null)))
                    .collect()
            };
            duplicates(items.iter().map(key_of).collect(), path, findings);
        }
        Some("set") => {
            let key_of = |item: &Value| vec![format!("={item}")];
            duplicates(items.iter().map(key_of).collect(), path, findings);
        }
        _ => {}
    }
    if let Some(item_schema) = items_schema(schema) {
        for (index, item) in items.iter().enumerate() {
            check(item_schema, item, &format!("{path}[{index}]"), findings);
        }
    }
}

fn duplicates(keys: Vec<Vec<String>>, path: &str, findings: &mut Findings) {
    for (index, key) in keys.iter().enumerate() {
        if keys[..index].contains(key) {
            findings.shape.push(FieldError::new(
                path,
                format!("duplicate entries for key [{}]", key.join(",")),
            ));
            return;
        }
    }
}

fn check_scalar(schema: &JSONSchemaProps, value: &Value, path: &str, findings: &mut Findings) {
    let mut fail = |message: String| findings.values.push(FieldError::new(path, message));
    if let Some(allowed) = &schema.enum_
        && !allowed.iter().any(|json| json.0 == *value)
    {
        let list: Vec<String> = allowed.iter().map(|json| json.0.to_string()).collect();
        fail(format!(
            "Unsupported value: {value}: supported values: {}",
            list.join(", ")
        ));
    }
    if let Some(number) = value.as_f64() {
        if let Some(minimum) = schema.minimum
            && number < minimum
        {
            fail(format!("should be greater than or equal to {minimum}"));
        }
        if let Some(maximum) = schema.maximum
            && number > maximum
        {
            fail(format!("should be less than or equal to {maximum}"));
        }
        let bounds = match schema.format.as_deref() {
            Some("int32") => Some((f64::from(i32::MIN), f64::from(i32::MAX))),
            _ => None,
        };
        if let Some((low, high)) = bounds
            && !(low..=high).contains(&number)
        {
            fail(format!(
                "out of range for {}",
                schema.format.as_deref().unwrap_or_default()
            ));
        }
    }
    if let Some(text) = value.as_str() {
        let length = text.chars().count() as i64;
        if let Some(max) = schema.max_length
            && length > max
        {
            fail(format!("Too long: may not be more than {max} bytes"));
        }
        if let Some(min) = schema.min_length
            && length < min
        {
            fail(format!("should be at least {min} chars long"));
        }
        if let Some(pattern) = &schema.pattern {
            match super::patterns::matches(pattern, text) {
                Some(true) => {}
                Some(false) => fail(format!("should match '{pattern}'")),
                None => fail(format!("pattern {pattern:?} has no offline implementation")),
            }
        }
    }
}
