//! Every HTTP endpoint's JSON shape and Prometheus' error answers, against the real binary.

#![allow(clippy::unwrap_used)]

mod common;

use common::{Querier, enc, endpoints, series, start_store};
use serde_json::json;

const T0: i64 = 1_700_000_000_000;

async fn querier_with_data() -> (Querier, Vec<storeapi::transport::RunningServer>) {
    let store = start_store(
        &[("region", "eu")],
        vec![
            series(
                &[
                    ("__name__", "http_requests_total"),
                    ("code", "200"),
                    ("job", "api"),
                ],
                (0..=40).map(|i| (T0 + i * 15_000, i as f64 * 10.0)),
            ),
            series(
                &[
                    ("__name__", "http_requests_total"),
                    ("code", "500"),
                    ("job", "api"),
                ],
                (0..=40).map(|i| (T0 + i * 15_000, i as f64)),
            ),
            series(
                &[("__name__", "temperature"), ("job", "sensor")],
                (0..=40).map(|i| (T0 + i * 15_000, if i == 40 { f64::INFINITY } else { 0.25 })),
            ),
        ],
    )
    .await;
    let args = endpoints(&[&store]);
    let querier = tokio::task::spawn_blocking(move || Querier::start(&args, 1))
        .await
        .unwrap();
    (querier, vec![store])
}

fn seconds(ms: i64) -> String {
    format!("{}", ms as f64 / 1000.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoints_answer_prometheus_json() {
    let (querier, _stores) = querier_with_data().await;
    let end = T0 + 600_000;

    let instant = querier.ok(&format!(
        "/api/v1/query?query={}&time={}",
        enc("sum by (code) (http_requests_total) / 8"),
        seconds(end)
    ));
    assert_eq!(
        instant["data"],
        json!({"resultType": "vector", "result": [
            {"metric": {"code": "200"}, "value": [1700000600, "50"]},
            {"metric": {"code": "500"}, "value": [1700000600, "5"]},
        ]})
    );
    let inf = querier.ok(&format!(
        "/api/v1/query?query=temperature&time={}",
        seconds(end)
    ));
    assert_eq!(
        inf["data"]["result"][0]["value"],
        json!([1700000600, "+Inf"])
    );
    let scalar = querier.ok("/api/v1/query?query=1.5&time=1700000000.5");
    assert_eq!(
        scalar["data"],
        json!({"resultType": "scalar", "result": [1700000000.5, "1.5"]})
    );
    let string = querier.ok("/api/v1/query?query=%22hi%22&time=2023-11-14T22:13:20Z");
    assert_eq!(
        string["data"],
        json!({"resultType": "string", "result": [1700000000, "hi"]})
    );

    let range = querier.ok(&format!(
        "/api/v1/query_range?query={}&start={}&end={}&step=60s",
        enc("temperature"),
        seconds(T0 + 60_000),
        seconds(T0 + 180_000)
    ));
    assert_eq!(
        range["data"],
        json!({"resultType": "matrix", "result": [{
            "metric": {"__name__": "temperature", "job": "sensor", "region": "eu"},
            "values": [[1700000060, "0.25"], [1700000120, "0.25"], [1700000180, "0.25"]],
        }]})
    );
    let (status, posted) = querier.post(
        "/api/v1/query_range",
        &format!(
            "query=temperature&start={}&end={}&step=60",
            T0 / 1000 + 60,
            T0 / 1000 + 180
        ),
    );
    assert_eq!(status, 200);
    assert_eq!(posted["data"], range["data"]);

    let series = querier.ok("/api/v1/series?match[]=http_requests_total&match[]=temperature");
    assert_eq!(series["data"].as_array().unwrap().len(), 3, "{series}");
    assert_eq!(
        series["data"][0],
        json!({"__name__": "http_requests_total", "code": "200", "job": "api", "region": "eu"})
    );
    let limited = querier.ok("/api/v1/series?match[]=http_requests_total&limit=1");
    assert_eq!(limited["data"].as_array().unwrap().len(), 1);
    let labels = querier.ok("/api/v1/labels");
    assert_eq!(labels["data"], json!(["__name__", "code", "job", "region"]));
    let labels = querier.ok(&format!("/api/v1/labels?match[]={}", enc("temperature")));
    assert_eq!(labels["data"], json!(["__name__", "job", "region"]));
    let values = querier.ok("/api/v1/label/job/values");
    assert_eq!(values["data"], json!(["api", "sensor"]));
    let values = querier.ok(&format!(
        "/api/v1/label/code/values?match[]={}&start={}&end={}",
        enc("http_requests_total{code!=\"500\"}"),
        T0 / 1000,
        T0 / 1000 + 600
    ));
    assert_eq!(values["data"], json!(["200"]));
    let values = querier.ok("/api/v1/label/__name__/values?limit=1");
    assert_eq!(values["data"], json!(["http_requests_total"]));

    assert_eq!(querier.ok("/api/v1/metadata")["data"], json!({}));
    assert_eq!(querier.ok("/api/v1/rules")["data"], json!({"groups": []}));
    assert_eq!(querier.ok("/api/v1/alerts")["data"], json!({"alerts": []}));
    assert_eq!(
        querier.ok("/api/v1/query_exemplars?query=up")["data"],
        json!([])
    );
    assert_eq!(
        querier.ok("/api/v1/targets")["data"],
        json!({"activeTargets": [], "droppedTargets": []})
    );
    let (status, labels_post) = querier.post("/api/v1/labels", "match[]=temperature");
    assert_eq!(status, 200);
    assert_eq!(labels_post["data"], json!(["__name__", "job", "region"]));
    let build = querier.ok("/api/v1/status/buildinfo");
    assert!(build["data"]["version"].is_string(), "{build}");
    let formatted = querier.ok(&format!(
        "/api/v1/format_query?query={}",
        enc("sum(rate(x[5m]))by(job)")
    ));
    assert!(
        formatted["data"].as_str().unwrap().contains("sum by (job)"),
        "{formatted}"
    );

    let stores = querier.ok("/api/v1/stores");
    let store = &stores["data"]["store"][0];
    assert_eq!(store["labelSets"], json!([{"region": "eu"}]));
    assert_eq!(store["lastError"], json!(null));
    assert_eq!(store["minTime"], json!(T0));
    assert_eq!(store["maxTime"], json!(T0 + 600_000));
    assert!(
        store["lastCheck"].as_str().unwrap().ends_with('Z'),
        "{store}"
    );

    let (status, metrics) = test_harness::http_get(querier.http, "/metrics").unwrap();
    assert_eq!(status, 200);
    for expected in [
        r#"http_requests_total{code="200",handler="query",method="GET"}"#,
        r#"http_requests_total{code="200",handler="label_values",method="GET"}"#,
        r#"http_requests_total{code="200",handler="query_range",method="POST"}"#,
        r#"http_request_duration_seconds_bucket{code="200",handler="series""#,
        r#"thanos_store_nodes_grpc_connections{external_labels="{region=\"eu\"}",store_type="store"} 1"#,
        // The query gate (`--query.max-concurrent`, default 20), as ThanosQueryOverload reads it.
        "thanos_query_concurrent_gate_queries_max 20",
        "thanos_query_concurrent_gate_queries_in_flight 0",
        "thanos_query_concurrent_gate_duration_seconds_bucket{le=\"0.01\"}",
    ] {
        assert!(
            metrics.contains(expected),
            "metrics lack {expected}:\n{metrics}"
        );
    }
    let queries: f64 = metrics
        .lines()
        .find_map(|line| line.strip_prefix("thanos_query_concurrent_gate_queries_total "))
        .and_then(|value| value.parse().ok())
        .unwrap_or(0.0);
    assert!(queries >= 5.0, "gate counted {queries} queries");
}

fn check_error(querier: &Querier, path: &str, status: u16, error_type: &str, message: &str) {
    let (got_status, body) = querier.get(path);
    assert_eq!(got_status, status, "{path}: {body}");
    assert_eq!(body["status"], "error", "{body}");
    assert_eq!(body["errorType"], error_type, "{body}");
    let text = body["error"].as_str().unwrap();
    assert!(text.contains(message), "{path}: {text:?} lacks {message:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_prometheus_errors() {
    let (querier, _stores) = querier_with_data().await;
    check_error(
        &querier,
        "/api/v1/query?query=sum(",
        400,
        "bad_data",
        "invalid parameter \"query\"",
    );
    check_error(
        &querier,
        "/api/v1/query?query=up&time=yesterday",
        400,
        "bad_data",
        "invalid parameter \"time\": cannot parse \"yesterday\" to a valid timestamp",
    );
    check_error(
        &querier,
        "/api/v1/query_range?query=up&start=100&end=10&step=1",
        400,
        "bad_data",
        "end timestamp must not be before start time",
    );
    check_error(
        &querier,
        "/api/v1/query_range?query=up&start=0&end=100000&step=1",
        400,
        "bad_data",
        "exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)",
    );
    check_error(
        &querier,
        "/api/v1/query_range?query=up&start=0&end=10&step=0",
        400,
        "bad_data",
        "zero or negative query resolution step widths are not accepted. Try a positive integer",
    );
    check_error(
        &querier,
        "/api/v1/query_range?query=up&start=0&end=10&step=x",
        400,
        "bad_data",
        "invalid parameter \"step\"",
    );
    check_error(
        &querier,
        "/api/v1/query_range?query=up&end=10&step=1",
        400,
        "bad_data",
        "invalid parameter \"start\"",
    );
    check_error(
        &querier,
        "/api/v1/query_range?query=up%5B1m%5D&start=0&end=10&step=1",
        400,
        "bad_data",
        "invalid expression type \"range vector\" for range query",
    );
    check_error(
        &querier,
        "/api/v1/series",
        400,
        "bad_data",
        "no match[] parameter provided",
    );
    check_error(
        &querier,
        "/api/v1/series?match[]=sum(up)",
        400,
        "bad_data",
        "invalid parameter \"match[]\"",
    );
    check_error(
        &querier,
        "/api/v1/query?query=up&dedup=maybe",
        400,
        "bad_data",
        "dedup",
    );
    check_error(
        &querier,
        "/api/v1/query?query=up&max_source_resolution=soon",
        400,
        "bad_data",
        "max_source_resolution",
    );
    // Execution errors are 422 and the process lives on.
    check_error(
        &querier,
        &format!(
            "/api/v1/query?query={}&time={}",
            enc("label_replace(http_requests_total, \"code\", \"x\", \"\", \"\")"),
            T0 / 1000 + 600
        ),
        422,
        "execution",
        "vector cannot contain metrics with the same labelset",
    );
    let ok = querier.ok("/api/v1/query?query=1");
    assert_eq!(ok["data"]["resultType"], "scalar");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sample_limit_is_a_clean_error() {
    let store = start_store(
        &[],
        vec![series(
            &[("__name__", "m")],
            (0..=200).map(|i| (T0 + i * 1_000, 1.0)),
        )],
    )
    .await;
    let mut args = endpoints(&[&store]);
    args.push("--query.max-samples=100".to_owned());
    let querier = tokio::task::spawn_blocking(move || Querier::start(&args, 1))
        .await
        .unwrap();
    check_error(
        &querier,
        &format!(
            "/api/v1/query?query={}&time={}",
            enc("count_over_time(m[10m])"),
            T0 / 1000 + 200
        ),
        422,
        "execution",
        "query processing would load too many samples into memory in query execution",
    );
    assert_eq!(querier.ok("/api/v1/query?query=1")["status"], "success");
}
