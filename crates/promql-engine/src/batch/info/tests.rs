//! `info()` over grids: range grids against evaluations one step at a time, and enriched labels
//! checked by hand.

use prom_model::STALE_NAN_BITS;

use crate::batch::testing::{
    Path, SCRAPE, SCRAPES, START, assert_same_outcome, run, series, settings,
};
use crate::batch::{Grid, Row};
use crate::storage::MemoryStorage;

/// `m` (three instances of job `a`, one of job `b`, one without `instance`), `target_info` for
/// some of them (one changing its data label mid-range, one going stale), `build_info` for one
/// job, and a duplicate pair of `dup_info` series.
fn storage() -> MemoryStorage {
    let mut storage = MemoryStorage::new();
    let stale = f64::from_bits(STALE_NAN_BITS);
    for instance in ["0", "1", "2"] {
        series(
            &mut storage,
            &[("__name__", "m"), ("job", "a"), ("instance", instance)],
            |s| (instance != "2" || s >= 30).then_some(s as f64),
        );
    }
    series(
        &mut storage,
        &[("__name__", "m"), ("job", "b"), ("instance", "0")],
        |s| Some(-(s as f64)),
    );
    series(&mut storage, &[("__name__", "m"), ("job", "b")], |s| {
        Some(s as f64 * 2.0)
    });
    series(
        &mut storage,
        &[
            ("__name__", "target_info"),
            ("job", "a"),
            ("instance", "0"),
            ("zone", "z1"),
        ],
        |s| (s < 40).then_some(1.0),
    );
    series(
        &mut storage,
        &[
            ("__name__", "target_info"),
            ("job", "a"),
            ("instance", "0"),
            ("zone", "z2"),
        ],
        |s| (s >= 40).then_some(1.0),
    );
    series(
        &mut storage,
        &[
            ("__name__", "target_info"),
            ("job", "a"),
            ("instance", "1"),
            ("zone", "z1"),
        ],
        |s| match s {
            50 => Some(stale),
            51.. => None,
            _ => Some(1.0),
        },
    );
    series(
        &mut storage,
        &[("__name__", "target_info"), ("job", "b"), ("zone", "z3")],
        |_| Some(1.0),
    );
    series(
        &mut storage,
        &[
            ("__name__", "build_info"),
            ("job", "a"),
            ("instance", "2"),
            ("version", "1.2"),
        ],
        |_| Some(1.0),
    );
    for color in ["red", "blue"] {
        series(
            &mut storage,
            &[
                ("__name__", "dup_info"),
                ("job", "b"),
                ("instance", "0"),
                ("color", color),
            ],
            |s| (s >= 60).then_some(1.0),
        );
    }
    storage
}

const QUERIES: &[&str] = &[
    "info(m)",
    "info(m, {zone=\"z1\"})",
    "info(m, {zone=~\"z.*\"})",
    "info(m, {__name__=\"target_info\", zone!=\"z2\"})",
    "info(m, {__name__=\"build_info\"})",
    "info(m, {__name__=~\".+_info\", version=~\".+\"})",
    "info(m, {__name__!=\"target_info\", version=\"1.2\"})",
    "info(m{job=\"a\"} offset 2m)",
    "info(m @ 1700000600)",
    "info(rate(m[2m]))",
    "sum by (zone) (info(m))",
    "info({__name__=~\"m|target_info\"})",
    "info(m, {__name__=\"dup_info\"})",
    "info(max_over_time(m[5m:1m]))",
];

#[test]
fn range_grids_equal_single_steps() {
    let storage = storage();
    let settings = settings();
    let grids = [
        Grid::new(START, START + (SCRAPES + 10) * SCRAPE, 30_000),
        Grid::new(START + 7_000, START + 70 * SCRAPE, 41_000),
        Grid::new(START + 45 * SCRAPE, START + 49 * SCRAPE, SCRAPE),
    ];
    let mut compared = 0;
    for query in QUERIES {
        for grid in grids {
            let expected = run(Path::SingleSteps, &storage, &settings, query, grid);
            let actual = run(Path::Batch, &storage, &settings, query, grid);
            let context = format!("{query} over {grid:?}");
            assert_same_outcome(
                &actual,
                &expected,
                !query.starts_with("sum"),
                true,
                &context,
            );
            compared += expected.elements();
        }
    }
    assert!(compared > 1_000, "compared only {compared} values");
}

/// The rows of `query` over `grid` as `(labels, present values)`.
fn rows(query: &str, grid: Grid) -> Result<Vec<(String, usize)>, String> {
    let storage = storage();
    crate::batch::testing::evaluate(&storage, &settings(), query, grid, |ev, expr| {
        let rows = crate::batch::eval_vector(ev, expr, grid)?;
        Ok(rows
            .iter()
            .map(|row: &Row| (row.labels.to_string(), row.present()))
            .collect())
    })
    .result
}

#[test]
fn data_labels_follow_the_info_series_over_time() {
    // Steps at scrapes 0, 10, ..., 70.
    let grid = Grid::new(START, START + 70 * SCRAPE, 10 * SCRAPE);
    let found =
        rows("info(m{job=\"a\", instance=~\"0|1\"})", grid).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        found,
        [
            (
                r#"{__name__="m", instance="0", job="a", zone="z1"}"#.to_string(),
                4
            ),
            (
                r#"{__name__="m", instance="0", job="a", zone="z2"}"#.to_string(),
                4
            ),
            (
                r#"{__name__="m", instance="1", job="a", zone="z1"}"#.to_string(),
                5
            ),
            // target_info of instance 1 went stale at scrape 50: no data label after.
            (r#"{__name__="m", instance="1", job="a"}"#.to_string(), 3),
        ]
    );
    // A data matcher that needs a value drops the series without one.
    let found = rows("info(m{job=\"a\"}, {zone=\"z1\"})", grid).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        found,
        [
            // The z1 series' last sample (scrape 39) is within the lookback at scrape 50.
            (
                r#"{__name__="m", instance="0", job="a", zone="z1"}"#.to_string(),
                6
            ),
            (
                r#"{__name__="m", instance="1", job="a", zone="z1"}"#.to_string(),
                5
            ),
        ]
    );
    // Two info series with one signature and one sample time fail from scrape 60 on.
    let error = rows("info(m, {__name__=\"dup_info\"})", grid)
        .err()
        .unwrap_or_default();
    assert!(
        error.starts_with("found duplicate series for info metric"),
        "{error}"
    );
    let early = Grid::new(START, START + 50 * SCRAPE, 10 * SCRAPE);
    assert!(rows("info(m, {__name__=\"dup_info\"})", early).is_ok());
}
