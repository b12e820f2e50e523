//! What every HTTP server bounds, so that no client can hold a connection, a task or memory
//! without limit, and what it answers when a bound is hit.
//!
//! - Request headers must arrive within `--http.read-timeout` (hyper's header read timeout) and
//!   fit [`MAX_HEAD_BYTES`] (1 MiB, Go's and so Prometheus' limit); beyond it hyper answers 431
//!   itself, and a request URI over hyper's 65,534 bytes gets 414 (GET URLs far longer than any
//!   browser sends; a long query goes as a POST form). On API paths both carry Prometheus' error
//!   JSON (`head_errors`).
//! - A request body is read before the handler runs, at most [`MAX_BODY_BYTES`] (10 MiB, the form
//!   size Go's `ParseForm`, and so Prometheus, accepts) within `--http.read-timeout`: a client
//!   whose body is shorter than its `Content-Length`, or that trickles it, gets 408 and the
//!   connection is closed; a larger body gets 413.
//! - On API paths (`/api/` anywhere in the path), an error status that did not come from a
//!   handler (404 no such route, 405 wrong method, 408, 413, 414) carries Prometheus' error JSON
//!   (`{"status":"error","errorType":...,"error":...}`), as clients of the API expect.

use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::status::{ApiError, ErrorKind};

/// Largest request head (request line and headers) accepted, as Go's `DefaultMaxHeaderBytes`
/// plus the 4 KiB slack its server allows.
pub const MAX_HEAD_BYTES: usize = (1 << 20) + 4096;

/// Largest request body accepted.
pub const MAX_BODY_BYTES: usize = 10 << 20;

/// Reads the request's body within `timeout` (and [`MAX_BODY_BYTES`]) before the handler runs;
/// gives API error statuses Prometheus' JSON body.
pub(crate) async fn limit_requests(
    State(timeout): State<Duration>,
    request: Request,
    next: Next,
) -> Response {
    let api = request.uri().path().contains("/api/");
    let (parts, body) = request.into_parts();
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    if declared.is_some_and(|length| length > MAX_BODY_BYTES as u64) {
        return too_large();
    }
    let has_body = declared.is_some_and(|length| length > 0)
        || parts.headers.contains_key(header::TRANSFER_ENCODING);
    let body = if has_body {
        match tokio::time::timeout(timeout, axum::body::to_bytes(body, MAX_BODY_BYTES)).await {
            Ok(Ok(bytes)) => Body::from(bytes),
            Ok(Err(_)) => return too_large(),
            Err(_) => {
                let mut response = error(
                    StatusCode::REQUEST_TIMEOUT,
                    ErrorKind::BadData,
                    &format!("request body not received within {timeout:?}"),
                );
                response
                    .headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
                return response;
            }
        }
    } else {
        body
    };
    let response = next.run(Request::from_parts(parts, body)).await;
    if !api || is_json(&response) {
        return response;
    }
    let status = response.status();
    let (kind, message) = match status {
        StatusCode::NOT_FOUND => (ErrorKind::NotFound, "no such API endpoint"),
        StatusCode::METHOD_NOT_ALLOWED => (ErrorKind::BadData, "method not allowed"),
        StatusCode::PAYLOAD_TOO_LARGE => (ErrorKind::BadData, "request body too large"),
        StatusCode::URI_TOO_LONG => (ErrorKind::BadData, "request URI too long"),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => (ErrorKind::BadData, "unsupported media type"),
        _ => return response,
    };
    let mut replaced = error(status, kind, message);
    if let Some(allow) = response.headers().get(header::ALLOW) {
        replaced.headers_mut().insert(header::ALLOW, allow.clone());
    }
    replaced
}

fn is_json(response: &Response) -> bool {
    response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("application/json"))
}

fn too_large() -> Response {
    error(
        StatusCode::PAYLOAD_TOO_LARGE,
        ErrorKind::BadData,
        &format!("request body larger than {MAX_BODY_BYTES} bytes"),
    )
}

/// Prometheus' error JSON with `status` (which may differ from the kind's usual one).
fn error(status: StatusCode, kind: ErrorKind, message: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        ApiError::new(kind, message).to_json(),
    )
        .into_response()
}
