//! Fan-out over the store set: Series, LabelNames and LabelValues.
//!
//! A request goes only to the healthy stores that can match it ([`storeapi::store_matches`]),
//! all at once; each store's answer is bounded by `--store.response-timeout`. Series answers
//! have replica labels removed (by the store when it advertises support, and again here), are
//! merged with [`storeapi::merge_series`], which joins series with equal labels, and are
//! streamed to the reader as they arrive ([`Proxy::series_stream`], see [`stream`]). A failing
//! store becomes a warning naming it (partial response) or fails the request.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use prom_model::{Labels, Matcher};
use promql_engine::Reservation;
use storeapi::convert::matchers_to_proto;
use storeapi::proto::thanos;
use storeapi::{StoreRange, store_matches};

use crate::endpoints::{StoreHandle, StoreSet, StoreStatus};
use crate::error::{Error, Result};

mod stream;

pub use stream::{BATCH_SERIES, SeriesBatch, SeriesReceiver};

/// Warning added when no store could match a request.
pub const NO_STORE_MATCHED: &str = "No StoreAPIs matched for this query";

/// The label `storeMatch[]` selectors match a store's address with.
pub const ADDRESS_LABEL: &str = "__address__";

/// Per-query limits on what is fetched from stores (0 = no limit):
/// `--query.max-fetched-series` and `--query.max-fetched-bytes`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FetchLimits {
    /// Series received from stores, counted per store before merging.
    pub series: u64,
    /// Encoded bytes of store answers.
    pub bytes: u64,
}

impl FetchLimits {
    /// Whether any limit is set.
    pub fn any(&self) -> bool {
        self.series > 0 || self.bytes > 0
    }
}

/// Why a query's fetching was stopped.
#[derive(Debug, Clone)]
enum Refusal {
    /// The memory budget (its size) was full.
    Memory(usize),
    /// A fetch limit was exceeded (the message names it).
    Limit(String),
}

/// What one query fetches from stores, counted as each answer frame arrives so that a query
/// over a limit stops fetching instead of first holding everything: its series and bytes
/// against [`FetchLimits`], and its share of the engine's memory budget (every frame twice its
/// encoded size: the decoded message and its buffers).
#[derive(Debug)]
pub struct FetchAccount {
    reservation: Option<Arc<Reservation>>,
    limits: FetchLimits,
    series: AtomicU64,
    bytes: AtomicU64,
    refused: OnceLock<Refusal>,
}

impl FetchAccount {
    /// Counts against `limits` and, when given, against `reservation` (the query's, shared
    /// with its evaluation).
    pub fn new(reservation: Option<Arc<Reservation>>, limits: FetchLimits) -> Self {
        Self {
            reservation,
            limits,
            series: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            refused: OnceLock::new(),
        }
    }

    /// Counts one answer frame of `encoded_len` bytes carrying `series` series.
    fn take(&self, encoded_len: usize, series: usize) -> std::result::Result<(), tonic::Status> {
        let refuse = |refusal: Refusal, message: String| {
            let _ = self.refused.set(refusal);
            tonic::Status::resource_exhausted(message)
        };
        for (counter, count, limit, what) in [
            (&self.series, series as u64, self.limits.series, "series"),
            (&self.bytes, encoded_len as u64, self.limits.bytes, "bytes"),
        ] {
            let total = counter.fetch_add(count, Ordering::Relaxed) + count;
            if limit > 0 && total > limit {
                let message = format!(
                    "the query exceeded the limit of {limit} {what} fetched from stores \
                     (--query.max-fetched-{what})"
                );
                return Err(refuse(Refusal::Limit(message.clone()), message));
            }
        }
        if let Some(reservation) = &self.reservation
            && let Err(error) = reservation.grow(encoded_len.saturating_mul(2))
        {
            let refusal = match &error {
                promql_engine::Error::MemoryBudget { limit } => Refusal::Memory(*limit),
                other => Refusal::Limit(other.to_string()),
            };
            return Err(refuse(refusal, error.to_string()));
        }
        Ok(())
    }

    /// The error that ends the query, once a frame was refused.
    fn refusal(&self) -> Option<Error> {
        self.refused.get().map(|refusal| match refusal {
            Refusal::Memory(limit) => {
                Error::Engine(promql_engine::Error::MemoryBudget { limit: *limit })
            }
            Refusal::Limit(message) => Error::QueryLimit(message.clone()),
        })
    }
}

/// One Series fan-out.
#[derive(Debug, Clone, Default)]
pub struct SeriesQuery {
    /// First timestamp (ms, inclusive).
    pub min_time: i64,
    /// Last timestamp (ms, inclusive).
    pub max_time: i64,
    /// Series matchers.
    pub matchers: Vec<Matcher>,
    /// `max_resolution_window` (ms).
    pub max_resolution_window: i64,
    /// Aggregates to ask for downsampled data.
    pub aggregates: Vec<thanos::Aggr>,
    /// Labels only.
    pub skip_chunks: bool,
    /// Replica labels to remove (empty: no de-duplication).
    pub replica_labels: Vec<String>,
    /// Whether a failing store is a warning (true) or an error.
    pub partial_response: bool,
    /// Most series per store (0 = no limit).
    pub limit: i64,
    /// `storeMatch[]` selectors: only stores one of them matches are asked (empty: all).
    pub store_matchers: Vec<Vec<Matcher>>,
    /// The query's fetch limits and memory budget share (none: nothing counted).
    pub budget: Option<Arc<FetchAccount>>,
}

/// Request options of a label names or label values fan-out.
#[derive(Debug, Clone, Copy, Default)]
pub struct LabelOptions<'a> {
    /// Replica labels to leave out.
    pub replica_labels: &'a [String],
    /// Whether a failing store is a warning (true) or an error.
    pub partial_response: bool,
    /// `storeMatch[]` selectors restricting the stores asked (empty: all).
    pub store_matchers: &'a [Vec<Matcher>],
}

/// What a fan-out returns: merged series and warnings.
#[derive(Debug, Default)]
pub struct Fetched<T> {
    /// The merged answer.
    pub data: T,
    /// Store warnings and partial-response failures.
    pub warnings: Vec<String>,
}

/// The querier's view of all stores; see the [module docs](self).
#[derive(Debug)]
pub struct Proxy {
    stores: Arc<StoreSet>,
    response_timeout: Duration,
}

fn label_sets_text(store: &StoreHandle) -> String {
    let sets: Vec<String> = store
        .status
        .label_sets
        .iter()
        .map(ToString::to_string)
        .collect();
    sets.join(",")
}

impl Proxy {
    /// A proxy over `stores`; `response_timeout` zero means no timeout.
    pub fn new(stores: Arc<StoreSet>, response_timeout: Duration) -> Self {
        Self {
            stores,
            response_timeout,
        }
    }

    /// The store set.
    pub fn stores(&self) -> &Arc<StoreSet> {
        &self.stores
    }

    fn matching(
        &self,
        min_time: i64,
        max_time: i64,
        matchers: &[Matcher],
        store_matchers: &[Vec<Matcher>],
    ) -> Vec<StoreHandle> {
        self.stores
            .healthy()
            .into_iter()
            .filter(|store| {
                if !store_selected(&store.status, store_matchers) {
                    return false;
                }
                let range = StoreRange {
                    min_time: store.status.min_time,
                    max_time: store.status.max_time,
                    label_sets: &store.status.label_sets,
                };
                store_matches(range, min_time, max_time, matchers).is_ok()
            })
            .collect()
    }

    /// Waits for `call`, at most `--store.response-timeout`.
    async fn bounded<T>(
        &self,
        call: impl Future<Output = Result<T, tonic::Status>>,
    ) -> Result<T, String> {
        stream::bounded(self.response_timeout, call).await
    }

    /// Series from every matching store, merged; see the [module docs](self). The whole
    /// answer of [`series_stream`](Self::series_stream).
    pub async fn series(&self, query: &SeriesQuery) -> Result<Fetched<Vec<thanos::Series>>> {
        self.series_stream(query.clone()).collect().await
    }

    /// Label names from every matching store, sorted and distinct.
    pub async fn label_names(
        &self,
        start: i64,
        end: i64,
        matchers: &[Matcher],
        options: &LabelOptions<'_>,
    ) -> Result<Fetched<Vec<String>>> {
        let LabelOptions {
            replica_labels,
            partial_response,
            store_matchers,
        } = *options;
        let request = thanos::LabelNamesRequest {
            start,
            end,
            matchers: matchers_to_proto(matchers),
            without_replica_labels: replica_labels.to_vec(),
            partial_response_strategy: strategy(partial_response).into(),
            ..Default::default()
        };
        let stores = self.matching(start, end, matchers, store_matchers);
        let calls = stores.iter().map(|store| {
            let mut client = store.client.clone();
            let request = request.clone();
            self.bounded(async move { Ok(client.label_names(request).await?.into_inner()) })
        });
        let answers = futures_util::future::join_all(calls).await;
        let mut fetched: Fetched<Vec<String>> = Fetched::default();
        for (store, answer) in stores.iter().zip(answers) {
            match answer {
                Ok(response) => {
                    fetched.data.extend(response.names);
                    fetched.warnings.extend(response.warnings);
                }
                Err(message) => {
                    let text = format!(
                        "fetch label names from store {}: {message}",
                        store.status.name
                    );
                    if !partial_response {
                        return Err(Error::StoreFailed(text));
                    }
                    fetched.warnings.push(text);
                }
            }
        }
        fetched.data.retain(|name| !replica_labels.contains(name));
        fetched.data.sort();
        fetched.data.dedup();
        Ok(fetched)
    }

    /// Values of `label` from every matching store, sorted and distinct.
    pub async fn label_values(
        &self,
        label: &str,
        start: i64,
        end: i64,
        matchers: &[Matcher],
        options: &LabelOptions<'_>,
    ) -> Result<Fetched<Vec<String>>> {
        let LabelOptions {
            replica_labels,
            partial_response,
            store_matchers,
        } = *options;
        if replica_labels.iter().any(|name| name == label) {
            return Ok(Fetched::default());
        }
        let request = thanos::LabelValuesRequest {
            label: label.to_owned(),
            start,
            end,
            matchers: matchers_to_proto(matchers),
            without_replica_labels: replica_labels.to_vec(),
            partial_response_strategy: strategy(partial_response).into(),
            ..Default::default()
        };
        let stores = self.matching(start, end, matchers, store_matchers);
        let calls = stores.iter().map(|store| {
            let mut client = store.client.clone();
            let request = request.clone();
            self.bounded(async move { Ok(client.label_values(request).await?.into_inner()) })
        });
        let answers = futures_util::future::join_all(calls).await;
        let mut fetched: Fetched<Vec<String>> = Fetched::default();
        for (store, answer) in stores.iter().zip(answers) {
            match answer {
                Ok(response) => {
                    fetched.data.extend(response.values);
                    fetched.warnings.extend(response.warnings);
                }
                Err(message) => {
                    let text = format!(
                        "fetch label values from store {}: {message}",
                        store.status.name
                    );
                    if !partial_response {
                        return Err(Error::StoreFailed(text));
                    }
                    fetched.warnings.push(text);
                }
            }
        }
        fetched.data.sort();
        fetched.data.dedup();
        Ok(fetched)
    }
}

/// Whether a store passes the request's `storeMatch[]` selectors: one selector must match one of
/// the store's external label sets extended with `__address__` (its address). As in Thanos' label
/// set matching, a matcher naming a label the set lacks does not exclude the store; `__address__`
/// is always present, so address matchers always apply.
pub fn store_selected(status: &StoreStatus, store_matchers: &[Vec<Matcher>]) -> bool {
    if store_matchers.is_empty() {
        return true;
    }
    let mut sets = status.label_sets.clone();
    if sets.is_empty() {
        sets.push(Labels::empty());
    }
    for set in &mut sets {
        set.set(ADDRESS_LABEL, status.name.clone());
    }
    store_matchers
        .iter()
        .any(|selector| storeapi::selection::label_sets_match(selector, &sets))
}

fn strategy(partial_response: bool) -> thanos::PartialResponseStrategy {
    if partial_response {
        thanos::PartialResponseStrategy::Warn
    } else {
        thanos::PartialResponseStrategy::Abort
    }
}
