//! The error of a selector that does not parse: where, what was expected, what was found.

/// A selector parse failure at a 0-based character position.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid selector at position {position}: expected {expected}, found {found}")]
pub struct SelectorError {
    pub position: usize,
    pub expected: String,
    pub found: String,
}

impl SelectorError {
    pub(super) fn new(
        position: usize,
        expected: impl Into<String>,
        found: impl Into<String>,
    ) -> Self {
        Self {
            position,
            expected: expected.into(),
            found: found.into(),
        }
    }
}
