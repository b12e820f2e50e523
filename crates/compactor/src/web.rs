//! The block viewer's HTTP API as Thanos serves it (`/api/v1/blocks`, `/api/v1/blocks/mark`):
//! the compactor's filtered view (`view=loaded`) and the whole bucket's view (the default, kept
//! by a second fetcher with the `thanos_bucket_ui` metric prefix).
//!
//! `err` is `null` or the error's text (Thanos marshals a Go error as `{}`, which its own page
//! shows as `[object Object]`, thanos#7549); `blocks` is `[]`, never `null`, before the first sync
//! (thanos#2260), and a failed sync keeps the previous blocks.

use std::sync::{Arc, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use objstore::Bucket;
use serde::{Deserialize, Serialize};
use service_core::{ApiError, ErrorKind};
use tsdb_block::meta::{BlockMeta, DeletionMark, NoCompactMark, no_compact_reason};
use ulid::Ulid;

/// One view of the bucket's blocks as the API shows it.
#[derive(Debug, Default)]
pub(crate) struct BlockView {
    state: RwLock<ViewState>,
}

#[derive(Debug, Default, Clone)]
struct ViewState {
    blocks: Vec<BlockMeta>,
    refreshed_at: Option<SystemTime>,
    error: Option<String>,
}

impl BlockView {
    /// Records a successful sync.
    pub(crate) fn set(&self, blocks: impl IntoIterator<Item = BlockMeta>) {
        let mut state = self
            .state
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        state.blocks = blocks.into_iter().collect();
        state.refreshed_at = Some(SystemTime::now());
        state.error = None;
    }

    /// Records a failed sync: the previous blocks stay.
    pub(crate) fn set_error(&self, error: String) {
        let mut state = self
            .state
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        state.refreshed_at = Some(SystemTime::now());
        state.error = Some(error);
    }

    fn snapshot(&self) -> ViewState {
        self.state
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

/// What the routes share.
#[derive(Debug, Clone)]
pub(crate) struct WebState {
    /// The compactor's filtered view.
    pub(crate) loaded: Arc<BlockView>,
    /// The whole bucket.
    pub(crate) global: Arc<BlockView>,
    /// `--bucket-web-label`.
    pub(crate) label: String,
    /// `--disable-admin-operations`.
    pub(crate) admin_disabled: bool,
    /// Where marks go.
    pub(crate) bucket: Bucket,
}

/// The block viewer's API routes under `prefix` (`--web.route-prefix`).
pub(crate) fn routes(prefix: &str, state: WebState) -> Router {
    let prefix = prefix.trim_end_matches('/');
    Router::new()
        .route(&format!("{prefix}/api/v1/blocks"), get(blocks))
        .route(&format!("{prefix}/api/v1/blocks/mark"), post(mark))
        .with_state(state)
}

#[derive(Debug, Deserialize)]
struct BlocksQuery {
    view: Option<String>,
}

#[derive(Serialize)]
struct Envelope<'a> {
    status: &'static str,
    data: BlocksData<'a>,
}

#[derive(Serialize)]
struct BlocksData<'a> {
    label: &'a str,
    blocks: &'a [BlockMeta],
    #[serde(rename = "refreshedAt")]
    refreshed_at: String,
    err: Option<&'a str>,
}

async fn blocks(State(state): State<WebState>, Query(query): Query<BlocksQuery>) -> Response {
    let view = match query.view.as_deref() {
        Some("loaded") => state.loaded.snapshot(),
        _ => state.global.snapshot(),
    };
    let refreshed_at = view.refreshed_at.map_or_else(
        || "0001-01-01T00:00:00Z".to_owned(),
        |time| {
            let millis = time
                .duration_since(UNIX_EPOCH)
                .map_or(0, |elapsed| i64::try_from(elapsed.as_millis()).unwrap_or(0));
            prom_model::time::format_rfc3339_millis(millis)
        },
    );
    let body = Envelope {
        status: "success",
        data: BlocksData {
            label: &state.label,
            blocks: &view.blocks,
            refreshed_at,
            err: view.error.as_deref(),
        },
    };
    match serde_json::to_vec(&body) {
        Ok(json) => (
            [(axum::http::header::CONTENT_TYPE, "application/json")],
            json,
        )
            .into_response(),
        Err(error) => ApiError::new(ErrorKind::Internal, error.to_string()).into_response(),
    }
}

#[derive(Debug, Deserialize)]
struct MarkForm {
    id: Option<String>,
    action: Option<String>,
    detail: Option<String>,
}

async fn mark(State(state): State<WebState>, axum::Form(form): axum::Form<MarkForm>) -> Response {
    let bad = |message: String| ApiError::new(ErrorKind::BadData, message).into_response();
    if state.admin_disabled {
        return bad("Admin operations are disabled".to_owned());
    }
    let id = match form.id.as_deref().map(Ulid::from_string) {
        Some(Ok(id)) => id,
        Some(Err(error)) => return bad(format!("ULID {:?} not valid: {error}", form.id)),
        None => return bad("ULID cannot be empty".to_owned()),
    };
    let detail = form.detail.unwrap_or_default();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| i64::try_from(elapsed.as_secs()).unwrap_or(0));
    let written = match form.action.as_deref() {
        Some("DELETION") => {
            crate::blocks::mark(&state.bucket, &DeletionMark::new(id, now, &detail)).await
        }
        Some("NO_COMPACTION") => {
            crate::blocks::mark(
                &state.bucket,
                &NoCompactMark::new(id, now, no_compact_reason::MANUAL, &detail),
            )
            .await
        }
        other => return bad(format!("not supported marker {other:?}")),
    };
    match written {
        Ok(_) => (
            [(axum::http::header::CONTENT_TYPE, "application/json")],
            r#"{"status":"success"}"#,
        )
            .into_response(),
        Err(error) => {
            ApiError::new(ErrorKind::Unavailable, service_core::error_chain(&error)).into_response()
        }
    }
}
