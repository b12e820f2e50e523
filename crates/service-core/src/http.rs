//! The HTTP server every service runs: `/metrics`, `/-/healthy`, `/-/ready`, plus the service's
//! own routes, with TLS and basic auth from `--http.config`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use prometheus::{Encoder, Registry, TextEncoder};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::error::Result;
use crate::flags::HttpFlags;
use crate::lifecycle::{Readiness, ReadinessState, ServiceContext};
use crate::listener::{ServerStream, accept_connections, bind};
use crate::propagation::TraceContextLayer;
use crate::tls::server_config;
use crate::web_config::{BasicAuth, WebConfig};

/// A bound HTTP server, not yet serving. Bind first so the port is known (and bind errors surface)
/// before the run-group starts.
#[derive(Debug)]
pub struct HttpServer {
    listener: TcpListener,
    local_addr: SocketAddr,
    router: Router,
    tls: Option<Arc<rustls::ServerConfig>>,
    grace_period: Duration,
    readiness: Readiness,
}

impl HttpServer {
    /// Binds `--http-address`, loads `--http.config`, and assembles the probes, `/metrics` and
    /// `routes` (the service's own endpoints) behind basic auth when configured.
    pub async fn bind(flags: &HttpFlags, ctx: &ServiceContext, routes: Router) -> Result<Self> {
        let web_config = match &flags.http_config {
            Some(path) => WebConfig::load(path)?,
            None => WebConfig::default(),
        };
        let tls = match &web_config.tls {
            Some(settings) => Some(Arc::new(server_config(settings, &[b"h2", b"http/1.1"])?)),
            None => None,
        };
        let router = build_router(ctx, routes, web_config.basic_auth);
        let listener = bind(flags.http_address).await?;
        let local_addr = listener.local_addr().unwrap_or(flags.http_address);
        Ok(Self {
            listener,
            local_addr,
            router,
            tls,
            grace_period: flags.http_grace_period.get(),
            readiness: ctx.readiness.clone(),
        })
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Serves until `shutdown` is cancelled; then stops accepting, marks the service not ready,
    /// and lets in-flight requests finish within `--http-grace-period`.
    pub async fn serve(self, shutdown: CancellationToken) -> Result<()> {
        let Self {
            listener,
            local_addr,
            router,
            tls,
            grace_period,
            readiness,
        } = self;
        let scheme = if tls.is_some() { "https" } else { "http" };
        tracing::info!(address = %local_addr, scheme, "listening for HTTP requests");
        let mut connections = accept_connections(listener, tls, shutdown.clone(), "http");
        let graceful = GracefulShutdown::new();
        let builder = auto::Builder::new(TokioExecutor::new());
        loop {
            let stream: ServerStream = tokio::select! {
                () = shutdown.cancelled() => break,
                next = connections.recv() => match next {
                    Some(stream) => stream,
                    None => break,
                },
            };
            let service = TowerToHyperService::new(router.clone());
            let connection = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
            let connection = graceful.watch(connection.into_owned());
            tokio::spawn(async move {
                if let Err(error) = connection.await {
                    tracing::debug!(%error, "HTTP connection ended with an error");
                }
            });
        }
        drop(connections);
        readiness.set_not_ready("shutting down");
        tracing::info!(address = %local_addr, in_flight = graceful.count(), "HTTP server shutting down");
        if tokio::time::timeout(grace_period, graceful.shutdown())
            .await
            .is_err()
        {
            tracing::warn!(grace_period = ?grace_period, "HTTP grace period over, closing connections");
        }
        tracing::info!("HTTP server stopped");
        Ok(())
    }
}

/// Probes and metrics first, then the service's routes, then basic auth and trace propagation
/// around everything (Prometheus' web-config protects every endpoint).
fn build_router(ctx: &ServiceContext, routes: Router, basic_auth: Option<BasicAuth>) -> Router {
    let registry = ctx.registry.clone();
    let readiness = ctx.readiness.clone();
    let router = Router::new()
        .route("/metrics", get(move || serve_metrics(registry.clone())))
        .route("/-/healthy", get(|| async { (StatusCode::OK, "OK") }))
        .route("/-/ready", get(move || serve_ready(readiness.clone())))
        .merge(routes);
    let router = match basic_auth {
        Some(auth) => router.layer(axum::middleware::from_fn_with_state(
            auth,
            require_basic_auth,
        )),
        None => router,
    };
    router.layer(TraceContextLayer::new("http"))
}

async fn serve_metrics(registry: Registry) -> Response {
    let encoder = TextEncoder::new();
    let mut body = Vec::new();
    if let Err(error) = encoder.encode(&registry.gather(), &mut body) {
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("encode metrics: {error}"),
        )
            .into_response();
    }
    (
        [(header::CONTENT_TYPE, encoder.format_type().to_owned())],
        body,
    )
        .into_response()
}

async fn serve_ready(readiness: Readiness) -> Response {
    match readiness.state() {
        ReadinessState::Ready => (StatusCode::OK, "OK").into_response(),
        ReadinessState::NotReady(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("thanos is not ready: {reason}\n"),
        )
            .into_response(),
    }
}

async fn require_basic_auth(
    State(auth): State<BasicAuth>,
    request: Request,
    next: Next,
) -> Response {
    let authorization = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    // bcrypt is deliberately slow: keep it off the async workers.
    let checked =
        tokio::task::spawn_blocking(move || auth.check_header(authorization.as_deref())).await;
    if checked.unwrap_or(false) {
        return next.run(request).await;
    }
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, "Basic")],
        "Unauthorized\n",
    )
        .into_response()
}
