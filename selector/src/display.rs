//! Prints an [`Expr`] in the canonical form that parses back to the same tree.

use std::fmt::{self, Display, Formatter, Write};

use super::Expr;

impl Display for Expr {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            Expr::All => f.write_str("all()"),
            Expr::Global => f.write_str("global()"),
            Expr::Has(key) => write!(f, "has({key})"),
            Expr::Equal(key, value) => write!(f, "{key} == {}", Quoted(value)),
            Expr::NotEqual(key, value) => write!(f, "{key} != {}", Quoted(value)),
            Expr::In(key, set) => write!(f, "{key} in {}", Set(set)),
            Expr::NotIn(key, set) => write!(f, "{key} not in {}", Set(set)),
            Expr::Contains(key, value) => write!(f, "{key} contains {}", Quoted(value)),
            Expr::StartsWith(key, value) => write!(f, "{key} starts with {}", Quoted(value)),
            Expr::EndsWith(key, value) => write!(f, "{key} ends with {}", Quoted(value)),
            // Parentheses only where the grammar needs them: every group printed was a group
            // in the parsed text too, so the printed form never nests deeper than the input
            // and always stays within the parser's depth limit.
            Expr::Not(inner) => match inner.as_ref() {
                Expr::And(_) | Expr::Or(_) => write!(f, "!({inner})"),
                _ => write!(f, "!{inner}"),
            },
            Expr::And(terms) => join(f, terms, " && ", |term| {
                matches!(term, Expr::And(_) | Expr::Or(_))
            }),
            Expr::Or(terms) => join(f, terms, " || ", |term| matches!(term, Expr::Or(_))),
        }
    }
}

/// Writes the terms with a separator, parenthesising those that would otherwise regroup.
/// An empty conjunction prints as `all()` and an empty disjunction as `!all()`.
fn join(
    f: &mut Formatter<'_>,
    terms: &[Expr],
    separator: &str,
    needs_parens: impl Fn(&Expr) -> bool,
) -> fmt::Result {
    if terms.is_empty() {
        return f.write_str(if separator.contains('&') {
            "all()"
        } else {
            "!all()"
        });
    }
    for (index, term) in terms.iter().enumerate() {
        if index > 0 {
            f.write_str(separator)?;
        }
        if needs_parens(term) {
            write!(f, "({term})")?;
        } else {
            write!(f, "{term}")?;
        }
    }
    Ok(())
}

/// A string in single quotes, or double quotes when it contains a single quote.
struct Quoted<'a>(&'a str);

impl Display for Quoted<'_> {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        let quote = if self.0.contains('\'') { '"' } else { '\'' };
        f.write_char(quote)?;
        f.write_str(self.0)?;
        f.write_char(quote)
    }
}

struct Set<'a>(&'a [String]);

impl Display for Set<'_> {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        f.write_char('{')?;
        for (index, value) in self.0.iter().enumerate() {
            if index > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{}", Quoted(value))?;
        }
        f.write_char('}')
    }
}
