//! The engine's view of a Series fan-out is streamed: `StoreQueryable::select` yields series
//! while the stores still send, a store failing mid-answer fails the selection or becomes a
//! warning, and a selection dropped early stops the store calls.

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::{series_per_job, start_store};
use futures_util::StreamExt;
use prom_model::{Labels, Matcher};
use promql_engine::{Queryable, SelectHints};
use querier::discovery::{Discovery, DiscoveryConfig};
use querier::endpoints::StoreSet;
use querier::proxy::Proxy;
use querier::queryable::{SelectOptions, StoreQueryable};
use service_core::GrpcClientFlags;
use storeapi::MemoryStore;
use storeapi::merge::SeriesResponseStream;
use storeapi::proto::thanos::info::{self as infopb, info_server::Info};
use storeapi::proto::thanos::{self, SeriesResponse, store_server::Store};
use storeapi::transport::RunningServer;
use tokio::sync::Semaphore;
use tonic::{Request, Response, Status};

const T0: i64 = 1_700_000_000_000;

/// Sets its flag when dropped: the store's answer stream was dropped (finished or cancelled).
struct DropFlag(Arc<AtomicBool>);

impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// What a [`ScriptedStore`] does after its first `pause_after` series frames.
#[derive(Clone, Copy)]
enum AfterPause {
    /// Waits for a permit of `release`, then sends the rest.
    Wait,
    /// Fails.
    Fail,
}

/// A store answering with a [`MemoryStore`]'s series one per frame, which sends
/// `pause_after` of them and then waits or fails.
#[derive(Clone)]
struct ScriptedStore {
    inner: MemoryStore,
    pause_after: usize,
    after: AfterPause,
    release: Arc<Semaphore>,
    dropped: Arc<AtomicBool>,
}

#[tonic::async_trait]
impl Store for ScriptedStore {
    async fn series(
        &self,
        request: Request<thanos::SeriesRequest>,
    ) -> Result<Response<SeriesResponseStream>, Status> {
        let mut request = request.into_inner();
        request.response_batch_size = 0;
        let answer = Store::series(&self.inner, Request::new(request)).await?;
        let frames: Vec<SeriesResponse> = answer
            .into_inner()
            .filter_map(|frame| async move { frame.ok() })
            .collect()
            .await;
        let state = (
            frames.into_iter().enumerate(),
            self.clone(),
            DropFlag(Arc::clone(&self.dropped)),
        );
        let stream = futures_util::stream::unfold(state, |(mut frames, store, flag)| async move {
            let (index, frame) = frames.next()?;
            if index == store.pause_after {
                match store.after {
                    AfterPause::Wait => drop(store.release.acquire().await),
                    AfterPause::Fail => {
                        return Some((Err(Status::internal("disk on fire mid-answer")), {
                            // Nothing follows a failure.
                            (Vec::new().into_iter().enumerate(), store, flag)
                        }));
                    }
                }
            }
            Some((Ok(frame), (frames, store, flag)))
        });
        Ok(Response::new(Box::pin(stream)))
    }
}

#[tonic::async_trait]
impl Info for ScriptedStore {
    async fn info(
        &self,
        request: Request<infopb::InfoRequest>,
    ) -> Result<Response<infopb::InfoResponse>, Status> {
        Info::info(&self.inner, request).await
    }
}

/// A scripted store with `count` `up` series (`zone` external label) pausing after
/// `pause_after` of them.
async fn scripted_store(
    zone: &str,
    count: usize,
    pause_after: usize,
    after: AfterPause,
) -> (RunningServer, ScriptedStore) {
    let store = ScriptedStore {
        inner: MemoryStore::new(
            Labels::from_pairs([("zone", zone)]),
            series_per_job("up", count, T0, 4, 1.0),
        ),
        pause_after,
        after,
        release: Arc::new(Semaphore::new(0)),
        dropped: Arc::new(AtomicBool::new(false)),
    };
    let server = storeapi::transport::serve_store("127.0.0.1:0", store.clone(), store.clone())
        .await
        .unwrap();
    (server, store)
}

/// A queryable over the stores at `servers`, all healthy.
async fn queryable(servers: &[&RunningServer], partial_response: bool) -> Arc<StoreQueryable> {
    let registry = prometheus::Registry::new();
    let discovery = Discovery::new(
        DiscoveryConfig {
            endpoints: servers
                .iter()
                .map(|server| server.address().to_string())
                .collect(),
            ..DiscoveryConfig::default()
        },
        &registry,
    )
    .unwrap();
    let stores = Arc::new(
        StoreSet::new(
            discovery,
            GrpcClientFlags::default(),
            Duration::from_secs(5),
            &registry,
        )
        .unwrap(),
    );
    stores.update().await;
    assert_eq!(stores.healthy().len(), servers.len());
    let proxy = Arc::new(Proxy::new(stores, Duration::ZERO));
    Arc::new(StoreQueryable::new(
        tokio::runtime::Handle::current(),
        proxy,
        SelectOptions {
            replica_labels: Vec::new(),
            partial_response,
            max_resolution_window: 0,
            deadline: Instant::now() + Duration::from_secs(60),
            store_matchers: Vec::new(),
            budget: None,
        },
    ))
}

fn hints() -> SelectHints {
    SelectHints {
        start: T0,
        end: T0 + 60_000,
        step: 0,
        func: None,
        range: 0,
        grouping: Vec::new(),
        by: false,
    }
}

fn up() -> Vec<Matcher> {
    vec![Matcher::equal("__name__", "up")]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_series_come_out_while_the_store_still_sends() {
    let (server, store) = scripted_store("a", 600, 10, AfterPause::Wait).await;
    let queryable = queryable(&[&server], false).await;
    let released = Arc::new(AtomicBool::new(false));
    let (first_sender, first_received) = tokio::sync::oneshot::channel();
    let reader = {
        let queryable = Arc::clone(&queryable);
        let released = Arc::clone(&released);
        tokio::task::spawn_blocking(move || {
            let mut selected = queryable.select(&up(), &hints()).unwrap();
            let first = selected.next().unwrap().unwrap();
            // Read before the store was let go on: the series came while it was blocked.
            let early = !released.load(Ordering::SeqCst);
            let _ = first_sender.send(());
            let rest: Vec<Labels> = selected.map(|series| series.unwrap().labels).collect();
            (first.labels, early, rest)
        })
    };
    // The store is let go on once the first series arrived, or after 10 s (then the first
    // series came only with the whole answer).
    let _ = tokio::time::timeout(Duration::from_secs(10), first_received).await;
    released.store(true, Ordering::SeqCst);
    store.release.add_permits(1);
    let (first, early, rest) = reader.await.unwrap();
    assert!(
        early,
        "the first series waited for the store's whole answer"
    );
    assert_eq!(
        first,
        Labels::from_pairs([("__name__", "up"), ("job", "j0"), ("zone", "a")])
    );
    assert_eq!(rest.len() + 1, 600);
    assert!(rest.iter().all(|labels| *labels > first), "label order");
    assert!(queryable.take_warnings().is_empty());
}

/// Reads every series of `up` on a blocking thread: the labels before the error, the error,
/// and the warnings.
async fn read_all(queryable: Arc<StoreQueryable>) -> (Vec<Labels>, Option<String>, Vec<String>) {
    tokio::task::spawn_blocking(move || {
        let mut labels = Vec::new();
        let mut error = None;
        for series in queryable.select(&up(), &hints()).unwrap() {
            match series {
                Ok(series) => labels.push(series.labels),
                Err(failure) => {
                    error = Some(failure.message);
                    break;
                }
            }
        }
        (labels, error, queryable.take_warnings())
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_failing_mid_answer_fails_the_selection_or_is_a_warning() {
    let (failing, _failing_store) = scripted_store("a", 300, 150, AfterPause::Fail).await;
    let good = start_store(&[("zone", "b")], series_per_job("up", 300, T0, 4, 1.0)).await;
    let failing_address = failing.address().to_string();

    let (_, error, _) = read_all(queryable(&[&failing, &good], false).await).await;
    let error = error.expect("no partial response: the selection fails");
    assert!(
        error.starts_with("fetch series for {zone=\"a\"} ")
            && error.contains(&failing_address)
            && error.contains("disk on fire mid-answer"),
        "{error}"
    );

    let (labels, error, warnings) = read_all(queryable(&[&failing, &good], true).await).await;
    assert_eq!(error, None);
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].contains(&failing_address) && warnings[0].contains("disk on fire mid-answer"),
        "{warnings:?}"
    );
    // Every series of the good store, and the failing store's 150 sent before it failed.
    let zone = |name: &str| {
        labels
            .iter()
            .filter(|labels| labels.get("zone") == Some(name))
            .count()
    };
    assert_eq!((zone("a"), zone("b")), (150, 300));
    assert!(
        labels.windows(2).all(|pair| pair[0] < pair[1]),
        "label order"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_selection_stops_the_store_call() {
    let (server, store) = scripted_store("a", 600, 10, AfterPause::Wait).await;
    let queryable = queryable(&[&server], false).await;
    let first = {
        let queryable = Arc::clone(&queryable);
        tokio::task::spawn_blocking(move || {
            let mut selected = queryable.select(&up(), &hints()).unwrap();
            selected
                .next()
                .map(|series| series.map(|series| series.labels))
        })
    };
    let first = tokio::time::timeout(Duration::from_secs(10), first)
        .await
        .expect("the first series came while the store was blocked")
        .unwrap();
    assert!(matches!(first, Some(Ok(_))), "{first:?}");
    // The selection is dropped; the store, still blocked, sees its answer stream dropped.
    test_harness::wait_until("store call cancelled", Duration::from_secs(10), || {
        store.dropped.load(Ordering::SeqCst)
    })
    .unwrap();
    assert!(store.release.available_permits() == 0);
}
