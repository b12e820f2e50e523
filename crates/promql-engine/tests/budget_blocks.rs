//! The memory budget bounds what a query decodes, not only what it keeps: a selector read
//! block by block is charged series by series as it is decoded, so a query the budget refuses
//! stops about one series over its share instead of after decoding a whole block (1,024
//! series; with sixteen queries at once, sixteen blocks the budget never saw).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use prom_model::{Labels, Matcher, Sample};
use promql_engine::{
    Engine, EngineOptions, ErrorKind, MemoryBudget, MemoryStorage, QUERY_ALLOWANCE, QueryOptions,
    Queryable, SampleStream, SelectHints, SelectedSeries, SeriesStream, StorageError,
};

const HOUR: i64 = 3_600_000;
/// Points per series: 8h at 15s.
const POINTS: i64 = 1_921;

/// A store counting the series whose samples the engine started to read.
struct Counting {
    inner: MemoryStorage,
    read: Arc<AtomicUsize>,
}

/// A series' samples, counted once when first read (its size asked or a sample taken).
struct CountOnRead<'a> {
    samples: SampleStream<'a>,
    read: Arc<AtomicUsize>,
    counted: std::cell::Cell<bool>,
}

impl CountOnRead<'_> {
    fn mark(&self) {
        if !self.counted.replace(true) {
            self.read.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl Iterator for CountOnRead<'_> {
    type Item = Result<Sample, StorageError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.mark();
        self.samples.next()
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.mark();
        self.samples.size_hint()
    }
}

impl Queryable for Counting {
    fn select<'a>(
        &'a self,
        matchers: &[Matcher],
        hints: &SelectHints,
    ) -> Result<SeriesStream<'a>, StorageError> {
        let read = Arc::clone(&self.read);
        let stream = self.inner.select(matchers, hints)?;
        Ok(Box::new(stream.map(move |series| {
            series.map(|series| SelectedSeries {
                samples: Box::new(CountOnRead {
                    samples: series.samples,
                    read: Arc::clone(&read),
                    counted: std::cell::Cell::new(false),
                }),
                ..series
            })
        })))
    }
}

fn storage(count: usize) -> Counting {
    let mut inner = MemoryStorage::new();
    for i in 0..count {
        let labels = Labels::from_pairs([("__name__", "x"), ("instance", &format!("host-{i:05}"))]);
        inner.append(
            labels,
            (0..POINTS).map(|k| Sample::new(k * 15_000, (k * (1 + i as i64 % 7)) as f64)),
        );
    }
    Counting {
        inner,
        read: Arc::new(AtomicUsize::new(0)),
    }
}

fn sum_rate(engine: &Engine, storage: &Counting) -> promql_engine::Result<usize> {
    engine
        .range_query(
            storage,
            "sum(rate(x[5m]))",
            5 * 60_000,
            8 * HOUR,
            15_000,
            &QueryOptions::default(),
        )
        .map(|result| match result.value {
            promql_engine::Value::Matrix(matrix) => matrix.len(),
            other => panic!("unexpected {other:?}"),
        })
}

#[test]
fn a_refused_query_decodes_about_its_share_not_a_block() {
    let storage = storage(2_000);
    let series_bytes = POINTS as usize * 16;
    // Room for about 130 decoded series beyond the query's allowance: far less than a block.
    let limit = 4 << 20;
    let budget = Arc::new(MemoryBudget::new(limit));
    let engine = Engine::new(EngineOptions {
        memory_budget: Some(Arc::clone(&budget)),
        ..EngineOptions::default()
    });
    let error = sum_rate(&engine, &storage).expect_err("a block does not fit in 4 MiB");
    assert_eq!(error.kind(), ErrorKind::Execution, "{error}");
    assert!(error.to_string().contains("memory budget"), "{error}");
    let read = storage.read.load(Ordering::Relaxed);
    let share = (limit + QUERY_ALLOWANCE) / series_bytes;
    assert!(read > 0, "nothing decoded");
    assert!(
        read <= share + 1,
        "{read} series decoded with room for {share} (a block is 1,024)"
    );
    assert_eq!(budget.used(), 0, "returned after the query");

    // With room for a block the same query answers, and every series is decoded once.
    let storage = self::storage(2_000);
    let roomy = Engine::new(EngineOptions {
        memory_budget: Some(Arc::new(MemoryBudget::new(128 << 20))),
        ..EngineOptions::default()
    });
    assert_eq!(sum_rate(&roomy, &storage).expect("fits"), 1);
    assert_eq!(storage.read.load(Ordering::Relaxed), 2_000);
}
