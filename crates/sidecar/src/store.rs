//! The StoreAPI (`thanos.Store`, `thanos.info.Info`) over the Prometheus next to the sidecar.
//!
//! Series come from remote read, label names and values from Prometheus' HTTP API. Matchers on
//! external label names are answered here: one that contradicts an external label makes the
//! answer empty without asking Prometheus, one that agrees is dropped before asking (Prometheus
//! does not store external labels in its series).
//!
//! **Series streams.** A Series call sends its remote read request and, once Prometheus'
//! answer has started well, returns a stream fed by a task: the task reads the answer frame by
//! frame ([`crate::remote_read`]), passes each series on as soon as it is complete and in order,
//! and sends the response frames through a channel of `FRAMES_IN_FLIGHT` (4) frames. A slow client
//! fills the channel, the task stops reading, and the HTTP connection's buffers push back on
//! Prometheus; the sidecar holds a few frames, not the answer. A client that goes away ends the
//! task, which drops the HTTP answer and so closes the connection to Prometheus. Errors after the
//! stream started (a broken frame, a request limit) end it with a gRPC status and a message.
//!
//! **Limits.** The request's `limit` ends the answer after that many series (not an error).
//! `--store.limits.request-series` and `--store.limits.request-samples` count the series and
//! chunks × 120 samples actually sent; exceeding one ends the stream with `ResourceExhausted`
//! naming the limit, as Thanos does.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, RwLock};

use prom_model::{Labels, MatchType, Matcher};
use storeapi::convert::{label_set_to_proto, labels_to_proto, matchers_from_proto};
use storeapi::memory::pack_series;
use storeapi::merge::SeriesResponseStream;
use storeapi::proto::thanos::info::{self as infopb, info_server::Info};
use storeapi::proto::thanos::{self, store_server::Store};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};
use tracing::{debug, instrument, warn};

use crate::error::Error;
use crate::prometheus::PrometheusClient;
use crate::remote_read::{ReadAnswer, SeriesOrder, read_request};

/// What the sidecar learns about its Prometheus and shares between the config loop and the
/// StoreAPI: the external labels and the oldest sample time.
#[derive(Debug)]
pub struct PrometheusState {
    external_labels: RwLock<Labels>,
    min_time: AtomicI64,
}

impl PrometheusState {
    /// State with the given external labels and oldest time.
    pub fn new(external_labels: Labels, min_time: i64) -> Self {
        Self {
            external_labels: RwLock::new(external_labels),
            min_time: AtomicI64::new(min_time),
        }
    }

    /// The current external labels.
    pub fn external_labels(&self) -> Labels {
        match self.external_labels.read() {
            Ok(labels) => labels.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Replaces the external labels.
    pub fn set_external_labels(&self, labels: Labels) {
        match self.external_labels.write() {
            Ok(mut current) => *current = labels,
            Err(poisoned) => *poisoned.into_inner() = labels,
        }
    }

    /// The oldest time the store advertises.
    pub fn min_time(&self) -> i64 {
        self.min_time.load(Ordering::Relaxed)
    }

    /// Sets the oldest time the store advertises.
    pub fn set_min_time(&self, min_time: i64) {
        self.min_time.store(min_time, Ordering::Relaxed);
    }
}

/// The sidecar's `thanos.Store` and `thanos.info.Info` services.
#[derive(Debug, Clone)]
pub struct SidecarStore {
    prometheus: PrometheusClient,
    state: Arc<PrometheusState>,
    limits: RequestLimits,
}

/// Request matchers split against the external labels.
enum Selection {
    /// A matcher contradicts an external label: nothing can match.
    Empty,
    /// The matchers to send to Prometheus (external-label matchers removed).
    Ask(Vec<Matcher>),
}

fn split_matchers(matchers: Vec<Matcher>, external: &Labels) -> Selection {
    let mut remaining = Vec::with_capacity(matchers.len());
    for matcher in matchers {
        match external.get(matcher.name()) {
            Some(value) if matcher.matches(value) => {}
            Some(_) => return Selection::Empty,
            None => remaining.push(matcher),
        }
    }
    Selection::Ask(remaining)
}

/// Makes `.` match a newline in every regex matcher, as our matchers (and Prometheus 3) do:
/// Prometheus 2 would otherwise miss label values with newlines. A no-op for Prometheus 3.
fn dot_matches_newline(matchers: Vec<Matcher>) -> Vec<Matcher> {
    matchers
        .into_iter()
        .map(|matcher| match matcher.kind() {
            MatchType::Regex | MatchType::NotRegex => {
                let wrapped = format!("(?s:{})", matcher.value());
                Matcher::new(matcher.kind(), matcher.name(), wrapped).unwrap_or(matcher)
            }
            MatchType::Equal | MatchType::NotEqual => matcher,
        })
        .collect()
}

/// The request's start, raised to the oldest time the store serves (`--min-time` or the oldest
/// sample). With a query step the start stays on the step grid, so a PromQL engine above sees
/// whole steps.
fn clamp_min_time(request: &thanos::SeriesRequest, available_min_time: i64) -> i64 {
    if request.min_time >= available_min_time {
        return request.min_time;
    }
    let step = request
        .query_hints
        .as_ref()
        .map_or(0, |hints| hints.step_millis);
    if step <= 0 {
        return available_min_time;
    }
    let (start, available, step) = (
        i128::from(request.min_time),
        i128::from(available_min_time),
        i128::from(step),
    );
    let mut aligned = start + (available - start) / step * step;
    if aligned != available {
        aligned += step;
    }
    i64::try_from(aligned).unwrap_or(available_min_time)
}

fn label_range(start: i64, end: i64) -> (i64, i64) {
    if start == 0 && end == 0 {
        (i64::MIN, i64::MAX)
    } else {
        (start, end)
    }
}

fn truncate<T>(items: &mut Vec<T>, limit: i64) {
    if let Ok(limit) = usize::try_from(limit)
        && limit > 0
    {
        items.truncate(limit);
    }
}

/// Per-request limits of Series calls, `--store.limits.request-series` and
/// `--store.limits.request-samples` (0 = none). Samples are counted as Thanos counts them, 120
/// per chunk sent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RequestLimits {
    /// Series per call.
    pub series: u64,
    /// Samples per call, counted as chunks × 120.
    pub samples: u64,
}

/// Samples Thanos assumes per chunk when counting towards the samples limit.
const SAMPLES_PER_CHUNK: u64 = 120;

/// Response frames a Series call may have ready before its client takes them; together with the
/// socket buffers this is what a slow client lets the sidecar read ahead of it.
const FRAMES_IN_FLIGHT: usize = 4;

impl SidecarStore {
    /// A store over `prometheus` with shared `state`.
    pub fn new(prometheus: PrometheusClient, state: Arc<PrometheusState>) -> Self {
        Self {
            prometheus,
            state,
            limits: RequestLimits::default(),
        }
    }

    /// The store with per-request `limits`.
    pub fn with_limits(mut self, limits: RequestLimits) -> Self {
        self.limits = limits;
        self
    }

    /// Asks Prometheus for the request's series; `None` when the answer is empty without asking.
    async fn remote_read(
        &self,
        request: &thanos::SeriesRequest,
        external: &Labels,
    ) -> Result<Option<ReadAnswer>, Error> {
        let matchers = matchers_from_proto(&request.matchers)?;
        let matchers = match split_matchers(matchers, external) {
            Selection::Empty => return Ok(None),
            Selection::Ask(matchers) => dot_matches_newline(matchers),
        };
        if matchers.is_empty() {
            return Err(Error::InvalidRequest {
                detail: "no matchers specified (excluding external labels)".to_owned(),
            });
        }
        let min_time = clamp_min_time(request, self.state.min_time());
        if min_time > request.max_time {
            return Ok(None);
        }
        let answer = self
            .prometheus
            .remote_read(&read_request(&matchers, min_time, request.max_time))
            .await?;
        Ok(Some(answer))
    }

    fn info_store(&self) -> infopb::StoreInfo {
        infopb::StoreInfo {
            min_time: self.state.min_time(),
            max_time: i64::MAX,
            ..Default::default()
        }
    }
}

/// Why a Series call's streaming stopped early.
enum Stop {
    /// The client went away.
    ClientGone,
    /// The request's own series limit was reached: the answer is complete.
    Enough,
    /// The call fails with this error.
    Failed(Error),
}

impl From<Error> for Stop {
    fn from(error: Error) -> Self {
        Self::Failed(error)
    }
}

/// The sending end of one Series call: applies `skip_chunks`, the request's `limit` and the
/// store's limits to each series, packs series into frames as the request asked and sends the
/// frames through the bounded channel, waiting while the client is slow.
struct SeriesSender {
    frames: mpsc::Sender<Result<thanos::SeriesResponse, Status>>,
    batch: Vec<thanos::Series>,
    batch_size: usize,
    skip_chunks: bool,
    /// The request's series limit (0 = none).
    request_limit: u64,
    limits: RequestLimits,
    series: u64,
    samples: u64,
}

impl SeriesSender {
    fn new(
        frames: mpsc::Sender<Result<thanos::SeriesResponse, Status>>,
        request: &thanos::SeriesRequest,
        limits: RequestLimits,
    ) -> Self {
        Self {
            frames,
            batch: Vec::new(),
            batch_size: usize::try_from(request.response_batch_size).unwrap_or(0),
            skip_chunks: request.skip_chunks,
            request_limit: u64::try_from(request.limit).unwrap_or(0),
            limits,
            series: 0,
            samples: 0,
        }
    }

    /// Sends `series` (once its batch is full); `Stop::Enough` once the request's limit is
    /// reached.
    async fn send(&mut self, mut series: thanos::Series) -> Result<(), Stop> {
        if self.request_limit > 0 && self.series >= self.request_limit {
            return Err(Stop::Enough);
        }
        if self.skip_chunks {
            series.chunks.clear();
        }
        self.series += 1;
        if self.limits.series > 0 && self.series > self.limits.series {
            return Err(Stop::Failed(Error::LimitExceeded {
                message: format!(
                    "exceeded series limit: limit {} violated (got {}) (--store.limits.request-series)",
                    self.limits.series, self.series
                ),
            }));
        }
        let chunks = u64::try_from(series.chunks.len()).unwrap_or(u64::MAX);
        self.samples = self
            .samples
            .saturating_add(chunks.saturating_mul(SAMPLES_PER_CHUNK));
        if self.limits.samples > 0 && self.samples > self.limits.samples {
            return Err(Stop::Failed(Error::LimitExceeded {
                message: format!(
                    "exceeded samples limit: limit {} violated (got {}) (--store.limits.request-samples, 120 samples per chunk)",
                    self.limits.samples, self.samples
                ),
            }));
        }
        self.batch.push(series);
        if self.batch.len() >= self.batch_size.max(1) {
            self.flush().await?;
        }
        if self.request_limit > 0 && self.series >= self.request_limit {
            return Err(Stop::Enough);
        }
        Ok(())
    }

    async fn flush(&mut self) -> Result<(), Stop> {
        if self.batch.is_empty() {
            return Ok(());
        }
        let batch = std::mem::take(&mut self.batch);
        for frame in pack_series(batch, i64::try_from(self.batch_size).unwrap_or(0)) {
            self.frames
                .send(Ok(frame))
                .await
                .map_err(|_| Stop::ClientGone)?;
        }
        Ok(())
    }
}

/// Reads Prometheus' answer and sends its series as they become complete and ordered.
async fn stream_answer(
    answer: ReadAnswer,
    external: Labels,
    sender: &mut SeriesSender,
) -> Result<(), Stop> {
    let mut ready = Vec::new();
    let mut taken = 0_usize;
    match answer {
        ReadAnswer::Samples { url, series } => {
            let mut order = SeriesOrder::unordered(external);
            taken = series.len();
            for one in series {
                order
                    .push(one, &mut ready)
                    .map_err(|detail| Error::PrometheusDecode {
                        url: url.clone(),
                        detail,
                    })?;
            }
            order.finish(&mut ready);
            for series in ready.drain(..) {
                sender.send(series).await?;
            }
        }
        ReadAnswer::Streamed(mut answer) => {
            let mut order = SeriesOrder::streamed(external);
            loop {
                let frame = tokio::select! {
                    frame = answer.next_frame() => frame?,
                    () = sender.frames.closed() => return Err(Stop::ClientGone),
                };
                let Some(series) = frame else { break };
                for one in series {
                    taken += 1;
                    order
                        .push(one, &mut ready)
                        .map_err(|detail| Error::PrometheusDecode {
                            url: answer.url().to_owned(),
                            detail,
                        })?;
                }
                for series in ready.drain(..) {
                    sender.send(series).await?;
                }
            }
            order.finish(&mut ready);
            for series in ready.drain(..) {
                sender.send(series).await?;
            }
        }
    }
    debug!(series = taken, sent = sender.series, "remote read done");
    Ok(())
}

/// Runs one Series call's stream to its end, an error frame or the client leaving.
async fn run_series_call(answer: ReadAnswer, external: Labels, mut sender: SeriesSender) {
    let outcome = match stream_answer(answer, external, &mut sender).await {
        Ok(()) | Err(Stop::Enough) => sender.flush().await,
        Err(stop) => Err(stop),
    };
    match outcome {
        Ok(()) | Err(Stop::Enough) => {}
        Err(Stop::ClientGone) => debug!("series client went away, remote read stopped"),
        Err(Stop::Failed(error)) => {
            warn!(error = %error, "series call failed");
            let _ = sender.frames.send(Err(Status::from(error))).await;
        }
    }
}

#[tonic::async_trait]
impl Store for SidecarStore {
    async fn info(
        &self,
        _request: Request<thanos::InfoRequest>,
    ) -> Result<Response<thanos::InfoResponse>, Status> {
        let external = self.state.external_labels();
        Ok(Response::new(thanos::InfoResponse {
            labels: labels_to_proto(&external),
            min_time: self.state.min_time(),
            max_time: i64::MAX,
            store_type: thanos::StoreType::Sidecar.into(),
            label_sets: vec![label_set_to_proto(&external)],
        }))
    }

    #[instrument(skip_all, fields(min_time = request.get_ref().min_time, max_time = request.get_ref().max_time))]
    async fn series(
        &self,
        request: Request<thanos::SeriesRequest>,
    ) -> Result<Response<SeriesResponseStream>, Status> {
        let request = request.into_inner();
        let external = self.state.external_labels();
        let (frames, receiver) = mpsc::channel(FRAMES_IN_FLIGHT);
        if let Some(answer) = self.remote_read(&request, &external).await? {
            let sender = SeriesSender::new(frames, &request, self.limits);
            tokio::spawn(run_series_call(answer, external, sender));
        }
        Ok(Response::new(Box::pin(ReceiverStream::new(receiver))))
    }

    #[instrument(skip_all)]
    async fn label_names(
        &self,
        request: Request<thanos::LabelNamesRequest>,
    ) -> Result<Response<thanos::LabelNamesResponse>, Status> {
        let request = request.into_inner();
        let external = self.state.external_labels();
        let matchers = matchers_from_proto(&request.matchers).map_err(Error::from)?;
        let Selection::Ask(matchers) = split_matchers(matchers, &external) else {
            return Ok(Response::new(thanos::LabelNamesResponse::default()));
        };
        let matchers = dot_matches_newline(matchers);
        let (start, end) = label_range(request.start, request.end);
        let found = self.prometheus.label_names(&matchers, start, end).await?;
        let mut names: BTreeSet<String> = found.into_iter().collect();
        if !names.is_empty() {
            names.extend(external.iter().map(|label| label.name.clone()));
        }
        let mut names: Vec<String> = names.into_iter().collect();
        truncate(&mut names, request.limit);
        Ok(Response::new(thanos::LabelNamesResponse {
            names,
            ..Default::default()
        }))
    }

    #[instrument(skip_all, fields(label = %request.get_ref().label))]
    async fn label_values(
        &self,
        request: Request<thanos::LabelValuesRequest>,
    ) -> Result<Response<thanos::LabelValuesResponse>, Status> {
        let request = request.into_inner();
        if request.label.is_empty() {
            return Err(Status::invalid_argument(
                "label name parameter cannot be empty",
            ));
        }
        let external = self.state.external_labels();
        let matchers = matchers_from_proto(&request.matchers).map_err(Error::from)?;
        let Selection::Ask(matchers) = split_matchers(matchers, &external) else {
            return Ok(Response::new(thanos::LabelValuesResponse::default()));
        };
        if let Some(value) = external.get(&request.label) {
            return Ok(Response::new(thanos::LabelValuesResponse {
                values: vec![value.to_owned()],
                ..Default::default()
            }));
        }
        let matchers = dot_matches_newline(matchers);
        let (start, end) = label_range(request.start, request.end);
        let found = self
            .prometheus
            .label_values(&request.label, &matchers, start, end)
            .await?;
        let values: BTreeSet<String> = found.into_iter().collect();
        let mut values: Vec<String> = values.into_iter().collect();
        truncate(&mut values, request.limit);
        Ok(Response::new(thanos::LabelValuesResponse {
            values,
            ..Default::default()
        }))
    }
}

#[tonic::async_trait]
impl Info for SidecarStore {
    async fn info(
        &self,
        _request: Request<infopb::InfoRequest>,
    ) -> Result<Response<infopb::InfoResponse>, Status> {
        let external = self.state.external_labels();
        Ok(Response::new(infopb::InfoResponse {
            label_sets: vec![storeapi::convert::zlabel_set_to_proto(&external)],
            component_type: "sidecar".to_owned(),
            store: Some(self.info_store()),
            ..Default::default()
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_silent_prometheus_is_a_bounded_error() {
        // Connections are accepted by the kernel but never answered.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let timeout = std::time::Duration::from_millis(500);
        let client = PrometheusClient::new(&format!("http://{addr}"), timeout, timeout).unwrap();
        let state = PrometheusState::new(Labels::from_pairs([("replica", "a")]), 0);
        let store = SidecarStore::new(client, Arc::new(state));
        let started = std::time::Instant::now();
        let request = thanos::SeriesRequest {
            min_time: 0,
            max_time: 1000,
            matchers: vec![thanos::LabelMatcher {
                r#type: 0,
                name: "__name__".into(),
                value: "up".into(),
            }],
            ..Default::default()
        };
        let status = match Store::series(&store, Request::new(request)).await {
            Ok(_) => panic!("a silent prometheus must fail the call"),
            Err(status) => status,
        };
        assert!(
            matches!(
                status.code(),
                tonic::Code::DeadlineExceeded | tonic::Code::Unavailable
            ),
            "{status}"
        );
        assert!(status.message().contains("prometheus"), "{status}");
        let names =
            Store::label_names(&store, Request::new(thanos::LabelNamesRequest::default())).await;
        assert!(names.is_err());
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
        drop(listener);
    }

    #[test]
    fn requests_start_no_earlier_than_the_served_range() {
        let request = |min_time, step_millis| thanos::SeriesRequest {
            min_time,
            max_time: 1_000_000,
            query_hints: Some(thanos::QueryHints {
                step_millis,
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(clamp_min_time(&request(500, 0), 100), 500);
        assert_eq!(clamp_min_time(&request(0, 0), 100), 100);
        assert_eq!(clamp_min_time(&request(0, 30), 100), 120);
        assert_eq!(clamp_min_time(&request(10, 30), 100), 100);
        assert_eq!(clamp_min_time(&request(-20, 30), 100), 100);
        assert!(clamp_min_time(&request(i64::MIN, 30), 100) >= 100);
    }

    #[test]
    fn external_label_matchers_are_answered_locally() {
        let external = Labels::from_pairs([("region", "eu"), ("replica", "a")]);
        let agree = vec![Matcher::equal("region", "eu"), Matcher::equal("job", "x")];
        match split_matchers(agree, &external) {
            Selection::Ask(rest) => {
                assert_eq!(rest.len(), 1);
                assert_eq!(rest[0].name(), "job");
            }
            Selection::Empty => panic!("agreeing matcher must not empty the answer"),
        }
        let contradict = vec![Matcher::equal("region", "us"), Matcher::equal("job", "x")];
        assert!(matches!(
            split_matchers(contradict, &external),
            Selection::Empty
        ));
    }
}
