//! Label matchers with Prometheus' semantics.
//!
//! A missing label has the value `""`, so `{a=""}` matches series without `a` and `{a!=""}` only
//! series that have it. Regexes are fully anchored (`=~"ab"` does not match `"abc"`) and, as in
//! Prometheus 3, `.` also matches a newline.

use std::fmt;

use regex::Regex;

use crate::error::{Error, Result};
use crate::labels::write_go_quoted;

/// The four matcher operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MatchType {
    /// `=`
    Equal,
    /// `!=`
    NotEqual,
    /// `=~`
    Regex,
    /// `!~`
    NotRegex,
}

impl MatchType {
    /// The operator as PromQL writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            MatchType::Equal => "=",
            MatchType::NotEqual => "!=",
            MatchType::Regex => "=~",
            MatchType::NotRegex => "!~",
        }
    }
}

/// A compiled label matcher.
#[derive(Debug, Clone)]
pub struct Matcher {
    kind: MatchType,
    name: String,
    value: String,
    pattern: Option<Pattern>,
}

/// How a regex is evaluated: common shapes avoid the regex engine.
#[derive(Debug, Clone)]
enum Pattern {
    /// `.*`: matches everything.
    Any,
    /// `.+`: matches every non-empty value.
    NonEmpty,
    /// A plain alternation of literals, e.g. `a|b|c` (or one literal); kept sorted.
    Literals(Vec<String>),
    /// Anything else.
    Regex(Regex),
}

impl Matcher {
    /// A matcher; compiles the pattern for the regex operators.
    pub fn new(kind: MatchType, name: impl Into<String>, value: impl Into<String>) -> Result<Self> {
        let name = name.into();
        let value = value.into();
        let pattern = match kind {
            MatchType::Equal | MatchType::NotEqual => None,
            MatchType::Regex | MatchType::NotRegex => Some(compile(&name, &value)?),
        };
        Ok(Self {
            kind,
            name,
            value,
            pattern,
        })
    }

    /// An `=` matcher (never fails).
    pub fn equal(name: impl Into<String>, value: impl Into<String>) -> Self {
        Self {
            kind: MatchType::Equal,
            name: name.into(),
            value: value.into(),
            pattern: None,
        }
    }

    /// The operator.
    pub fn kind(&self) -> MatchType {
        self.kind
    }

    /// The label name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The value or pattern as written.
    pub fn value(&self) -> &str {
        &self.value
    }

    /// Whether a label value (`""` for a missing label) satisfies the matcher.
    pub fn matches(&self, value: &str) -> bool {
        match self.kind {
            MatchType::Equal => value == self.value,
            MatchType::NotEqual => value != self.value,
            MatchType::Regex => self.pattern_matches(value),
            MatchType::NotRegex => !self.pattern_matches(value),
        }
    }

    /// Whether the matcher accepts the empty value, i.e. also series that lack the label.
    pub fn matches_empty(&self) -> bool {
        self.matches("")
    }

    /// For `=~` and `!~` with a plain alternation of literals: those literals, sorted.
    /// Index readers use this to look up postings directly instead of scanning all values.
    pub fn set_values(&self) -> Option<&[String]> {
        match &self.pattern {
            Some(Pattern::Literals(values)) => Some(values),
            _ => None,
        }
    }

    fn pattern_matches(&self, value: &str) -> bool {
        match &self.pattern {
            Some(Pattern::Any) => true,
            Some(Pattern::NonEmpty) => !value.is_empty(),
            Some(Pattern::Literals(values)) => {
                values.binary_search_by(|v| v.as_str().cmp(value)).is_ok()
            }
            Some(Pattern::Regex(regex)) => regex.is_match(value),
            None => false,
        }
    }
}

impl PartialEq for Matcher {
    fn eq(&self, other: &Self) -> bool {
        self.kind == other.kind && self.name == other.name && self.value == other.value
    }
}

impl Eq for Matcher {}

/// Formats as PromQL writes a matcher: `name="value"`, `name=~"re"`.
impl fmt::Display for Matcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.name, self.kind.as_str())?;
        write_go_quoted(f, &self.value)
    }
}

fn compile(name: &str, pattern: &str) -> Result<Pattern> {
    match pattern {
        ".*" => return Ok(Pattern::Any),
        ".+" => return Ok(Pattern::NonEmpty),
        _ => {}
    }
    // Always compile, so an invalid pattern is rejected even when a fast path would apply.
    let regex = Regex::new(&format!("^(?s:{pattern})$")).map_err(|source| Error::InvalidRegex {
        name: name.to_owned(),
        pattern: pattern.to_owned(),
        source,
    })?;
    if let Some(mut literals) = literal_alternation(pattern) {
        literals.sort();
        literals.dedup();
        return Ok(Pattern::Literals(literals));
    }
    Ok(Pattern::Regex(regex))
}

/// `a|b|c` where each branch is free of regex syntax: the branches.
fn literal_alternation(pattern: &str) -> Option<Vec<String>> {
    const META: &[char] = &[
        '\\', '.', '+', '*', '?', '(', ')', '[', ']', '{', '}', '^', '$',
    ];
    if pattern.contains(META) {
        return None;
    }
    Some(pattern.split('|').map(str::to_owned).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(kind: MatchType, pattern: &str, accepted: &[&str], rejected: &[&str]) {
        let matcher = Matcher::new(kind, "l", pattern).unwrap();
        for value in accepted {
            assert!(matcher.matches(value), "{matcher} should accept {value:?}");
        }
        for value in rejected {
            assert!(!matcher.matches(value), "{matcher} should reject {value:?}");
        }
    }

    #[test]
    fn regexes_are_anchored() {
        check(MatchType::Regex, "ab", &["ab"], &["abc", "xab", ""]);
        check(MatchType::Regex, "a.*", &["a", "abc"], &["ba"]);
        check(MatchType::NotRegex, "a.*", &["ba", ""], &["abc"]);
    }

    #[test]
    fn dot_matches_newline_as_in_prometheus_3() {
        check(MatchType::Regex, "a.b", &["a\nb", "axb"], &["ab"]);
        check(MatchType::Regex, ".*", &["", "x\ny"], &[]);
        check(MatchType::Regex, ".+", &["x\ny"], &[""]);
    }

    #[test]
    fn literal_sets_take_the_fast_path() {
        let matcher = Matcher::new(MatchType::Regex, "l", "c|a|b").unwrap();
        assert_eq!(matcher.set_values().unwrap(), ["a", "b", "c"]);
        check(MatchType::Regex, "c|a|b", &["a", "b", "c"], &["ab", ""]);
        check(MatchType::Regex, "a|", &["a", ""], &["b"]);
        assert!(
            Matcher::new(MatchType::Regex, "l", "a.|b")
                .unwrap()
                .set_values()
                .is_none()
        );
    }

    #[test]
    fn empty_value_rules() {
        assert!(Matcher::equal("l", "").matches_empty());
        assert!(
            !Matcher::new(MatchType::NotEqual, "l", "")
                .unwrap()
                .matches_empty()
        );
        assert!(
            Matcher::new(MatchType::NotEqual, "l", "x")
                .unwrap()
                .matches_empty()
        );
        assert!(
            !Matcher::new(MatchType::Regex, "l", "x|y")
                .unwrap()
                .matches_empty()
        );
    }

    #[test]
    fn invalid_regex_names_label_and_pattern() {
        let error = Matcher::new(MatchType::Regex, "job", "a(").unwrap_err();
        let message = error.to_string();
        assert!(
            message.contains("\"job\"") && message.contains("\"a(\""),
            "{message}"
        );
    }

    #[test]
    fn display_as_promql() {
        let matcher = Matcher::new(MatchType::NotRegex, "job", "a\"b").unwrap();
        assert_eq!(matcher.to_string(), "job!~\"a\\\"b\"");
    }
}
