//! Pure comparison of a rendered object with its live counterpart: the live object is in sync when
//! every field the operator renders is present with the same value (fields defaulted or added by
//! the API server are ignored). The first differing field is reported so drift can be explained.
//!
//! The comparison follows server-side apply's ownership of lists, because a difference the apply
//! cannot remove would be "reverted" on every reconcile. Keyed lists (`containers`, `env`,
//! `volumes`, `volumeMounts`, ... : `x-kubernetes-list-type: map` in the Kubernetes schema) are
//! merged by key: the operator owns the items it renders, compared by key, and an item another
//! field manager added (a sidecar container, an env var, a volume) is not weft's and is left
//! alone, as the apply leaves it. Every other list is atomic: the apply replaces it whole, so any
//! difference in length or order is drift.

use serde_json::Value;

/// The JSON path (`spec.template.spec.containers[0].image`) of the first rendered field whose live
/// value differs, or `None` when the live object has every rendered field.
pub fn first_difference(rendered: &Value, live: &Value) -> Option<String> {
    let (Value::Object(rendered), Value::Object(live)) = (rendered, live) else {
        return Some(String::new());
    };
    for (key, want) in rendered {
        if matches!(key.as_str(), "apiVersion" | "kind" | "status") {
            continue;
        }
        let have = live.get(key).unwrap_or(&Value::Null);
        if let Some(path) = compare(want, have, key.clone()) {
            return Some(path);
        }
    }
    None
}

fn is_empty(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::Object(map) => map.is_empty(),
        Value::Array(items) => items.is_empty(),
        _ => false,
    }
}

fn compare(want: &Value, have: &Value, path: String) -> Option<String> {
    // The API server drops empty maps and lists, so an empty rendered value matches an absent one.
    if is_empty(want) && is_empty(have) {
        return None;
    }
    match (want, have) {
        (Value::Object(want), Value::Object(have)) => want.iter().find_map(|(key, value)| {
            let child = have.get(key).unwrap_or(&Value::Null);
            compare(value, child, format!("{path}.{key}"))
        }),
        (Value::Array(want), Value::Array(have)) if list_keys(&path).is_some() => {
            let keys = list_keys(&path).unwrap_or_default();
            want.iter().find_map(|item| {
                let label = item_label(item, keys);
                match have
                    .iter()
                    .find(|candidate| same_key(item, candidate, keys))
                {
                    Some(child) => compare(item, child, format!("{path}[{label}]")),
                    None => Some(format!("{path}[{label}]")),
                }
            })
        }
        (Value::Array(want), Value::Array(have)) if want.len() == have.len() => want
            .iter()
            .zip(have)
            .enumerate()
            .find_map(|(index, (value, child))| compare(value, child, format!("{path}[{index}]"))),
        (Value::Number(want), Value::Number(have)) if want.as_f64() == have.as_f64() => None,
        // The API server canonicalises resource quantities ("0.5" becomes "500m").
        (Value::String(want), Value::String(have))
            if is_quantity_path(&path) && same_quantity(want, have) =>
        {
            None
        }
        _ if want == have => None,
        _ => Some(path),
    }
}

/// The key fields of a keyed list (server-side apply merges these lists item by item), named by
/// the list's field, with the default of a key field the API server fills in; `None` for atomic
/// lists. The names are those of the Kubernetes core and apps types weft renders.
fn list_keys(path: &str) -> Option<&'static [(&'static str, Option<&'static str>)]> {
    let field = path.rsplit('.').next().unwrap_or(path);
    let field = field.split('[').next().unwrap_or(field);
    Some(match field {
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "volumes"
        | "env"
        | "imagePullSecrets"
        | "resourceClaims"
        | "schedulingGates" => &[("name", None)],
        "volumeMounts" => &[("mountPath", None)],
        "volumeDevices" => &[("devicePath", None)],
        "ports" => &[("containerPort", None), ("protocol", Some("TCP"))],
        "ownerReferences" => &[("uid", None)],
        "hostAliases" => &[("ip", None)],
        _ => return None,
    })
}

fn key_value<'a>(item: &'a Value, field: &str, default: Option<&'a str>) -> Option<Value> {
    match item.get(field) {
        Some(value) if !value.is_null() => Some(value.clone()),
        _ => default.map(|default| Value::String(default.to_owned())),
    }
}

fn same_key(a: &Value, b: &Value, keys: &[(&str, Option<&str>)]) -> bool {
    keys.iter()
        .all(|(field, default)| key_value(a, field, *default) == key_value(b, field, *default))
}

/// `name=weft-agent` (or `containerPort=9099,protocol=TCP`): the item's key, for drift paths.
fn item_label(item: &Value, keys: &[(&str, Option<&str>)]) -> String {
    keys.iter()
        .map(|(field, default)| {
            let value = match key_value(item, field, *default) {
                Some(Value::String(text)) => text,
                Some(other) => other.to_string(),
                None => String::new(),
            };
            format!("{field}={value}")
        })
        .collect::<Vec<_>>()
        .join(",")
}

fn is_quantity_path(path: &str) -> bool {
    path.contains(".requests.") || path.contains(".limits.")
}

/// The value of a Kubernetes quantity such as `500m`, `1.5Gi` or `1e3`.
fn quantity(text: &str) -> Option<f64> {
    const SUFFIXES: [(&str, f64); 15] = [
        ("Ki", 1024.0),
        ("Mi", 1048576.0),
        ("Gi", 1073741824.0),
        ("Ti", 1099511627776.0),
        ("Pi", 1125899906842624.0),
        ("Ei", 1152921504606846976.0),
        ("n", 1e-9),
        ("u", 1e-6),
        ("m", 1e-3),
        ("k", 1e3),
        ("M", 1e6),
        ("G", 1e9),
        ("T", 1e12),
        ("P", 1e15),
        ("E", 1e18),
    ];
    for (suffix, factor) in SUFFIXES {
        if let Some(number) = text.strip_suffix(suffix) {
            return number.parse::<f64>().ok().map(|value| value * factor);
        }
    }
    text.parse().ok()
}

fn same_quantity(a: &str, b: &str) -> bool {
    match (quantity(a), quantity(b)) {
        (Some(a), Some(b)) => (a - b).abs() <= f64::EPSILON * a.abs().max(b.abs()) * 4.0,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn server_defaults_are_ignored() {
        let rendered = json!({"apiVersion": "apps/v1", "kind": "DaemonSet",
            "metadata": {"name": "n", "labels": {"a": "b"}},
            "spec": {"template": {"spec": {"containers": [{"name": "c", "image": "i"}],
                "volumes": []}}}});
        let live = json!({"metadata": {"name": "n", "uid": "u", "labels": {"a": "b"}},
            "spec": {"revisionHistoryLimit": 10, "template": {"spec": {"containers": [
                {"name": "c", "image": "i", "imagePullPolicy": "IfNotPresent"}]}}},
            "status": {"numberReady": 3}});
        assert_eq!(first_difference(&rendered, &live), None);
    }

    #[test]
    fn a_changed_field_is_named() {
        let rendered = json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "i:1"}]}}}});
        let live = json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "i:2"}]}}}});
        assert_eq!(
            first_difference(&rendered, &live).as_deref(),
            Some("spec.template.spec.containers[name=c].image")
        );
    }

    /// What server-side apply leaves alone is not drift: items another manager added to keyed
    /// lists, in any order. A rendered item that is missing or changed still is.
    #[test]
    fn foreign_items_of_keyed_lists_are_not_drift() {
        let rendered = json!({"spec": {"template": {"spec": {
            "containers": [{"name": "c", "image": "i",
                "env": [{"name": "A", "value": "1"}],
                "ports": [{"containerPort": 9099}]}],
            "volumes": [{"name": "v", "hostPath": {"path": "/v"}}]}}}});
        let live = json!({"spec": {"template": {"spec": {
            "containers": [{"name": "sidecar", "image": "s"},
                {"name": "c", "image": "i",
                 "env": [{"name": "EXTRA", "value": "x"}, {"name": "A", "value": "1"}],
                 "ports": [{"containerPort": 9099, "protocol": "TCP"}]}],
            "volumes": [{"name": "v", "hostPath": {"path": "/v", "type": ""}},
                {"name": "extra", "emptyDir": {}}]}}}});
        assert_eq!(first_difference(&rendered, &live), None);
        let mut edited = live.clone();
        edited["spec"]["template"]["spec"]["containers"][1]["env"][1]["value"] = json!("2");
        assert_eq!(
            first_difference(&rendered, &edited).as_deref(),
            Some("spec.template.spec.containers[name=c].env[name=A].value")
        );
        let mut removed = live;
        removed["spec"]["template"]["spec"]["volumes"] = json!([{"name": "extra"}]);
        assert_eq!(
            first_difference(&rendered, &removed).as_deref(),
            Some("spec.template.spec.volumes[name=v]")
        );
    }

    #[test]
    fn missing_label_and_extra_list_item_are_differences() {
        let rendered = json!({"metadata": {"labels": {"a": "b"}}, "rules": [{"verbs": ["get"]}]});
        let live = json!({"metadata": {"labels": {}}, "rules": [{"verbs": ["get"]}]});
        assert_eq!(
            first_difference(&rendered, &live).as_deref(),
            Some("metadata.labels.a")
        );
        let live = json!({"metadata": {"labels": {"a": "b"}},
            "rules": [{"verbs": ["get"]}, {"verbs": ["*"]}]});
        assert_eq!(first_difference(&rendered, &live).as_deref(), Some("rules"));
    }

    #[test]
    fn integer_and_float_forms_of_a_number_are_equal() {
        assert_eq!(first_difference(&json!({"a": 1}), &json!({"a": 1.0})), None);
    }

    #[test]
    fn canonicalised_quantities_are_equal() {
        let rendered =
            json!({"spec": {"resources": {"requests": {"cpu": "0.5", "memory": "1Gi"}}}});
        let live =
            json!({"spec": {"resources": {"requests": {"cpu": "500m", "memory": "1024Mi"}}}});
        assert_eq!(first_difference(&rendered, &live), None);
        let live = json!({"spec": {"resources": {"requests": {"cpu": "600m", "memory": "1Gi"}}}});
        assert!(first_difference(&rendered, &live).is_some());
        assert_eq!(
            first_difference(&json!({"a": "0.5"}), &json!({"a": "500m"})).as_deref(),
            Some("a")
        );
    }
}
