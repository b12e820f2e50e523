//! The batch path of functions over range grids against the same queries one step at a time,
//! on generated data.

use prom_model::{Labels, STALE_NAN_BITS, Sample};

use crate::batch::Grid;
use crate::batch::testing::{Path, assert_same_outcome, run, settings};
use crate::eval::Evaluator;
use crate::storage::MemoryStorage;
use crate::{Engine, QueryOptions, Value, parse_expr};

const T0: i64 = 1_700_000_000_000;
const SCRAPE: i64 = 15_000;

/// Counters, gauges with NaN and stale markers, series that start and stop mid-range, classic
/// histograms (one with an unparsable `le` and decreasing buckets) and series that
/// `label_replace` maps onto one label set.
fn storage() -> MemoryStorage {
    let mut storage = MemoryStorage::new();
    let mut seed: u64 = 7;
    let mut next = move || {
        seed = seed
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (seed >> 33) as f64 / f64::from(1u32 << 31)
    };
    for instance in 0..6 {
        for (index, job) in ["api", "db"].into_iter().enumerate() {
            let (from, to) = match instance {
                1 => (0, 40),
                2 => (30, 120),
                _ => (0, 120),
            };
            let mut counter = 0.0;
            let mut samples = Vec::new();
            for i in from..to {
                counter += (next() * 10.0).floor();
                let v = if instance == 3 && i % 17 == 5 {
                    f64::NAN
                } else if instance == 4 && i == 60 {
                    f64::from_bits(STALE_NAN_BITS)
                } else {
                    counter * (1.0 + index as f64) - 250.0
                };
                samples.push(Sample::new(T0 + i * SCRAPE + instance, v));
            }
            storage.append(
                Labels::from_pairs([
                    ("__name__", "x"),
                    ("job", job),
                    ("instance", &format!("i{instance}")),
                    ("src", &format!("{}-{}", 10 + instance, job)),
                ]),
                samples,
            );
        }
    }
    for (job, count_scale) in [("api", 1.0), ("db", 3.0)] {
        for le in ["0.1", "0.5", "1", "+Inf", "2.5", "bad"] {
            let position = match le {
                "0.1" => 1.0,
                "0.5" => 2.0,
                "1" => 3.0,
                "2.5" => 4.0,
                _ => 5.0,
            };
            let samples: Vec<Sample> = (0..120)
                .filter(|i| job == "api" || *i > 20)
                .map(|i| {
                    let mut v = (i as f64 + 1.0) * position * count_scale;
                    if job == "db" && le == "1" && i % 10 == 0 {
                        v = 0.0;
                    }
                    Sample::new(T0 + i * SCRAPE, v)
                })
                .collect();
            storage.append(
                Labels::from_pairs([("__name__", "h_bucket"), ("job", job), ("le", le)]),
                samples,
            );
        }
    }
    storage
}

const QUERIES: &[&str] = &[
    "time()",
    "pi()",
    "start() + end() + range() + step()",
    "vector(time())",
    "scalar(x{instance=\"i0\", job=\"api\"})",
    "scalar(x)",
    "scalar(x{instance=\"i1\"})",
    "absent(x{instance=\"i1\", job=\"api\"})",
    "absent(nope{a=\"b\", c=~\"d\"})",
    "absent((nope{a=\"b\"}))",
    "absent(x)",
    "label_replace(x, \"dst\", \"$1-$2\", \"src\", \"(\\\\d+)-(.*)\")",
    "label_replace(x, \"__name__\", \"renamed_$1\", \"job\", \"(.*)\")",
    "label_replace(-x, \"__name__\", \"renamed_$1\", \"job\", \"(.*)\")",
    "label_replace(-x, \"other\", \"v\", \"job\", \"nomatch\")",
    "label_replace(x, \"dst\", \"$1\", \"src\", `(\\d+)-.*`)",
    "label_replace(x, \"dst\", \"\", \"src\", \"(.*\")",
    "label_join(x, \"joined\", \",\", \"job\", \"instance\")",
    "label_join(-x, \"__name__\", \"_\", \"job\", \"instance\")",
    "sum by (job) (label_replace(label_replace(x, \"instance\", \"all\", \"instance\", \".*\"), \"src\", \"all\", \"src\", \".*\"))",
    "label_replace(label_replace(x, \"instance\", \"all\", \"instance\", \".*\"), \"src\", \"all\", \"src\", \".*\")",
    "timestamp(x)",
    "timestamp((x))",
    "timestamp(x offset 1m)",
    "timestamp(-x)",
    "timestamp(x @ 1700000600)",
    "start_timestamp(x)",
    "start_timestamp(-x)",
    "histogram_quantile(0.9, h_bucket)",
    "histogram_quantile(0.5, rate(h_bucket[2m]))",
    "histogram_quantile(1.5, h_bucket)",
    "histogram_quantile(time() / 1e10 - 170, h_bucket)",
    "histogram_fraction(0.2, 1.5, h_bucket)",
    "histogram_fraction(0, time(), h_bucket)",
    "histogram_quantiles(h_bucket, \"q\", 0.25, 0.75)",
    "histogram_quantiles(h_bucket, \"q\", 0.5, 0.5)",
    "histogram_count(x)",
    "histogram_sum(rate(x[1m]))",
    "round(x)",
    "round(x / 7, 0.5)",
    "round(x, scalar(x{instance=\"i1\", job=\"api\"}))",
    "clamp(x, -10, 100)",
    "clamp(x, 10, -10)",
    "clamp_min(x, 0)",
    "clamp_max(x, scalar(x{instance=\"i2\", job=\"api\"}))",
    "clamp(x, 0, time() - 1700000900)",
    "hour()",
    "year()",
    "day_of_week(x + 1700000000)",
    "days_in_month(vector(time()))",
    "minute(x)",
    "abs(x)",
    "ln(x)",
    "sqrt(x)",
    "sgn(x)",
    "deg(x)",
    "rad(x)",
    "exp(x / 100)",
    "atanh(x / 1000)",
    "max_of(time(), 1700000600)",
    "min_of(scalar(x{instance=\"i3\", job=\"db\"}), 5)",
    "sort(x)",
    "sort_desc(x)",
    "sort_by_label(x, \"instance\", \"job\")",
    "sort_by_label_desc(x, \"src\")",
    "abs(sort_desc(x))",
];

/// Queries whose element order within a step after the first may differ in a range query:
/// value sorts (rows have one order for all steps), and arguments with a vector operator,
/// where a series that appears mid-range is listed after the others.
fn order_free(query: &str) -> bool {
    query.starts_with("sort(")
        || query.starts_with("sort_desc(")
        || query.contains("(sort")
        || query.contains("x /")
        || query.contains("x +")
}

#[test]
fn range_grids_equal_single_steps() {
    let storage = storage();
    let settings = settings();
    let range = Grid::new(T0 - 60_000, T0 + 120 * SCRAPE + 600_000, 30_000);
    // Five steps from scrape 20: its first step is compared in order for every query.
    let short = Grid::new(T0 + 20 * SCRAPE, T0 + 20 * SCRAPE + 240_000, 60_000);
    let mut compared = 0;
    for query in QUERIES {
        for grid in [range, short] {
            let expected = run(Path::SingleSteps, &storage, &settings, query, grid);
            let actual = run(Path::Batch, &storage, &settings, query, grid);
            let ordered = !order_free(query);
            let context = format!("{query} over {grid:?}");
            assert_same_outcome(&actual, &expected, ordered, true, &context);
            compared += expected.elements();
        }
    }
    assert!(compared > 10_000, "compared only {compared} values");
}

#[test]
fn batch_functions_are_used_natively() {
    let storage = storage();
    let grid = Grid::new(T0, T0 + 600_000, 60_000);
    let settings = settings();
    for query in [
        "abs(x)",
        "histogram_quantile(0.9, h_bucket)",
        "label_join(x, \"a\", \"-\", \"job\")",
    ] {
        let expr = parse_expr(query).unwrap_or_else(|error| panic!("{query}: {error}"));
        let plan =
            crate::engine::build_plan(&expr, &settings, (grid.start, T0 + 600_000, grid.step))
                .unwrap_or_else(|error| panic!("{query}: {error}"));
        let crate::plan::NodeKind::Call { function, args } = &plan.root().kind else {
            panic!("{query}: not a call");
        };
        let mut ev = Evaluator::new(&storage, &settings, grid.start, T0 + 600_000, grid.step);
        ev.prefetch(&plan)
            .unwrap_or_else(|error| panic!("{query}: {error}"));
        let batch =
            super::eval(&mut ev, *function, args, grid).unwrap_or_else(|error| panic!("{error}"));
        assert!(batch.is_some(), "{query} fell back");
    }
}

#[test]
fn raw_strings_keep_backslashes() {
    let mut storage = MemoryStorage::new();
    storage.append(
        Labels::from_pairs([("__name__", "m"), ("a", "."), ("src", "abc123")]),
        [Sample::new(T0, 1.0)],
    );
    storage.append(
        Labels::from_pairs([("__name__", "m"), ("a", "x"), ("src", "def")]),
        [Sample::new(T0, 2.0)],
    );
    let engine = Engine::default();
    let options = QueryOptions::default();
    let run = |query: &str| {
        let result = engine
            .instant_query(&storage, query, T0, &options)
            .unwrap_or_else(|error| panic!("{query}: {error}"));
        let Value::Vector(vector) = result.value else {
            panic!("{query}: not a vector");
        };
        vector
            .into_iter()
            .map(|e| (e.labels.to_string(), e.v))
            .collect::<Vec<_>>()
    };
    let replaced = run(r#"label_replace(m, "dst", "$1", "src", `[a-z]+(\d+)`)"#);
    assert_eq!(replaced.len(), 2);
    assert!(
        replaced
            .iter()
            .any(|(labels, _)| labels.contains(r#"dst="123""#)),
        "{replaced:?}"
    );
    let matched = run(r#"m{a=~`\.`}"#);
    assert_eq!(matched.len(), 1, "{matched:?}");
    assert!(matched[0].0.contains(r#"a=".""#), "{matched:?}");
    // Double-quoted strings still read escapes, and refuse unknown ones.
    assert_eq!(run(r#"m{a=~"\\."}"#), matched);
    assert!(parse_expr(r#"m{a=~"\."}"#).is_err());
}

#[test]
fn relabelled_duplicates_fail_where_they_meet_and_sorts_order_instant_results() {
    let storage = storage();
    let engine = Engine::default();
    let options = QueryOptions::default();
    let query = "label_replace(label_replace(x, \"instance\", \"all\", \"instance\", \".*\"), \"src\", \"all\", \"src\", \".*\")";
    for result in [
        engine.instant_query(&storage, query, T0 + 50 * SCRAPE, &options),
        engine.range_query(&storage, query, T0, T0 + 600_000, 60_000, &options),
    ] {
        let error = result
            .err()
            .map(|error| error.to_string())
            .unwrap_or_default();
        assert!(
            error.contains("vector cannot contain metrics with the same labelset"),
            "{error}"
        );
    }
    // One series per job and instance left: no duplicates, no error.
    let unique = "label_replace(x{instance=\"i0\"}, \"instance\", \"all\", \"instance\", \".*\")";
    assert!(
        engine
            .range_query(&storage, unique, T0, T0 + 600_000, 60_000, &options)
            .is_ok()
    );
    for (query, descending) in [("sort(x)", false), ("sort_desc(x)", true)] {
        let result = engine
            .instant_query(&storage, query, T0 + 50 * SCRAPE, &options)
            .unwrap_or_else(|error| panic!("{query}: {error}"));
        let Value::Vector(vector) = result.value else {
            panic!("{query}: not a vector");
        };
        let values: Vec<f64> = vector.iter().map(|e| e.v).filter(|v| !v.is_nan()).collect();
        assert!(values.len() > 5, "{query}: {values:?}");
        let ordered = values.windows(2).all(|pair| {
            if descending {
                pair[0] >= pair[1]
            } else {
                pair[0] <= pair[1]
            }
        });
        assert!(ordered, "{query}: {values:?}");
    }
}
