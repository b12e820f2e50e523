//! Client-visible error status: one place that maps an error kind to an HTTP status, a gRPC code
//! and Prometheus' error JSON.
//!
//! Service errors implement [`HasErrorKind`]; their `IntoResponse` / `From<Error> for Status`
//! implementations then reduce to [`ApiError::from_error`] and [`grpc_status`].

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// The classes of failure a client can tell apart. Names follow Prometheus' `errorType` values
/// where one exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The request is malformed (bad PromQL, bad matcher, bad time range).
    BadData,
    /// The request was valid but evaluating it failed.
    Execution,
    /// A dependency (store, bucket, Prometheus) cannot be reached right now.
    Unavailable,
    /// The thing asked for does not exist.
    NotFound,
    /// The request ran out of time.
    Timeout,
    /// The client went away or the request was cancelled.
    Canceled,
    /// A limit was hit (series, samples, bytes, concurrency).
    ResourceExhausted,
    /// The request needs credentials it did not present.
    Unauthenticated,
    /// The request is valid but refused in the current state (e.g. admin operations disabled).
    FailedPrecondition,
    /// A bug or an unexpected state on our side.
    Internal,
}

impl ErrorKind {
    /// The HTTP status Prometheus' and Thanos' HTTP APIs answer with.
    pub fn to_http_status(self) -> StatusCode {
        match self {
            Self::BadData => StatusCode::BAD_REQUEST,
            Self::Execution => StatusCode::UNPROCESSABLE_ENTITY,
            Self::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::Timeout => StatusCode::SERVICE_UNAVAILABLE,
            // Prometheus answers 499 ("client closed request") for a cancelled query.
            Self::Canceled => StatusCode::from_u16(499).unwrap_or(StatusCode::BAD_REQUEST),
            Self::ResourceExhausted => StatusCode::UNPROCESSABLE_ENTITY,
            Self::Unauthenticated => StatusCode::UNAUTHORIZED,
            Self::FailedPrecondition => StatusCode::FORBIDDEN,
            Self::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The gRPC status code for the same failure.
    pub fn to_grpc_code(self) -> tonic::Code {
        match self {
            Self::BadData => tonic::Code::InvalidArgument,
            Self::Execution => tonic::Code::Unknown,
            Self::Unavailable => tonic::Code::Unavailable,
            Self::NotFound => tonic::Code::NotFound,
            Self::Timeout => tonic::Code::DeadlineExceeded,
            Self::Canceled => tonic::Code::Cancelled,
            Self::ResourceExhausted => tonic::Code::ResourceExhausted,
            Self::Unauthenticated => tonic::Code::Unauthenticated,
            Self::FailedPrecondition => tonic::Code::FailedPrecondition,
            Self::Internal => tonic::Code::Internal,
        }
    }

    /// The `errorType` string of Prometheus' error JSON.
    pub fn prometheus_error_type(self) -> &'static str {
        match self {
            Self::BadData => "bad_data",
            Self::Execution | Self::ResourceExhausted => "execution",
            Self::Unavailable => "unavailable",
            Self::NotFound => "not_found",
            Self::Timeout => "timeout",
            Self::Canceled => "canceled",
            Self::Unauthenticated | Self::FailedPrecondition => "forbidden",
            Self::Internal => "internal",
        }
    }

    /// The kind for a gRPC code received from a downstream server.
    pub fn from_grpc_code(code: tonic::Code) -> Self {
        match code {
            tonic::Code::InvalidArgument | tonic::Code::OutOfRange => Self::BadData,
            tonic::Code::Unavailable | tonic::Code::Aborted => Self::Unavailable,
            tonic::Code::NotFound => Self::NotFound,
            tonic::Code::DeadlineExceeded => Self::Timeout,
            tonic::Code::Cancelled => Self::Canceled,
            tonic::Code::ResourceExhausted => Self::ResourceExhausted,
            tonic::Code::Unauthenticated | tonic::Code::PermissionDenied => Self::Unauthenticated,
            tonic::Code::FailedPrecondition => Self::FailedPrecondition,
            tonic::Code::Unknown => Self::Execution,
            _ => Self::Internal,
        }
    }
}

/// Implemented by every service error so the protocol boundary can pick a status.
pub trait HasErrorKind: std::error::Error {
    /// The client-visible class of this error.
    fn kind(&self) -> ErrorKind;
}

/// A gRPC status for an error: its kind's code and its full message chain.
pub fn grpc_status<E: HasErrorKind>(error: &E) -> tonic::Status {
    tonic::Status::new(error.kind().to_grpc_code(), error_chain(error))
}

/// The error's message followed by its sources, joined with `": "`.
pub fn error_chain(error: &(dyn std::error::Error + '_)) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}

/// An HTTP API error rendered as Prometheus does:
/// `{"status":"error","errorType":"bad_data","error":"..."}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// Decides the status code and `errorType`.
    pub kind: ErrorKind,
    /// The `error` text.
    pub message: String,
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    status: &'static str,
    #[serde(rename = "errorType")]
    error_type: &'static str,
    error: &'a str,
}

impl ApiError {
    /// An error of `kind` with `message`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }

    /// Takes kind and full message chain from a service error.
    pub fn from_error<E: HasErrorKind>(error: &E) -> Self {
        Self {
            kind: error.kind(),
            message: error_chain(error),
        }
    }

    /// The JSON body.
    pub fn to_json(&self) -> String {
        let body = ErrorBody {
            status: "error",
            error_type: self.kind.prometheus_error_type(),
            error: &self.message,
        };
        // Serialising a struct of strings cannot fail.
        serde_json::to_string(&body).unwrap_or_default()
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.kind.to_http_status(),
            [(axum::http::header::CONTENT_TYPE, "application/json")],
            self.to_json(),
        )
            .into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("select series")]
    struct Outer(#[source] std::io::Error);

    impl HasErrorKind for Outer {
        fn kind(&self) -> ErrorKind {
            ErrorKind::Unavailable
        }
    }

    #[test]
    fn renders_prometheus_error_json() {
        let error = ApiError::new(ErrorKind::BadData, "parse error at char 3: \"x\"");
        assert_eq!(
            error.to_json(),
            r#"{"status":"error","errorType":"bad_data","error":"parse error at char 3: \"x\""}"#
        );
        assert_eq!(error.into_response().status(), StatusCode::BAD_REQUEST);
    }

    #[test]
    fn maps_kinds_to_statuses() {
        let cases = [
            (
                ErrorKind::BadData,
                400,
                tonic::Code::InvalidArgument,
                "bad_data",
            ),
            (ErrorKind::Execution, 422, tonic::Code::Unknown, "execution"),
            (
                ErrorKind::Unavailable,
                503,
                tonic::Code::Unavailable,
                "unavailable",
            ),
            (ErrorKind::NotFound, 404, tonic::Code::NotFound, "not_found"),
            (
                ErrorKind::Timeout,
                503,
                tonic::Code::DeadlineExceeded,
                "timeout",
            ),
            (ErrorKind::Canceled, 499, tonic::Code::Cancelled, "canceled"),
            (
                ErrorKind::ResourceExhausted,
                422,
                tonic::Code::ResourceExhausted,
                "execution",
            ),
            (ErrorKind::Internal, 500, tonic::Code::Internal, "internal"),
        ];
        for (kind, http, grpc, error_type) in cases {
            assert_eq!(kind.to_http_status().as_u16(), http, "{kind:?}");
            assert_eq!(kind.to_grpc_code(), grpc, "{kind:?}");
            assert_eq!(kind.prometheus_error_type(), error_type, "{kind:?}");
            assert_eq!(ErrorKind::from_grpc_code(grpc), kind, "{kind:?}");
        }
    }

    #[test]
    fn status_carries_the_whole_chain() {
        let error = Outer(std::io::Error::other("connection refused"));
        let status = grpc_status(&error);
        assert_eq!(status.code(), tonic::Code::Unavailable);
        assert_eq!(status.message(), "select series: connection refused");
        let api = ApiError::from_error(&error);
        assert_eq!(api.kind, ErrorKind::Unavailable);
        assert_eq!(api.message, "select series: connection refused");
    }
}
