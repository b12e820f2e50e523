//! Label sets: a series' identity.

use std::fmt;

use crate::error::{Error, Result};

/// The label that holds a series' metric name.
pub const METRIC_NAME: &str = "__name__";

/// One label: a name and a value.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Label {
    /// The label name.
    pub name: String,
    /// The label value.
    pub value: String,
}

impl Label {
    /// A label from anything string-like.
    pub fn new(name: impl Into<String>, value: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            value: value.into(),
        }
    }
}

/// A label set, sorted by name, with distinct names.
///
/// The derived ordering compares label by label (name, then value) and puts a shorter set first on
/// a tie, which is the order Prometheus and Thanos use for series.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Labels(Vec<Label>);

impl Labels {
    /// The empty label set.
    pub fn empty() -> Self {
        Self(Vec::new())
    }

    /// A label set from labels in any order; rejects a repeated name.
    pub fn new(mut labels: Vec<Label>) -> Result<Self> {
        labels.sort();
        if let Some(pair) = labels.windows(2).find(|pair| pair[0].name == pair[1].name) {
            return Err(Error::DuplicateLabel {
                name: pair[0].name.clone(),
            });
        }
        Ok(Self(labels))
    }

    /// A label set from labels already sorted by name with distinct names (checked in debug builds).
    pub fn from_sorted(labels: Vec<Label>) -> Self {
        debug_assert!(labels.windows(2).all(|pair| pair[0].name < pair[1].name));
        Self(labels)
    }

    /// A label set from `(name, value)` pairs; a later pair wins over an earlier one of the same name.
    pub fn from_pairs<N: Into<String>, V: Into<String>>(
        pairs: impl IntoIterator<Item = (N, V)>,
    ) -> Self {
        let mut labels = Self::empty();
        for (name, value) in pairs {
            labels.set(name, value);
        }
        labels
    }

    /// The value of `name`, if the set has it.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.position(name)
            .ok()
            .map(|index| self.0[index].value.as_str())
    }

    /// Sets `name` to `value`, replacing an existing value; an empty value removes the label, as in
    /// Prometheus, where a label with an empty value does not exist.
    pub fn set(&mut self, name: impl Into<String>, value: impl Into<String>) {
        let name = name.into();
        let value = value.into();
        match self.position(&name) {
            Ok(index) if value.is_empty() => {
                self.0.remove(index);
            }
            Ok(index) => self.0[index].value = value,
            Err(_) if value.is_empty() => {}
            Err(index) => self.0.insert(index, Label { name, value }),
        }
    }

    /// Removes `name`, returning its value.
    pub fn remove(&mut self, name: &str) -> Option<String> {
        let index = self.position(name).ok()?;
        Some(self.0.remove(index).value)
    }

    /// The set without the named labels.
    pub fn without(&self, names: &[&str]) -> Labels {
        Labels(
            self.0
                .iter()
                .filter(|label| !names.contains(&label.name.as_str()))
                .cloned()
                .collect(),
        )
    }

    /// The labels in name order.
    pub fn iter(&self) -> std::slice::Iter<'_, Label> {
        self.0.iter()
    }

    /// The labels as a slice, in name order.
    pub fn as_slice(&self) -> &[Label] {
        &self.0
    }

    /// The labels, consumed.
    pub fn into_vec(self) -> Vec<Label> {
        self.0
    }

    /// How many labels the set has.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the set has no labels.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The metric name, if any.
    pub fn metric_name(&self) -> Option<&str> {
        self.get(METRIC_NAME)
    }

    fn position(&self, name: &str) -> std::result::Result<usize, usize> {
        self.0
            .binary_search_by(|label| label.name.as_str().cmp(name))
    }
}

impl<'a> IntoIterator for &'a Labels {
    type Item = &'a Label;
    type IntoIter = std::slice::Iter<'a, Label>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

/// Formats as Prometheus does: `{a="1", b="x\"y"}`, values quoted with Go's escaping rules for the
/// common cases (backslash, quote, newline, tab and other control characters).
impl fmt::Display for Labels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("{")?;
        for (index, label) in self.0.iter().enumerate() {
            if index > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{}=", label.name)?;
            write_go_quoted(f, &label.value)?;
        }
        f.write_str("}")
    }
}

/// Writes `value` as Go's `strconv.Quote` would for valid UTF-8 text.
pub(crate) fn write_go_quoted(out: &mut impl fmt::Write, value: &str) -> fmt::Result {
    out.write_char('"')?;
    for character in value.chars() {
        match character {
            '"' => out.write_str("\\\"")?,
            '\\' => out.write_str("\\\\")?,
            '\n' => out.write_str("\\n")?,
            '\t' => out.write_str("\\t")?,
            '\r' => out.write_str("\\r")?,
            '\u{07}' => out.write_str("\\a")?,
            '\u{08}' => out.write_str("\\b")?,
            '\u{0C}' => out.write_str("\\f")?,
            '\u{0B}' => out.write_str("\\v")?,
            c if (c as u32) < 0x20 || c as u32 == 0x7F => write!(out, "\\x{:02x}", c as u32)?,
            c if !is_go_printable(c) && (c as u32) < 0x10000 => write!(out, "\\u{:04x}", c as u32)?,
            c if !is_go_printable(c) => write!(out, "\\U{:08x}", c as u32)?,
            c => out.write_char(c)?,
        }
    }
    out.write_char('"')
}

/// Code points Go's `unicode.IsPrint` rejects besides ASCII controls: C1 controls, spaces other
/// than U+0020, line and paragraph separators, format characters, private use and noncharacters.
/// (Unassigned code points, which Go also escapes, are not known here and print as they are.)
const NOT_PRINTABLE: &[(u32, u32)] = &[
    (0x80, 0xA0),
    (0xAD, 0xAD),
    (0x600, 0x605),
    (0x61C, 0x61C),
    (0x6DD, 0x6DD),
    (0x70F, 0x70F),
    (0x890, 0x891),
    (0x8E2, 0x8E2),
    (0x1680, 0x1680),
    (0x180E, 0x180E),
    (0x2000, 0x200F),
    (0x2028, 0x202F),
    (0x205F, 0x2064),
    (0x2066, 0x206F),
    (0x3000, 0x3000),
    (0xE000, 0xF8FF),
    (0xFDD0, 0xFDEF),
    (0xFEFF, 0xFEFF),
    (0xFFF9, 0xFFFB),
    (0xFFFE, 0xFFFF),
    (0x110BD, 0x110BD),
    (0x110CD, 0x110CD),
    (0x13430, 0x1343F),
    (0x1BCA0, 0x1BCA3),
    (0x1D173, 0x1D17A),
    (0xE0001, 0xE0001),
    (0xE0020, 0xE007F),
    (0xF0000, 0x10FFFF),
];

/// Whether Go's `strconv.Quote` keeps `c` as it is (for characters above U+007F).
fn is_go_printable(c: char) -> bool {
    let code = c as u32;
    if (code & 0xFFFE) == 0xFFFE {
        return false;
    }
    !NOT_PRINTABLE
        .iter()
        .any(|(first, last)| (*first..=*last).contains(&code))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sorted_and_deduplicated() {
        let labels = Labels::new(vec![Label::new("b", "2"), Label::new("a", "1")]).unwrap();
        assert_eq!(labels.to_string(), r#"{a="1", b="2"}"#);
        let duplicate = Labels::new(vec![Label::new("a", "1"), Label::new("a", "2")]);
        assert!(matches!(duplicate, Err(Error::DuplicateLabel { name }) if name == "a"));
    }

    #[test]
    fn set_get_remove() {
        let mut labels = Labels::from_pairs([("job", "x"), ("__name__", "up")]);
        assert_eq!(labels.metric_name(), Some("up"));
        labels.set("job", "y");
        assert_eq!(labels.get("job"), Some("y"));
        labels.set("job", "");
        assert_eq!(labels.get("job"), None);
        assert_eq!(labels.remove("__name__").as_deref(), Some("up"));
        assert!(labels.is_empty());
    }

    #[test]
    fn order_is_label_by_label_then_length() {
        let short = Labels::from_pairs([("a", "1")]);
        let long = Labels::from_pairs([("a", "1"), ("b", "1")]);
        let bigger_value = Labels::from_pairs([("a", "2")]);
        assert!(short < long);
        assert!(long < bigger_value);
    }

    #[test]
    fn display_escapes_like_go() {
        let labels = Labels::from_pairs([("a", "x\"y\\z\n\u{1}ü")]);
        assert_eq!(labels.to_string(), "{a=\"x\\\"y\\\\z\\n\\x01ü\"}");
        let labels = Labels::from_pairs([(
            "a",
            "nb\u{a0}sp\u{200b}\u{85}日本🔥\u{e000}\u{10fffd}\u{fffd}",
        )]);
        assert_eq!(
            labels.to_string(),
            "{a=\"nb\\u00a0sp\\u200b\\u0085日本🔥\\ue000\\U0010fffd\u{fffd}\"}"
        );
    }
}
