//! Conversions between protobuf labels and matchers and [`prom_model`]'s types.
//!
//! Labels from the wire are trusted to be valid UTF-8 (prost checks) but not to be sorted or
//! distinct: [`labels_from_proto`] sorts and rejects repeated names. Matchers from the wire are
//! compiled with Prometheus' anchored regex semantics; a bad pattern is an
//! [`Error::InvalidMatcher`], which a server reports as `InvalidArgument`.

use std::cmp::Ordering;

use prom_model::{Labels, MatchType, Matcher};

use crate::error::{Error, Result};
use crate::proto::thanos;
use crate::proto::thanos::label_matcher::Type as MatcherType;

impl From<prom_model::Label> for thanos::Label {
    fn from(label: prom_model::Label) -> Self {
        Self {
            name: label.name,
            value: label.value,
        }
    }
}

impl From<thanos::Label> for prom_model::Label {
    fn from(label: thanos::Label) -> Self {
        Self {
            name: label.name,
            value: label.value,
        }
    }
}

/// A label set from wire labels in any order; a repeated name is an [`Error::InvalidLabels`].
pub fn labels_from_proto(labels: Vec<thanos::Label>) -> Result<Labels> {
    let labels = labels.into_iter().map(prom_model::Label::from).collect();
    Labels::new(labels).map_err(|source| Error::InvalidLabels { source })
}

/// Wire labels from a label set (sorted, as [`Labels`] always is).
pub fn labels_to_proto(labels: &Labels) -> Vec<thanos::Label> {
    labels
        .iter()
        .map(|label| thanos::Label {
            name: label.name.clone(),
            value: label.value.clone(),
        })
        .collect()
}

/// Protobuf labels from a label set it consumes: the strings move, none is copied.
pub fn labels_into_proto(labels: Labels) -> Vec<thanos::Label> {
    labels
        .into_vec()
        .into_iter()
        .map(|label| thanos::Label {
            name: label.name,
            value: label.value,
        })
        .collect()
}

/// A `thanos.ZLabelSet` (used by the Info service) from a label set.
pub fn zlabel_set_to_proto(labels: &Labels) -> thanos::ZLabelSet {
    thanos::ZLabelSet {
        labels: labels_to_proto(labels),
    }
}

/// A `thanos.LabelSet` (used by the legacy Store Info) from a label set.
pub fn label_set_to_proto(labels: &Labels) -> thanos::LabelSet {
    thanos::LabelSet {
        labels: labels_to_proto(labels),
    }
}

/// The label sets of an Info reply (`thanos.info.InfoResponse.label_sets`) as [`Labels`], e.g.
/// for [`StoreRange`](crate::selection::StoreRange); an invalid set is an error.
pub fn label_sets_from_proto(label_sets: &[thanos::ZLabelSet]) -> Result<Vec<Labels>> {
    label_sets
        .iter()
        .map(|label_set| labels_from_proto(label_set.labels.clone()))
        .collect()
}

/// Compares two sorted wire label lists as Prometheus orders series: label by label (name, then
/// value), a shorter list first when one is a prefix of the other.
pub fn compare_labels(left: &[thanos::Label], right: &[thanos::Label]) -> Ordering {
    for (left_label, right_label) in left.iter().zip(right) {
        let order = left_label
            .name
            .cmp(&right_label.name)
            .then_with(|| left_label.value.cmp(&right_label.value));
        if order != Ordering::Equal {
            return order;
        }
    }
    left.len().cmp(&right.len())
}

/// Sorts wire labels by name (then value, so the result is deterministic for invalid sets).
pub fn sort_labels(labels: &mut [thanos::Label]) {
    labels.sort_by(|left, right| {
        left.name
            .cmp(&right.name)
            .then_with(|| left.value.cmp(&right.value))
    });
}

/// The value of `name` in a wire label list, if present (linear scan; lists are short).
pub fn label_value<'a>(labels: &'a [thanos::Label], name: &str) -> Option<&'a str> {
    labels
        .iter()
        .find(|label| label.name == name)
        .map(|label| label.value.as_str())
}

/// A compiled matcher from its wire form.
pub fn matcher_from_proto(matcher: &thanos::LabelMatcher) -> Result<Matcher> {
    let kind = match MatcherType::try_from(matcher.r#type) {
        Ok(MatcherType::Eq) => MatchType::Equal,
        Ok(MatcherType::Neq) => MatchType::NotEqual,
        Ok(MatcherType::Re) => MatchType::Regex,
        Ok(MatcherType::Nre) => MatchType::NotRegex,
        Err(_) => {
            return Err(Error::UnknownMatcherType {
                name: matcher.name.clone(),
                value: matcher.r#type,
            });
        }
    };
    Matcher::new(kind, matcher.name.clone(), matcher.value.clone())
        .map_err(|source| Error::InvalidMatcher { source })
}

/// Compiled matchers from their wire form; the first bad one is the error.
pub fn matchers_from_proto(matchers: &[thanos::LabelMatcher]) -> Result<Vec<Matcher>> {
    matchers.iter().map(matcher_from_proto).collect()
}

/// The wire form of a matcher.
pub fn matcher_to_proto(matcher: &Matcher) -> thanos::LabelMatcher {
    let kind = match matcher.kind() {
        MatchType::Equal => MatcherType::Eq,
        MatchType::NotEqual => MatcherType::Neq,
        MatchType::Regex => MatcherType::Re,
        MatchType::NotRegex => MatcherType::Nre,
    };
    thanos::LabelMatcher {
        r#type: kind.into(),
        name: matcher.name().to_owned(),
        value: matcher.value().to_owned(),
    }
}

/// The wire form of several matchers.
pub fn matchers_to_proto(matchers: &[Matcher]) -> Vec<thanos::LabelMatcher> {
    matchers.iter().map(matcher_to_proto).collect()
}

/// Whether a wire label list satisfies every matcher (a missing label has the value `""`).
pub fn labels_match(labels: &[thanos::Label], matchers: &[Matcher]) -> bool {
    matchers
        .iter()
        .all(|matcher| matcher.matches(label_value(labels, matcher.name()).unwrap_or("")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wire(kind: MatcherType, name: &str, value: &str) -> thanos::LabelMatcher {
        thanos::LabelMatcher {
            r#type: kind.into(),
            name: name.to_owned(),
            value: value.to_owned(),
        }
    }

    fn label(name: &str, value: &str) -> thanos::Label {
        thanos::Label {
            name: name.to_owned(),
            value: value.to_owned(),
        }
    }

    #[test]
    fn every_matcher_type_round_trips() {
        for (kind, model_kind) in [
            (MatcherType::Eq, MatchType::Equal),
            (MatcherType::Neq, MatchType::NotEqual),
            (MatcherType::Re, MatchType::Regex),
            (MatcherType::Nre, MatchType::NotRegex),
        ] {
            let proto = wire(kind, "job", "a|b");
            let matcher = matcher_from_proto(&proto).unwrap();
            assert_eq!(matcher.kind(), model_kind);
            assert_eq!((matcher.name(), matcher.value()), ("job", "a|b"));
            assert_eq!(matcher_to_proto(&matcher), proto);
        }
    }

    #[test]
    fn regexes_keep_prometheus_semantics() {
        let matcher = matcher_from_proto(&wire(MatcherType::Re, "job", "ab")).unwrap();
        assert!(matcher.matches("ab"));
        assert!(!matcher.matches("abc"), "regex must be anchored");
        let labels = vec![label("job", "abc")];
        assert!(!labels_match(&labels, &[matcher]));
        let missing = matcher_from_proto(&wire(MatcherType::Eq, "absent", "")).unwrap();
        assert!(
            labels_match(&labels, &[missing]),
            "missing label equals empty"
        );
    }

    #[test]
    fn bad_regex_is_invalid_argument_naming_the_pattern() {
        let error = matcher_from_proto(&wire(MatcherType::Re, "job", "a(")).unwrap_err();
        assert_eq!(error.code(), tonic::Code::InvalidArgument);
        let status = tonic::Status::from(error);
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        assert!(status.message().contains("a("), "{}", status.message());
        assert!(status.message().contains("job"), "{}", status.message());
    }

    #[test]
    fn unknown_matcher_type_is_rejected() {
        let mut proto = wire(MatcherType::Eq, "job", "x");
        proto.r#type = 7;
        let error = matchers_from_proto(&[proto]).unwrap_err();
        assert!(
            matches!(error, Error::UnknownMatcherType { value: 7, .. }),
            "{error}"
        );
        assert_eq!(error.code(), tonic::Code::InvalidArgument);
    }

    #[test]
    fn labels_are_sorted_and_checked() {
        let labels = labels_from_proto(vec![label("b", "2"), label("a", "1")]).unwrap();
        assert_eq!(labels.to_string(), r#"{a="1", b="2"}"#);
        assert_eq!(
            labels_to_proto(&labels),
            vec![label("a", "1"), label("b", "2")]
        );
        let error = labels_from_proto(vec![label("a", "1"), label("a", "2")]).unwrap_err();
        assert_eq!(error.code(), tonic::Code::InvalidArgument);
    }

    #[test]
    fn info_label_sets_convert() {
        let sets = vec![
            thanos::ZLabelSet {
                labels: vec![label("b", "2"), label("a", "1")],
            },
            thanos::ZLabelSet::default(),
        ];
        let converted = label_sets_from_proto(&sets).unwrap();
        assert_eq!(converted.len(), 2);
        assert_eq!(converted[0].to_string(), r#"{a="1", b="2"}"#);
        assert!(converted[1].is_empty());
        let duplicate = vec![thanos::ZLabelSet {
            labels: vec![label("a", "1"), label("a", "1")],
        }];
        assert!(label_sets_from_proto(&duplicate).is_err());
    }

    #[test]
    fn label_order_matches_prometheus() {
        let short = [label("a", "1")];
        let long = [label("a", "1"), label("b", "1")];
        let bigger = [label("a", "2")];
        assert_eq!(compare_labels(&short, &long), Ordering::Less);
        assert_eq!(compare_labels(&long, &bigger), Ordering::Less);
        assert_eq!(compare_labels(&long, &long), Ordering::Equal);
        let model_short = labels_from_proto(short.to_vec()).unwrap();
        let model_long = labels_from_proto(long.to_vec()).unwrap();
        assert_eq!(model_short.cmp(&model_long), compare_labels(&short, &long));
    }
}
