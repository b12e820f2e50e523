//! A selector read once from a store that streams in label order
//! ([`Queryable::streams_sorted`]) is read as the store streams it: the engine pulls a series
//! from the store's stream only shortly before it decodes it, instead of collecting the whole
//! selection before evaluating (so a store's work overlaps the engine's). The stream is checked:
//! a series out of label order fails the query, an adjacent repeat is read once. A store that
//! does not say it streams sorted is collected and sorted first, as before.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::cell::Cell;
use std::rc::Rc;
use std::sync::Arc;

use prom_model::{Labels, Matcher, Sample};
use promql_engine::{
    Engine, EngineOptions, ErrorKind, MemoryBudget, MemoryStorage, QUERY_ALLOWANCE, QueryOptions,
    QueryResult, Queryable, SampleStream, SelectHints, SelectedSeries, SeriesStream, StorageError,
    Value,
};

const MINUTE: i64 = 60_000;
/// Series of the large selections: about five blocks of 1,024.
const MANY: usize = 5_000;
/// Series a pass reads at a time.
const BLOCK: usize = 1_024;

/// How a [`Store`] serves what its [`MemoryStorage`] selects.
#[derive(Debug, Clone, Copy, Default)]
struct Serve {
    /// What `streams_sorted` answers.
    sorted: bool,
    /// Stream the series in reverse label order.
    reversed: bool,
    /// Stream every series twice in a row.
    doubled: bool,
    /// Fail the stream after this many series.
    fail_after: Option<usize>,
}

/// What a [`Store`] saw: counters shared with the streams it hands out.
#[derive(Debug, Default)]
struct Seen {
    /// `select` calls.
    selects: Cell<usize>,
    /// Series pulled from the streams.
    pulled: Cell<usize>,
    /// Series whose samples were read.
    decoded: Cell<usize>,
    /// The most series pulled ahead of the one whose samples were first read.
    lead: Cell<usize>,
}

/// A store counting how far the engine pulls series ahead of decoding them.
struct Store {
    inner: MemoryStorage,
    serve: Serve,
    seen: Rc<Seen>,
}

/// A series' samples, noting when they are first read how many series were pulled by then.
struct Noting<'a> {
    samples: SampleStream<'a>,
    /// Series pulled when this one was (its position in the stream, from 1).
    position: usize,
    seen: Rc<Seen>,
    noted: Cell<bool>,
}

impl Noting<'_> {
    fn note(&self) {
        if !self.noted.replace(true) {
            let seen = &self.seen;
            seen.decoded.set(seen.decoded.get() + 1);
            let lead = seen.pulled.get().saturating_sub(self.position);
            seen.lead.set(seen.lead.get().max(lead));
        }
    }
}

impl Iterator for Noting<'_> {
    type Item = Result<Sample, StorageError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.note();
        self.samples.next()
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.note();
        self.samples.size_hint()
    }
}

impl Queryable for Store {
    fn select<'a>(
        &'a self,
        matchers: &[Matcher],
        hints: &SelectHints,
    ) -> Result<SeriesStream<'a>, StorageError> {
        self.seen.selects.set(self.seen.selects.get() + 1);
        // Each series selected again on demand, so the stream stays lazy and can repeat one.
        let labels: Vec<Labels> = self
            .inner
            .select(matchers, hints)?
            .map(|series| series.map(|series| series.labels))
            .collect::<Result<_, _>>()?;
        let mut order: Vec<Labels> = Vec::new();
        for one in labels {
            if self.serve.doubled {
                order.push(one.clone());
            }
            order.push(one);
        }
        if self.serve.reversed {
            order.reverse();
        }
        let hints = hints.clone();
        let seen = Rc::clone(&self.seen);
        let fail_after = self.serve.fail_after;
        Ok(Box::new(order.into_iter().enumerate().map(
            move |(index, labels)| {
                if fail_after == Some(index) {
                    return Err(StorageError::new("store went away"));
                }
                seen.pulled.set(seen.pulled.get() + 1);
                let exact: Vec<Matcher> = labels
                    .iter()
                    .map(|label| Matcher::equal(label.name.as_str(), label.value.as_str()))
                    .collect();
                let series = self
                    .inner
                    .select(&exact, &hints)?
                    .find(|series| series.as_ref().map_or(true, |s| s.labels == labels))
                    .ok_or_else(|| StorageError::new("series vanished"))??;
                Ok(SelectedSeries {
                    samples: Box::new(Noting {
                        samples: series.samples,
                        position: seen.pulled.get(),
                        seen: Rc::clone(&seen),
                        noted: Cell::new(false),
                    }),
                    ..series
                })
            },
        )))
    }

    fn streams_sorted(&self) -> bool {
        self.serve.sorted
    }
}

/// `count` series `x{instance, job}` (ten jobs) sampled every 15s over `points` scrapes.
fn data(count: usize, points: i64) -> MemoryStorage {
    let mut storage = MemoryStorage::new();
    for i in 0..count {
        let labels = Labels::from_pairs([
            ("__name__", "x"),
            ("instance", &format!("host-{i:05}")),
            ("job", &format!("job-{}", i % 10)),
        ]);
        storage.append(
            labels,
            (0..points).map(|k| Sample::new(k * 15_000, (k * (1 + i as i64 % 7)) as f64)),
        );
    }
    storage
}

fn store(count: usize, serve: Serve) -> Store {
    Store {
        inner: data(count, 40),
        serve,
        seen: Rc::new(Seen::default()),
    }
}

fn range(storage: &dyn Queryable, query: &str) -> promql_engine::Result<QueryResult> {
    Engine::new(EngineOptions::default()).range_query(
        storage,
        query,
        5 * MINUTE,
        9 * MINUTE,
        MINUTE,
        &QueryOptions::default(),
    )
}

fn instant(storage: &dyn Queryable, query: &str) -> promql_engine::Result<QueryResult> {
    Engine::new(EngineOptions::default()).instant_query(
        storage,
        query,
        9 * MINUTE,
        &QueryOptions::default(),
    )
}

/// A result as comparable text.
fn text(result: &QueryResult) -> String {
    format!("{:?}", result.value)
}

fn matrix_len(result: &QueryResult) -> usize {
    match &result.value {
        Value::Matrix(matrix) => matrix.len(),
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn a_sorted_stream_is_read_as_it_arrives_not_collected_first() {
    for (query, rows) in [
        ("x", MANY),
        ("rate(x[5m])", MANY),
        ("sum(rate(x[5m]))", 1),
        ("max(x * 2)", 1),
    ] {
        let store = store(
            MANY,
            Serve {
                sorted: true,
                ..Serve::default()
            },
        );
        let result = range(&store, query).unwrap_or_else(|error| panic!("{query}: {error}"));
        assert_eq!(matrix_len(&result), rows, "{query}");
        let seen = &store.seen;
        assert_eq!(seen.selects.get(), 1, "{query}: selected once");
        assert_eq!(seen.pulled.get(), MANY, "{query}: every series pulled");
        assert_eq!(seen.decoded.get(), MANY, "{query}: every series decoded");
        // Pulled at most a block ahead of what is decoded: the first block is evaluated
        // before the rest of the selection is pulled.
        assert!(
            seen.lead.get() <= BLOCK,
            "{query}: {} series pulled ahead of the one decoded",
            seen.lead.get()
        );
    }
}

#[test]
fn an_unsorted_store_is_collected_first_as_before() {
    let store = store(MANY, Serve::default());
    let result = range(&store, "sum(rate(x[5m]))").expect("answers");
    assert_eq!(matrix_len(&result), 1);
    assert_eq!(store.seen.selects.get(), 1);
    // Every series pulled before the first is decoded.
    assert_eq!(store.seen.lead.get(), MANY - 1);
}

#[test]
fn an_instant_grouped_aggregation_folds_the_selection_as_it_arrives() {
    // With one step a fold holds a few bytes per group whatever the groups: `by`, `without`
    // and many groups alike are folded without reading the label sets first.
    for query in [
        "sum by (job) (rate(x[5m]))",
        "count without (instance) (x)",
        "max by (instance) (x)",
    ] {
        let store = store(
            MANY,
            Serve {
                sorted: true,
                ..Serve::default()
            },
        );
        let result = instant(&store, query).unwrap_or_else(|error| panic!("{query}: {error}"));
        let seen = &store.seen;
        assert_eq!(seen.selects.get(), 1, "{query}: selected once");
        assert!(
            seen.lead.get() <= BLOCK,
            "{query}: {} series pulled ahead of the one decoded",
            seen.lead.get()
        );
        let collected = self::store(MANY, Serve::default());
        assert_eq!(
            text(&result),
            text(&instant(&collected, query).unwrap()),
            "{query}"
        );
    }
}

#[test]
fn grouping_by_labels_reads_a_streamed_selection_first_then_once() {
    // `sum by (job)` counts its groups over the label sets before choosing how to aggregate:
    // the deferred selection is selected then, and read from that selection (not again).
    let store = store(
        MANY,
        Serve {
            sorted: true,
            ..Serve::default()
        },
    );
    let result = range(&store, "sum by (job) (rate(x[5m]))").expect("answers");
    assert_eq!(matrix_len(&result), 10);
    assert_eq!(store.seen.selects.get(), 1);
    assert_eq!(store.seen.decoded.get(), MANY);
    let collected = self::store(MANY, Serve::default());
    assert_eq!(
        text(&result),
        text(&range(&collected, "sum by (job) (rate(x[5m]))").unwrap())
    );
}

#[test]
fn streamed_and_collected_selections_answer_the_same() {
    let queries = [
        "x",
        "rate(x[5m])",
        "sum(rate(x[5m]))",
        "sum without (instance) (x)",
        "count(x > 20)",
        "topk(3, x)",
        "x offset 1m",
        "x @ 300",
        "absent(x)",
        "absent(nope)",
        "x{job=\"job-3\"} or x{job=\"job-4\"}",
        "x{job=\"job-3\"} / on (instance) x{job=\"job-3\"}",
        "max_over_time(x[3m:1m])",
        "{__name__=\"x\", job=\"job-1\" or job=\"job-2\"}",
        "info(x)",
    ];
    for query in queries {
        let streamed = store(
            300,
            Serve {
                sorted: true,
                ..Serve::default()
            },
        );
        let collected = store(300, Serve::default());
        let mine = range(&streamed, query).unwrap_or_else(|error| panic!("{query}: {error}"));
        let theirs = range(&collected, query).unwrap_or_else(|error| panic!("{query}: {error}"));
        assert_eq!(text(&mine), text(&theirs), "{query}");
        assert_eq!(mine.warnings, theirs.warnings, "{query}");
        assert_eq!(mine.infos, theirs.infos, "{query}");
        assert_eq!(
            streamed.seen.selects.get(),
            collected.seen.selects.get(),
            "{query}: as many selections"
        );
    }
    // A range vector at the root of an instant query reads the whole selection.
    let streamed = store(
        300,
        Serve {
            sorted: true,
            ..Serve::default()
        },
    );
    let collected = store(300, Serve::default());
    let mine = instant(&streamed, "x[2m]").expect("answers");
    assert_eq!(text(&mine), text(&instant(&collected, "x[2m]").unwrap()));
    assert_eq!(streamed.seen.selects.get(), 1);
}

#[test]
fn a_stream_out_of_label_order_fails_the_query() {
    let store = store(
        20,
        Serve {
            sorted: true,
            reversed: true,
            ..Serve::default()
        },
    );
    let error = range(&store, "x{job=~\"job-.*\"}").expect_err("out of order");
    assert_eq!(error.kind(), ErrorKind::Execution, "{error}");
    let message = error.to_string();
    assert!(message.contains("out of label order"), "{message}");
    assert!(message.contains("job=~\"job-.*\""), "{message}");
}

#[test]
fn an_unsorted_store_that_does_not_say_it_streams_sorted_is_sorted() {
    let reversed = store(
        20,
        Serve {
            reversed: true,
            ..Serve::default()
        },
    );
    let plain = store(20, Serve::default());
    let mine = range(&reversed, "x").expect("answers");
    assert_eq!(matrix_len(&mine), 20);
    assert_eq!(text(&mine), text(&range(&plain, "x").unwrap()));
}

#[test]
fn adjacent_repeats_of_a_series_are_read_once() {
    for sorted in [true, false] {
        let doubled = store(
            2_100,
            Serve {
                sorted,
                doubled: true,
                ..Serve::default()
            },
        );
        let plain = store(2_100, Serve::default());
        for query in ["x", "sum(rate(x[5m]))", "count by (job) (x)"] {
            let mine = range(&doubled, query).unwrap_or_else(|error| panic!("{query}: {error}"));
            assert_eq!(
                text(&mine),
                text(&range(&plain, query).unwrap()),
                "{query} (sorted: {sorted})"
            );
        }
    }
}

#[test]
fn a_store_error_in_the_stream_fails_the_query() {
    for sorted in [true, false] {
        let store = store(
            3_000,
            Serve {
                sorted,
                fail_after: Some(2_500),
                ..Serve::default()
            },
        );
        let error = range(&store, "sum(rate(x[5m]))").expect_err("the store failed");
        assert_eq!(error.kind(), ErrorKind::Internal, "{error}");
        assert!(error.to_string().contains("store went away"), "{error}");
    }
}

#[test]
fn a_cancelled_query_stops_pulling() {
    let store = store(
        MANY,
        Serve {
            sorted: true,
            ..Serve::default()
        },
    );
    let cancel = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let options = QueryOptions {
        cancel: Some(cancel),
        ..QueryOptions::default()
    };
    let error = Engine::new(EngineOptions::default())
        .range_query(
            &store,
            "sum(rate(x[5m]))",
            5 * MINUTE,
            9 * MINUTE,
            MINUTE,
            &options,
        )
        .expect_err("cancelled");
    assert_eq!(error.kind(), ErrorKind::Canceled, "{error}");
    assert!(store.seen.pulled.get() <= 1, "{}", store.seen.pulled.get());
}

#[test]
fn a_streamed_query_refused_by_the_budget_decodes_about_its_share() {
    const POINTS: i64 = 1_921;
    let store = Store {
        inner: data(2_000, POINTS),
        serve: Serve {
            sorted: true,
            ..Serve::default()
        },
        seen: Rc::new(Seen::default()),
    };
    let limit = 4 << 20;
    let budget = Arc::new(MemoryBudget::new(limit));
    let engine = Engine::new(EngineOptions {
        memory_budget: Some(Arc::clone(&budget)),
        ..EngineOptions::default()
    });
    let error = engine
        .range_query(
            &store,
            "sum(rate(x[5m]))",
            5 * MINUTE,
            POINTS * 15_000,
            15_000,
            &QueryOptions::default(),
        )
        .expect_err("a block does not fit in 4 MiB");
    assert_eq!(error.kind(), ErrorKind::Execution, "{error}");
    assert!(error.to_string().contains("memory budget"), "{error}");
    let share = (limit + QUERY_ALLOWANCE) / (POINTS as usize * 16);
    let decoded = store.seen.decoded.get();
    assert!(
        decoded > 0 && decoded <= share + 1,
        "{decoded} decoded, room for {share}"
    );
    assert_eq!(budget.used(), 0, "returned after the query");
}
