//! From byte spans to `line:column`, and "did you mean" suggestions.

use std::ops::Range;
use std::path::{Path, PathBuf};

use crate::error::Error;

/// Builds spec errors for one source text.
#[derive(Debug, Clone)]
pub(crate) struct Locator<'a> {
    text: &'a str,
    file: PathBuf,
}

impl<'a> Locator<'a> {
    /// A locator for `text`, read from `file` (empty path for a string).
    pub(crate) fn new(text: &'a str, file: &Path) -> Self {
        Locator {
            text,
            file: file.to_path_buf(),
        }
    }

    /// 1-based line and column (in characters) of byte offset `at`.
    pub(crate) fn line_column(&self, at: usize) -> (usize, usize) {
        let at = at.min(self.text.len());
        let at = (0..=at)
            .rev()
            .find(|&i| self.text.is_char_boundary(i))
            .unwrap_or(0);
        let before = &self.text[..at];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let column = before[line_start..].chars().count() + 1;
        (line, column)
    }

    /// An [`Error::Spec`] at `span` for `key`.
    pub(crate) fn error(
        &self,
        span: Range<usize>,
        key: impl Into<String>,
        message: impl Into<String>,
        hint: Option<String>,
    ) -> Error {
        let (line, column) = self.line_column(span.start);
        Error::Spec {
            file: self.file.clone(),
            line,
            column,
            key: key.into(),
            message: message.into(),
            hint,
        }
    }

    /// The error for a TOML parse or serde error (syntax, unknown key, wrong type).
    pub(crate) fn toml_error(&self, e: &toml::de::Error, known_keys: &[&str]) -> Error {
        let span = e.span().unwrap_or(0..0);
        let message = e.message().trim().to_string();
        let (message, hint) = match unknown_field(&message) {
            Some((field, expected)) => {
                let candidates: Vec<&str> = if expected.is_empty() {
                    known_keys.to_vec()
                } else {
                    expected.iter().map(String::as_str).collect()
                };
                let hint = closest(&field, &candidates).map(|c| format!("did you mean `{c}`?"));
                (format!("unknown key `{field}`"), hint)
            }
            None => (message, None),
        };
        let key = match span_key(self.text, &span) {
            k if k.is_empty() => value_key(self.text, &span).unwrap_or_default(),
            k => k,
        };
        self.error(span, key, message, hint)
    }
}

/// The dotted key whose value is at `span` (for type and range errors, whose span covers the
/// value): the key before the last `=` on the value's line, under the nearest `[table]`
/// header above it. Inside an inline table this is the innermost key (`alpha` of
/// `params = { ftrl = { alpha = "x" } }`).
fn value_key(text: &str, span: &Range<usize>) -> Option<String> {
    let start = span.start.min(text.len());
    let start = (0..=start).rev().find(|&i| text.is_char_boundary(i))?;
    let line_start = text[..start].rfind('\n').map_or(0, |i| i + 1);
    let before = &text[line_start..start];
    let key = before[..before.rfind('=')?].trim_end();
    let key = key
        .rsplit(|c: char| c == '{' || c == ',' || c.is_whitespace())
        .next()?
        .trim_matches('"');
    let bare = |k: &str| {
        !k.is_empty()
            && k.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
    };
    if !bare(key) {
        return None;
    }
    let table = text[..line_start].lines().rev().find_map(|l| {
        let l = l.trim();
        let header = l.strip_prefix('[')?.split(']').next()?;
        Some(header.trim_matches(|c| c == '[' || c == ' ').to_string())
    });
    Some(match table {
        Some(t) if bare(&t) => format!("{t}.{key}"),
        _ => key.to_string(),
    })
}

/// The key text at `span` when the span covers a bare key (for unknown-key errors).
fn span_key(text: &str, span: &Range<usize>) -> String {
    text.get(span.clone())
        .map(str::trim)
        .filter(|k| {
            !k.is_empty()
                && k.len() < 64
                && k.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
        })
        .unwrap_or_default()
        .to_string()
}

/// Parses serde's "unknown field `x`, expected one of `a`, `b`" (or "expected `a`").
fn unknown_field(message: &str) -> Option<(String, Vec<String>)> {
    let rest = message.strip_prefix("unknown field `")?;
    let (field, rest) = rest.split_once('`')?;
    let expected = rest
        .split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect();
    Some((field.to_string(), expected))
}

/// The candidate closest to `word` by edit distance, if close enough to be a typo.
pub(crate) fn closest<'c>(word: &str, candidates: &[&'c str]) -> Option<&'c str> {
    let limit = (word.chars().count() / 3).max(2);
    let prefix = |a: &str, b: &str| a.len() >= 3 && b.starts_with(a);
    candidates
        .iter()
        .map(|c| {
            let d = if prefix(word, c) || prefix(c, word) {
                1
            } else {
                edit_distance(word, c)
            };
            (d, *c)
        })
        .filter(|&(d, _)| d <= limit)
        .min_by_key(|&(d, _)| d)
        .map(|(_, c)| c)
}

/// Levenshtein distance, counting `_`/`-` and case differences as equal.
fn edit_distance(a: &str, b: &str) -> usize {
    let norm = |s: &str| -> Vec<char> {
        s.chars()
            .map(|c| {
                if c == '_' {
                    '-'
                } else {
                    c.to_ascii_lowercase()
                }
            })
            .collect()
    };
    let (a, b) = (norm(a), norm(b));
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for (i, ca) in a.iter().enumerate() {
        cur[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != cb);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_and_column_count_characters() {
        let text = "a = 1\nbé = 2\n  c = 3";
        let l = Locator::new(text, Path::new(""));
        assert_eq!(l.line_column(0), (1, 1));
        assert_eq!(l.line_column(6), (2, 1));
        assert_eq!(l.line_column(text.find('=').unwrap()), (1, 3));
        assert_eq!(l.line_column(text.find('c').unwrap()), (3, 3));
        let e_acute = text.find("= 2").unwrap();
        assert_eq!(l.line_column(e_acute), (2, 4));
    }

    #[test]
    fn suggestions_find_typos_only() {
        let keys = ["publish-every", "publish-rows", "source"];
        assert_eq!(closest("publish_evry", &keys), Some("publish-every"));
        assert_eq!(closest("sourc", &keys), Some("source"));
        assert_eq!(closest("zzzzzz", &keys), None);
    }

    #[test]
    fn serde_unknown_field_messages_parse() {
        let (f, e) =
            unknown_field("unknown field `sorce`, expected one of `kind`, `source`").unwrap();
        assert_eq!(f, "sorce");
        assert_eq!(e, vec!["kind", "source"]);
    }
}
