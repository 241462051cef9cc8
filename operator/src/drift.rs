//! Pure comparison of a rendered object with its live counterpart: the live object is in sync when
//! every field the operator renders is present with the same value (fields defaulted or added by
//! the API server are ignored). The first differing field is reported so drift can be explained.

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
        (Value::Array(want), Value::Array(have)) if want.len() == have.len() => want
            .iter()
            .zip(have)
            .enumerate()
            .find_map(|(index, (value, child))| compare(value, child, format!("{path}[{index}]"))),
        (Value::Number(want), Value::Number(have)) if want.as_f64() == have.as_f64() => None,
        _ if want == have => None,
        _ => Some(path),
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
        let rendered = json!({"spec": {"template": {"spec": {"containers": [{"image": "i:1"}]}}}});
        let live = json!({"spec": {"template": {"spec": {"containers": [{"image": "i:2"}]}}}});
        assert_eq!(
            first_difference(&rendered, &live).as_deref(),
            Some("spec.template.spec.containers[0].image")
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
}
