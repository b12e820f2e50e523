//! A range query spanning bucket history and fresh Prometheus data: no gap, nothing counted
//! twice where the sidecars and the store gateway hold the same samples (S3 bucket on moto).

use std::time::Instant;

use e2e::cluster::now_millis;
use e2e::history::{HISTORY_METRIC, HISTORY_SERIES, HISTORY_STEP_MS};
use e2e::{BucketKind, Cluster, ClusterOptions, SCRAPE_INTERVAL_MS, points};

/// `(t_ms, value)` pairs.
type Samples = Vec<(i64, f64)>;

/// Largest distance between two fresh samples of one de-duplicated series: a replica switch
/// waits for twice the scrape interval, plus scrape jitter.
const MAX_FRESH_GAP_MS: i64 = 4 * SCRAPE_INTERVAL_MS;
/// Largest distance between the last history sample and the first scrape: promtool runs twice
/// and Prometheus starts in between.
const MAX_JUNCTION_GAP_MS: i64 = 60_000;

#[test]
fn range_query_over_history_and_fresh_data_has_no_gap_and_no_double_count() {
    let started = Instant::now();
    let cluster = Cluster::start(ClusterOptions {
        bucket: BucketKind::Moto,
        ..ClusterOptions::default()
    })
    .unwrap();
    // From here on the sidecars (Prometheus' blocks) and the store gateway (the bucket) hold the
    // same history samples, twice each (replicas a and b).
    cluster.wait_history_in_bucket().unwrap();
    cluster.wait_fresh_samples(8).unwrap();
    let history = cluster.history().clone();
    let now = now_millis();
    let window = format!("{}ms", now - history.start_ms + 1000);

    // Raw samples of the series that continues the history: the history exactly once, then
    // fresh scrapes, strictly increasing, without holes.
    let raw = cluster
        .query(&format!("{}[{window}]", history.up_selector()), now, "")
        .unwrap();
    assert!(raw.is_success(), "{:?}", raw.json);
    assert_eq!(raw.result().len(), 1, "{:?}", raw.json);
    let samples = points(&raw.result()[0]);
    let (old, fresh): (Samples, Samples) = samples.iter().partition(|(t, _)| *t <= history.end_ms);
    let old_times: Vec<i64> = old.iter().map(|(t, _)| *t).collect();
    assert_eq!(old_times, history.up_timestamps(), "history part");
    assert!(old.iter().all(|(_, v)| *v == 1.0));
    assert!(fresh.len() >= 8, "{fresh:?}");
    let junction = fresh[0].0 - history.end_ms;
    assert!(
        junction <= MAX_JUNCTION_GAP_MS,
        "{junction} ms between history and fresh data"
    );
    for pair in fresh.windows(2) {
        let gap = pair[1].0 - pair[0].0;
        assert!(
            gap > 0 && gap <= MAX_FRESH_GAP_MS,
            "fresh samples {:?} then {:?}",
            pair[0],
            pair[1]
        );
    }
    let fresh_span = fresh[fresh.len() - 1].0 - fresh[0].0;
    assert!(
        (fresh.len() as i64) <= fresh_span / SCRAPE_INTERVAL_MS + 2,
        "{} fresh samples over {fresh_span} ms: replicas counted twice?",
        fresh.len()
    );

    // The range query over the whole span has a point at every step, 0 or 1.
    let step = 60_000;
    let start = history.start_ms;
    let range = cluster
        .query_range(&history.up_selector(), start, now, step, "")
        .unwrap();
    assert!(range.is_success(), "{:?}", range.json);
    assert_eq!(range.result().len(), 1, "{:?}", range.json);
    let steps = points(&range.result()[0]);
    let expected_steps = (now - start) / step + 1;
    assert_eq!(steps.len() as i64, expected_steps, "a gap in {steps:?}");
    assert!(
        steps.iter().all(|(_, v)| *v == 0.0 || *v == 1.0),
        "{steps:?}"
    );

    // Counts and sums over the history are exact: nothing from the sidecar and the store
    // gateway (or from both replicas) counted twice.
    for series in 0..HISTORY_SERIES {
        let expected = history.counter_samples(series);
        let count = cluster
            .query(
                &format!("count_over_time({HISTORY_METRIC}{{series=\"{series}\"}}[{window}])"),
                now,
                "",
            )
            .unwrap();
        assert_eq!(
            points(&count.result()[0])[0].1,
            expected.len() as f64,
            "{:?}",
            count.json
        );
        let sum = cluster
            .query(
                &format!("sum_over_time({HISTORY_METRIC}{{series=\"{series}\"}}[{window}])"),
                now,
                "",
            )
            .unwrap();
        let expected_sum: f64 = expected.iter().map(|(_, v)| v).sum();
        assert_eq!(
            points(&sum.result()[0])[0].1,
            expected_sum,
            "{:?}",
            sum.json
        );
    }
    // The per-step increase over the history is the generated rate: (i + 1) per sample.
    let rate_window = 10 * HISTORY_STEP_MS;
    let increases = cluster
        .query_range(
            &format!("increase({HISTORY_METRIC}{{series=\"2\"}}[{rate_window}ms])"),
            history.start_ms + rate_window,
            history.end_ms,
            15 * 60_000,
            "",
        )
        .unwrap();
    let expected_increase = 3.0 * (rate_window / HISTORY_STEP_MS) as f64;
    for (t, value) in points(&increases.result()[0]) {
        assert!(
            (value - expected_increase).abs() < 1e-6 * expected_increase.max(1.0)
                || t < history.start_ms + rate_window,
            "increase at {t}: {value}, expected {expected_increase}"
        );
    }
    eprintln!(
        "range_query_over_history_and_fresh_data_has_no_gap_and_no_double_count: {:?}",
        started.elapsed()
    );
}
