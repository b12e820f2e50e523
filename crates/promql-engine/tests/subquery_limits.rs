//! `--query.max-samples`, the timeout and cancellation hold inside subqueries: a fine-step
//! subquery over a long window (`count_over_time(x[8h:1ms])`, 28.8 million inner steps) fails with
//! the limit's error as it runs, after holding at most the limit's worth of samples, instead of
//! growing the process without bound.
//!
//! This file is its own test binary, so the peak resident memory it reads is its own.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use prom_model::{Labels, Sample};
use promql_engine::{Engine, EngineOptions, ErrorKind, MemoryStorage, QueryOptions, Value};

const HOUR: i64 = 3_600_000;

/// `count` series named `x`, one sample every 15s for 8h.
fn storage(count: usize) -> MemoryStorage {
    let mut storage = MemoryStorage::new();
    for i in 0..count {
        let labels = Labels::from_pairs([("__name__", "x"), ("instance", &format!("host-{i}"))]);
        storage.append(
            labels,
            (0..=1920).map(|k| Sample::new(k * 15_000, k as f64)),
        );
    }
    storage
}

/// The process' peak resident memory in MiB (Linux `VmHWM`).
fn peak_rss_mib() -> u64 {
    test_harness::procfs::memory(std::process::id()).peak_kib / 1024
}

fn instant(
    engine: &Engine,
    storage: &MemoryStorage,
    query: &str,
    options: &QueryOptions,
) -> promql_engine::Result<Value> {
    engine
        .instant_query(storage, query, 8 * HOUR, options)
        .map(|result| result.value)
}

#[test]
fn fine_step_subquery_hits_the_sample_limit_with_bounded_memory() {
    // The limit is scaled down from the default 50 million so that a debug build refuses in
    // seconds; the peak it may reach scales with it.
    let max_samples = 5_000_000;
    let storage = storage(3);
    let engine = Engine::new(EngineOptions {
        max_samples,
        ..EngineOptions::default()
    });
    let before = peak_rss_mib();
    let started = Instant::now();
    let error = instant(
        &engine,
        &storage,
        "count_over_time(x[8h:1ms])",
        &QueryOptions::default(),
    )
    .expect_err("86.4 million samples exceed the limit");
    let elapsed = started.elapsed();
    assert_eq!(error.kind(), ErrorKind::Execution, "{error}");
    assert_eq!(
        error.to_string(),
        "query processing would load too many samples into memory in query execution"
    );
    // The limit's samples are 80 MB of 16-byte points; each inner step's bookkeeping and the
    // allocator's slack come on top. Keeping every inner step's elements with their labels (as
    // before the limit counted the subquery cache) took several times this.
    let grown = peak_rss_mib().saturating_sub(before);
    eprintln!("refused after {elapsed:?}, peak RSS grew by {grown} MiB");
    assert!(grown < 400, "peak RSS grew by {grown} MiB");
}

#[test]
fn a_small_sample_limit_holds_inside_nested_subqueries() {
    let storage = storage(3);
    let engine = Engine::new(EngineOptions {
        max_samples: 100_000,
        ..EngineOptions::default()
    });
    for query in [
        "count_over_time(x[8h:1ms])",
        "max_over_time(rate(x[5m:1ms])[8h:1m])",
        "sum_over_time((x * 2)[1h:100ms])",
        "count_over_time(vector(1)[8h:100ms])",
    ] {
        let error = instant(&engine, &storage, query, &QueryOptions::default()).expect_err(query);
        assert!(
            error.to_string().contains("too many samples"),
            "{query}: {error}"
        );
    }
    // The same shapes within the limit answer.
    let value = instant(
        &engine,
        &storage,
        "count_over_time(x[1m:1s])",
        &QueryOptions::default(),
    )
    .expect("60 inner steps of 3 series");
    match value {
        Value::Vector(vector) => {
            assert_eq!(vector.len(), 3);
            assert!(vector.iter().all(|element| element.v == 60.0));
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn timeout_and_cancellation_hold_inside_subqueries() {
    let storage = storage(1);
    let engine = Engine::new(EngineOptions {
        max_samples: usize::MAX,
        timeout: Duration::from_millis(300),
        ..EngineOptions::default()
    });
    let started = Instant::now();
    let error = instant(
        &engine,
        &storage,
        "count_over_time(x[8h:1ms])",
        &QueryOptions::default(),
    )
    .expect_err("runs past its timeout");
    assert_eq!(error.kind(), ErrorKind::Timeout, "{error}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );

    let engine = Engine::new(EngineOptions {
        max_samples: usize::MAX,
        ..EngineOptions::default()
    });
    let cancel = Arc::new(AtomicBool::new(false));
    let options = QueryOptions {
        cancel: Some(Arc::clone(&cancel)),
        ..QueryOptions::default()
    };
    let canceller = {
        let cancel = Arc::clone(&cancel);
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            cancel.store(true, Ordering::Relaxed);
        })
    };
    let started = Instant::now();
    let error =
        instant(&engine, &storage, "count_over_time(x[8h:1ms])", &options).expect_err("cancelled");
    assert_eq!(error.kind(), ErrorKind::Canceled, "{error}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    canceller.join().expect("canceller");
}

#[test]
fn range_queries_count_the_subquery_cache() {
    // Each step's window reuses the inner results of the step before; they are held, so they
    // count: 3 series x 3,600 inner steps in the cache plus the same in the step's window.
    let storage = storage(3);
    let options = QueryOptions::default();
    let run = |max_samples| {
        Engine::new(EngineOptions {
            max_samples,
            ..EngineOptions::default()
        })
        .range_query(
            &storage,
            "count_over_time(x[1h:1s])",
            2 * HOUR,
            3 * HOUR,
            60_000,
            &options,
        )
    };
    let error = run(20_000).expect_err("the cache and the window hold 21,600 samples");
    assert!(error.to_string().contains("too many samples"), "{error}");
    let result = run(30_000).expect("within the limit");
    match result.value {
        Value::Matrix(matrix) => {
            assert_eq!(matrix.len(), 3);
            assert!(matrix.iter().all(|series| series.points.len() == 61
                && series.points.iter().all(|point| point.v == 3_600.0)));
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn concurrent_queries_share_the_memory_budget() {
    use promql_engine::MemoryBudget;
    let storage = Arc::new(storage(200));
    // One query over every series holds about 200 x (1,921 points x 16 bytes + labels) = 6 MiB.
    let budget = Arc::new(MemoryBudget::new(16 << 20));
    let with_budget = |budget: &Arc<MemoryBudget>| {
        Engine::new(EngineOptions {
            memory_budget: Some(Arc::clone(budget)),
            ..EngineOptions::default()
        })
    };
    let sum_all = |engine: &Engine| {
        engine.range_query(
            &*storage,
            "sum(x)",
            0,
            8 * HOUR,
            60_000,
            &QueryOptions::default(),
        )
    };
    let engine = with_budget(&budget);
    let alone = sum_all(&engine).expect("one query fits");
    assert_eq!(budget.used(), 0, "returned after the query");
    // Eight at once cannot all hold their data: each either answers as alone or fails with the
    // budget's error; the budget is whole again afterwards.
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let engine = engine.clone();
            let storage = Arc::clone(&storage);
            std::thread::spawn(move || {
                let result = engine.range_query(
                    &*storage,
                    "sum(x) + count(x)",
                    0,
                    8 * HOUR,
                    60_000,
                    &QueryOptions::default(),
                );
                result.map(|result| result.value)
            })
        })
        .collect();
    let mut refused = 0;
    for thread in threads {
        match thread.join().expect("query thread") {
            Ok(Value::Matrix(matrix)) => {
                let Value::Matrix(expected) = &alone.value else {
                    panic!("matrix expected")
                };
                assert_eq!(matrix[0].points.len(), expected[0].points.len());
                assert_eq!(matrix[0].points[10].v, expected[0].points[10].v + 200.0);
            }
            Ok(other) => panic!("unexpected {other:?}"),
            Err(error) => {
                assert_eq!(error.kind(), ErrorKind::Execution, "{error}");
                assert!(error.to_string().contains("memory budget"), "{error}");
                refused += 1;
            }
        }
    }
    assert_eq!(budget.used(), 0, "every reservation returned");
    eprintln!("{refused} of 8 concurrent queries refused by the budget");
    // A budget smaller than one query's data refuses it outright.
    let small = with_budget(&Arc::new(MemoryBudget::new(1 << 20)));
    let error = sum_all(&small).expect_err("6 MiB of data in a 1 MiB budget");
    assert!(
        error.to_string().contains("memory budget of 1048576 bytes"),
        "{error}"
    );
}
