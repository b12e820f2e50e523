//! Hostile but fair queries against the real querier binary: deep nesting and long chains are
//! answered (or refused with a clear 400), and the process stays up to answer the next request.

#![allow(clippy::unwrap_used)]

mod common;

use common::{Querier, enc, endpoints, series, series_per_job, start_store};
use serde_json::{Value, json};

const T0: i64 = 1_700_000_000_000;

async fn querier_with_data() -> (Querier, Vec<storeapi::transport::RunningServer>) {
    querier_with_flags(&[]).await
}

/// A querier with `flags` over one store holding one series `x{job="a"}` (2.0 every 15s).
async fn querier_with_flags(flags: &[&str]) -> (Querier, Vec<storeapi::transport::RunningServer>) {
    querier_over(
        vec![series(
            &[("__name__", "x"), ("job", "a")],
            (0..=40).map(|i| (T0 + i * 15_000, 2.0)),
        )],
        flags,
    )
    .await
}

/// A querier with `flags` over one store holding `data`.
async fn querier_over(
    data: Vec<storeapi::SeriesData>,
    flags: &[&str],
) -> (Querier, Vec<storeapi::transport::RunningServer>) {
    let store = start_store(&[("region", "eu")], data).await;
    let mut args = endpoints(&[&store]);
    args.extend(flags.iter().map(|flag| (*flag).to_owned()));
    let querier = tokio::task::spawn_blocking(move || Querier::start(&args, 1))
        .await
        .unwrap();
    (querier, vec![store])
}

/// The process still answers: health and a trivial query.
fn assert_alive(querier: &Querier) {
    let one = querier.ok("/api/v1/query?query=1%2B1&time=1700000000");
    assert_eq!(one["data"]["result"][1], json!("2"));
}

/// The instant value at T0+600s of a query sent as a POST form, and the last value of a range
/// query over the same query sent as a GET.
fn values(querier: &Querier, query: &str) -> (Value, Value) {
    let time = (T0 + 600_000) / 1000;
    let (status, instant) = querier.post(
        "/api/v1/query",
        &format!("query={}&time={time}", enc(query)),
    );
    assert_eq!(status, 200, "{instant}");
    let range = querier.ok(&format!(
        "/api/v1/query_range?query={}&start={}&end={time}&step=60",
        enc(query),
        time - 240
    ));
    let instant = match instant["data"]["resultType"].as_str() {
        Some("scalar") => instant["data"]["result"][1].clone(),
        _ => instant["data"]["result"][0]["value"][1].clone(),
    };
    let last = range["data"]["result"][0]["values"][4][1].clone();
    (instant, last)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deep_nesting_and_long_chains_are_answered() {
    let (querier, _stores) = querier_with_data().await;
    let cases = [
        (format!("{}x{}", "(".repeat(8_000), ")".repeat(8_000)), "2"),
        (
            format!("{}x{}", "abs(".repeat(2_000), ")".repeat(2_000)),
            "2",
        ),
        (format!("{}x", "-".repeat(3_000)), "2"),
        (format!("{}x", "-".repeat(3_001)), "-2"),
        (vec!["1"; 3_000].join("+"), "3000"),
        (vec!["x"; 3_000].join(" + "), "6000"),
    ];
    for (query, expected) in cases {
        let (instant, last) = values(&querier, &query);
        assert_eq!(instant, json!(expected), "{}...", &query[..20]);
        assert_eq!(last, json!(expected), "{}...", &query[..20]);
        assert_alive(&querier);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn format_query_and_selectors_survive_deep_nesting() {
    let (querier, _stores) = querier_with_data().await;
    // Printable within the engine's formatting budget: Prometheus' form.
    let query = format!("{}x{}", "(".repeat(300), ")".repeat(300));
    let (status, formatted) =
        querier.post("/api/v1/format_query", &format!("query={}", enc(&query)));
    assert_eq!(status, 200, "{formatted}");
    let text = formatted["data"].as_str().unwrap();
    assert!(text.lines().count() > 100, "{}", &text[..80]);
    let compact: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    assert_eq!(compact, query);
    // Too costly to print: a clear 400, quickly.
    for query in [
        format!("{}x{}", "(".repeat(8_000), ")".repeat(8_000)),
        vec!["1"; 3_000].join("+"),
        format!("{}x", "-".repeat(3_000)),
    ] {
        let started = std::time::Instant::now();
        let (status, error) =
            querier.post("/api/v1/format_query", &format!("query={}", enc(&query)));
        if status == 200 {
            // A chain of unary minuses prints on one line: cheap, so printed.
            assert!(error["data"].as_str().unwrap().ends_with('x'), "{error}");
        } else {
            assert_eq!(status, 400, "{error}");
            assert_eq!(error["errorType"], json!("bad_data"));
            assert!(
                error["error"]
                    .as_str()
                    .unwrap()
                    .starts_with("invalid parameter \"query\": query is too deeply nested"),
                "{error}"
            );
        }
        assert!(started.elapsed().as_secs() < 10, "{:?}", started.elapsed());
        assert_alive(&querier);
    }
    // match[] selectors are parsed with the same protection.
    let selector = format!("{}x{}", "(".repeat(8_000), ")".repeat(8_000));
    let (status, error) = querier.post("/api/v1/series", &format!("match[]={}", enc(&selector)));
    assert_eq!(status, 400, "{error}");
    assert_eq!(error["errorType"], json!("bad_data"));
    assert_alive(&querier);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deeper_than_the_limit_is_a_bad_data_error() {
    let (querier, _stores) = querier_with_data().await;
    let limit = promql_engine::MAX_DEPTH;
    for query in [
        format!("{}x{}", "(".repeat(limit + 1), ")".repeat(limit + 1)),
        vec!["1"; limit + 2].join("+"),
        format!("{}x", "-".repeat(limit * 3)),
    ] {
        for path in ["/api/v1/query", "/api/v1/format_query"] {
            let (status, error) = querier.post(path, &format!("query={}", enc(&query)));
            assert_eq!(status, 400, "{path}: {error}");
            assert_eq!(error["errorType"], json!("bad_data"));
            let message = error["error"].as_str().unwrap();
            assert!(
                message.starts_with(
                    "invalid parameter \"query\": parse error: query is nested too deeply"
                ),
                "{message}"
            );
        }
        assert_alive(&querier);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_memory_budget_refuses_what_does_not_fit() {
    let (querier, _stores) = querier_with_flags(&["--query.memory-budget=200B"]).await;
    let time = (T0 + 600_000) / 1000;
    // A fine-step subquery holds 600,000 inner samples, far beyond a query's own 2 MiB
    // allowance and the 200 bytes of budget (and far below the 50 million sample limit).
    let (status, error) = querier.get(&format!(
        "/api/v1/query?query={}&time={time}",
        enc("count_over_time(x[10m:1ms])")
    ));
    assert_eq!(status, 422, "{error}");
    assert_eq!(error["errorType"], json!("execution"));
    assert_eq!(
        error["error"],
        json!(
            "query processing would exceed the memory budget of 200 bytes shared by concurrent queries"
        )
    );
    // What fits in a query's allowance still answers, and the budget is whole again.
    assert_alive(&querier);
    assert_alive(&querier);
}

/// A querier with `flags` over one store holding `x{job="j0"}` … `x{job="j4"}`.
async fn querier_with_five_series(
    flags: &[&str],
) -> (Querier, Vec<storeapi::transport::RunningServer>) {
    querier_over(series_per_job("x", 5, T0, 41, 2.0), flags).await
}

#[tokio::test(flavor = "multi_thread")]
async fn fetch_limits_refuse_a_query_that_fetches_too_much() {
    let time = (T0 + 600_000) / 1000;
    let count = |querier: &Querier, selector: &str| {
        querier.get(&format!(
            "/api/v1/query?query={}&time={time}",
            enc(&format!("count({selector})"))
        ))
    };
    let (querier, _stores) = querier_with_five_series(&["--query.max-fetched-series=3"]).await;
    let (status, error) = count(&querier, "x");
    assert_eq!(status, 422, "{error}");
    assert_eq!(error["errorType"], json!("execution"));
    assert!(
        error["error"]
            .as_str()
            .unwrap()
            .contains("the query exceeded the limit of 3 series fetched from stores"),
        "{error}"
    );
    let (status, fine) = count(&querier, r#"x{job=~"j0|j1|j2"}"#);
    assert_eq!(status, 200, "{fine}");
    assert_eq!(fine["data"]["result"][0]["value"][1], json!("3"));
    drop(querier);

    let (querier, _stores) = querier_with_five_series(&["--query.max-fetched-bytes=200B"]).await;
    let (status, error) = count(&querier, "x");
    assert_eq!(status, 422, "{error}");
    assert!(
        error["error"]
            .as_str()
            .unwrap()
            .contains("the query exceeded the limit of 200 bytes fetched from stores"),
        "{error}"
    );
    assert_alive(&querier);
    drop(querier);

    let (querier, _stores) = querier_with_five_series(&["--query.max-fetched-bytes=1MB"]).await;
    let (status, fine) = count(&querier, "x");
    assert_eq!(status, 200, "{fine}");
    assert_eq!(fine["data"]["result"][0]["value"][1], json!("5"));
}
