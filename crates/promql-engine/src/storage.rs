//! The series source the evaluator reads from, and an in-memory implementation.
//!
//! [`Queryable::select`] hands back a lazy stream of series whose samples are themselves a lazy
//! stream, so an implementation backed by TSDB chunks can decode while the engine consumes.

use std::collections::BTreeMap;
use std::fmt;

use prom_model::{Labels, MatchType, Matcher, Sample};

/// An error from a series source.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct StorageError {
    /// What failed.
    pub message: String,
}

impl StorageError {
    /// An error with a message.
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
        }
    }
}

/// What the engine is about to do with the selected series; a source may use it to prune.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SelectHints {
    /// First timestamp (ms, inclusive) whose samples may be needed.
    pub start: i64,
    /// Last timestamp (ms, inclusive) whose samples may be needed.
    pub end: i64,
    /// Evaluation step of the query in ms (0 for an instant query).
    pub step: i64,
    /// The function that consumes the selector, if any (`rate`, `sum`, ...).
    pub func: Option<String>,
    /// The range of a range selector in ms (0 for an instant selector).
    pub range: i64,
    /// Grouping labels of the enclosing aggregation.
    pub grouping: Vec<String>,
    /// Whether `grouping` is a `by` list (true) or a `without` list (false).
    pub by: bool,
}

/// A lazy stream of samples in time order.
pub type SampleStream<'a> = Box<dyn Iterator<Item = Result<Sample, StorageError>> + 'a>;

/// One selected series: its labels and a lazy stream of its float samples.
pub struct SelectedSeries<'a> {
    /// The series' labels.
    pub labels: Labels,
    /// Its samples within the hinted time range (more are allowed; the engine filters).
    pub samples: SampleStream<'a>,
    /// Start timestamps (created-at times) of samples, keyed by sample timestamp, when the source
    /// knows them; `rate`, `increase`, `irate`, `resets` and `start_timestamp` use them.
    pub start_timestamps: Option<BTreeMap<i64, i64>>,
}

impl fmt::Debug for SelectedSeries<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SelectedSeries")
            .field("labels", &self.labels)
            .finish_non_exhaustive()
    }
}

/// A lazy stream of selected series, sorted by labels.
pub type SeriesStream<'a> = Box<dyn Iterator<Item = Result<SelectedSeries<'a>, StorageError>> + 'a>;

/// A source of series: everything the evaluator needs from storage.
pub trait Queryable {
    /// The series matching all `matchers`, with samples covering `hints.start..=hints.end`.
    fn select<'a>(
        &'a self,
        matchers: &[Matcher],
        hints: &SelectHints,
    ) -> Result<SeriesStream<'a>, StorageError>;
}

/// Series held in memory, sorted by labels; for tests, benchmarks and the conformance runner.
///
/// Like a TSDB's postings, an index by metric name lets a selector naming its metric
/// (`__name__="x"`) visit only that metric's series instead of every stored series.
#[derive(Debug, Default, Clone)]
pub struct MemoryStorage {
    series: BTreeMap<Labels, Vec<Sample>>,
    start_timestamps: BTreeMap<Labels, BTreeMap<i64, i64>>,
    /// The label sets of each metric name, sorted (series without a name are under "").
    by_name: std::collections::HashMap<String, std::collections::BTreeSet<Labels>>,
}

impl MemoryStorage {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends samples to a series, keeping its samples in time order (a later sample with the
    /// same timestamp replaces the earlier one).
    pub fn append(&mut self, labels: Labels, samples: impl IntoIterator<Item = Sample>) {
        let name = labels.metric_name().unwrap_or("");
        if !self
            .by_name
            .get(name)
            .is_some_and(|set| set.contains(&labels))
        {
            self.by_name
                .entry(name.to_string())
                .or_default()
                .insert(labels.clone());
        }
        let stored = self.series.entry(labels).or_default();
        stored.extend(samples);
        stored.sort_by_key(|sample| sample.t);
        stored.dedup_by(|later, earlier| {
            if later.t == earlier.t {
                *earlier = *later;
                true
            } else {
                false
            }
        });
    }

    /// Records start timestamps for samples of a series: `(sample timestamp, start timestamp)`.
    pub fn set_start_timestamps(
        &mut self,
        labels: Labels,
        start_timestamps: impl IntoIterator<Item = (i64, i64)>,
    ) {
        self.start_timestamps
            .entry(labels)
            .or_default()
            .extend(start_timestamps);
    }

    /// Drops every series.
    pub fn clear(&mut self) {
        self.series.clear();
        self.by_name.clear();
        self.start_timestamps.clear();
    }

    /// How many series are stored.
    pub fn len(&self) -> usize {
        self.series.len()
    }

    /// Whether nothing is stored.
    pub fn is_empty(&self) -> bool {
        self.series.is_empty()
    }
}

impl Queryable for MemoryStorage {
    fn select<'a>(
        &'a self,
        matchers: &[Matcher],
        hints: &SelectHints,
    ) -> Result<SeriesStream<'a>, StorageError> {
        let matchers = matchers.to_vec();
        let (start, end) = (hints.start, hints.end);
        // A selector naming its metric visits that metric's series only (in label order).
        let named = matchers
            .iter()
            .find(|m| m.name() == prom_model::METRIC_NAME && m.kind() == MatchType::Equal)
            .map(|m| m.value().to_string());
        let candidates: Box<dyn Iterator<Item = (&Labels, &Vec<Sample>)> + 'a> = match named {
            Some(name) => Box::new(
                self.by_name
                    .get(&name)
                    .into_iter()
                    .flatten()
                    .filter_map(|labels| self.series.get_key_value(labels)),
            ),
            None => Box::new(self.series.iter()),
        };
        let iter = candidates
            .filter(move |(labels, _)| {
                matchers
                    .iter()
                    .all(|matcher| matcher.matches(labels.get(matcher.name()).unwrap_or("")))
            })
            .filter_map(move |(labels, samples)| {
                let from = samples.partition_point(|sample| sample.t < start);
                let to = samples.partition_point(|sample| sample.t <= end);
                if from >= to {
                    return None;
                }
                let stream: SampleStream<'a> = Box::new(samples[from..to].iter().copied().map(Ok));
                let start_timestamps = self
                    .start_timestamps
                    .get(labels)
                    .map(|all| all.range(start..=end).map(|(t, st)| (*t, *st)).collect());
                Some(Ok(SelectedSeries {
                    labels: labels.clone(),
                    samples: stream,
                    start_timestamps,
                }))
            });
        Ok(Box::new(iter))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels_of(storage: &MemoryStorage, matchers: &[Matcher]) -> Vec<String> {
        let hints = SelectHints {
            start: 0,
            end: 1_000,
            ..SelectHints::default()
        };
        let stream = storage
            .select(matchers, &hints)
            .unwrap_or_else(|error| panic!("{error}"));
        stream
            .map(|series| series.map(|s| s.labels.to_string()))
            .collect::<Result<Vec<_>, _>>()
            .unwrap_or_else(|error| panic!("{error}"))
    }

    #[test]
    fn the_name_index_selects_what_a_scan_selects() {
        let mut storage = MemoryStorage::new();
        for (name, job) in [("a", "x"), ("a", "y"), ("b", "x"), ("", "x"), ("a", "z")] {
            let mut pairs = vec![("job", job)];
            if !name.is_empty() {
                pairs.push(("__name__", name));
            }
            storage.append(Labels::from_pairs(pairs), [Sample::new(10, 1.0)]);
        }
        // Appending to an existing series does not list it twice.
        storage.append(
            Labels::from_pairs([("__name__", "a"), ("job", "x")]),
            [Sample::new(20, 2.0)],
        );
        let eq = |name: &str, value: &str| Matcher::equal(name, value);
        let all_a = labels_of(&storage, &[eq("__name__", "a")]);
        assert_eq!(
            all_a,
            [
                "{__name__=\"a\", job=\"x\"}",
                "{__name__=\"a\", job=\"y\"}",
                "{__name__=\"a\", job=\"z\"}"
            ]
        );
        let scanned = labels_of(
            &storage,
            &[Matcher::new(MatchType::Regex, "__name__", "a").unwrap_or_else(|e| panic!("{e}"))],
        );
        assert_eq!(all_a, scanned);
        assert_eq!(
            labels_of(&storage, &[eq("__name__", "a"), eq("job", "y")]),
            ["{__name__=\"a\", job=\"y\"}"]
        );
        assert!(labels_of(&storage, &[eq("__name__", "missing")]).is_empty());
        assert_eq!(labels_of(&storage, &[eq("job", "x")]).len(), 3);
    }
}
