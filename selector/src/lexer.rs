//! Splits selector text into tokens, each tagged with the character position where it starts.

use super::SelectorError;

/// One lexical unit of the selector grammar.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Token {
    /// A label key or a keyword (`has`, `all`, `in`, `not`, `contains`, ...).
    Word(String),
    /// A quoted string, without its quotes.
    Text(String),
    OpenParen,
    CloseParen,
    OpenBrace,
    CloseBrace,
    Comma,
    Equal,
    NotEqual,
    Bang,
    And,
    Or,
    End,
}

impl Token {
    /// How the token reads in an error message.
    pub(super) fn describe(&self) -> String {
        match self {
            Token::Word(word) => format!("`{word}`"),
            Token::Text(text) => format!("string '{text}'"),
            Token::OpenParen => "`(`".into(),
            Token::CloseParen => "`)`".into(),
            Token::OpenBrace => "`{`".into(),
            Token::CloseBrace => "`}`".into(),
            Token::Comma => "`,`".into(),
            Token::Equal => "`==`".into(),
            Token::NotEqual => "`!=`".into(),
            Token::Bang => "`!`".into(),
            Token::And => "`&&`".into(),
            Token::Or => "`||`".into(),
            Token::End => "end of selector".into(),
        }
    }
}

/// A token and the 0-based character position of its first character.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Spanned {
    pub token: Token,
    pub position: usize,
}

/// Characters allowed in a label key: those of Kubernetes label keys (`prefix/name`).
pub(super) fn is_word_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '/')
}

/// Tokenizes the whole input; the last token is always [`Token::End`].
pub(super) fn tokenize(input: &str) -> Result<Vec<Spanned>, SelectorError> {
    let chars: Vec<char> = input.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let start = i;
        let token = match c {
            c if c.is_whitespace() => {
                i += 1;
                continue;
            }
            '(' => single(&mut i, Token::OpenParen),
            ')' => single(&mut i, Token::CloseParen),
            '{' => single(&mut i, Token::OpenBrace),
            '}' => single(&mut i, Token::CloseBrace),
            ',' => single(&mut i, Token::Comma),
            '=' => pair(&chars, &mut i, '=', Token::Equal, "`==`")?,
            '&' => pair(&chars, &mut i, '&', Token::And, "`&&`")?,
            '|' => pair(&chars, &mut i, '|', Token::Or, "`||`")?,
            '!' if chars.get(i + 1) == Some(&'=') => {
                i += 2;
                Token::NotEqual
            }
            '!' => single(&mut i, Token::Bang),
            '\'' | '"' => {
                let end = chars[i + 1..]
                    .iter()
                    .position(|&q| q == c)
                    .map(|offset| i + 1 + offset)
                    .ok_or_else(|| {
                        SelectorError::new(start, format!("a closing {c}"), "end of selector")
                    })?;
                let text: String = chars[i + 1..end].iter().collect();
                i = end + 1;
                Token::Text(text)
            }
            c if is_word_char(c) => {
                while i < chars.len() && is_word_char(chars[i]) {
                    i += 1;
                }
                Token::Word(chars[start..i].iter().collect())
            }
            other => {
                return Err(SelectorError::new(
                    start,
                    "a label key, a quoted string, an operator or a parenthesis",
                    format!("character {other:?}"),
                ));
            }
        };
        tokens.push(Spanned {
            token,
            position: start,
        });
    }
    tokens.push(Spanned {
        token: Token::End,
        position: chars.len(),
    });
    Ok(tokens)
}

fn single(i: &mut usize, token: Token) -> Token {
    *i += 1;
    token
}

fn pair(
    chars: &[char],
    i: &mut usize,
    second: char,
    token: Token,
    name: &str,
) -> Result<Token, SelectorError> {
    if chars.get(*i + 1) == Some(&second) {
        *i += 2;
        Ok(token)
    } else {
        let found = chars
            .get(*i + 1)
            .map_or_else(|| "end of selector".to_string(), |c| format!("{c:?}"));
        Err(SelectorError::new(
            *i,
            name,
            format!("a lone {:?} then {found}", chars[*i]),
        ))
    }
}
