//! The query language of `clip search`, after rclip's: terms joined by `+` and `-` given as separate
//! words, each term text or an image path, optionally weighted with a `W:` prefix:
//!
//! ```text
//! clip search --db photos.db "2:golden retriever" + ./pool.jpg - fruit
//! ```
//!
//! Adjacent words without an operator between them form one text (`golden retriever` = `"golden retriever"`).
//! A term is an image when it starts with `/`, `./`, `../` or `~/`; any other term is text. The query vector
//! is the weighted sum of the terms' L2-normalised embeddings, normalised again.

use std::path::PathBuf;

use crate::error::{Result, SearchError};

#[derive(Debug, Clone, PartialEq)]
pub enum TermKind {
    Text(String),
    Image(PathBuf),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Term {
    /// Signed: a subtracted term has a negative weight.
    pub weight: f32,
    pub kind: TermKind,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Query {
    pub terms: Vec<Term>,
}

fn is_image_term(text: &str) -> bool {
    ["/", "./", "../", "~/"].iter().any(|p| text.starts_with(p))
}

fn expand_home(text: &str) -> PathBuf {
    match (text.strip_prefix("~/"), std::env::var_os("HOME")) {
        (Some(rest), Some(home)) => PathBuf::from(home).join(rest),
        _ => PathBuf::from(text),
    }
}

/// Splits a `W:` weight prefix off a term, when the part before the first `:` is a number.
fn split_weight(text: &str) -> Result<(f32, &str)> {
    if let Some((w, rest)) = text.split_once(':') {
        if let Ok(weight) = w.trim().parse::<f32>() {
            if !weight.is_finite() {
                return Err(SearchError::Query(format!(
                    "weight {w:?} is not a finite number"
                )));
            }
            return Ok((weight, rest));
        }
    }
    Ok((1.0, text))
}

impl Query {
    /// Parses the words of a query; `images` are extra image terms (`--image P`), each with weight 1.
    pub fn parse<S: AsRef<str>>(words: &[S], images: &[PathBuf]) -> Result<Self> {
        let mut terms = Vec::new();
        let mut sign = 1.0f32;
        let mut pending: Option<(f32, String)> = None;
        let mut expecting_term = true;
        let flush = |pending: &mut Option<(f32, String)>, terms: &mut Vec<Term>| -> Result<()> {
            if let Some((sign, text)) = pending.take() {
                let (weight, body) = split_weight(&text)?;
                let body = body.trim();
                if body.is_empty() {
                    return Err(SearchError::Query(format!(
                        "term {text:?} has a weight but nothing to weigh"
                    )));
                }
                if body.starts_with("http://") || body.starts_with("https://") {
                    return Err(SearchError::Query(format!(
                        "{body} is a URL: images are not fetched from the network; download it and give its path"
                    )));
                }
                let kind = if is_image_term(body) {
                    TermKind::Image(expand_home(body))
                } else {
                    TermKind::Text(body.to_string())
                };
                terms.push(Term {
                    weight: sign * weight,
                    kind,
                });
            }
            Ok(())
        };
        for word in words {
            let word = word.as_ref();
            match word {
                "+" | "-" => {
                    if expecting_term {
                        return Err(SearchError::Query(format!(
                            "{word:?} must stand between two terms"
                        )));
                    }
                    flush(&mut pending, &mut terms)?;
                    sign = if word == "-" { -1.0 } else { 1.0 };
                    expecting_term = true;
                }
                _ => {
                    match &mut pending {
                        // A new image term never merges into a text; words after a text extend it.
                        Some((_, text)) if !is_image_term(word) && !is_image_term(text) => {
                            text.push(' ');
                            text.push_str(word);
                        }
                        _ => {
                            flush(&mut pending, &mut terms)?;
                            pending = Some((sign, word.to_string()));
                        }
                    }
                    expecting_term = false;
                }
            }
        }
        if expecting_term && !words.is_empty() {
            return Err(SearchError::Query("the query ends with an operator".into()));
        }
        flush(&mut pending, &mut terms)?;
        terms.extend(images.iter().map(|p| Term {
            weight: 1.0,
            kind: TermKind::Image(p.clone()),
        }));
        if terms.is_empty() {
            return Err(SearchError::Query(
                "nothing to search for: give words, an image path or --image".into(),
            ));
        }
        if terms.iter().all(|t| t.weight <= 0.0) {
            return Err(SearchError::Query(
                "every term is subtracted: give at least one term to look for".into(),
            ));
        }
        Ok(Self { terms })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(weight: f32, t: &str) -> Term {
        Term {
            weight,
            kind: TermKind::Text(t.into()),
        }
    }

    #[test]
    fn rclip_style_expressions_parse_into_weighted_terms() {
        let q = Query::parse(
            &["2:golden retriever", "+", "./pool.jpg", "-", "fruit"],
            &[],
        )
        .unwrap();
        assert_eq!(
            q.terms,
            vec![
                text(2.0, "golden retriever"),
                Term {
                    weight: 1.0,
                    kind: TermKind::Image("./pool.jpg".into())
                },
                text(-1.0, "fruit"),
            ]
        );
    }

    #[test]
    fn adjacent_words_form_one_text_and_image_flags_add_terms() {
        let q = Query::parse(
            &["a", "red", "car", "-", "0.5:night"],
            &[PathBuf::from("x.png")],
        )
        .unwrap();
        assert_eq!(q.terms[0], text(1.0, "a red car"));
        assert_eq!(q.terms[1], text(-0.5, "night"));
        assert_eq!(q.terms[2].kind, TermKind::Image("x.png".into()));
        // A colon that is not a weight stays in the text.
        let q = Query::parse(&["time: 12:30"], &[]).unwrap();
        assert_eq!(q.terms, vec![text(1.0, "time: 12:30")]);
    }

    #[test]
    fn malformed_queries_are_refused_with_a_reason() {
        let cases: [&[&str]; 6] = [
            &[],
            &["+", "cat"],
            &["cat", "-"],
            &["cat", "+", "-", "dog"],
            &["-1:cat"],
            &["https://example.com/a.jpg"],
        ];
        for words in cases {
            let error = Query::parse(words, &[]).unwrap_err();
            assert!(matches!(error, SearchError::Query(_)), "{words:?}: {error}");
        }
        assert!(Query::parse(&["2:"], &[]).is_err());
        assert!(Query::parse(&["inf:cat"], &[]).is_err());
    }
}
