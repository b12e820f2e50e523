//! The querier as a StoreAPI server (component type `query`), so queriers can stack.
//!
//! Series, LabelNames and LabelValues are forwarded to the querier's own stores through the
//! [`Proxy`]; the answer is merged but not de-duplicated (the querier above does that), and
//! `without_replica_labels` is honoured. Info advertises the union of the healthy stores'
//! label sets and time ranges.

use std::sync::Arc;

use futures_util::stream;
use storeapi::convert::{labels_to_proto, matchers_from_proto, zlabel_set_to_proto};
use storeapi::memory::pack_series;
use storeapi::merge::{SeriesResponseStream, warning_frame};
use storeapi::proto::thanos::info::{self as infopb, info_server::Info};
use storeapi::proto::thanos::{self, store_server::Store};
use tonic::{Request, Response, Status};

use promql_engine::{MemoryBudget, Reservation};

use crate::proxy::{FetchAccount, FetchLimits, LabelOptions, Proxy, SeriesQuery};

/// The querier's StoreAPI; see the [module docs](self).
#[derive(Debug, Clone)]
pub struct QueryStore {
    proxy: Arc<Proxy>,
    limits: FetchLimits,
    memory_budget: Option<Arc<MemoryBudget>>,
}

impl QueryStore {
    /// A StoreAPI over `proxy`: a Series call fetches within `limits` and holds its answer
    /// within its share of `memory_budget`, as a query of this querier does.
    pub fn new(
        proxy: Arc<Proxy>,
        limits: FetchLimits,
        memory_budget: Option<Arc<MemoryBudget>>,
    ) -> Self {
        Self {
            proxy,
            limits,
            memory_budget,
        }
    }
}

fn partial(disabled: bool, strategy: i32) -> bool {
    !disabled && strategy != i32::from(thanos::PartialResponseStrategy::Abort)
}

fn bad_request(error: storeapi::Error) -> Status {
    Status::invalid_argument(error.to_string())
}

#[tonic::async_trait]
impl Store for QueryStore {
    async fn series(
        &self,
        request: Request<thanos::SeriesRequest>,
    ) -> Result<Response<SeriesResponseStream>, Status> {
        let request = request.into_inner();
        // Held until the answer is sent: the answer is in memory until then.
        let reservation = Arc::new(Reservation::new(self.memory_budget.clone()));
        let query = SeriesQuery {
            min_time: request.min_time,
            max_time: request.max_time,
            matchers: matchers_from_proto(&request.matchers).map_err(bad_request)?,
            max_resolution_window: request.max_resolution_window,
            aggregates: request
                .aggregates
                .iter()
                .filter_map(|aggr| thanos::Aggr::try_from(*aggr).ok())
                .collect(),
            skip_chunks: request.skip_chunks,
            replica_labels: request.without_replica_labels,
            partial_response: partial(
                request.partial_response_disabled,
                request.partial_response_strategy,
            ),
            limit: request.limit,
            store_matchers: Vec::new(),
            budget: (self.limits.any() || self.memory_budget.is_some()).then(|| {
                Arc::new(FetchAccount::new(
                    Some(Arc::clone(&reservation)),
                    self.limits,
                ))
            }),
        };
        let fetched = self.proxy.series(&query).await?;
        let mut frames: Vec<thanos::SeriesResponse> = fetched
            .warnings
            .into_iter()
            .filter(|warning| warning != crate::proxy::NO_STORE_MATCHED)
            .map(warning_frame)
            .collect();
        let mut series = fetched.data;
        if let Ok(limit) = usize::try_from(request.limit)
            && limit > 0
        {
            series.truncate(limit);
        }
        frames.extend(pack_series(series, request.response_batch_size));
        Ok(Response::new(Box::pin(stream::iter(
            frames.into_iter().map(move |frame| {
                let _held = &reservation;
                Ok(frame)
            }),
        ))))
    }

    async fn label_names(
        &self,
        request: Request<thanos::LabelNamesRequest>,
    ) -> Result<Response<thanos::LabelNamesResponse>, Status> {
        let request = request.into_inner();
        let matchers = matchers_from_proto(&request.matchers).map_err(bad_request)?;
        let fetched = self
            .proxy
            .label_names(
                request.start,
                request.end,
                &matchers,
                &LabelOptions {
                    replica_labels: &request.without_replica_labels,
                    partial_response: partial(
                        request.partial_response_disabled,
                        request.partial_response_strategy,
                    ),
                    store_matchers: &[],
                },
            )
            .await?;
        Ok(Response::new(thanos::LabelNamesResponse {
            names: fetched.data,
            warnings: fetched.warnings,
            hints: None,
        }))
    }

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
        let matchers = matchers_from_proto(&request.matchers).map_err(bad_request)?;
        let fetched = self
            .proxy
            .label_values(
                &request.label,
                request.start,
                request.end,
                &matchers,
                &LabelOptions {
                    replica_labels: &request.without_replica_labels,
                    partial_response: partial(
                        request.partial_response_disabled,
                        request.partial_response_strategy,
                    ),
                    store_matchers: &[],
                },
            )
            .await?;
        Ok(Response::new(thanos::LabelValuesResponse {
            values: fetched.data,
            warnings: fetched.warnings,
            hints: None,
        }))
    }
}

#[tonic::async_trait]
impl Info for QueryStore {
    async fn info(
        &self,
        _request: Request<infopb::InfoRequest>,
    ) -> Result<Response<infopb::InfoResponse>, Status> {
        let stores = self.proxy.stores().healthy();
        let mut label_sets: Vec<prom_model::Labels> = stores
            .iter()
            .flat_map(|store| store.status.label_sets.iter().cloned())
            .collect();
        label_sets.sort();
        label_sets.dedup();
        let min_time = stores
            .iter()
            .map(|store| store.status.min_time)
            .min()
            .unwrap_or(i64::MAX);
        let max_time = stores
            .iter()
            .map(|store| store.status.max_time)
            .max()
            .unwrap_or(i64::MIN);
        let tsdb_infos = label_sets
            .iter()
            .map(|labels| infopb::TsdbInfo {
                labels: Some(thanos::ZLabelSet {
                    labels: labels_to_proto(labels),
                }),
                min_time,
                max_time,
            })
            .collect();
        Ok(Response::new(infopb::InfoResponse {
            label_sets: label_sets.iter().map(zlabel_set_to_proto).collect(),
            component_type: "query".to_owned(),
            store: Some(infopb::StoreInfo {
                min_time,
                max_time,
                supports_sharding: false,
                supports_without_replica_labels: true,
                tsdb_infos,
                supports_projections: false,
            }),
            ..Default::default()
        }))
    }
}
