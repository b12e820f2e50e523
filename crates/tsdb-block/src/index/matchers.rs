//! Selecting series by label matchers, with the semantics of Prometheus' `PostingsForMatchers`.
//!
//! A matcher that accepts the empty value also selects series without the label, so it cannot be
//! answered from that label's postings alone: it becomes a subtraction of the values it rejects
//! from everything else. Positive matchers are intersected first; negative ones are subtracted
//! from the result (from all series when there is no positive matcher). A not-matcher whose
//! label another matcher forces to be set (`{l=~".+", l!="x"}`) is subtracted as well.

use std::collections::HashSet;

use prom_model::{MatchType, Matcher};

use super::IndexReader;
use crate::error::Result;
use crate::postings::{BoxPostings, EmptyPostings, intersect, without};

/// The series of `reader` matching all of `matchers`, in reference (= label) order. No matchers
/// select nothing.
pub fn postings_for_matchers<'a>(
    reader: &'a IndexReader,
    matchers: &[Matcher],
) -> Result<BoxPostings<'a>> {
    let must_be_set: HashSet<&str> = matchers
        .iter()
        .filter(|matcher| !matcher.matches_empty())
        .map(Matcher::name)
        .collect();
    let mut positive: Vec<BoxPostings<'a>> = Vec::new();
    let mut negative: Vec<BoxPostings<'a>> = Vec::new();
    for matcher in matchers {
        if matcher.name().is_empty() && matcher.value().is_empty() {
            positive.push(reader.all_postings()?);
            continue;
        }
        let is_not = matches!(matcher.kind(), MatchType::NotEqual | MatchType::NotRegex);
        if must_be_set.contains(matcher.name()) && !(is_not && matcher.matches_empty()) {
            let values = matching_values(reader, matcher)?;
            if values.is_empty() {
                return Ok(Box::new(EmptyPostings));
            }
            positive.push(reader.postings(matcher.name(), &values)?);
        } else {
            let rejected: Vec<&str> = reader
                .label_values(matcher.name())?
                .into_iter()
                .filter(|value| !matcher.matches(value))
                .collect();
            negative.push(reader.postings(matcher.name(), &rejected)?);
        }
    }
    if positive.is_empty() && !negative.is_empty() {
        positive.push(reader.all_postings()?);
    }
    let mut result = intersect(positive);
    for subtract in negative {
        result = without(result, subtract);
    }
    Ok(result)
}

/// The values of the matcher's label that it accepts, using the literal fast paths for `=` and
/// `=~"a|b|c"`.
fn matching_values<'a>(reader: &'a IndexReader, matcher: &'a Matcher) -> Result<Vec<&'a str>> {
    match matcher.kind() {
        MatchType::Equal => return Ok(vec![matcher.value()]),
        MatchType::Regex => {
            if let Some(literals) = matcher.set_values() {
                return Ok(literals.iter().map(String::as_str).collect());
            }
        }
        MatchType::NotEqual | MatchType::NotRegex => {}
    }
    Ok(reader
        .label_values(matcher.name())?
        .into_iter()
        .filter(|value| matcher.matches(value))
        .collect())
}
