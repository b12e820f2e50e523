//! The streamed Series fan-out: the stores' answers merged as their frames arrive.
//!
//! [`Proxy::series_stream`] spawns one task per fan-out. It starts every matching store's
//! `Series` call at once, merges the answers in label order with [`storeapi::merge_series`]
//! and sends the merged series in batches of at most [`BATCH_SERIES`] (fewer when the stores
//! have sent no more yet) through a channel of [`CHANNEL_BATCHES`] batches, so a reader (the
//! engine) works on the first series while the stores still send the rest, and an unread answer holds at most a few batches here (the
//! stores wait on gRPC flow control meanwhile). The task stops, dropping the store calls, as
//! soon as the reader is gone.
//!
//! A store that removes replica labels itself (or a request without replica labels) is merged
//! frame by frame. The answer of a store that does not is collected whole, stripped and sorted
//! (removing labels changes the order) before it joins the merge.
//!
//! `--store.response-timeout` bounds each wait for a store: for its first answer, then for
//! each next frame (the time the reader takes between frames does not count); a collected
//! store's whole answer is bounded by it as one wait.

use std::sync::Arc;
use std::time::Duration;

use futures_util::{Stream, StreamExt};
use storeapi::proto::thanos::{self, SeriesResponse, series_response};
use tokio::sync::mpsc;

use super::{NO_STORE_MATCHED, Proxy, SeriesQuery, label_sets_text};
use crate::endpoints::StoreHandle;
use crate::error::{Error, Result};

/// Series per batch sent to the reader.
pub const BATCH_SERIES: usize = 128;

/// Batches the channel to the reader holds.
const CHANNEL_BATCHES: usize = 4;

/// Series per response frame asked of stores (v0.41+ stores batch; older ones ignore it).
const RESPONSE_BATCH_SIZE: i64 = 64;

/// One batch of a streamed fan-out: merged series in label order and the warnings (store
/// warnings, partial-response failures) that came with them.
#[derive(Debug, Default)]
pub struct SeriesBatch {
    /// Merged series, in label order (after the previous batch's).
    pub series: Vec<thanos::Series>,
    /// Warnings.
    pub warnings: Vec<String>,
}

/// The reading end of [`Proxy::series_stream`]: batches until the fan-out is done, or one
/// error that ends it. Dropping it stops the fan-out.
#[derive(Debug)]
pub struct SeriesReceiver {
    receiver: mpsc::Receiver<Result<SeriesBatch>>,
}

impl SeriesReceiver {
    /// The next batch; `None` once the fan-out is done (every warning has been received).
    pub async fn recv(&mut self) -> Option<Result<SeriesBatch>> {
        self.receiver.recv().await
    }

    /// Stops the fan-out: its task ends at its next step.
    pub fn close(&mut self) {
        self.receiver.close();
    }

    /// Every batch, joined.
    pub async fn collect(mut self) -> Result<super::Fetched<Vec<thanos::Series>>> {
        let mut fetched: super::Fetched<Vec<thanos::Series>> = super::Fetched::default();
        while let Some(batch) = self.recv().await {
            let batch = batch?;
            fetched.data.extend(batch.series);
            fetched.warnings.extend(batch.warnings);
        }
        Ok(fetched)
    }
}

/// Why one store's answer stopped: the store (its index) and the message.
#[derive(Debug)]
struct StoreFailure {
    store: usize,
    message: String,
}

/// One store's answer as the merge reads it.
type StoreStream =
    std::pin::Pin<Box<dyn Stream<Item = std::result::Result<SeriesResponse, StoreFailure>> + Send>>;

impl Proxy {
    /// Series from every matching store, merged, as a stream of batches; see the
    /// [module docs](self). Must be called within a Tokio runtime (the fan-out is spawned on
    /// it).
    pub fn series_stream(&self, query: SeriesQuery) -> SeriesReceiver {
        let stores = self.matching(
            query.min_time,
            query.max_time,
            &query.matchers,
            &query.store_matchers,
        );
        let (sender, receiver) = mpsc::channel(CHANNEL_BATCHES);
        tokio::spawn(fan_out(stores, query, self.response_timeout, sender));
        SeriesReceiver { receiver }
    }
}

/// The fan-out task: merges the stores' answers and sends them in batches until done, failed
/// or the reader is gone.
async fn fan_out(
    stores: Vec<StoreHandle>,
    query: SeriesQuery,
    timeout: Duration,
    sender: mpsc::Sender<Result<SeriesBatch>>,
) {
    if stores.is_empty() {
        let batch = SeriesBatch {
            series: Vec::new(),
            warnings: vec![NO_STORE_MATCHED.to_owned()],
        };
        let _ = sender.send(Ok(batch)).await;
        return;
    }
    let query = Arc::new(query);
    let inputs: Vec<StoreStream> = stores
        .iter()
        .enumerate()
        .map(|(index, store)| store_stream(index, store, &query, timeout))
        .collect();
    let mut merged = storeapi::merge_series(inputs);
    let mut batch = SeriesBatch::default();
    loop {
        // What the stores have sent so far goes to the reader before waiting for more.
        let frame = match futures_util::FutureExt::now_or_never(merged.next()) {
            Some(frame) => frame,
            None => {
                if !batch.series.is_empty()
                    && sender.send(Ok(std::mem::take(&mut batch))).await.is_err()
                {
                    return;
                }
                tokio::select! {
                    biased;
                    () = sender.closed() => return,
                    frame = merged.next() => frame,
                }
            }
        };
        match frame {
            None => break,
            Some(Ok(SeriesResponse { result })) => match result {
                Some(series_response::Result::Series(series)) => {
                    batch.series.push(series);
                    if batch.series.len() >= BATCH_SERIES
                        && sender.send(Ok(std::mem::take(&mut batch))).await.is_err()
                    {
                        return;
                    }
                }
                Some(series_response::Result::Warning(warning)) => batch.warnings.push(warning),
                // The merge yields whole series only; hints are not used.
                Some(series_response::Result::Batch(_) | series_response::Result::Hints(_))
                | None => {}
            },
            Some(Err(failure)) => {
                if let Some(error) = refusal(&query) {
                    let _ = sender.send(Err(error)).await;
                    return;
                }
                let Some(store) = stores.get(failure.store) else {
                    continue;
                };
                let text = format!(
                    "fetch series for {} {}: {}",
                    label_sets_text(store),
                    store.status.name,
                    failure.message
                );
                if !query.partial_response {
                    let _ = sender.send(Err(Error::StoreFailed(text))).await;
                    return;
                }
                tracing::warn!(store = %store.status.name, error = %failure.message, "partial response");
                batch.warnings.push(text);
            }
        }
    }
    // The budget is the query's: another fan-out of it may have filled it.
    if let Some(error) = refusal(&query) {
        let _ = sender.send(Err(error)).await;
        return;
    }
    if !batch.series.is_empty() || !batch.warnings.is_empty() {
        let _ = sender.send(Ok(batch)).await;
    }
}

/// Over the memory budget or a fetch limit is the query's failure, never a partial answer.
fn refusal(query: &SeriesQuery) -> Option<Error> {
    query.budget.as_ref().and_then(|budget| budget.refusal())
}

/// The `Series` request for one store.
fn request(store: &StoreHandle, query: &SeriesQuery) -> thanos::SeriesRequest {
    thanos::SeriesRequest {
        min_time: query.min_time,
        max_time: query.max_time,
        matchers: storeapi::convert::matchers_to_proto(&query.matchers),
        max_resolution_window: query.max_resolution_window,
        aggregates: query
            .aggregates
            .iter()
            .map(|aggr| i32::from(*aggr))
            .collect(),
        partial_response_strategy: super::strategy(query.partial_response).into(),
        skip_chunks: query.skip_chunks,
        without_replica_labels: if store.status.supports_without_replica_labels {
            query.replica_labels.clone()
        } else {
            Vec::new()
        },
        limit: query.limit,
        response_batch_size: RESPONSE_BATCH_SIZE,
        ..Default::default()
    }
}

/// A failed call's message, as Thanos words it.
fn status_message(status: &tonic::Status) -> String {
    format!(
        "rpc error: code = {:?} desc = {}",
        status.code(),
        status.message()
    )
}

/// Waits for `call`, at most `timeout` (zero: no limit); a failure is worded as Thanos does.
pub(super) async fn bounded<T>(
    timeout: Duration,
    call: impl Future<Output = std::result::Result<T, tonic::Status>>,
) -> std::result::Result<T, String> {
    let outcome = if timeout.is_zero() {
        call.await
    } else {
        match tokio::time::timeout(timeout, call).await {
            Ok(outcome) => outcome,
            Err(_) => return Err("context deadline exceeded".to_owned()),
        }
    };
    outcome.map_err(|status| status_message(&status))
}

/// Counts one received frame against the query's budget and limits.
fn account(query: &SeriesQuery, frame: &SeriesResponse) -> std::result::Result<(), tonic::Status> {
    let Some(budget) = &query.budget else {
        return Ok(());
    };
    let series = match &frame.result {
        Some(series_response::Result::Series(_)) => 1,
        Some(series_response::Result::Batch(batch)) => batch.series.len(),
        _ => 0,
    };
    budget.take(prost::Message::encoded_len(frame), series)
}

/// Store `index`'s answer: frame by frame when its order survives replica label removal,
/// else collected and sorted; see the [module docs](self).
fn store_stream(
    index: usize,
    store: &StoreHandle,
    query: &Arc<SeriesQuery>,
    timeout: Duration,
) -> StoreStream {
    let request = request(store, query);
    let client = store.client.clone();
    let query = Arc::clone(query);
    if query.replica_labels.is_empty() || store.status.supports_without_replica_labels {
        streamed(index, client, request, query, timeout)
    } else {
        collected(index, client, request, query, timeout)
    }
}

/// Where a streamed store's answer is.
enum Streaming {
    /// The call is not made yet.
    Start(Box<(crate::endpoints::TracedStoreClient, thanos::SeriesRequest)>),
    /// Frames are arriving.
    Open(Box<tonic::Streaming<SeriesResponse>>),
    /// Ended or failed.
    Done,
}

/// A store's answer frame by frame. The store removed the replica labels it knows as its
/// external labels; any left (internal labels) are removed here too.
fn streamed(
    store: usize,
    client: crate::endpoints::TracedStoreClient,
    request: thanos::SeriesRequest,
    query: Arc<SeriesQuery>,
    timeout: Duration,
) -> StoreStream {
    let state = Streaming::Start(Box::new((client, request)));
    Box::pin(futures_util::stream::unfold(state, move |state| {
        let query = Arc::clone(&query);
        let fail = move |message| StoreFailure { store, message };
        async move {
            let mut stream = match state {
                Streaming::Done => return None,
                Streaming::Open(stream) => *stream,
                Streaming::Start(start) => {
                    let (mut client, request) = *start;
                    match bounded(timeout, client.series(request)).await {
                        Ok(response) => response.into_inner(),
                        Err(message) => return Some((Err(fail(message)), Streaming::Done)),
                    }
                }
            };
            match bounded(timeout, stream.message()).await {
                Ok(None) => None,
                Ok(Some(mut frame)) => {
                    if let Err(status) = account(&query, &frame) {
                        return Some((Err(fail(status_message(&status))), Streaming::Done));
                    }
                    strip_replica_labels(&mut frame, &query.replica_labels);
                    Some((Ok(frame), Streaming::Open(Box::new(stream))))
                }
                Err(message) => Some((Err(fail(message)), Streaming::Done)),
            }
        }
    }))
}

/// Removes replica labels from a frame's series.
fn strip_replica_labels(frame: &mut SeriesResponse, names: &[String]) {
    match &mut frame.result {
        Some(series_response::Result::Series(series)) => {
            storeapi::replica::remove_labels(&mut series.labels, names);
        }
        Some(series_response::Result::Batch(batch)) => {
            for series in &mut batch.series {
                storeapi::replica::remove_labels(&mut series.labels, names);
            }
        }
        _ => {}
    }
}

/// A store's whole answer, replica labels removed and sorted again, then its frames.
fn collected(
    store: usize,
    mut client: crate::endpoints::TracedStoreClient,
    request: thanos::SeriesRequest,
    query: Arc<SeriesQuery>,
    timeout: Duration,
) -> StoreStream {
    let whole = async move {
        let call = async {
            let mut stream = client.series(request).await?.into_inner();
            let mut series = Vec::new();
            let mut warnings = Vec::new();
            while let Some(frame) = stream.message().await? {
                account(&query, &frame)?;
                match frame.result {
                    Some(series_response::Result::Series(one)) => series.push(one),
                    Some(series_response::Result::Batch(batch)) => series.extend(batch.series),
                    Some(series_response::Result::Warning(warning)) => warnings.push(warning),
                    Some(series_response::Result::Hints(_)) | None => {}
                }
            }
            Ok((series, warnings))
        };
        let frames: Vec<std::result::Result<SeriesResponse, StoreFailure>> =
            match bounded(timeout, call).await {
                Ok((series, warnings)) => {
                    let series =
                        storeapi::replica::without_replica_labels(series, &query.replica_labels);
                    warnings
                        .into_iter()
                        .map(storeapi::merge::warning_frame)
                        .chain(series.into_iter().map(storeapi::merge::series_frame))
                        .map(Ok)
                        .collect()
                }
                Err(message) => vec![Err(StoreFailure { store, message })],
            };
        futures_util::stream::iter(frames)
    };
    Box::pin(futures_util::stream::once(whole).flatten())
}
