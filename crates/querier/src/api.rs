//! The HTTP API: Prometheus' `/api/v1` endpoints plus Thanos' `/api/v1/stores`.
//!
//! Every handler reads its parameters from the query string and, for POST, the urlencoded body
//! ([`Form`]), answers Prometheus' JSON envelope ([`render`](crate::render)) and maps errors to
//! Prometheus' `errorType` and status code through [`Error`]'s kind. Queries are limited by
//! `--query.max-concurrent` and evaluated on the blocking pool.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use prom_model::Matcher;
use promql_engine::{Engine, ParsedExpr, QueryOptions, QueryResult};
use promql_parser::parser::Expr;
use service_core::ApiError;

use crate::downsample::{Aggregate, max_resolution_window, parse_source_resolution};
use crate::error::{Error, Result};
use crate::params::{
    Form, MAX_TIME, MIN_TIME, parse_bool_param, parse_duration_param, parse_time_param,
};
use crate::proxy::{FetchAccount, FetchLimits, LabelOptions, Proxy, SeriesQuery};
use crate::queryable::{SelectOptions, StoreQueryable};
use crate::render;

/// Settings of the HTTP API, from the flags.
#[derive(Debug, Clone)]
pub struct ApiSettings {
    /// `--query.replica-label`.
    pub replica_labels: Vec<String>,
    /// `--query.partial-response`.
    pub partial_response: bool,
    /// `--query.auto-downsampling`.
    pub auto_downsampling: bool,
    /// `--query.default-step` (ms).
    pub default_step: i64,
    /// `--query.timeout`.
    pub timeout: Duration,
    /// `--query.max-concurrent`.
    pub max_concurrent: usize,
    /// Hidden `--query.instant.default.max_source_resolution` (ms).
    pub instant_max_source_resolution: i64,
    /// `--query.max-fetched-series` and `--query.max-fetched-bytes`.
    pub fetch_limits: FetchLimits,
}

/// Shared state of the handlers.
#[derive(Debug)]
pub struct Api {
    proxy: Arc<Proxy>,
    engine: Engine,
    settings: ApiSettings,
    gate: service_core::Gate,
    metrics: HttpMetrics,
}

/// `http_requests_total` and `http_request_duration_seconds` by handler, as Thanos names them.
#[derive(Debug, Clone)]
struct HttpMetrics {
    requests: prometheus::IntCounterVec,
    duration: prometheus::HistogramVec,
}

impl HttpMetrics {
    fn register(registry: &prometheus::Registry) -> Result<Self, prometheus::Error> {
        let requests = prometheus::IntCounterVec::new(
            prometheus::Opts::new("http_requests_total", "Tracks the number of HTTP requests."),
            &["code", "handler", "method"],
        )?;
        let duration = prometheus::HistogramVec::new(
            prometheus::HistogramOpts::new(
                "http_request_duration_seconds",
                "Tracks the latencies for HTTP requests.",
            )
            .buckets(vec![
                0.001, 0.01, 0.1, 0.3, 0.6, 1.0, 3.0, 6.0, 9.0, 20.0, 30.0, 60.0, 90.0, 120.0,
            ]),
            &["code", "handler", "method"],
        )?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(duration.clone()))?;
        Ok(Self { requests, duration })
    }
}

/// The handler label of a matched route: `query`, `query_range`, `label_values`, ...
fn handler_name(path: &str) -> String {
    let route = path
        .rsplit_once("/api/v1/")
        .map_or(path, |(_, route)| route);
    if route.starts_with("label/") {
        return "label_values".to_owned();
    }
    route.replace('/', "_")
}

async fn observe(
    State(api): State<Arc<Api>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let handler = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or_else(|| "other".to_owned(), |path| handler_name(path.as_str()));
    let method = request.method().as_str().to_owned();
    let started = Instant::now();
    let response = next.run(request).await;
    let code = response.status().as_u16().to_string();
    let labels = [code.as_str(), handler.as_str(), method.as_str()];
    api.metrics.requests.with_label_values(&labels).inc();
    api.metrics
        .duration
        .with_label_values(&labels)
        .observe(started.elapsed().as_secs_f64());
    response
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|elapsed| i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

fn ok_json(body: String) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response()
}

fn error_response(error: &Error) -> Response {
    ApiError::from_error(error).into_response()
}

fn respond(result: Result<String>) -> Response {
    match result {
        Ok(body) => ok_json(body),
        Err(error) => error_response(&error),
    }
}

/// Sets its flag when dropped.
struct CancelOnDrop(Arc<AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Request options shared by every data endpoint.
struct Common {
    replica_labels: Vec<String>,
    partial_response: bool,
    /// `storeMatch[]`: selectors on a store's external labels and `__address__`.
    store_matchers: Vec<Vec<Matcher>>,
}

impl Api {
    /// The API over `proxy`; registers the HTTP metrics on `registry`.
    pub fn new(
        proxy: Arc<Proxy>,
        engine: Engine,
        settings: ApiSettings,
        registry: &prometheus::Registry,
    ) -> Result<Self, prometheus::Error> {
        let gate = service_core::Gate::new(
            registry,
            "thanos_query_concurrent_",
            settings.max_concurrent,
        )?;
        Ok(Self {
            proxy,
            engine,
            settings,
            gate,
            metrics: HttpMetrics::register(registry)?,
        })
    }

    /// The `/api/v1` routes, to nest under the route prefix.
    pub fn router(self: Arc<Self>) -> Router {
        Router::new()
            .route("/query", get(query).post(query))
            .route("/query_range", get(query_range).post(query_range))
            .route("/series", get(series).post(series))
            .route("/labels", get(labels).post(labels))
            .route("/label/{name}/values", get(label_values))
            .route("/metadata", get(metadata))
            .route("/status/buildinfo", get(buildinfo))
            .route("/format_query", get(format_query).post(format_query))
            .route("/stores", get(stores))
            .route("/rules", get(|| empty("{\"groups\":[]}")))
            .route("/alerts", get(|| empty("{\"alerts\":[]}")))
            .route(
                "/targets",
                get(|| empty("{\"activeTargets\":[],\"droppedTargets\":[]}")),
            )
            .route("/query_exemplars", get(|| empty("[]")).post(|| empty("[]")))
            .route_layer(axum::middleware::from_fn_with_state(
                Arc::clone(&self),
                observe,
            ))
            .with_state(self)
    }

    fn common(&self, form: &Form) -> Result<Common> {
        let dedup = parse_bool_param(form, "dedup", true).map_err(Error::BadData)?;
        let partial_response =
            parse_bool_param(form, "partial_response", self.settings.partial_response)
                .map_err(Error::BadData)?;
        let requested: Vec<String> = form
            .all("replicaLabels[]")
            .into_iter()
            .map(str::to_owned)
            .collect();
        let replica_labels = match (dedup, requested.is_empty()) {
            (false, _) => Vec::new(),
            (true, true) => self.settings.replica_labels.clone(),
            (true, false) => requested,
        };
        let store_matchers = selector_sets(form, "storeMatch[]")?;
        Ok(Common {
            replica_labels,
            partial_response,
            store_matchers,
        })
    }

    async fn evaluate<F>(&self, form: &Form, step: i64, evaluate: F) -> Result<String>
    where
        F: FnOnce(&Engine, &StoreQueryable, &QueryOptions) -> promql_engine::Result<QueryResult>
            + Send
            + 'static,
    {
        let common = self.common(form)?;
        let requested =
            parse_source_resolution(form.get("max_source_resolution")).map_err(Error::BadData)?;
        let window = max_resolution_window(
            requested,
            self.settings.auto_downsampling,
            step,
            self.settings.instant_max_source_resolution,
        );
        let timeout = match parse_duration_param(form, "timeout").map_err(Error::BadData)? {
            Some(ms) if ms > 0 => {
                Duration::from_millis(ms.unsigned_abs()).min(self.settings.timeout)
            }
            _ => self.settings.timeout,
        };
        let lookback_delta = parse_duration_param(form, "lookback_delta")
            .map_err(Error::BadData)?
            .filter(|ms| *ms > 0)
            .map(|ms| Duration::from_millis(ms.unsigned_abs()));
        let _permit = self
            .gate
            .start()
            .await
            .map_err(|_| Error::Task("query gate closed".to_owned()))?;
        // One share of the memory budget for the store answers and the evaluation.
        let reservation = self.engine.reservation();
        let queryable = StoreQueryable::new(
            tokio::runtime::Handle::current(),
            Arc::clone(&self.proxy),
            SelectOptions {
                replica_labels: common.replica_labels,
                partial_response: common.partial_response,
                max_resolution_window: window,
                store_matchers: common.store_matchers,
                // Store answers are sized only when there is a budget or a limit to count
                // them against.
                budget: {
                    let budgeted = self.engine.options().memory_budget.is_some();
                    (budgeted || self.settings.fetch_limits.any()).then(|| {
                        Arc::new(FetchAccount::new(
                            budgeted.then(|| Arc::clone(&reservation)),
                            self.settings.fetch_limits,
                        ))
                    })
                },
                // A timeout too large for the clock means "no deadline" in practice: a year.
                deadline: Instant::now()
                    .checked_add(timeout)
                    .unwrap_or_else(|| Instant::now() + Duration::from_secs(365 * 86_400)),
            },
        );
        // Cancels the evaluation when this future is dropped (the client went away).
        let cancel = CancelOnDrop(Arc::new(AtomicBool::new(false)));
        let options = QueryOptions {
            lookback_delta,
            timeout: Some(timeout),
            cancel: Some(Arc::clone(&cancel.0)),
            reservation: Some(reservation),
        };
        let engine = self.engine.clone();
        // The answer is rendered on the blocking thread too (a large one would hold an async
        // worker), and the engine's value is freed as soon as it is written.
        let (rendered, queryable) = tokio::task::spawn_blocking(move || {
            let rendered = evaluate(&engine, &queryable, &options).map(|result| {
                let mut warnings = queryable.take_warnings();
                warnings.extend(result.warnings);
                render::query_success(&result.value, &warnings, &result.infos)
            });
            (rendered, queryable)
        })
        .await
        .map_err(|error| Error::Task(error.to_string()))?;
        drop(cancel);
        // The evaluation's memory is freed: hand its pages back while the answer is sent.
        service_core::malloc::release_free_memory();
        if rendered.is_err() && queryable.timed_out() {
            return Err(Error::Timeout(
                "query timed out in query execution".to_owned(),
            ));
        }
        rendered.map_err(|error| match error {
            promql_engine::Error::Storage { source } => Error::StoreFailed(source.message),
            other => Error::Engine(other),
        })
    }

    async fn instant(&self, form: Form) -> Result<String> {
        let time = parse_time_param(&form, "time", now_ms()).map_err(Error::BadData)?;
        let query = form.get("query").unwrap_or_default().to_owned();
        let (expr, query) = parse_query_blocking(query).await?;
        self.evaluate(&form, 0, move |engine, queryable, options| {
            engine.instant_query_expr(queryable, &expr, &query, time, options)
        })
        .await
    }

    async fn range(&self, form: Form) -> Result<String> {
        let (start, end, step) = range_params(&form, self.settings.default_step)?;
        let query = form.get("query").unwrap_or_default().to_owned();
        let (expr, query) = parse_query_blocking(query).await?;
        self.evaluate(&form, step, move |engine, queryable, options| {
            engine.range_query_expr(queryable, &expr, &query, start, end, step, options)
        })
        .await
    }

    pub(crate) fn time_range(form: &Form) -> Result<(i64, i64)> {
        let start = parse_time_param(form, "start", MIN_TIME).map_err(Error::BadData)?;
        let end = parse_time_param(form, "end", MAX_TIME).map_err(Error::BadData)?;
        if end < start {
            return Err(Error::BadData(
                "end timestamp must not be before start time".to_owned(),
            ));
        }
        Ok((start, end))
    }

    async fn series(&self, form: Form) -> Result<String> {
        let matcher_sets = match_sets(&form)?;
        if matcher_sets.is_empty() {
            return Err(Error::BadData("no match[] parameter provided".to_owned()));
        }
        let (start, end) = Self::time_range(&form)?;
        let common = self.common(&form)?;
        let limit = parse_limit(&form)?;
        let mut all = Vec::new();
        let mut warnings = Vec::new();
        for matchers in matcher_sets {
            let query = SeriesQuery {
                min_time: start,
                max_time: end,
                matchers,
                skip_chunks: true,
                aggregates: Aggregate::Average.request_parts(),
                replica_labels: common.replica_labels.clone(),
                partial_response: common.partial_response,
                store_matchers: common.store_matchers.clone(),
                ..Default::default()
            };
            let fetched = self.proxy.series(&query).await?;
            warnings.extend(fetched.warnings);
            for series in fetched.data {
                let labels = storeapi::convert::labels_from_proto(series.labels)
                    .map_err(|error| Error::StoreFailed(error.to_string()))?;
                all.push(labels);
            }
        }
        all.sort();
        all.dedup();
        truncate(&mut all, limit);
        warnings.dedup();
        let items: Vec<String> = all.iter().map(render::labels).collect();
        Ok(render::success(
            &format!("[{}]", items.join(",")),
            &warnings,
            &[],
        ))
    }

    async fn labels(&self, form: Form) -> Result<String> {
        let (start, end) = Self::time_range(&form)?;
        let common = self.common(&form)?;
        let limit = parse_limit(&form)?;
        let mut sets = match_sets(&form)?;
        if sets.is_empty() {
            sets.push(Vec::new());
        }
        let mut names = Vec::new();
        let mut warnings = Vec::new();
        for matchers in sets {
            let fetched = self
                .proxy
                .label_names(
                    start,
                    end,
                    &matchers,
                    &LabelOptions {
                        replica_labels: &common.replica_labels,
                        partial_response: common.partial_response,
                        store_matchers: &common.store_matchers,
                    },
                )
                .await?;
            names.extend(fetched.data);
            warnings.extend(fetched.warnings);
        }
        names.sort();
        names.dedup();
        truncate(&mut names, limit);
        Ok(render::success(&render::strings(&names), &warnings, &[]))
    }

    async fn label_values(&self, name: String, form: Form) -> Result<String> {
        if name.is_empty() {
            return Err(Error::BadData(format!("invalid label name: {name:?}")));
        }
        let (start, end) = Self::time_range(&form)?;
        let common = self.common(&form)?;
        let limit = parse_limit(&form)?;
        let mut sets = match_sets(&form)?;
        if sets.is_empty() {
            sets.push(Vec::new());
        }
        let mut values = Vec::new();
        let mut warnings = Vec::new();
        for matchers in sets {
            let fetched = self
                .proxy
                .label_values(
                    &name,
                    start,
                    end,
                    &matchers,
                    &LabelOptions {
                        replica_labels: &common.replica_labels,
                        partial_response: common.partial_response,
                        store_matchers: &common.store_matchers,
                    },
                )
                .await?;
            values.extend(fetched.data);
            warnings.extend(fetched.warnings);
        }
        values.sort();
        values.dedup();
        truncate(&mut values, limit);
        Ok(render::success(&render::strings(&values), &warnings, &[]))
    }

    fn stores_json(&self) -> String {
        let mut groups: std::collections::BTreeMap<String, Vec<String>> = Default::default();
        for status in self.proxy.stores().statuses() {
            let label_sets: Vec<String> = status.label_sets.iter().map(render::labels).collect();
            let last_error = match &status.last_error {
                Some(error) => render::string(error),
                None => "null".to_owned(),
            };
            let item = format!(
                "{{\"name\":{},\"lastCheck\":{},\"lastError\":{},\"labelSets\":[{}],\"minTime\":{},\"maxTime\":{}}}",
                render::string(&status.name),
                render::string(&prom_model::time::format_rfc3339_millis(status.last_check)),
                last_error,
                label_sets.join(","),
                status.min_time,
                status.max_time
            );
            let component = if status.component_type.is_empty() {
                "unknown".to_owned()
            } else {
                status.component_type.clone()
            };
            groups.entry(component).or_default().push(item);
        }
        let fields: Vec<String> = groups
            .iter()
            .map(|(component, items)| {
                format!("{}:[{}]", render::string(component), items.join(","))
            })
            .collect();
        render::success(&format!("{{{}}}", fields.join(",")), &[], &[])
    }
}

fn parse_query(query: &str) -> Result<ParsedExpr> {
    promql_engine::parse_expr(query)
        .map_err(|error| Error::BadData(format!("invalid parameter \"query\": {error}")))
}

/// Parses `query` on a blocking thread: a long query (thousands of chained operators, up to the
/// engine's depth limit) can take the parser a second, which must not stall an async worker.
async fn parse_query_blocking(query: String) -> Result<(ParsedExpr, String)> {
    tokio::task::spawn_blocking(move || parse_query(&query).map(|expr| (expr, query)))
        .await
        .map_err(|error| Error::Task(error.to_string()))?
}

/// A range query's `start`, `end` and `step` (ms), checked as Prometheus checks them; `step`
/// is `default_step` when absent.
pub(crate) fn range_params(form: &Form, default_step: i64) -> Result<(i64, i64, i64)> {
    let start = parse_time_param(form, "start", i64::MIN).map_err(Error::BadData)?;
    let end = parse_time_param(form, "end", i64::MIN).map_err(Error::BadData)?;
    if start == i64::MIN {
        return Err(Error::BadData(
            "invalid parameter \"start\": cannot parse \"\" to a valid timestamp".to_owned(),
        ));
    }
    if end == i64::MIN {
        return Err(Error::BadData(
            "invalid parameter \"end\": cannot parse \"\" to a valid timestamp".to_owned(),
        ));
    }
    if end < start {
        return Err(Error::BadData(
            "end timestamp must not be before start time".to_owned(),
        ));
    }
    let step = parse_duration_param(form, "step")
        .map_err(Error::BadData)?
        .unwrap_or(default_step);
    if step <= 0 {
        return Err(Error::BadData(
            "zero or negative query resolution step widths are not accepted. Try a positive integer".to_owned(),
        ));
    }
    // In i128: times are accepted up to about 292 million years either side of 1970, so
    // `end - start` can overflow an i64 (it panicked, and in a release build wrapped to a
    // negative count that let any resolution through).
    if (i128::from(end) - i128::from(start)) / i128::from(step) > 11_000 {
        return Err(Error::BadData(
            "exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)".to_owned(),
        ));
    }
    Ok((start, end, step))
}

pub(crate) fn parse_limit(form: &Form) -> Result<usize> {
    match form.get("limit").filter(|value| !value.is_empty()) {
        None => Ok(0),
        Some(value) => value.parse::<usize>().map_err(|_| {
            Error::BadData(format!(
                "invalid parameter \"limit\": cannot parse {value:?} to a valid limit"
            ))
        }),
    }
}

fn truncate<T>(items: &mut Vec<T>, limit: usize) {
    if limit > 0 {
        items.truncate(limit);
    }
}

/// The matcher sets of every `match[]` parameter (each must be a vector selector).
fn match_sets(form: &Form) -> Result<Vec<Vec<Matcher>>> {
    selector_sets(form, "match[]")
}

/// The matcher sets of every `param` value (each must be a vector selector).
pub(crate) fn selector_sets(form: &Form, param: &str) -> Result<Vec<Vec<Matcher>>> {
    let mut sets = Vec::new();
    for text in form.all(param) {
        let invalid =
            |message: String| Error::BadData(format!("invalid parameter \"{param}\": {message}"));
        let expr = promql_engine::parse_expr(text).map_err(|error| invalid(error.to_string()))?;
        if !matches!(*expr, Expr::VectorSelector(_)) {
            return Err(invalid(format!("{text:?} is not a vector selector")));
        }
        let found =
            promql_engine::selector_matchers(&expr).map_err(|error| invalid(error.to_string()))?;
        sets.extend(found);
    }
    Ok(sets)
}

fn form(query: Option<String>, body: &Bytes) -> Form {
    Form::parse(query.as_deref(), body)
}

async fn query(State(api): State<Arc<Api>>, RawQuery(raw): RawQuery, body: Bytes) -> Response {
    respond(api.instant(form(raw, &body)).await)
}

async fn query_range(
    State(api): State<Arc<Api>>,
    RawQuery(raw): RawQuery,
    body: Bytes,
) -> Response {
    respond(api.range(form(raw, &body)).await)
}

async fn series(State(api): State<Arc<Api>>, RawQuery(raw): RawQuery, body: Bytes) -> Response {
    respond(api.series(form(raw, &body)).await)
}

async fn labels(State(api): State<Arc<Api>>, RawQuery(raw): RawQuery, body: Bytes) -> Response {
    respond(api.labels(form(raw, &body)).await)
}

async fn label_values(
    State(api): State<Arc<Api>>,
    Path(name): Path<String>,
    RawQuery(raw): RawQuery,
) -> Response {
    respond(api.label_values(name, form(raw, &Bytes::new())).await)
}

/// An endpoint whose data the querier does not federate yet: valid and empty, as Thanos
/// answers when no endpoint serves that API.
async fn empty(data: &'static str) -> Response {
    ok_json(render::success(data, &[], &[]))
}

async fn metadata() -> Response {
    ok_json(render::success("{}", &[], &[]))
}

async fn buildinfo() -> Response {
    use service_core::build_info::{BRANCH, REVISION, RUSTC_VERSION, VERSION};
    let data = format!(
        "{{\"version\":{},\"revision\":{},\"branch\":{},\"buildUser\":\"\",\"buildDate\":\"\",\"goVersion\":{}}}",
        render::string(VERSION),
        render::string(REVISION),
        render::string(BRANCH),
        render::string(&format!("rustc {RUSTC_VERSION}"))
    );
    ok_json(render::success(&data, &[], &[]))
}

async fn format_query(RawQuery(raw): RawQuery, body: Bytes) -> Response {
    let query = form(raw, &body).get("query").unwrap_or_default().to_owned();
    // Parsing and printing are CPU work bounded by the engine's limits, done off the workers.
    let result = tokio::task::spawn_blocking(move || {
        let expr = parse_query(&query)?;
        let pretty = expr
            .prettify()
            .map_err(|error| Error::BadData(format!("invalid parameter \"query\": {error}")))?;
        Ok(render::success(&render::string(&pretty), &[], &[]))
    })
    .await
    .unwrap_or_else(|error| Err(Error::Task(error.to_string())));
    respond(result)
}

async fn stores(State(api): State<Arc<Api>>) -> Response {
    ok_json(api.stores_json())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_range(query: &str, expected: std::result::Result<(i64, i64, i64), &str>) {
        let form = Form::parse(Some(query), b"");
        let parsed = range_params(&form, 60_000).map_err(|error| error.to_string());
        assert_eq!(parsed, expected.map_err(str::to_owned), "{query}");
    }

    #[test]
    fn range_params_survive_the_extreme_times() {
        check_range("start=0&end=600&step=60", Ok((0, 600_000, 60_000)));
        check_range("start=0&end=600", Ok((0, 600_000, 60_000)));
        // `end - start` is above i64::MAX: this input made the querier_params fuzz target panic.
        check_range(
            "start=-9e15&end=9e15&step=1",
            Err(
                "exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)",
            ),
        );
        check_range(
            "start=-9e15&end=9e15&step=9e15",
            Ok((
                -9_000_000_000_000_000_000,
                9_000_000_000_000_000_000,
                9_000_000_000_000_000_000,
            )),
        );
    }
}
