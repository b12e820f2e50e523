//! `without_replica_labels`: dropping replica labels from series (compatibility sheet §1.6 rule 3).
//!
//! Removing labels changes the order of series, so the series are sorted again afterwards;
//! series that become equal stay separate and adjacent, for the querier to deduplicate.

use crate::convert::compare_labels;
use crate::proto::thanos;

/// Removes every label named in `names` from a label list, keeping the rest in order.
pub fn remove_labels(labels: &mut Vec<thanos::Label>, names: &[String]) {
    if names.is_empty() {
        return;
    }
    labels.retain(|label| !names.contains(&label.name));
}

/// Removes the named labels from every series and sorts the series by their new labels
/// (stable, so equal series keep their relative order).
pub fn without_replica_labels(
    mut series: Vec<thanos::Series>,
    names: &[String],
) -> Vec<thanos::Series> {
    if names.is_empty() {
        return series;
    }
    for one in &mut series {
        remove_labels(&mut one.labels, names);
    }
    series.sort_by(|left, right| compare_labels(&left.labels, &right.labels));
    series
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(pairs: &[(&str, &str)]) -> thanos::Series {
        thanos::Series {
            labels: pairs
                .iter()
                .map(|(name, value)| thanos::Label {
                    name: (*name).to_owned(),
                    value: (*value).to_owned(),
                })
                .collect(),
            chunks: Vec::new(),
        }
    }

    #[test]
    fn removes_and_resorts() {
        let input = vec![
            series(&[("a", "1"), ("replica", "x"), ("z", "2")]),
            series(&[("a", "1"), ("replica", "y"), ("z", "1")]),
            series(&[("a", "1"), ("replica", "z"), ("z", "2")]),
        ];
        let output = without_replica_labels(input, &["replica".to_owned()]);
        let expected = vec![
            series(&[("a", "1"), ("z", "1")]),
            series(&[("a", "1"), ("z", "2")]),
            series(&[("a", "1"), ("z", "2")]),
        ];
        assert_eq!(output, expected);
    }

    #[test]
    fn no_names_keeps_input() {
        let input = vec![series(&[("b", "1")]), series(&[("a", "1")])];
        assert_eq!(without_replica_labels(input.clone(), &[]), input);
    }
}
