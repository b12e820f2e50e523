//! Which stores a request should go to (Thanos' `storeMatches`, compatibility sheet §1.6 rule 7).
//!
//! A store is asked only if its time range intersects the request's and at least one of its
//! external label sets is compatible with the request's matchers. A matcher rules a label set
//! out only when the set *has* the matcher's label and the value fails the matcher: a label the
//! set lacks never excludes it, because series carry labels beyond the external ones.

use prom_model::{Labels, Matcher};

/// Why a store was skipped for a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SkipReason {
    /// The store's `[min_time, max_time]` does not intersect the request's.
    TimeRange,
    /// No external label set of the store is compatible with the request's matchers.
    ExternalLabels,
}

impl SkipReason {
    /// A short explanation, worded as Thanos logs it.
    pub fn as_str(self) -> &'static str {
        match self {
            SkipReason::TimeRange => "does not have data within this time period",
            SkipReason::ExternalLabels => "external labels does not match request label matchers",
        }
    }
}

/// What a querier knows about a store from its Info reply.
#[derive(Debug, Clone, Copy)]
pub struct StoreRange<'a> {
    /// Oldest timestamp the store may hold, in milliseconds (inclusive).
    pub min_time: i64,
    /// Newest timestamp the store may hold, in milliseconds (inclusive).
    pub max_time: i64,
    /// The store's external label sets; empty when it has none.
    pub label_sets: &'a [Labels],
}

/// Whether a store should be asked for `[min_time, max_time]` with `matchers`; `Err` says why not.
pub fn store_matches(
    store: StoreRange<'_>,
    min_time: i64,
    max_time: i64,
    matchers: &[Matcher],
) -> Result<(), SkipReason> {
    if min_time > store.max_time || max_time < store.min_time {
        return Err(SkipReason::TimeRange);
    }
    if !label_sets_match(matchers, store.label_sets) {
        return Err(SkipReason::ExternalLabels);
    }
    Ok(())
}

/// Whether any of `label_sets` is compatible with `matchers` (true when there are no sets).
pub fn label_sets_match(matchers: &[Matcher], label_sets: &[Labels]) -> bool {
    if label_sets.is_empty() {
        return true;
    }
    label_sets
        .iter()
        .any(|label_set| label_set_matches(matchers, label_set))
}

/// Whether no matcher contradicts a label that `label_set` has.
fn label_set_matches(matchers: &[Matcher], label_set: &Labels) -> bool {
    matchers
        .iter()
        .all(|matcher| match label_set.get(matcher.name()) {
            Some(value) => matcher.matches(value),
            None => true,
        })
}

#[cfg(test)]
mod tests {
    use prom_model::MatchType;

    use super::*;

    fn check(
        label_sets: &[Labels],
        matchers: &[Matcher],
        range: (i64, i64),
        expected: Result<(), SkipReason>,
    ) {
        let store = StoreRange {
            min_time: 100,
            max_time: 200,
            label_sets,
        };
        assert_eq!(store_matches(store, range.0, range.1, matchers), expected);
    }

    fn matcher(kind: MatchType, name: &str, value: &str) -> Matcher {
        Matcher::new(kind, name, value).unwrap()
    }

    #[test]
    fn time_ranges_are_inclusive() {
        let sets = [];
        check(&sets, &[], (0, 99), Err(SkipReason::TimeRange));
        check(&sets, &[], (201, 300), Err(SkipReason::TimeRange));
        check(&sets, &[], (0, 100), Ok(()));
        check(&sets, &[], (200, 300), Ok(()));
        check(&sets, &[], (120, 130), Ok(()));
    }

    #[test]
    fn missing_labels_never_exclude() {
        let sets = [Labels::from_pairs([("cluster", "eu")])];
        check(&sets, &[Matcher::equal("job", "x")], (0, 300), Ok(()));
        check(&sets, &[Matcher::equal("cluster", "eu")], (0, 300), Ok(()));
        check(
            &sets,
            &[Matcher::equal("cluster", "us")],
            (0, 300),
            Err(SkipReason::ExternalLabels),
        );
        check(
            &sets,
            &[matcher(MatchType::Regex, "cluster", "e.*")],
            (0, 300),
            Ok(()),
        );
        check(
            &sets,
            &[matcher(MatchType::NotRegex, "cluster", "e.*")],
            (0, 300),
            Err(SkipReason::ExternalLabels),
        );
    }

    #[test]
    fn any_label_set_may_match() {
        let sets = [
            Labels::from_pairs([("cluster", "eu")]),
            Labels::from_pairs([("cluster", "us")]),
        ];
        check(&sets, &[Matcher::equal("cluster", "us")], (0, 300), Ok(()));
        check(
            &sets,
            &[
                matcher(MatchType::NotEqual, "cluster", "us"),
                Matcher::equal("cluster", "us"),
            ],
            (0, 300),
            Err(SkipReason::ExternalLabels),
        );
    }
}
