//! Range vectors at the root of instant queries: points checked by hand, and every window
//! against the range functions over the same expression (another code path: windows of
//! `batch::selector` and `batch::subquery`).

use prom_model::{Labels, STALE_NAN_BITS, Sample};

use crate::engine::{Engine, QueryOptions};
use crate::storage::MemoryStorage;
use crate::value::{Point, Series, Value};

const T0: i64 = 1_700_000_000_000;
const SCRAPE: i64 = 15_000;

/// `x` (two instances, one with a stale marker and a gap), `y` without instance.
fn storage() -> MemoryStorage {
    let mut storage = MemoryStorage::new();
    for instance in 0..2_i64 {
        let labels = Labels::from_pairs([
            ("__name__", "x".to_string()),
            ("instance", instance.to_string()),
        ]);
        let mut samples = Vec::new();
        for scrape in 0..60 {
            let t = T0 + scrape * SCRAPE;
            match (instance, scrape) {
                (1, 20) => samples.push(Sample::new(t, f64::from_bits(STALE_NAN_BITS))),
                (1, 21..=29) => {}
                _ => samples.push(Sample::new(t, (scrape * (instance + 1)) as f64)),
            }
        }
        storage.append(labels, samples);
    }
    storage.append(
        Labels::from_pairs([("__name__", "y")]),
        (0..60)
            .map(|scrape| Sample::new(T0 + scrape * SCRAPE, 0.5 * scrape as f64))
            .collect::<Vec<_>>(),
    );
    storage
}

fn matrix(storage: &MemoryStorage, query: &str, ts: i64) -> Vec<Series> {
    let result = Engine::default()
        .instant_query(storage, query, ts, &QueryOptions::default())
        .unwrap_or_else(|error| panic!("{query}: {error}"));
    match result.value {
        Value::Matrix(series) => series,
        other => panic!("{query}: not a matrix: {other:?}"),
    }
}

/// `function(query)` at `ts` as (labels without the name, value bits).
fn over_time(storage: &MemoryStorage, function: &str, query: &str, ts: i64) -> Vec<(String, u64)> {
    let call = format!("{function}({query})");
    let result = Engine::default()
        .instant_query(storage, &call, ts, &QueryOptions::default())
        .unwrap_or_else(|error| panic!("{call}: {error}"));
    let Value::Vector(vector) = result.value else {
        panic!("{call}: not a vector");
    };
    let mut out: Vec<(String, u64)> = vector
        .into_iter()
        .map(|e| (e.labels.without(&["__name__"]).to_string(), e.v.to_bits()))
        .collect();
    out.sort();
    out
}

#[test]
fn selector_windows_hold_their_samples_without_stale_markers() {
    let storage = storage();
    // Window (scrape 17, scrape 22] at scrape 22 + 1s: instance 1 has 18, 19 (20 is stale).
    let ts = T0 + 22 * SCRAPE + 1_000;
    let found = matrix(&storage, "x[75s]", ts);
    let points = |scrapes: &[i64], factor: f64| -> Vec<Point> {
        scrapes
            .iter()
            .map(|&s| Point {
                t: T0 + s * SCRAPE,
                v: s as f64 * factor,
            })
            .collect()
    };
    assert_eq!(found.len(), 2);
    assert_eq!(
        found[0].labels.to_string(),
        r#"{__name__="x", instance="0"}"#
    );
    assert_eq!(found[0].points, points(&[18, 19, 20, 21, 22], 1.0));
    assert_eq!(found[1].points, points(&[18, 19], 2.0));
    // With an offset (one scrape back) and pinned by @ (at scrape 10).
    let found = matrix(&storage, "x{instance=\"0\"}[30s] offset 15s", ts);
    assert_eq!(found[0].points, points(&[20, 21], 1.0));
    let at = (T0 + 10 * SCRAPE) / 1000;
    let found = matrix(&storage, &format!("(y[31s] @ {at})"), ts);
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].points, points(&[8, 9, 10], 0.5));
    // A window holding only a stale marker drops the series.
    let found = matrix(&storage, "x{instance=\"1\"}[10s]", T0 + 20 * SCRAPE);
    assert!(found.is_empty(), "{found:?}");
}

#[test]
fn subquery_points_lie_on_the_aligned_grid() {
    let storage = storage();
    let ts = T0 + 40 * SCRAPE + 7_000;
    // Inner steps at multiples of 1m in (ts - 5m, ts]: five of them.
    let found = matrix(&storage, "(x * 2)[5m:1m]", ts);
    assert_eq!(found.len(), 2);
    for series in &found {
        assert!(
            !series.labels.to_string().contains("__name__"),
            "{series:?}"
        );
        assert!(
            series.points.iter().all(|p| p.t % 60_000 == 0),
            "{series:?}"
        );
        assert!(
            series
                .points
                .iter()
                .all(|p| p.t > ts - 300_000 && p.t <= ts)
        );
    }
    assert_eq!(found[0].points.len(), 5);
    // `vector(time())`: one series without labels, valued at its inner timestamps.
    let found = matrix(&storage, "vector(time())[2m:30s]", ts);
    assert_eq!(found.len(), 1);
    assert!(found[0].labels.is_empty());
    assert!(found[0].points.iter().all(|p| p.v * 1000.0 == p.t as f64));
    assert_eq!(found[0].points.len(), 4);
    // Names kept where the inner expression keeps them.
    let found = matrix(&storage, "y[1m:20s]", ts);
    assert_eq!(found[0].labels.to_string(), r#"{__name__="y"}"#);
}

#[test]
fn windows_agree_with_the_range_functions_over_them() {
    let storage = storage();
    let queries = [
        "x[1m]",
        "x[2m] offset 1m",
        "y[90s]",
        "{__name__=~\"x|y\"}[3m]",
        "x[5m:30s]",
        "rate(x[1m])[4m:15s]",
        "(x + y)[10m:1m] offset 2m",
        "sum(x)[3m:7s]",
        "x[20m:1s]",
    ];
    let mut compared = 0;
    for query in queries {
        for scrape in [0, 5, 19, 20, 23, 31, 45, 59, 70] {
            let ts = T0 + scrape * SCRAPE + 2_000;
            let found = matrix(&storage, query, ts);
            let mut count: Vec<(String, u64)> = Vec::new();
            let mut last: Vec<(String, u64)> = Vec::new();
            let mut first_ts: Vec<(String, u64)> = Vec::new();
            let mut sum: Vec<(String, u64)> = Vec::new();
            for series in &found {
                let labels = series.labels.without(&["__name__"]).to_string();
                assert!(!series.points.is_empty(), "{query}: empty series");
                assert!(series.points.windows(2).all(|pair| pair[0].t < pair[1].t));
                let points = &series.points;
                count.push((labels.clone(), (points.len() as f64).to_bits()));
                last.push((labels.clone(), points[points.len() - 1].v.to_bits()));
                first_ts.push((labels.clone(), (points[0].t as f64 / 1000.0).to_bits()));
                let total: f64 = points.iter().map(|p| p.v).sum();
                sum.push((labels, total.to_bits()));
                compared += points.len();
            }
            for list in [&mut count, &mut last, &mut first_ts] {
                list.sort();
            }
            let context = format!("{query} at {ts}");
            assert_eq!(
                count,
                over_time(&storage, "count_over_time", query, ts),
                "{context}"
            );
            assert_eq!(
                last,
                over_time(&storage, "last_over_time", query, ts),
                "{context}"
            );
            assert_eq!(
                first_ts,
                over_time(&storage, "ts_of_first_over_time", query, ts),
                "{context}"
            );
            // Small integers and halves (no rates): the plain sum is exact, as the compensated
            // one.
            sum.sort();
            if query.contains("rate") {
                continue;
            }
            assert_eq!(
                sum,
                over_time(&storage, "sum_over_time", query, ts),
                "{context}"
            );
        }
    }
    assert!(compared > 5_000, "compared only {compared} points");
}
