//! Recursive-descent parser from tokens to an [`Expr`] tree.
//!
//! Precedence, loosest first: `||`, `&&`, `!`. Chains of `&&` / `||` become one n-ary node;
//! a parenthesised group stays a node of its own, so printing and re-parsing gives the same tree.

use super::lexer::{Spanned, Token, tokenize};
use super::{Expr, SelectorError};

/// Deepest nesting of parentheses and `!` accepted; deeper input is refused rather than
/// risking the stack.
pub const MAX_DEPTH: usize = 64;

/// Parses selector text; empty or blank text is `all()`.
pub(super) fn parse_expr(input: &str) -> Result<Expr, SelectorError> {
    let tokens = tokenize(input)?;
    if tokens.len() == 1 {
        return Ok(Expr::All);
    }
    let mut parser = Parser {
        tokens,
        next: 0,
        depth: 0,
    };
    let expr = parser.or()?;
    let rest = parser.peek();
    if rest.token != Token::End {
        return Err(SelectorError::new(
            rest.position,
            "`&&`, `||` or end of selector",
            rest.token.describe(),
        ));
    }
    Ok(expr)
}

struct Parser {
    tokens: Vec<Spanned>,
    next: usize,
    depth: usize,
}

impl Parser {
    fn peek(&self) -> &Spanned {
        &self.tokens[self.next]
    }

    fn bump(&mut self) -> Spanned {
        let token = self.tokens[self.next].clone();
        if token.token != Token::End {
            self.next += 1;
        }
        token
    }

    fn expect(&mut self, wanted: Token) -> Result<(), SelectorError> {
        let got = self.bump();
        if got.token == wanted {
            Ok(())
        } else {
            Err(SelectorError::new(
                got.position,
                wanted.describe(),
                got.token.describe(),
            ))
        }
    }

    fn or(&mut self) -> Result<Expr, SelectorError> {
        let mut terms = vec![self.and()?];
        while self.peek().token == Token::Or {
            self.bump();
            terms.push(self.and()?);
        }
        Ok(if terms.len() == 1 {
            terms.remove(0)
        } else {
            Expr::Or(terms)
        })
    }

    fn and(&mut self) -> Result<Expr, SelectorError> {
        let mut terms = vec![self.unary()?];
        while self.peek().token == Token::And {
            self.bump();
            terms.push(self.unary()?);
        }
        Ok(if terms.len() == 1 {
            terms.remove(0)
        } else {
            Expr::And(terms)
        })
    }

    fn unary(&mut self) -> Result<Expr, SelectorError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(SelectorError::new(
                self.peek().position,
                format!("at most {MAX_DEPTH} levels of nesting"),
                "deeper nesting",
            ));
        }
        let result = if self.peek().token == Token::Bang {
            self.bump();
            self.unary().map(|inner| Expr::Not(Box::new(inner)))
        } else {
            self.primary()
        };
        self.depth -= 1;
        result
    }

    fn primary(&mut self) -> Result<Expr, SelectorError> {
        let first = self.bump();
        match first.token {
            Token::OpenParen => {
                let inner = self.or()?;
                self.expect(Token::CloseParen)?;
                Ok(inner)
            }
            Token::Word(word) => {
                if self.peek().token == Token::OpenParen {
                    self.function(word, first.position)
                } else {
                    self.comparison(word)
                }
            }
            other => Err(SelectorError::new(
                first.position,
                "a label key, `has(`, `all()`, `global()`, `!` or `(`",
                other.describe(),
            )),
        }
    }

    fn function(&mut self, name: String, position: usize) -> Result<Expr, SelectorError> {
        self.expect(Token::OpenParen)?;
        let expr = match name.as_str() {
            "all" => Expr::All,
            "global" => Expr::Global,
            "has" => {
                let key = self.bump();
                match key.token {
                    Token::Word(key) => Expr::Has(key),
                    other => {
                        return Err(SelectorError::new(
                            key.position,
                            "a label key",
                            other.describe(),
                        ));
                    }
                }
            }
            _ => {
                return Err(SelectorError::new(
                    position,
                    "`has`, `all` or `global` before `(`",
                    format!("`{name}`"),
                ));
            }
        };
        self.expect(Token::CloseParen)?;
        Ok(expr)
    }

    fn comparison(&mut self, key: String) -> Result<Expr, SelectorError> {
        let operator = self.bump();
        let expr = match operator.token {
            Token::Equal => Expr::Equal(key, self.text()?),
            Token::NotEqual => Expr::NotEqual(key, self.text()?),
            Token::Word(word) => match word.as_str() {
                "in" => Expr::In(key, self.set()?),
                "not" => {
                    self.keyword("in")?;
                    Expr::NotIn(key, self.set()?)
                }
                "contains" => Expr::Contains(key, self.text()?),
                "starts" => {
                    self.keyword("with")?;
                    Expr::StartsWith(key, self.text()?)
                }
                "ends" => {
                    self.keyword("with")?;
                    Expr::EndsWith(key, self.text()?)
                }
                _ => return Err(comparison_expected(operator.position, format!("`{word}`"))),
            },
            other => return Err(comparison_expected(operator.position, other.describe())),
        };
        Ok(expr)
    }

    fn keyword(&mut self, wanted: &str) -> Result<(), SelectorError> {
        let got = self.bump();
        match got.token {
            Token::Word(word) if word == wanted => Ok(()),
            other => Err(SelectorError::new(
                got.position,
                format!("`{wanted}`"),
                other.describe(),
            )),
        }
    }

    fn text(&mut self) -> Result<String, SelectorError> {
        let got = self.bump();
        match got.token {
            Token::Text(text) => Ok(text),
            other => Err(SelectorError::new(
                got.position,
                "a quoted string",
                other.describe(),
            )),
        }
    }

    fn set(&mut self) -> Result<Vec<String>, SelectorError> {
        self.expect(Token::OpenBrace)?;
        let mut values = Vec::new();
        if self.peek().token == Token::CloseBrace {
            self.bump();
            return Ok(values);
        }
        loop {
            values.push(self.text()?);
            let separator = self.bump();
            match separator.token {
                Token::Comma => {}
                Token::CloseBrace => return Ok(values),
                other => {
                    return Err(SelectorError::new(
                        separator.position,
                        "`,` or `}`",
                        other.describe(),
                    ));
                }
            }
        }
    }
}

fn comparison_expected(position: usize, found: String) -> SelectorError {
    SelectorError::new(
        position,
        "`==`, `!=`, `in`, `not in`, `contains`, `starts with` or `ends with`",
        found,
    )
}
