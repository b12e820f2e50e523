//! The querier against real programs: the same data in Prometheus 2.42 (a promtool-made block)
//! and in a store behind the querier answers the same queries; `promtool query` works against
//! the querier.

#![allow(clippy::unwrap_used)]

mod common;

use std::fmt::Write as _;
use std::process::Command;

use common::{Querier, enc, endpoints, series, start_store};
use serde_json::Value;
use storeapi::SeriesData;
use test_harness::{Prometheus, PrometheusConfig, promtool};

/// Start of the data, in seconds.
const T0: i64 = 1_700_000_000;
const STEP: i64 = 15;
const POINTS: i64 = 480;

fn dataset() -> Vec<SeriesData> {
    let mut out = Vec::new();
    for (job, code, slope) in [
        ("api", "200", 7.0),
        ("api", "500", 0.5),
        ("db", "200", 3.25),
    ] {
        out.push(series(
            &[
                ("__name__", "http_requests_total"),
                ("code", code),
                ("job", job),
            ],
            (0..POINTS).map(|i| {
                (
                    (T0 + i * STEP) * 1000,
                    1000.0 + slope * i as f64 + (i % 7) as f64,
                )
            }),
        ));
    }
    for (instance, phase) in [("a", 0.0), ("b", 1.3), ("c", 2.1)] {
        out.push(series(
            &[
                ("__name__", "temperature_celsius"),
                ("instance", instance),
                ("job", "sensor"),
            ],
            (0..POINTS).map(|i| {
                (
                    (T0 + i * STEP) * 1000,
                    20.0 + 10.0 * ((i as f64) / 17.0 + phase).sin(),
                )
            }),
        ));
    }
    out
}

fn openmetrics(data: &[SeriesData]) -> String {
    let mut text = String::new();
    for one in data {
        let name = one.labels.metric_name().unwrap_or_default().to_owned();
        let labels: Vec<String> = one
            .labels
            .iter()
            .filter(|label| label.name != "__name__")
            .map(|label| format!("{}=\"{}\"", label.name, label.value))
            .collect();
        for sample in &one.samples {
            writeln!(
                text,
                "{name}{{{}}} {} {}",
                labels.join(","),
                sample.v,
                sample.t / 1000
            )
            .unwrap();
        }
    }
    text.push_str("# EOF\n");
    text
}

fn start_prometheus(data: &[SeriesData], dir: &std::path::Path) -> Prometheus {
    let input = dir.join("data.om");
    std::fs::write(&input, openmetrics(data)).unwrap();
    let data_dir = dir.join("prometheus");
    let output = Command::new(promtool().unwrap())
        .args(["tsdb", "create-blocks-from", "openmetrics"])
        .arg(&input)
        .arg(&data_dir)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    Prometheus::start(PrometheusConfig {
        data_dir: Some(data_dir),
        ..PrometheusConfig::default()
    })
    .unwrap()
}

/// `(labels, [(t, v)])` rows of a vector or matrix answer, sorted by labels.
fn rows(answer: &Value) -> Vec<(String, Vec<(f64, f64)>)> {
    let data = &answer["data"];
    let mut rows: Vec<(String, Vec<(f64, f64)>)> = data["result"]
        .as_array()
        .unwrap_or_else(|| panic!("{answer}"))
        .iter()
        .map(|item| {
            let pairs = match item.get("values") {
                Some(values) => values.as_array().unwrap().clone(),
                None => vec![item["value"].clone()],
            };
            let points = pairs
                .iter()
                .map(|pair| {
                    (
                        pair[0].as_f64().unwrap(),
                        pair[1].as_str().unwrap().parse::<f64>().unwrap(),
                    )
                })
                .collect();
            (item["metric"].to_string(), points)
        })
        .collect();
    rows.sort_by(|a, b| a.0.cmp(&b.0));
    rows
}

fn close(a: f64, b: f64) -> bool {
    (a.is_nan() && b.is_nan()) || a == b || (a - b).abs() <= 1e-9 * a.abs().max(b.abs())
}

fn compare(query_path: &str, prometheus: &Prometheus, querier: &Querier) {
    let expected: Value = serde_json::from_str(&prometheus.get(query_path).unwrap()).unwrap();
    let got = querier.ok(query_path);
    assert_eq!(
        got["data"]["resultType"], expected["data"]["resultType"],
        "{query_path}"
    );
    let (want, have) = (rows(&expected), rows(&got));
    if !query_path.contains("%3E") {
        assert!(
            !want.is_empty(),
            "{query_path}: Prometheus has no data: {expected}"
        );
    }
    assert_eq!(
        want.iter().map(|r| &r.0).collect::<Vec<_>>(),
        have.iter().map(|r| &r.0).collect::<Vec<_>>(),
        "{query_path}: series differ"
    );
    for ((labels, want_points), (_, have_points)) in want.iter().zip(&have) {
        assert_eq!(
            want_points.len(),
            have_points.len(),
            "{query_path} {labels}: point count"
        );
        for (w, h) in want_points.iter().zip(have_points) {
            assert!(
                w.0 == h.0 && close(w.1, h.1),
                "{query_path} {labels}: want {w:?}, have {h:?}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_match_prometheus_and_promtool_works() {
    let data = dataset();
    let store = start_store(&[], data.clone()).await;
    let args = endpoints(&[&store]);
    let querier = tokio::task::spawn_blocking(move || Querier::start(&args, 1))
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let prometheus = tokio::task::spawn_blocking({
        let data = data.clone();
        let path = dir.path().to_owned();
        move || start_prometheus(&data, &path)
    })
    .await
    .unwrap();

    // Evaluation times sit 7s after a sample, never on a window boundary.
    let instant_times = [T0 + 3_600 + 7, T0 + 7_000 + 7 - 7_000 % STEP];
    let queries = [
        "http_requests_total",
        "temperature_celsius",
        "rate(http_requests_total[5m])",
        "sum by (job) (rate(http_requests_total[5m]))",
        "increase(http_requests_total{code=\"200\"}[10m])",
        "avg_over_time(temperature_celsius[10m])",
        "max by (job) (temperature_celsius)",
        "topk(2, temperature_celsius)",
        "count(http_requests_total) + 1",
        "temperature_celsius > 25",
        "abs(temperature_celsius - 20) * 2",
        "quantile(0.9, temperature_celsius)",
        "deriv(temperature_celsius[5m])",
        "http_requests_total offset 10m",
        "temperature_celsius[2m]",
    ];
    for query in queries {
        for time in instant_times {
            let path = format!("/api/v1/query?query={}&time={time}", enc(query));
            tokio::task::block_in_place(|| compare(&path, &prometheus, &querier));
        }
    }
    for query in queries.iter().filter(|query| !query.ends_with(']')) {
        let path = format!(
            "/api/v1/query_range?query={}&start={}&end={}&step=60",
            enc(query),
            T0 + 600 + 7,
            T0 + 6_000 + 7
        );
        tokio::task::block_in_place(|| compare(&path, &prometheus, &querier));
    }

    // promtool as a client of the querier.
    let server = format!("http://{}", querier.http);
    let instant = Command::new(promtool().unwrap())
        .args([
            "query",
            "instant",
            &format!("--time={}", T0 + 3_607),
            &server,
            "sum by (job) (http_requests_total)",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&instant.stdout);
    assert!(
        instant.status.success(),
        "{}",
        String::from_utf8_lossy(&instant.stderr)
    );
    assert!(
        stdout.contains("{job=\"api\"}") && stdout.contains("{job=\"db\"}"),
        "{stdout}"
    );
    let range = Command::new(promtool().unwrap())
        .args([
            "query",
            "range",
            &format!("--start={}", T0 + 600),
            &format!("--end={}", T0 + 1_200),
            "--step=1m",
            &server,
            "temperature_celsius{instance=\"a\"}",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&range.stdout);
    assert!(
        range.status.success(),
        "{}",
        String::from_utf8_lossy(&range.stderr)
    );
    assert!(
        stdout.contains("temperature_celsius{instance=\"a\", job=\"sensor\"}"),
        "{stdout}"
    );
    assert_eq!(stdout.matches(" @[").count(), 11, "{stdout}");
}
