//! Partial responses: a failing, slow or killed store becomes a warning naming it, or with
//! `partial_response=false` a 422 error naming it.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{Querier, endpoints, series, start_store};
use prom_model::Labels;
use storeapi::MemoryStore;
use storeapi::merge::SeriesResponseStream;
use storeapi::proto::thanos::info::{self as infopb, info_server::Info};
use storeapi::proto::thanos::{self, store_server::Store};
use tonic::{Request, Response, Status};

const T0: i64 = 1_700_000_000_000;

/// A store whose Info works but whose Series fails or hangs.
#[derive(Clone)]
struct BrokenStore {
    inner: MemoryStore,
    delay: Option<Duration>,
}

#[tonic::async_trait]
impl Store for BrokenStore {
    async fn series(
        &self,
        request: Request<thanos::SeriesRequest>,
    ) -> Result<Response<SeriesResponseStream>, Status> {
        match self.delay {
            Some(delay) => {
                tokio::time::sleep(delay).await;
                Store::series(&self.inner, request).await
            }
            None => Err(Status::unavailable("disk on fire")),
        }
    }
}

#[tonic::async_trait]
impl Info for BrokenStore {
    async fn info(
        &self,
        request: Request<infopb::InfoRequest>,
    ) -> Result<Response<infopb::InfoResponse>, Status> {
        Info::info(&self.inner, request).await
    }
}

async fn broken_store(delay: Option<Duration>) -> storeapi::transport::RunningServer {
    let inner = MemoryStore::new(
        Labels::from_pairs([("zone", "broken")]),
        vec![series(&[("__name__", "up"), ("job", "x")], [(T0, 1.0)])],
    );
    let store = BrokenStore { inner, delay };
    storeapi::transport::serve_store("127.0.0.1:0", store.clone(), store)
        .await
        .unwrap()
}

async fn good_store() -> storeapi::transport::RunningServer {
    start_store(
        &[("zone", "good")],
        vec![series(&[("__name__", "up"), ("job", "x")], [(T0, 1.0)])],
    )
    .await
}

fn query_path(extra: &str) -> String {
    format!("/api/v1/query?query=up&time={}{extra}", T0 / 1000 + 10)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_store_is_a_warning_or_an_error() {
    let good = good_store().await;
    let broken = broken_store(None).await;
    let broken_address = broken.address().to_string();
    let args = endpoints(&[&good, &broken]);
    let querier = tokio::task::spawn_blocking(move || Querier::start(&args, 2))
        .await
        .unwrap();

    let answer = querier.ok(&query_path(""));
    let result = answer["data"]["result"].as_array().unwrap();
    assert_eq!(result.len(), 1, "{answer}");
    assert_eq!(result[0]["metric"]["zone"], "good");
    let warnings = answer["warnings"].as_array().unwrap();
    assert_eq!(warnings.len(), 1, "{answer}");
    let warning = warnings[0].as_str().unwrap();
    assert!(
        warning.contains(&broken_address) && warning.contains("disk on fire"),
        "{warning}"
    );

    let (status, body) = querier.get(&query_path("&partial_response=false"));
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["errorType"], "execution");
    assert!(
        body["error"].as_str().unwrap().contains(&broken_address),
        "{body}"
    );

    let (status, body) = querier.get("/api/v1/labels?partial_response=false");
    assert_eq!(status, 422, "{body}");
    let labels = querier.ok("/api/v1/labels");
    assert_eq!(
        labels["data"],
        serde_json::json!(["__name__", "job", "zone"])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flag_disables_partial_response_and_slow_stores_time_out() {
    let good = good_store().await;
    let slow = broken_store(Some(Duration::from_secs(20))).await;
    let mut args = endpoints(&[&good, &slow]);
    args.push("--store.response-timeout=500ms".to_owned());
    args.push("--query.partial-response=false".to_owned());
    let querier = tokio::task::spawn_blocking(move || Querier::start(&args, 2))
        .await
        .unwrap();
    let (status, body) = querier.get(&query_path(""));
    assert_eq!(status, 422, "{body}");
    let answer = querier.ok(&query_path("&partial_response=true"));
    assert_eq!(
        answer["data"]["result"].as_array().unwrap().len(),
        1,
        "{answer}"
    );
    let warning = answer["warnings"][0].as_str().unwrap();
    assert!(warning.contains("deadline exceeded"), "{warning}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_store_leaves_the_rest_answering() {
    let good = good_store().await;
    let doomed = start_store(
        &[("zone", "doomed")],
        vec![series(&[("__name__", "up"), ("job", "x")], [(T0, 1.0)])],
    )
    .await;
    let doomed_address = doomed.address().to_string();
    let args = endpoints(&[&good, &doomed]);
    let querier = tokio::task::spawn_blocking(move || Querier::start(&args, 2))
        .await
        .unwrap();
    assert_eq!(
        querier.ok(&query_path(""))["data"]["result"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    doomed.shutdown().await.unwrap();

    let answer = querier.ok(&query_path(""));
    let result = answer["data"]["result"].as_array().unwrap();
    assert_eq!(result.len(), 1, "{answer}");
    assert_eq!(result[0]["metric"]["zone"], "good");
    let warned = answer["warnings"].as_array().is_some_and(|warnings| {
        warnings
            .iter()
            .any(|w| w.as_str().unwrap_or("").contains(&doomed_address))
    });
    // Either the query raced the health check (warning) or the store is already unhealthy.
    if !warned {
        let stores = querier.ok("/api/v1/stores");
        let listed = stores["data"]["store"].as_array().unwrap();
        assert!(
            listed
                .iter()
                .any(|s| s["name"] == doomed_address.as_str() && s["lastError"].is_string()),
            "{stores}"
        );
    }
    // After the next health check the store is unhealthy and listed with its error.
    test_harness::wait_until("store marked unhealthy", Duration::from_secs(15), || {
        querier.healthy_stores() == 1
    })
    .unwrap();
    assert_eq!(
        querier.ok(&query_path(""))["data"]["result"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_past_its_timeout_is_503() {
    let slow = broken_store(Some(Duration::from_secs(20))).await;
    let args = endpoints(&[&slow]);
    let querier = tokio::task::spawn_blocking(move || Querier::start(&args, 1))
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let (status, body) = querier.get(&query_path("&timeout=1s"));
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["errorType"], "timeout", "{body}");
    assert!(started.elapsed() < Duration::from_secs(10));
    // The process keeps answering.
    assert_eq!(
        querier.ok("/api/v1/query?query=2")["data"]["result"][1],
        "2"
    );
}
