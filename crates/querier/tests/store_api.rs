//! The querier's own StoreAPI: the shared acceptance suite through a querier in front of an
//! in-memory store, and a querier stacked on a querier de-duplicating replicas.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{Querier, enc, points, series, series_per_job, start_store};
use prom_model::Labels;
use storeapi::testing::{StoreFactory, TestStore, run_acceptance};
use storeapi::{MemoryStore, SeriesData, info_client, store_client};

#[derive(Debug)]
struct Guard {
    _querier: Querier,
    _store: storeapi::transport::RunningServer,
}

impl std::fmt::Debug for Querier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Querier").field("http", &self.http).finish()
    }
}

struct QuerierFactory;

impl StoreFactory for QuerierFactory {
    async fn start(&self, external_labels: Labels, series: Vec<SeriesData>) -> TestStore {
        let store = MemoryStore::new(external_labels, series);
        let server = storeapi::transport::serve_store("127.0.0.1:0", store.clone(), store)
            .await
            .unwrap();
        let args = vec![format!("--endpoint={}", server.address())];
        let querier = tokio::task::spawn_blocking(move || Querier::start(&args, 1))
            .await
            .unwrap();
        let channel = storeapi::transport::connect(querier.grpc).await.unwrap();
        TestStore {
            store: store_client(channel.clone(), storeapi::Compression::None),
            info: info_client(channel, storeapi::Compression::None),
            guard: Box::new(Guard {
                _querier: querier,
                _store: server,
            }),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn querier_store_api_passes_acceptance() {
    run_acceptance(&QuerierFactory).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stacked_queriers_deduplicate() {
    const T0: i64 = 1_700_000_000_000;
    let labels = [("__name__", "up"), ("job", "api")];
    let a = start_store(
        &[("replica", "a")],
        vec![series(&labels, (0..40).map(|i| (T0 + i * 15_000, 1.0)))],
    )
    .await;
    let b = start_store(
        &[("replica", "b")],
        vec![series(
            &labels,
            (0..40).map(|i| (T0 + i * 15_000 + 2_000, 1.0)),
        )],
    )
    .await;
    let lower_args = vec![
        format!("--endpoint={}", a.address()),
        format!("--endpoint={}", b.address()),
    ];
    let lower = tokio::task::spawn_blocking(move || Querier::start(&lower_args, 2))
        .await
        .unwrap();
    let upper_args = vec![
        format!("--endpoint=dns+localhost:{}", lower.grpc.port()),
        "--query.replica-label=replica".to_owned(),
        "--store.sd-dns-interval=1s".to_owned(),
    ];
    let upper = tokio::task::spawn_blocking(move || Querier::start(&upper_args, 1))
        .await
        .unwrap();
    let stores = upper.ok("/api/v1/stores");
    assert!(stores["data"]["query"].is_array(), "{stores}");
    let answer = upper.ok(&format!(
        "/api/v1/query?query={}&time={}",
        enc("up[10m]"),
        (T0 + 585_000) / 1000
    ));
    let result = answer["data"]["result"].as_array().unwrap();
    assert_eq!(result.len(), 1, "{answer}");
    assert_eq!(
        result[0]["metric"],
        serde_json::json!({"__name__": "up", "job": "api"})
    );
    assert_eq!(points(&result[0]).len(), 40, "{answer}");
    tokio::time::sleep(Duration::from_millis(10)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_api_keeps_the_fetch_limits() {
    const T0: i64 = 1_700_000_000_000;
    let store = start_store(&[("region", "eu")], series_per_job("up", 5, T0, 5, 1.0)).await;
    let args = vec![
        format!("--endpoint={}", store.address()),
        "--query.max-fetched-series=3".to_owned(),
    ];
    let querier = tokio::task::spawn_blocking(move || Querier::start(&args, 1))
        .await
        .unwrap();
    let channel = storeapi::transport::connect(querier.grpc).await.unwrap();
    let mut client = store_client(channel, storeapi::Compression::None);
    let request = |job: &str| storeapi::proto::thanos::SeriesRequest {
        min_time: T0,
        max_time: T0 + 60_000,
        matchers: vec![storeapi::proto::thanos::LabelMatcher {
            r#type: storeapi::proto::thanos::label_matcher::Type::Re.into(),
            name: "job".to_owned(),
            value: job.to_owned(),
        }],
        ..Default::default()
    };
    let status = match client.series(request("j.*")).await {
        Err(status) => status,
        Ok(response) => {
            let mut stream = response.into_inner();
            loop {
                match stream.message().await {
                    Err(status) => break status,
                    Ok(Some(_)) => {}
                    Ok(None) => panic!("5 series sent despite a limit of 3"),
                }
            }
        }
    };
    assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status}");
    assert!(
        status.message().contains("--query.max-fetched-series"),
        "{status}"
    );
    let mut stream = client.series(request("j0|j1")).await.unwrap().into_inner();
    let mut frames = 0;
    while stream.message().await.unwrap().is_some() {
        frames += 1;
    }
    assert!(frames >= 1);
}
