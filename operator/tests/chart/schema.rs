//! The `installation.spec` part of `charts/weft/values.schema.json`, generated from the
//! Installation CRD: the CRD's structural OpenAPI schema turned into JSON Schema that Helm checks
//! before anything reaches the cluster. `nullable` becomes a `"null"` type, int-or-string becomes
//! `anyOf`, every object with declared properties refuses unknown keys (the API server would prune
//! them silently), and what JSON Schema cannot say is left out: `format`, defaults and the CEL
//! rules (`x-kubernetes-validations`), which the API server still enforces on apply.

use serde_json::{Map, Value, json};

/// The JSON Schema of `installation.spec`, from the Installation CRD this workspace generates.
pub fn installation_spec_schema() -> Value {
    let crd = weft_api::crds()
        .into_iter()
        .find(|crd| crd.spec.names.kind == "Installation")
        .expect("weft_api::crds() has the Installation CRD");
    let crd = serde_json::to_value(&crd).expect("a CRD serializes to JSON");
    let spec = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"];
    assert!(spec.is_object(), "the Installation CRD has a spec schema");
    convert(spec)
}

fn convert(schema: &Value) -> Value {
    let Some(fields) = schema.as_object() else {
        return schema.clone();
    };
    let mut out = Map::new();
    for (key, value) in fields {
        match key.as_str() {
            "nullable" | "format" | "default" => {}
            key if key.starts_with("x-kubernetes-") => {}
            "properties" => {
                let properties = value
                    .as_object()
                    .map(|p| p.iter().map(|(k, v)| (k.clone(), convert(v))).collect())
                    .unwrap_or_default();
                out.insert(key.to_string(), Value::Object(properties));
            }
            "items" | "additionalProperties" => {
                out.insert(key.to_string(), convert(value));
            }
            _ => {
                out.insert(key.to_string(), value.clone());
            }
        }
    }
    let flag = |name: &str| fields.get(name).and_then(Value::as_bool).unwrap_or(false);
    if flag("x-kubernetes-int-or-string") {
        out.remove("type");
        out.insert(
            "anyOf".into(),
            json!([{"type": "integer"}, {"type": "string"}]),
        );
    }
    if flag("nullable") {
        if let Some(kind) = out.get("type").cloned() {
            out.insert("type".into(), json!([kind, "null"]));
        }
        if let Some(Value::Array(values)) = out.get_mut("enum")
            && !values.contains(&Value::Null)
        {
            values.push(Value::Null);
        }
    }
    let open = flag("x-kubernetes-preserve-unknown-fields");
    if out.contains_key("properties") && !out.contains_key("additionalProperties") && !open {
        out.insert("additionalProperties".into(), Value::Bool(false));
    }
    Value::Object(out)
}
