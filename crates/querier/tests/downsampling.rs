//! `max_source_resolution`, `--query.auto-downsampling` and aggregate choice reach the stores as
//! Thanos sends them, and downsampled chunks are read; also `--web.route-prefix`.

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::{Arc, Mutex};

use common::{Querier, enc};
use prom_model::{Labels, Sample};
use storeapi::MemoryStore;
use storeapi::chunk::xor_chunk;
use storeapi::merge::SeriesResponseStream;
use storeapi::proto::thanos::info::{self as infopb, info_server::Info};
use storeapi::proto::thanos::{self, store_server::Store};
use tonic::{Request, Response, Status};

const T0: i64 = 1_700_000_000_000;
const FIVE_MINUTES: i64 = 300_000;

/// `(max_resolution_window, aggregates)` of every Series request seen.
type Requests = Arc<Mutex<Vec<(i64, Vec<i32>)>>>;

/// A store serving 5m-downsampled chunks (no raw part) that records what it was asked.
#[derive(Clone)]
struct RecordingStore {
    inner: MemoryStore,
    requests: Requests,
}

#[tonic::async_trait]
impl Store for RecordingStore {
    async fn series(
        &self,
        request: Request<thanos::SeriesRequest>,
    ) -> Result<Response<SeriesResponseStream>, Status> {
        let message = request.get_ref();
        self.requests
            .lock()
            .unwrap()
            .push((message.max_resolution_window, message.aggregates.clone()));
        Store::series(&self.inner, request).await
    }
}

#[tonic::async_trait]
impl Info for RecordingStore {
    async fn info(
        &self,
        request: Request<infopb::InfoRequest>,
    ) -> Result<Response<infopb::InfoResponse>, Status> {
        Info::info(&self.inner, request).await
    }
}

fn downsampled_chunk() -> thanos::AggrChunk {
    let times: Vec<i64> = (0..24).map(|i| T0 + i * FIVE_MINUTES).collect();
    let part = |value: &dyn Fn(usize) -> f64| {
        let samples: Vec<Sample> = times
            .iter()
            .enumerate()
            .map(|(i, t)| Sample::new(*t, value(i)))
            .collect();
        Some(Box::new(xor_chunk(&samples)))
    };
    thanos::AggrChunk {
        min_time: T0,
        max_time: T0 + 23 * FIVE_MINUTES,
        count: part(&|_| 4.0),
        sum: part(&|i| 40.0 + i as f64),
        min: part(&|_| 1.0),
        max: part(&|_| 99.0),
        counter: part(&|i| 100.0 * i as f64),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resolution_and_aggregates_reach_the_store() {
    let inner = MemoryStore::with_chunks(
        Labels::empty(),
        vec![(
            Labels::from_pairs([("__name__", "load")]),
            vec![downsampled_chunk()],
        )],
    );
    let requests = Arc::new(Mutex::new(Vec::new()));
    let store = RecordingStore {
        inner,
        requests: Arc::clone(&requests),
    };
    let server = storeapi::transport::serve_store("127.0.0.1:0", store.clone(), store)
        .await
        .unwrap();
    let args = vec![
        format!("--endpoint={}", server.address()),
        "--web.route-prefix=/thanos/".to_owned(),
    ];
    let querier = tokio::task::spawn_blocking(move || Querier::start(&args, 1))
        .await
        .unwrap();
    let last = |requests: &Requests| requests.lock().unwrap().last().cloned().unwrap();
    let time = (T0 + 10 * FIVE_MINUTES) / 1000;

    // Default: raw only; an instant selector reads sum/count of downsampled chunks.
    let answer = querier.ok(&format!("/thanos/api/v1/query?query=load&time={time}"));
    assert_eq!(answer["data"]["result"][0]["value"][1], "12.5", "{answer}");
    let (window, aggregates) = last(&requests);
    assert_eq!(window, 0);
    assert_eq!(
        aggregates,
        vec![thanos::Aggr::Count as i32, thanos::Aggr::Sum as i32]
    );

    // Explicit resolutions and function-driven aggregates.
    let answer = querier.ok(&format!(
        "/thanos/api/v1/query?query={}&time={time}&max_source_resolution=5m",
        enc("max_over_time(load[20m])")
    ));
    assert_eq!(answer["data"]["result"][0]["value"][1], "99", "{answer}");
    assert_eq!(
        last(&requests),
        (FIVE_MINUTES, vec![thanos::Aggr::Max as i32])
    );
    querier.ok(&format!(
        "/thanos/api/v1/query?query={}&time={time}&max_source_resolution=1h",
        enc("rate(load[30m])")
    ));
    assert_eq!(
        last(&requests),
        (3_600_000, vec![thanos::Aggr::Counter as i32])
    );

    // auto: step / 5 for range queries.
    querier.ok(&format!(
        "/thanos/api/v1/query_range?query=load&start={}&end={}&step=1500&max_source_resolution=auto",
        T0 / 1000,
        time
    ));
    assert_eq!(last(&requests).0, FIVE_MINUTES);
    let (status, body) = querier.get("/thanos/api/v1/query?query=load&max_source_resolution=later");
    assert_eq!(status, 400, "{body}");
    // Without the prefix nothing is served.
    let (status, _) = test_harness::http_get(querier.http, "/api/v1/query?query=load").unwrap();
    assert_eq!(status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_downsampling_flag_uses_step_fifth() {
    let inner = MemoryStore::with_chunks(
        Labels::empty(),
        vec![(
            Labels::from_pairs([("__name__", "load")]),
            vec![downsampled_chunk()],
        )],
    );
    let requests = Arc::new(Mutex::new(Vec::new()));
    let store = RecordingStore {
        inner,
        requests: Arc::clone(&requests),
    };
    let server = storeapi::transport::serve_store("127.0.0.1:0", store.clone(), store)
        .await
        .unwrap();
    let args = vec![
        format!("--endpoint={}", server.address()),
        "--query.auto-downsampling".to_owned(),
    ];
    let querier = tokio::task::spawn_blocking(move || Querier::start(&args, 1))
        .await
        .unwrap();
    querier.ok(&format!(
        "/api/v1/query_range?query=load&start={}&end={}&step=3000",
        T0 / 1000,
        (T0 + 20 * FIVE_MINUTES) / 1000
    ));
    assert_eq!(requests.lock().unwrap().last().unwrap().0, 600_000);
    querier.ok(&format!("/api/v1/query?query=load&time={}", T0 / 1000 + 60));
    assert_eq!(requests.lock().unwrap().last().unwrap().0, 0);
}
