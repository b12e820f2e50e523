//! The StoreAPI (`thanos.Store`, `thanos.info.Info`) over the Prometheus next to the sidecar.
//!
//! Series come from remote read, label names and values from Prometheus' HTTP API. Matchers on
//! external label names are answered here: one that contradicts an external label makes the
//! answer empty without asking Prometheus, one that agrees is dropped before asking (Prometheus
//! does not store external labels in its series).

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, RwLock};

use futures_util::stream;
use prom_model::{Labels, MatchType, Matcher};
use storeapi::convert::{compare_labels, label_set_to_proto, labels_to_proto, matchers_from_proto};
use storeapi::memory::pack_series;
use storeapi::merge::{SeriesResponseStream, sort_chunks};
use storeapi::proto::thanos::info::{self as infopb, info_server::Info};
use storeapi::proto::thanos::{self, store_server::Store};
use tonic::{Request, Response, Status};
use tracing::{debug, instrument};

use crate::error::Error;
use crate::prometheus::PrometheusClient;
use crate::remote_read::{read_request, with_external_labels};

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

impl SidecarStore {
    /// A store over `prometheus` with shared `state`.
    pub fn new(prometheus: PrometheusClient, state: Arc<PrometheusState>) -> Self {
        Self { prometheus, state }
    }

    async fn select_series(
        &self,
        request: &thanos::SeriesRequest,
    ) -> Result<Vec<thanos::Series>, Error> {
        let external = self.state.external_labels();
        let matchers = matchers_from_proto(&request.matchers)?;
        let matchers = match split_matchers(matchers, &external) {
            Selection::Empty => return Ok(Vec::new()),
            Selection::Ask(matchers) => dot_matches_newline(matchers),
        };
        if matchers.is_empty() {
            return Err(Error::InvalidRequest {
                detail: "no matchers specified (excluding external labels)".to_owned(),
            });
        }
        let min_time = clamp_min_time(request, self.state.min_time());
        if min_time > request.max_time {
            return Ok(Vec::new());
        }
        let outcome = self
            .prometheus
            .remote_read(&read_request(&matchers, min_time, request.max_time))
            .await?;
        debug!(
            series = outcome.series.len(),
            streamed = outcome.streamed,
            "remote read done"
        );
        let mut series: Vec<thanos::Series> = outcome
            .series
            .into_iter()
            .map(|read| thanos::Series {
                labels: with_external_labels(read.labels, &external),
                chunks: read.chunks,
            })
            .collect();
        // Adding external labels can change the order; a stable sort keeps a series' frames in
        // order before they are joined.
        series.sort_by(|left, right| compare_labels(&left.labels, &right.labels));
        let mut joined: Vec<thanos::Series> = Vec::with_capacity(series.len());
        for one in series {
            match joined.last_mut() {
                Some(last) if last.labels == one.labels => last.chunks.extend(one.chunks),
                _ => joined.push(one),
            }
        }
        for one in &mut joined {
            sort_chunks(&mut one.chunks);
        }
        Ok(joined)
    }

    fn info_store(&self) -> infopb::StoreInfo {
        infopb::StoreInfo {
            min_time: self.state.min_time(),
            max_time: i64::MAX,
            ..Default::default()
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
        let mut series = self.select_series(&request).await?;
        truncate(&mut series, request.limit);
        if request.skip_chunks {
            for one in &mut series {
                one.chunks.clear();
            }
        }
        let frames = pack_series(series, request.response_batch_size);
        Ok(Response::new(Box::pin(stream::iter(
            frames.into_iter().map(Ok),
        ))))
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
