//! The inverted index of [`super::MemoryStorage`]: for every label name and value, the sorted
//! positions (in label order) of the series carrying that pair.
//!
//! Selection works like a TSDB head's: a matcher that rejects the empty value (`job="api"`,
//! `code=~"5.."`, `job!=""`) can only be satisfied by series that carry its label, so it selects
//! the union of the postings of the values it accepts, and those selections are intersected.
//! A matcher that accepts the empty value (`code!="200"`, `job!~"api|web"`, `env=""`) also
//! accepts series without the label, so it is resolved negatively: the postings of the values it
//! rejects are subtracted. Once the candidates are few, a matcher is checked against the
//! candidates' own labels instead of merging long postings lists.

use std::collections::HashMap;

use prom_model::{Labels, MatchType, Matcher};

/// Postings of every label pair; positions are series ranks in label order.
#[derive(Debug, Clone, Default)]
pub(super) struct Postings {
    /// Label name → value → ranks of the series carrying the pair, ascending.
    by_pair: HashMap<String, HashMap<String, Vec<usize>>>,
    /// How many series are indexed.
    len: usize,
}

/// A candidate set this many times smaller than a matcher's postings is filtered by label
/// instead of merged with them.
const FILTER_RATIO: usize = 4;

impl Postings {
    /// Indexes label sets given in label order (rank = position in the iterator).
    pub(super) fn build<'a>(sorted: impl Iterator<Item = &'a Labels>) -> Self {
        let mut by_pair: HashMap<String, HashMap<String, Vec<usize>>> = HashMap::new();
        let mut len = 0;
        for (rank, labels) in sorted.enumerate() {
            for label in labels.iter() {
                let values = match by_pair.get_mut(label.name.as_str()) {
                    Some(values) => values,
                    None => by_pair.entry(label.name.clone()).or_default(),
                };
                match values.get_mut(label.value.as_str()) {
                    Some(ranks) => ranks.push(rank),
                    None => {
                        values.insert(label.value.clone(), vec![rank]);
                    }
                }
            }
            len = rank + 1;
        }
        Self { by_pair, len }
    }

    /// The ranks (ascending) of the series matching every matcher; `labels_at(rank)` gives a
    /// series' labels, for matchers checked against the candidates directly.
    pub(super) fn select<'l>(
        &self,
        matchers: &[Matcher],
        labels_at: impl Fn(usize) -> Option<&'l Labels>,
    ) -> Vec<usize> {
        // Selecting matchers first (they shrink the set), equality before the rest (a direct
        // lookup, no value scan), shortest postings first among equalities.
        let mut selecting: Vec<&Matcher> = matchers.iter().filter(|m| !m.matches("")).collect();
        let excluding: Vec<&Matcher> = matchers.iter().filter(|m| m.matches("")).collect();
        selecting.sort_by_key(|m| match m.kind() {
            MatchType::Equal => (0, self.pair_len(m.name(), m.value())),
            _ => (1, 0),
        });
        let mut candidates: Option<Vec<usize>> = None;
        for matcher in selecting {
            let lists = self.value_postings(matcher, true);
            candidates = Some(match candidates {
                Some(current) if current.is_empty() => return Vec::new(),
                Some(current) if current.len() * FILTER_RATIO < total_len(&lists) => current
                    .into_iter()
                    .filter(|&rank| matcher.matches(value_of(labels_at(rank), matcher)))
                    .collect(),
                Some(current) => intersect(&current, &union(&lists)),
                None => union(&lists),
            });
        }
        let mut candidates = candidates.unwrap_or_else(|| (0..self.len).collect());
        for matcher in excluding {
            if candidates.is_empty() {
                break;
            }
            let lists = self.value_postings(matcher, false);
            candidates = if candidates.len() * FILTER_RATIO < total_len(&lists) {
                candidates
                    .into_iter()
                    .filter(|&rank| matcher.matches(value_of(labels_at(rank), matcher)))
                    .collect()
            } else {
                difference(&candidates, &union(&lists))
            };
        }
        candidates
    }

    fn pair_len(&self, name: &str, value: &str) -> usize {
        self.by_pair
            .get(name)
            .and_then(|values| values.get(value))
            .map_or(0, Vec::len)
    }

    /// The postings of the values of `matcher`'s label that it accepts (`accepted`) or rejects.
    fn value_postings(&self, matcher: &Matcher, accepted: bool) -> Vec<&[usize]> {
        let Some(values) = self.by_pair.get(matcher.name()) else {
            return Vec::new();
        };
        let listed = |wanted: &[String]| -> Vec<&[usize]> {
            wanted
                .iter()
                .filter_map(|value| values.get(value.as_str()))
                .map(Vec::as_slice)
                .collect()
        };
        let set = matcher.set_values();
        match (matcher.kind(), accepted, set) {
            (MatchType::Equal, true, _) | (MatchType::NotEqual, false, _) => values
                .get(matcher.value())
                .map(Vec::as_slice)
                .into_iter()
                .collect(),
            (MatchType::Regex, true, Some(set)) | (MatchType::NotRegex, false, Some(set)) => {
                listed(set)
            }
            _ => values
                .iter()
                .filter(|(value, _)| matcher.matches(value) == accepted)
                .map(|(_, ranks)| ranks.as_slice())
                .collect(),
        }
    }
}

/// The value of `matcher`'s label in `labels`, `""` when missing.
fn value_of<'l>(labels: Option<&'l Labels>, matcher: &Matcher) -> &'l str {
    labels
        .and_then(|labels| labels.get(matcher.name()))
        .unwrap_or("")
}

fn total_len(lists: &[&[usize]]) -> usize {
    lists.iter().map(|list| list.len()).sum()
}

/// The union of ascending lists; the lists of one label's values are disjoint (a series has
/// one value per label), so no duplicates arise, but they are removed anyway.
fn union(lists: &[&[usize]]) -> Vec<usize> {
    match lists {
        [] => Vec::new(),
        [one] => one.to_vec(),
        _ => {
            let mut all: Vec<usize> = Vec::with_capacity(total_len(lists));
            for list in lists {
                all.extend_from_slice(list);
            }
            all.sort_unstable();
            all.dedup();
            all
        }
    }
}

/// The elements of both ascending lists.
fn intersect(a: &[usize], b: &[usize]) -> Vec<usize> {
    let (small, large) = if a.len() <= b.len() { (a, b) } else { (b, a) };
    let mut out = Vec::with_capacity(small.len());
    if small.len().saturating_mul(16) < large.len() {
        // Far shorter: binary-search each element in the remaining part of the longer list.
        let mut rest = large;
        for &x in small {
            let at = rest.partition_point(|&y| y < x);
            rest = &rest[at..];
            if rest.first() == Some(&x) {
                out.push(x);
            }
        }
        return out;
    }
    let (mut i, mut j) = (0, 0);
    while i < small.len() && j < large.len() {
        match small[i].cmp(&large[j]) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                out.push(small[i]);
                i += 1;
                j += 1;
            }
        }
    }
    out
}

/// The elements of ascending `a` not in ascending `b`.
fn difference(a: &[usize], b: &[usize]) -> Vec<usize> {
    let mut out = Vec::with_capacity(a.len());
    let mut j = 0;
    for &x in a {
        while j < b.len() && b[j] < x {
            j += 1;
        }
        if b.get(j) != Some(&x) {
            out.push(x);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_operations_on_sorted_lists() {
        assert_eq!(intersect(&[1, 3, 5, 7], &[3, 4, 5, 8]), [3, 5]);
        let long: Vec<usize> = (0..200).collect();
        assert_eq!(intersect(&[2, 150, 199, 500], &long), [2, 150, 199]);
        assert_eq!(intersect(&long, &[7]), [7]);
        assert!(intersect(&[], &long).is_empty());
        assert_eq!(union(&[&[1, 4], &[2, 3], &[9]]), [1, 2, 3, 4, 9]);
        assert_eq!(union(&[&[1, 4]]), [1, 4]);
        assert!(union(&[]).is_empty());
        assert_eq!(difference(&[1, 2, 3, 4, 5], &[0, 2, 5, 6]), [1, 3, 4]);
        assert_eq!(difference(&[1, 2], &[]), [1, 2]);
    }
}
