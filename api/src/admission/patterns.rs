//! The `pattern`s of weft's CRD schemas, matched without a regular-expression engine: each
//! pattern the schemas use has a matcher here, and an unknown one is reported (a test requires
//! every schema pattern to be known).

/// Whether `text` matches `pattern`; `None` for a pattern without an offline matcher.
pub fn matches(pattern: &str, text: &str) -> Option<bool> {
    match pattern {
        // An absolute path.
        "^/" => Some(text.starts_with('/')),
        // A DNS label's characters: lower-case alphanumerics and '-', not at either end.
        "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$" => Some(
            !text.is_empty()
                && text
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !text.starts_with('-')
                && !text.ends_with('-'),
        ),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn known_patterns_match_like_the_regular_expressions() {
        assert_eq!(matches("^/", "/opt/cni/bin"), Some(true));
        assert_eq!(matches("^/", "opt/cni/bin"), Some(false));
        let label = "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$";
        for good in ["a", "pool-1", "0x"] {
            assert_eq!(matches(label, good), Some(true), "{good}");
        }
        for bad in ["", "-a", "a-", "Pool_1", "a.b"] {
            assert_eq!(matches(label, bad), Some(false), "{bad}");
        }
        assert_eq!(matches("^x+$", "x"), None);
    }
}
