//! The runtime every thanos-rs service binary shares.
//!
//! A service crate exposes a `Config` (a [`clap::Args`] struct flattening the flag blocks here)
//! and `run(config, ctx: ServiceContext)`; its `main.rs` is a call to [`service_main`]. This
//! crate supplies the rest, with Thanos' user surface:
//!
//! - [`flags`]: [`HttpFlags`], [`GrpcFlags`], [`GrpcClientFlags`], [`LogFlags`], [`TracingFlags`],
//!   [`ObjstoreFlags`]: names, defaults and help as in Thanos; durations in Prometheus syntax
//!   ([`PromDuration`]).
//! - [`telemetry`]: logfmt/JSON logs on stderr, OTLP trace export from `--tracing.config`
//!   ([`TracingConfig`]); [`propagation`]: W3C `traceparent` for HTTP and gRPC.
//! - [`HttpServer`]: `/metrics`, `/-/healthy`, `/-/ready` plus the service's routes, TLS and basic
//!   auth from `--http.config` ([`WebConfig`]).
//! - [`GrpcServer`] and [`grpc_channel`]: tonic with Thanos' transport settings, TLS/mTLS,
//!   `grpc.health.v1`, `snappy` request decompression ([`snappy`]).
//! - [`ServiceContext`], [`Readiness`], [`RunGroup`]: lifecycle. The first actor to finish
//!   cancels the shutdown token; SIGTERM/SIGINT do too; servers then drain within their grace
//!   period.
//! - [`ErrorKind`], [`ApiError`], [`grpc_status`]: one mapping from error class to HTTP status,
//!   gRPC code and Prometheus' error JSON.
//! - [`build_info`]: `--version` text and the `thanos_build_info` gauge.
//! - [`malloc`]: glibc malloc limited to one arena per core at start-up (resident memory stays
//!   near the heap).
//!
//! **Invariants:** no global metric registry (everything registers on
//! [`ServiceContext::registry`]); nothing here blocks an async worker (bcrypt runs in
//! `spawn_blocking`); servers never stop accepting before the shutdown token is cancelled and
//! always return within their grace period after it.

pub mod build_info;
mod duration;
mod entry;
mod error;
pub mod flags;
pub mod gate;
mod grpc;
mod head_errors;
mod http;
pub mod http_limits;
mod lifecycle;
mod listener;
pub mod malloc;
pub mod propagation;
pub mod size;
pub mod snappy;
mod status;
pub mod telemetry;
pub mod tls;
mod tracing_config;
mod web_config;

pub use duration::{ParseDurationError, PromDuration};
pub use entry::{ServiceConfig, service_main, service_main_from};
pub use error::{BoxError, Error, Result};
pub use flags::{
    GrpcClientFlags, GrpcFlags, HttpFlags, LogFlags, LogFormat, LogLevel, ObjstoreFlags,
    StoreLimitsFlags, TlsVersion, TracingFlags, parse_listen_address,
};
pub use gate::{Gate, GateClosed, GatePermit};
pub use grpc::{
    CLIENT_KEEPALIVE_INTERVAL, CLIENT_KEEPALIVE_TIMEOUT, GrpcServer, MAX_MESSAGE_SIZE, grpc_channel,
};
pub use http::HttpServer;
pub use lifecycle::{Readiness, ReadinessState, RunGroup, ServiceContext, wait_for_signal};
pub use listener::ServerStream;
pub use propagation::{TraceContextInterceptor, TraceContextLayer};
pub use status::{ApiError, ErrorKind, HasErrorKind, error_chain, grpc_status};
pub use telemetry::{TelemetryGuard, init_telemetry};
pub use tls::{ClientAuth, ClientTlsSettings, ServerTlsSettings, client_config, server_config};
pub use tracing_config::{OtlpClientType, OtlpConfig, OtlpTlsConfig, TracingConfig};
pub use web_config::{BasicAuth, WebConfig};

// Re-exported so services name the same versions.
pub use prometheus;
pub use tokio_util::sync::CancellationToken;
