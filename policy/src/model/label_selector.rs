//! Converts Kubernetes label selectors (`matchLabels` / `matchExpressions`) into the selector
//! grammar, so one evaluator and one set compiler serve both policy kinds.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use super::ModelError;
use crate::selector::{Expr, Selector};

/// `matchLabels` become `==`, `In`/`NotIn` become `in`/`not in`, `Exists`/`DoesNotExist` become
/// `has()`/`!has()`; the terms are and-ed, and an empty selector is `all()`.
pub fn label_selector_to_selector(
    selector: &LabelSelector,
    field: &str,
) -> Result<Selector, ModelError> {
    let mut terms = Vec::new();
    for (key, value) in selector.match_labels.iter().flatten() {
        check_key(key, &format!("{field}.matchLabels"))?;
        check_value(value, &format!("{field}.matchLabels.{key}"))?;
        terms.push(Expr::Equal(key.clone(), value.clone()));
    }
    for (index, requirement) in selector.match_expressions.iter().flatten().enumerate() {
        let at = format!("{field}.matchExpressions[{index}]");
        check_key(&requirement.key, &format!("{at}.key"))?;
        let values = requirement.values.clone().unwrap_or_default();
        for value in &values {
            check_value(value, &format!("{at}.values"))?;
        }
        let key = requirement.key.clone();
        let term = match requirement.operator.as_str() {
            "In" | "NotIn" if values.is_empty() => {
                return Err(ModelError::new(
                    format!("{at}.values"),
                    format!("operator {} needs at least one value", requirement.operator),
                ));
            }
            "Exists" | "DoesNotExist" if !values.is_empty() => {
                return Err(ModelError::new(
                    format!("{at}.values"),
                    format!("operator {} takes no values", requirement.operator),
                ));
            }
            "In" => Expr::In(key, values),
            "NotIn" => Expr::NotIn(key, values),
            "Exists" => Expr::Has(key),
            "DoesNotExist" => Expr::Not(Box::new(Expr::Has(key))),
            other => {
                return Err(ModelError::new(
                    format!("{at}.operator"),
                    format!("{other:?} is not an operator: use In, NotIn, Exists or DoesNotExist"),
                ));
            }
        };
        terms.push(term);
    }
    Ok(Selector::from_expr(match terms.len() {
        0 => Expr::All,
        1 => terms.remove(0),
        _ => Expr::And(terms),
    }))
}

fn check_key(key: &str, field: &str) -> Result<(), ModelError> {
    let (prefix, name) = key.rsplit_once('/').unwrap_or(("", key));
    let name_ok = !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric());
    let prefix_ok = prefix.len() <= 253
        && prefix
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-.".contains(c))
        && (key.contains('/') != prefix.is_empty());
    if name_ok && prefix_ok {
        Ok(())
    } else {
        Err(ModelError::new(
            field,
            format!(
                "label key {key:?} is not valid: use an optional DNS prefix and '/', then up to 63 \
                 letters, digits, '-', '_' or '.', starting and ending with a letter or digit"
            ),
        ))
    }
}

fn check_value(value: &str, field: &str) -> Result<(), ModelError> {
    let ok = value.is_empty()
        || (value.len() <= 63
            && value
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
            && value.starts_with(|c: char| c.is_ascii_alphanumeric())
            && value.ends_with(|c: char| c.is_ascii_alphanumeric()));
    if ok {
        Ok(())
    } else {
        Err(ModelError::new(
            field,
            format!(
                "label value {value:?} is not valid: use up to 63 letters, digits, '-', '_' or '.', \
                 starting and ending with a letter or digit"
            ),
        ))
    }
}
