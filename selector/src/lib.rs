//! The label selector grammar shared by weft policies and IP pools.
//!
//! ```text
//! k == 'v'   k != 'v'   has(k)   !has(k)   k in {'a', 'b'}   k not in {'a'}
//! k contains 's'   k starts with 's'   k ends with 's'   all()   global()
//! !expr   expr && expr   expr || expr   ( expr )
//! ```
//!
//! `!` binds tighter than `&&`, which binds tighter than `||`. Strings take single or double
//! quotes. `k != 'v'` and `k not in {...}` are true when `k` is absent. Empty text means `all()`.
//! `global()` selects objects outside any namespace, so it never matches pod labels.

mod display;
mod error;
mod lexer;
mod parser;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::str::FromStr;

pub use error::SelectorError;
pub use parser::MAX_DEPTH;

/// A parsed selector expression. `And` and `Or` hold two or more terms when parsed.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Expr {
    All,
    Global,
    Has(String),
    Equal(String, String),
    NotEqual(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Contains(String, String),
    StartsWith(String, String),
    EndsWith(String, String),
    Not(Box<Expr>),
    And(Vec<Expr>),
    Or(Vec<Expr>),
}

/// Read access to a set of labels, so selectors work on any map type.
pub trait Labels {
    fn label(&self, key: &str) -> Option<&str>;
}

impl Labels for BTreeMap<String, String> {
    fn label(&self, key: &str) -> Option<&str> {
        self.get(key).map(String::as_str)
    }
}

impl<S: std::hash::BuildHasher> Labels for HashMap<String, String, S> {
    fn label(&self, key: &str) -> Option<&str> {
        self.get(key).map(String::as_str)
    }
}

impl<L: Labels + ?Sized> Labels for &L {
    fn label(&self, key: &str) -> Option<&str> {
        (**self).label(key)
    }
}

/// A validated label selector.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Selector {
    expr: Expr,
}

impl Selector {
    /// Parses selector text; errors carry the character position and what was expected.
    pub fn parse(text: &str) -> Result<Self, SelectorError> {
        parser::parse_expr(text).map(|expr| Self { expr })
    }

    /// The selector that matches every labelled object: `all()`.
    pub fn all() -> Self {
        Self { expr: Expr::All }
    }

    /// Wraps an expression built in code (for example from a Kubernetes label selector).
    pub fn from_expr(expr: Expr) -> Self {
        Self { expr }
    }

    pub fn expr(&self) -> &Expr {
        &self.expr
    }

    /// Whether the selector is exactly `all()`.
    pub fn is_all(&self) -> bool {
        self.expr == Expr::All
    }

    /// Whether an object with these labels, inside a namespace, is selected.
    pub fn matches(&self, labels: &impl Labels) -> bool {
        self.expr.matches(labels, false)
    }

    /// Like [`Selector::matches`] for an object outside any namespace, where `global()` is true.
    pub fn matches_global(&self, labels: &impl Labels) -> bool {
        self.expr.matches(labels, true)
    }
}

impl Expr {
    fn matches(&self, labels: &impl Labels, global: bool) -> bool {
        let value = |key: &str| labels.label(key);
        match self {
            Expr::All => true,
            Expr::Global => global,
            Expr::Has(key) => value(key).is_some(),
            Expr::Equal(key, wanted) => value(key) == Some(wanted.as_str()),
            Expr::NotEqual(key, unwanted) => value(key) != Some(unwanted.as_str()),
            Expr::In(key, set) => value(key).is_some_and(|v| set.iter().any(|s| s == v)),
            Expr::NotIn(key, set) => !value(key).is_some_and(|v| set.iter().any(|s| s == v)),
            Expr::Contains(key, part) => value(key).is_some_and(|v| v.contains(part.as_str())),
            Expr::StartsWith(key, part) => value(key).is_some_and(|v| v.starts_with(part.as_str())),
            Expr::EndsWith(key, part) => value(key).is_some_and(|v| v.ends_with(part.as_str())),
            Expr::Not(inner) => !inner.matches(labels, global),
            Expr::And(terms) => terms.iter().all(|term| term.matches(labels, global)),
            Expr::Or(terms) => terms.iter().any(|term| term.matches(labels, global)),
        }
    }
}

impl FromStr for Selector {
    type Err = SelectorError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::parse(text)
    }
}

impl Default for Selector {
    fn default() -> Self {
        Self::all()
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.expr, f)
    }
}

impl serde::Serialize for Selector {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Selector {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests;
