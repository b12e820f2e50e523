//! [`MemoryStorage`]: series held in memory behind an inverted index.

use std::collections::{BTreeMap, HashMap};
use std::sync::OnceLock;

use prom_model::{Labels, Matcher, Sample};

use super::postings::Postings;
use super::{Queryable, SampleStream, SelectHints, SelectedSeries, SeriesStream, StorageError};

/// Series held in memory; for tests, benchmarks and the conformance runner.
///
/// Like a TSDB head, an inverted index (the series of every label pair) lets a selector visit
/// only the series its matchers can accept instead of every stored series; series come out
/// sorted by labels. The index is built on the first selection after a new series arrived.
#[derive(Debug, Default, Clone)]
pub struct MemoryStorage {
    /// Samples by series id (ids in order of arrival).
    series: Vec<StoredSeries>,
    /// The id of every label set, in label order.
    ids: BTreeMap<Labels, usize>,
    start_timestamps: HashMap<Labels, BTreeMap<i64, i64>>,
    /// Postings over the series ranks in label order, and the id at each rank; empty until the
    /// first selection after a change.
    index: OnceLock<Index>,
}

#[derive(Debug, Clone)]
struct StoredSeries {
    labels: Labels,
    samples: Vec<Sample>,
    /// Timestamps of the first and last sample (meaningless without samples): read beside the
    /// labels, so a series outside a query's range is skipped without touching its samples.
    span: (i64, i64),
}

impl StoredSeries {
    /// Appends samples, keeping them in time order (a later sample with the same timestamp
    /// replaces the earlier one).
    fn extend(&mut self, samples: impl IntoIterator<Item = Sample>) {
        let stored = &mut self.samples;
        let known = stored.len();
        stored.extend(samples);
        if !stored[known.saturating_sub(1)..].is_sorted_by(|a, b| a.t < b.t) {
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
        if let (Some(first), Some(last)) = (stored.first(), stored.last()) {
            self.span = (first.t, last.t);
        }
    }
}

#[derive(Debug, Clone)]
struct Index {
    postings: Postings,
    /// Series id at each rank.
    by_rank: Vec<usize>,
}

impl MemoryStorage {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends samples to a series, keeping its samples in time order (a later sample with the
    /// same timestamp replaces the earlier one).
    pub fn append(&mut self, labels: Labels, samples: impl IntoIterator<Item = Sample>) {
        let id = match self.ids.get(&labels) {
            Some(&id) => id,
            None => {
                let id = self.series.len();
                self.ids.insert(labels.clone(), id);
                self.series.push(StoredSeries {
                    labels,
                    samples: Vec::new(),
                    span: (0, 0),
                });
                self.index.take();
                id
            }
        };
        if let Some(stored) = self.series.get_mut(id) {
            stored.extend(samples);
        }
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
        self.ids.clear();
        self.start_timestamps.clear();
        self.index.take();
    }

    /// How many series are stored.
    pub fn len(&self) -> usize {
        self.series.len()
    }

    /// Whether nothing is stored.
    pub fn is_empty(&self) -> bool {
        self.series.is_empty()
    }

    fn index(&self) -> &Index {
        self.index.get_or_init(|| Index {
            postings: Postings::build(self.ids.keys()),
            by_rank: self.ids.values().copied().collect(),
        })
    }
}

impl Queryable for MemoryStorage {
    fn select<'a>(
        &'a self,
        matchers: &[Matcher],
        hints: &SelectHints,
    ) -> Result<SeriesStream<'a>, StorageError> {
        let (start, end) = (hints.start, hints.end);
        let index = self.index();
        let series_at = |rank: usize| index.by_rank.get(rank).and_then(|&id| self.series.get(id));
        let ranks = index.postings.select(matchers, |rank| {
            series_at(rank).map(|series| &series.labels)
        });
        let iter = ranks.into_iter().filter_map(move |rank| {
            let series = series_at(rank)?;
            let samples = &series.samples;
            if samples.is_empty() || series.span.1 < start || series.span.0 > end {
                return None;
            }
            let from = count_before(samples, series.span, |t| t < start, start);
            let to = count_before(samples, series.span, |t| t <= end, end);
            if from >= to {
                return None;
            }
            let stream: SampleStream<'a> = Box::new(samples[from..to].iter().copied().map(Ok));
            let start_timestamps = if self.start_timestamps.is_empty() {
                None
            } else {
                self.start_timestamps
                    .get(&series.labels)
                    .map(|all| all.range(start..=end).map(|(t, st)| (*t, *st)).collect())
            };
            Some(Ok(SelectedSeries {
                labels: series.labels.clone(),
                samples: stream,
                start_timestamps,
            }))
        });
        Ok(Box::new(iter))
    }

    /// Series come out in rank order, which is label order.
    fn streams_sorted(&self) -> bool {
        true
    }
}

/// How many samples (a prefix, as samples are in time order) satisfy `before`, a predicate on
/// the timestamp that holds up to about `t` and fails after it; `first` and `last` are the
/// timestamps of the first and last sample.
///
/// A plain binary search over a long series costs a cache miss per probe; samples are nearly
/// evenly spaced, so the position is guessed by interpolation and bracketed by galloping from
/// the guess, which touches a few neighbouring cache lines instead.
fn count_before(
    samples: &[Sample],
    (first, last): (i64, i64),
    before: impl Fn(i64) -> bool,
    t: i64,
) -> usize {
    if samples.is_empty() || !before(first) {
        return 0;
    }
    if before(last) {
        return samples.len();
    }
    // Here `before(samples[0])` holds and `before(samples[len - 1])` fails, so len >= 2 and the
    // first sample is older than the last.
    let top = samples.len() - 1;
    let span = i128::from(last) - i128::from(first);
    let offset = (i128::from(t) - i128::from(first)).clamp(0, span);
    let guess = usize::try_from(offset * (top as i128) / span.max(1))
        .unwrap_or(top)
        .clamp(1, top);
    // Bracket the answer: `before` holds at `low`, fails at `high`.
    let (mut low, mut high) = (guess - 1, guess);
    let mut step = 1;
    if before(samples[guess].t) {
        low = guess;
        loop {
            high = low.saturating_add(step).min(top);
            if high == top || !before(samples[high].t) {
                break;
            }
            low = high;
            step *= 2;
        }
    } else if !before(samples[low].t) {
        high = low;
        loop {
            low = high.saturating_sub(step);
            if low == 0 || before(samples[low].t) {
                break;
            }
            high = low;
            step *= 2;
        }
    }
    low + 1 + samples[low + 1..high].partition_point(|sample| before(sample.t))
}

#[cfg(test)]
mod tests {
    use prom_model::MatchType;

    use super::*;

    fn hints(start: i64, end: i64) -> SelectHints {
        SelectHints {
            start,
            end,
            ..SelectHints::default()
        }
    }

    fn selected(storage: &MemoryStorage, matchers: &[Matcher]) -> Vec<Labels> {
        let stream = storage
            .select(matchers, &hints(0, 1_000))
            .unwrap_or_else(|error| panic!("{error}"));
        stream
            .map(|series| series.map(|s| s.labels))
            .collect::<Result<Vec<_>, _>>()
            .unwrap_or_else(|error| panic!("{error}"))
    }

    /// What a scan of every series selects: the oracle the index must agree with.
    fn scanned(storage: &MemoryStorage, matchers: &[Matcher]) -> Vec<Labels> {
        let mut all: Vec<Labels> = storage
            .series
            .iter()
            .filter(|series| {
                matchers
                    .iter()
                    .all(|m| m.matches(series.labels.get(m.name()).unwrap_or("")))
            })
            .map(|series| series.labels.clone())
            .collect();
        all.sort();
        all
    }

    fn matcher(kind: MatchType, name: &str, value: &str) -> Matcher {
        Matcher::new(kind, name, value).unwrap_or_else(|error| panic!("{error}"))
    }

    /// Series of two metrics and one nameless series, appended out of label order; some lack
    /// `code`, one has `env` only, and a `bulk` job has many instances.
    fn storage() -> MemoryStorage {
        let mut storage = MemoryStorage::new();
        let mut add = |pairs: &[(&str, &str)]| {
            storage.append(Labels::from_pairs(pairs.to_vec()), [Sample::new(10, 1.0)]);
        };
        for job in ["web", "api", "db"] {
            for code in ["500", "200"] {
                add(&[("__name__", "requests"), ("job", job), ("code", code)]);
            }
            add(&[("__name__", "memory"), ("job", job)]);
        }
        add(&[("__name__", "requests"), ("job", "api")]);
        add(&[("job", "api"), ("code", "200")]);
        add(&[("__name__", "up"), ("env", "prod")]);
        // Enough series that a few candidates are filtered by label rather than merged.
        for instance in 0..60 {
            let instance = format!("host-{instance}");
            let code = if instance.ends_with('7') {
                "500"
            } else {
                "200"
            };
            add(&[
                ("__name__", "requests"),
                ("job", "bulk"),
                ("instance", &instance),
                ("code", code),
            ]);
        }
        storage
    }

    #[test]
    fn every_matcher_type_selects_what_a_scan_selects() {
        use MatchType::{Equal, NotEqual, NotRegex, Regex};
        let storage = storage();
        let single = [
            (Equal, "__name__", "requests"),
            (Equal, "job", "api"),
            (Equal, "code", ""),
            (Equal, "missing", ""),
            (Equal, "missing", "x"),
            (NotEqual, "code", "200"),
            (NotEqual, "code", ""),
            (NotEqual, "missing", ""),
            (Regex, "__name__", "req.*|mem.*"),
            (Regex, "__name__", "requests|up"),
            (Regex, "job", "a.*"),
            (Regex, "instance", "host-1.*"),
            (NotRegex, "instance", "host-.*0"),
            (Regex, "code", "|500"),
            (Regex, "code", ".*"),
            (Regex, "code", ".+"),
            (NotRegex, "job", "api|web"),
            (NotRegex, "job", ".*"),
            (NotRegex, "code", "2.."),
            (NotRegex, "code", ""),
            (NotRegex, "code", "|200"),
        ];
        for (kind, name, value) in single {
            let m = matcher(kind, name, value);
            assert_eq!(
                selected(&storage, std::slice::from_ref(&m)),
                scanned(&storage, std::slice::from_ref(&m)),
                "{m}"
            );
            // Each one again behind every selecting matcher of the list.
            for (kind2, name2, value2) in single {
                let first = matcher(kind2, name2, value2);
                let both = [first, m.clone()];
                assert_eq!(
                    selected(&storage, &both),
                    scanned(&storage, &both),
                    "{} {}",
                    both[0],
                    both[1]
                );
            }
        }
    }

    #[test]
    fn selections_are_sorted_by_labels_and_complete() {
        let storage = storage();
        let requests = selected(&storage, &[Matcher::equal("__name__", "requests")]);
        assert_eq!(requests.len(), 67);
        assert!(requests.is_sorted());
        assert_eq!(
            requests.first().map(ToString::to_string).as_deref(),
            Some("{__name__=\"requests\", code=\"200\", instance=\"host-0\", job=\"bulk\"}")
        );
        // No matchers select everything, in label order.
        let everything = selected(&storage, &[]);
        assert_eq!(everything.len(), storage.len());
        assert!(everything.is_sorted());
        // A regex over the metric name equals the union of the names it lists.
        let by_regex = selected(
            &storage,
            &[matcher(MatchType::Regex, "__name__", "memory|up")],
        );
        let mut by_names = selected(&storage, &[Matcher::equal("__name__", "memory")]);
        by_names.extend(selected(&storage, &[Matcher::equal("__name__", "up")]));
        by_names.sort();
        assert_eq!(by_regex, by_names);
        assert_eq!(by_regex.len(), 4);
    }

    #[test]
    fn nothing_matches() {
        let storage = storage();
        for matchers in [
            vec![Matcher::equal("__name__", "missing")],
            vec![Matcher::equal("job", "nope")],
            vec![
                Matcher::equal("__name__", "requests"),
                Matcher::equal("job", "nope"),
            ],
            vec![
                Matcher::equal("__name__", "up"),
                matcher(MatchType::NotEqual, "env", "prod"),
            ],
            vec![matcher(MatchType::Regex, "absent_label", ".+")],
        ] {
            assert!(selected(&storage, &matchers).is_empty(), "{matchers:?}");
        }
        assert!(selected(&MemoryStorage::new(), &[]).is_empty());
    }

    #[test]
    fn appends_after_a_selection_are_seen() {
        let mut storage = storage();
        let before = selected(&storage, &[Matcher::equal("job", "api")]);
        let extra = Labels::from_pairs([("__name__", "aaa"), ("job", "api")]);
        storage.append(extra.clone(), [Sample::new(20, 2.0)]);
        // Appending to an existing series adds no series.
        storage.append(extra.clone(), [Sample::new(30, 3.0)]);
        let after = selected(&storage, &[Matcher::equal("job", "api")]);
        assert_eq!(after.len(), before.len() + 1);
        assert_eq!(after.first(), Some(&extra));
        storage.clear();
        assert!(storage.is_empty());
        assert!(selected(&storage, &[Matcher::equal("job", "api")]).is_empty());
    }

    #[test]
    fn bounds_equal_a_binary_search() {
        // Regular, irregular (a gap and a burst) and two-sample series.
        let regular: Vec<Sample> = (0..500).map(|i| Sample::new(i * 15, 0.0)).collect();
        let mut irregular: Vec<Sample> = (0..100).map(|i| Sample::new(i, 0.0)).collect();
        irregular.extend((0..50).map(|i| Sample::new(10_000 + i * 1_000, 0.0)));
        irregular.extend((0..300).map(|i| Sample::new(70_000 + i, 0.0)));
        let pair = vec![Sample::new(5, 0.0), Sample::new(9, 0.0)];
        for samples in [&regular, &irregular, &pair] {
            let last = samples.last().map_or(0, |s| s.t);
            let span = (samples.first().map_or(0, |s| s.t), last);
            for t in (-20..last + 20).chain([i64::MIN, i64::MAX]) {
                assert_eq!(
                    count_before(samples, span, |st| st < t, t),
                    samples.partition_point(|s| s.t < t),
                    "< {t}"
                );
                assert_eq!(
                    count_before(samples, span, |st| st <= t, t),
                    samples.partition_point(|s| s.t <= t),
                    "<= {t}"
                );
            }
        }
        assert_eq!(count_before(&[], (0, 0), |_| true, 0), 0);
        assert_eq!(
            count_before(&[Sample::new(3, 0.0)], (3, 3), |st| st < 4, 4),
            1
        );
    }

    #[test]
    fn samples_are_cut_to_the_hinted_range_in_time_order() {
        let mut storage = MemoryStorage::new();
        let labels = Labels::from_pairs([("__name__", "x")]);
        storage.append(labels.clone(), [Sample::new(30, 3.0), Sample::new(10, 1.0)]);
        // A later sample at a known timestamp replaces the earlier one.
        storage.append(labels.clone(), [Sample::new(20, 2.0), Sample::new(30, 4.0)]);
        storage.set_start_timestamps(labels, [(20, 5), (30, 6)]);
        let mut stream = storage
            .select(&[Matcher::equal("__name__", "x")], &hints(15, 30))
            .unwrap_or_else(|error| panic!("{error}"));
        let series = match stream.next() {
            Some(Ok(series)) => series,
            other => panic!("expected one series, got {other:?}"),
        };
        assert!(stream.next().is_none());
        let samples: Vec<(i64, f64)> = series
            .samples
            .map(|s| s.map(|s| (s.t, s.v)))
            .collect::<Result<_, _>>()
            .unwrap_or_else(|error| panic!("{error}"));
        assert_eq!(samples, [(20, 2.0), (30, 4.0)]);
        assert_eq!(
            series.start_timestamps,
            Some(BTreeMap::from([(20, 5), (30, 6)]))
        );
        // A range without samples selects no series.
        let empty = storage
            .select(&[Matcher::equal("__name__", "x")], &hints(31, 40))
            .unwrap_or_else(|error| panic!("{error}"));
        assert_eq!(empty.count(), 0);
    }
}
