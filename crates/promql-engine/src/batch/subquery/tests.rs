//! Range functions over subqueries over range grids against the same queries one step at a
//! time (where the inner expression is evaluated per window, not in shared segments), step by
//! step: same series in the same order, same name removal flags, bit-identical values, same
//! errors and annotations.

use prom_model::{Labels, STALE_NAN_BITS, Sample};

use super::segment_len;
use crate::batch::Grid;
use crate::batch::testing::{
    Outcome, Step, evaluate_between, settings_with_max_samples, single_steps, steps_of,
};
use crate::plan::NodeKind;
use crate::storage::MemoryStorage;

const MIN: i64 = 60_000;

/// A small pseudo-random generator (SplitMix64) for reproducible data.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Counters with resets, gauges with NaN and stale markers, series that start late or end
/// early, scraped every 15s (with jitter) over 3h.
fn storage() -> MemoryStorage {
    let mut rng = Rng(7);
    let mut storage = MemoryStorage::new();
    for (name, counter) in [("req_total", true), ("temp", false)] {
        for instance in 0..5 {
            let labels = Labels::from_pairs([
                ("__name__", name),
                ("job", if instance % 2 == 0 { "api" } else { "db" }),
                ("instance", &format!("i{instance}")),
            ]);
            let (first, last) = match instance {
                1 => (200, 720),
                2 => (0, 400),
                _ => (0, 720),
            };
            let mut value = 0.0;
            let mut samples = Vec::new();
            for k in first..=last {
                let t = k * 15_000 + (rng.next() % 900) as i64 + 50;
                if instance == 3 && (300..340).contains(&k) {
                    // A gap longer than the lookback, opened by a stale marker.
                    if k == 300 {
                        samples.push(Sample::new(t, f64::from_bits(STALE_NAN_BITS)));
                    }
                    continue;
                }
                value = if counter {
                    if rng.unit() < 0.02 {
                        rng.unit() * 10.0
                    } else {
                        value + rng.unit() * 5.0
                    }
                } else if instance == 4 && k % 37 == 0 {
                    f64::NAN
                } else {
                    (rng.unit() - 0.3) * 100.0
                };
                samples.push(Sample::new(t, value));
            }
            storage.append(labels, samples);
        }
    }
    storage
}

/// Evaluates `query` over `(start, end, step)` at once (the subquery's range function itself)
/// or one step at a time.
fn run(
    storage: &MemoryStorage,
    query: &str,
    range: (i64, i64, i64),
    batched: bool,
    max_samples: usize,
) -> Outcome<Vec<Step>> {
    let settings = settings_with_max_samples(max_samples);
    let grid = Grid::new(range.0, range.1, range.2);
    evaluate_between(storage, &settings, query, range, |ev, expr| {
        if !batched {
            return single_steps(ev, expr, grid);
        }
        let NodeKind::Call { function, args } = &expr.kind else {
            panic!("{query}: not a call")
        };
        let batch = super::range_function(ev, *function, args, grid)?;
        // Everything held while computing was released; the caller counts the result.
        assert_eq!(ev.step_samples, 0, "{query}: samples left counted");
        Ok(steps_of(batch.expect("handled natively"), grid))
    })
}

fn compare(storage: &MemoryStorage, query: &str, range: (i64, i64, i64)) -> usize {
    let single = run(storage, query, range, false, usize::MAX);
    let batched = run(storage, query, range, true, usize::MAX);
    assert_eq!(batched, single, "{query} over {range:?}");
    batched.elements()
}

const QUERIES: &[&str] = &[
    "max_over_time(rate(req_total[5m])[1h:1m])",
    "max_over_time(sum(rate(req_total[5m]))[1h:1m])",
    "min_over_time(temp[10m:1m])",
    "avg_over_time(temp[10m:30s])",
    "sum_over_time(temp[7m:45s])",
    "count_over_time(temp[10m:1m])",
    "last_over_time(temp[10m:1m])",
    "first_over_time(temp[10m:1m])",
    "last_over_time((temp * 2)[10m:1m])",
    "present_over_time(temp[3m:1m])",
    "stddev_over_time(temp[15m:1m])",
    "stdvar_over_time(temp[15m:1m])",
    "mad_over_time(temp[15m:1m])",
    "quantile_over_time(0.9, temp[15m:1m])",
    "quantile_over_time(2, temp[15m:1m])",
    "ts_of_max_over_time(temp[15m:1m])",
    "ts_of_last_over_time(temp[15m:1m])",
    "rate(req_total[10m:1m])",
    "increase(req_total[10m:30s])",
    "irate(req_total[10m:1m])",
    "delta(temp[10m:1m])",
    "idelta(temp[10m:1m])",
    "changes(temp[20m:1m])",
    "resets(req_total[20m:1m])",
    "deriv(temp[20m:1m])",
    "predict_linear(temp[20m:1m], 600)",
    "double_exponential_smoothing(temp[20m:1m], 0.5, 0.5)",
    "absent_over_time(temp[10m:1m])",
    "absent_over_time(nonexistent{job=\"x\"}[10m:1m])",
    "absent_over_time(temp{instance=\"i1\"}[5m:1m])",
    "max_over_time(temp[10m:1m] offset 7m)",
    "max_over_time(temp[10m:1m] offset -3m)",
    "max_over_time(temp[10m:1m] @ 3600)",
    "max_over_time(temp[10m:1m] @ end())",
    "max_over_time(temp[10m:1m] @ start() offset 2m)",
    "max_over_time(temp[10m:])",
    "max_over_time(temp[5m:1s])",
    "max_over_time(temp[2m:7m])",
    "max_over_time(avg_over_time(temp[10m:1m])[1h:5m])",
    "max_over_time(avg_over_time(temp[10m:])[30m:])",
    "sum_over_time(rate(req_total[5m:20s])[20m:1m] offset 1m)",
    "count_over_time((temp > 0)[10m:1m])",
    "max_over_time((temp or -temp)[10m:1m])",
    "last_over_time((req_total or ignoring(__name__) -temp)[10m:1m])",
    "avg_over_time(vector(1)[10m:1m])",
    // The same labels with and without name removal at different inner steps.
    "last_over_time((temp > 0 or -temp)[10m:1m])",
    "first_over_time((temp > 0 or -temp)[10m:1m])",
    "max_over_time((temp > 0 or -temp)[10m:1m])",
    "max_over_time(label_replace(temp, \"a\", \"$1\", \"instance\", \"(.*)\")[10m:1m])",
    "rate(req_total[1h:1m])",
];

#[test]
fn range_queries_equal_single_steps() {
    let storage = storage();
    let mut compared = 0;
    for query in QUERIES {
        for range in [
            (40 * MIN, 150 * MIN, MIN),
            (30 * MIN, 170 * MIN, 7 * MIN),
            (10 * MIN, 175 * MIN, 60 * MIN),
            (90 * MIN + 12_345, 91 * MIN, 1_000),
        ] {
            compared += compare(&storage, query, range);
        }
    }
    assert!(compared > 10_000, "only {compared} values compared");
}

#[test]
fn instant_queries_are_the_first_steps_of_range_queries() {
    let storage = storage();
    // `start()` and `end()` are the query's own: not the same in the two.
    let queries = QUERIES
        .iter()
        .filter(|query| !query.contains("start()") && !query.contains("end()"));
    for query in queries {
        for ts in [0, 35 * MIN + 500, 100 * MIN, 181 * MIN] {
            let instant = run(&storage, query, (ts, ts, 0), true, usize::MAX);
            let range = run(
                &storage,
                query,
                (ts, ts + 10 * MIN, 5 * MIN),
                true,
                usize::MAX,
            );
            let first = |outcome: &Outcome<Vec<Step>>| {
                outcome
                    .result
                    .as_ref()
                    .map(|steps| steps.first().cloned())
                    .map_err(Clone::clone)
            };
            assert_eq!(first(&instant), first(&range), "{query} at {ts}");
            // What the first step warns about, the range query warns about too.
            for warning in &instant.warnings {
                assert!(
                    range.warnings.contains(warning),
                    "{query} at {ts}: {warning}"
                );
            }
        }
    }
}

#[test]
fn errors_equal_single_steps() {
    let storage = storage();
    for query in [
        "double_exponential_smoothing(temp[20m:1m], 2, 0.5)",
        "double_exponential_smoothing(temp[20m:1m], 0.5, 1)",
        "double_exponential_smoothing(temp{instance=\"i1\"}[20m:1m], 2, 0.5)",
        "max_over_time(sum by (job) (temp > 0 or label_replace(temp, \"job\", \"x\", \"\", \"\"))[10m:1m])",
    ] {
        let range = (10 * MIN, 100 * MIN, 5 * MIN);
        let single = run(&storage, query, range, false, usize::MAX);
        let batched = run(&storage, query, range, true, usize::MAX);
        if query.starts_with("double_exponential_smoothing") {
            assert!(batched.result.is_err(), "{query}: no error");
        }
        assert_eq!(batched, single, "{query}");
    }
    let error = run(
        &storage,
        "double_exponential_smoothing(temp[20m:1m], 2, 0.5)",
        (10 * MIN, 100 * MIN, 5 * MIN),
        true,
        usize::MAX,
    )
    .result
    .expect_err("invalid smoothing factor");
    assert!(error.contains("invalid smoothing factor"), "{error}");
}

#[test]
fn long_windows_are_evaluated_in_segments() {
    // Windows of 3,600 inner steps at a fine outer step: segments of 1,800 inner steps, each
    // inner timestamp evaluated once, results equal to single steps'.
    assert_eq!(segment_len(3_600, 61), 1_800);
    assert_eq!(segment_len(60, 1_441), 1_441);
    assert_eq!(segment_len(300, 24), 1_024);
    assert_eq!(segment_len(28_800_000, 1), 11_000);
    let storage = storage();
    for query in [
        "count_over_time(temp[1h:1s])",
        "max_over_time(req_total[40m:1s] offset 5m)",
        "last_over_time(temp[50m:1s] @ 6000)",
    ] {
        compare(&storage, query, (100 * MIN, 160 * MIN, 3 * MIN));
    }
}

#[test]
fn the_sample_limit_counts_the_buffered_inner_points() {
    let storage = storage();
    // Five series of `temp` over a window of 3,600 inner steps: the buffer alone reaches 18,000
    // samples before any window is complete.
    let query = "count_over_time(temp[1h:1s])";
    let range = (120 * MIN, 120 * MIN, 0);
    let error = run(&storage, query, range, true, 15_000)
        .result
        .expect_err("over the limit");
    assert!(error.contains("too many samples"), "{error}");
    let batched = run(&storage, query, range, true, 50_000);
    let steps = batched.result.clone().expect("within the limit");
    assert_eq!(steps[0].len(), 5, "{steps:?}");
    // Instances 0, 1 and 4 are scraped through the hour (1h to 2h): a value at each of its
    // 3,600 inner steps; instance 2 stops at 100m (seen until 105m) and instance 3 has a gap
    // from 75m to 85m opened by a stale marker.
    for (labels, _, bits) in &steps[0] {
        let count = f64::from_bits(*bits);
        let full = ["i0", "i1", "i4"]
            .iter()
            .any(|instance| labels.contains(&format!("instance=\"{instance}\"")));
        if full {
            assert_eq!(count, 3_600.0, "{labels}");
        } else {
            assert!(count > 2_000.0 && count < 3_600.0, "{labels}: {count}");
        }
    }
}
