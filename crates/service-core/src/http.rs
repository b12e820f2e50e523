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
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use prometheus::{Encoder, Registry, TextEncoder};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::error::Result;
use crate::flags::HttpFlags;
use crate::http_limits::{MAX_BODY_BYTES, MAX_HEAD_BYTES, limit_requests};
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
    read_timeout: Duration,
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
        let read_timeout = flags.http_read_timeout.get();
        let router = build_router(ctx, routes, web_config.basic_auth, read_timeout);
        let listener = bind(flags.http_address).await?;
        let local_addr = listener.local_addr().unwrap_or(flags.http_address);
        Ok(Self {
            listener,
            local_addr,
            router,
            tls,
            grace_period: flags.http_grace_period.get(),
            read_timeout,
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
            read_timeout,
            readiness,
        } = self;
        let scheme = if tls.is_some() { "https" } else { "http" };
        tracing::info!(address = %local_addr, scheme, "listening for HTTP requests");
        let mut connections = accept_connections(listener, tls, shutdown.clone(), "http");
        let graceful = GracefulShutdown::new();
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(read_timeout)
            // Request heads up to 1 MiB, as Go's (and so Prometheus') server takes them.
            .max_buf_size(MAX_HEAD_BYTES);
        loop {
            let stream: ServerStream = tokio::select! {
                () = shutdown.cancelled() => break,
                next = connections.recv() => match next {
                    Some(stream) => stream,
                    None => break,
                },
            };
            let service = TowerToHyperService::new(router.clone());
            let connection = builder.serve_connection_with_upgrades(
                TokioIo::new(crate::head_errors::ApiHeadErrors::new(stream)),
                service,
            );
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

/// Probes and metrics first, then the service's routes, then the request limits
/// (`http_limits`), then basic auth and trace propagation around everything (Prometheus'
/// web-config protects every endpoint).
fn build_router(
    ctx: &ServiceContext,
    routes: Router,
    basic_auth: Option<BasicAuth>,
    read_timeout: Duration,
) -> Router {
    let registry = ctx.registry.clone();
    let readiness = ctx.readiness.clone();
    let router = Router::new()
        .route("/metrics", get(move || serve_metrics(registry.clone())))
        .route("/-/healthy", get(|| async { (StatusCode::OK, "OK") }))
        .route("/-/ready", get(move || serve_ready(readiness.clone())))
        .merge(routes)
        // Inside basic auth: a request without credentials is refused before its body is read.
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(axum::middleware::from_fn_with_state(
            read_timeout,
            limit_requests,
        ));
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

/// The bcrypt checks allowed to run at once: one per core.
fn bcrypt_slots() -> &'static tokio::sync::Semaphore {
    static SLOTS: std::sync::OnceLock<tokio::sync::Semaphore> = std::sync::OnceLock::new();
    SLOTS.get_or_init(|| {
        let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
        tokio::sync::Semaphore::new(cores)
    })
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
    let allowed = match auth.cached(authorization.as_deref()) {
        Some(outcome) => outcome,
        None => {
            // bcrypt is deliberately slow: keep it off the async workers, and run at most one
            // check per core at once, so that a flood of new passwords queues here instead of
            // taking every blocking thread and core.
            let Ok(_permit) = bcrypt_slots().acquire().await else {
                return StatusCode::SERVICE_UNAVAILABLE.into_response();
            };
            tokio::task::spawn_blocking(move || auth.check_header(authorization.as_deref()))
                .await
                .unwrap_or(false)
        }
    };
    if allowed {
        return next.run(request).await;
    }
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, "Basic")],
        "Unauthorized\n",
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
    use tokio::net::TcpStream;

    use super::*;
    use crate::tls::{ClientTlsSettings, client_config};
    use test_harness::TestPki;

    struct Running {
        address: SocketAddr,
        ctx: ServiceContext,
        _config_dir: tempfile::TempDir,
    }

    impl Drop for Running {
        fn drop(&mut self) {
            self.ctx.shutdown.cancel();
        }
    }

    async fn start(web_config: &str) -> Running {
        let config_dir = tempfile::tempdir().unwrap();
        let config_path = config_dir.path().join("web.yml");
        std::fs::write(&config_path, web_config).unwrap();
        let flags = HttpFlags {
            http_address: "127.0.0.1:0".parse().unwrap(),
            http_grace_period: Duration::from_secs(5).into(),
            http_read_timeout: Duration::from_secs(60).into(),
            http_config: Some(config_path),
        };
        let ctx = ServiceContext::new();
        let server = HttpServer::bind(&flags, &ctx, Router::new()).await.unwrap();
        let address = server.local_addr();
        tokio::spawn(server.serve(ctx.shutdown.clone()));
        Running {
            address,
            ctx,
            _config_dir: config_dir,
        }
    }

    /// One HTTP/1.1 request; returns the status code and the body.
    async fn request<S: AsyncRead + AsyncWrite + Unpin>(
        mut stream: S,
        path: &str,
        authorization: Option<&str>,
    ) -> std::io::Result<(u16, String)> {
        let auth_line = authorization
            .map(|value| format!("Authorization: {value}\r\n"))
            .unwrap_or_default();
        let head = format!(
            "GET {path} HTTP/1.1\r\nHost: localhost\r\n{auth_line}Connection: close\r\n\r\n"
        );
        stream.write_all(head.as_bytes()).await?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await?;
        let text = String::from_utf8_lossy(&response).into_owned();
        let status = text
            .split(' ')
            .nth(1)
            .and_then(|code| code.parse().ok())
            .ok_or_else(|| std::io::Error::other(format!("no HTTP response: {text:?}")))?;
        let body = text
            .split_once("\r\n\r\n")
            .map(|(_, body)| body.to_owned())
            .unwrap_or_default();
        Ok((status, body))
    }

    async fn plain_get(
        address: SocketAddr,
        path: &str,
        authorization: Option<&str>,
    ) -> (u16, String) {
        let stream = TcpStream::connect(address).await.unwrap();
        request(stream, path, authorization).await.unwrap()
    }

    async fn tls_get(
        address: SocketAddr,
        pki: &TestPki,
        client: Option<(&PathBuf, &PathBuf)>,
    ) -> std::io::Result<(u16, String)> {
        let settings = ClientTlsSettings {
            ca_file: Some(pki.ca.clone()),
            cert_file: client.map(|(cert, _)| cert.clone()),
            key_file: client.map(|(_, key)| key.clone()),
            skip_verify: false,
        };
        let connector = tokio_rustls::TlsConnector::from(Arc::new(
            client_config(&settings, &[b"http/1.1"]).unwrap(),
        ));
        let tcp = TcpStream::connect(address).await?;
        let tls = connector
            .connect(crate::tls::server_name("localhost").unwrap(), tcp)
            .await?;
        request(tls, "/-/healthy", None).await
    }

    #[tokio::test]
    async fn probes_and_metrics() {
        let running = start("").await;
        let counter = prometheus::IntCounter::new("demo_total", "demo").unwrap();
        running
            .ctx
            .registry
            .register(Box::new(counter.clone()))
            .unwrap();
        counter.inc();
        assert_eq!(plain_get(running.address, "/-/healthy", None).await.0, 200);
        let (status, body) = plain_get(running.address, "/-/ready", None).await;
        assert_eq!(status, 503);
        assert!(body.contains("not ready"), "{body}");
        running.ctx.readiness.set_ready();
        assert_eq!(plain_get(running.address, "/-/ready", None).await.0, 200);
        let (status, body) = plain_get(running.address, "/metrics", None).await;
        assert_eq!(status, 200);
        assert!(body.contains("demo_total 1"), "{body}");
        assert_eq!(plain_get(running.address, "/nope", None).await.0, 404);
    }

    #[tokio::test]
    async fn basic_auth_guards_every_endpoint() {
        let hash = bcrypt::hash("secret", 4).unwrap();
        let running = start(&format!("basic_auth_users:\n  alice: {hash}\n")).await;
        // "alice:secret" and "alice:wrong"
        let right = Some("Basic YWxpY2U6c2VjcmV0");
        let wrong = Some("Basic YWxpY2U6d3Jvbmc=");
        for path in ["/-/healthy", "/metrics", "/-/ready"] {
            assert_eq!(
                plain_get(running.address, path, None).await.0,
                401,
                "{path}"
            );
            assert_eq!(
                plain_get(running.address, path, wrong).await.0,
                401,
                "{path}"
            );
        }
        assert_eq!(plain_get(running.address, "/-/healthy", right).await.0, 200);
        assert_eq!(plain_get(running.address, "/metrics", right).await.0, 200);
    }

    #[tokio::test]
    async fn tls_without_client_auth() {
        let pki = TestPki::generate().unwrap();
        let config = format!(
            "tls_server_config:\n  cert_file: {}\n  key_file: {}\n",
            pki.server_cert.display(),
            pki.server_key.display()
        );
        let running = start(&config).await;
        let (status, body) = tls_get(running.address, &pki, None).await.unwrap();
        assert_eq!((status, body.as_str()), (200, "OK"));
        // Plain HTTP on a TLS port gets no HTTP answer.
        let plain = TcpStream::connect(running.address).await.unwrap();
        assert!(request(plain, "/-/healthy", None).await.is_err());
    }

    #[tokio::test]
    async fn mutual_tls_refuses_missing_and_wrong_client_certificates() {
        let pki = TestPki::generate().unwrap();
        let config = "tls_server_config:\n  cert_file: server.pem\n  key_file: server-key.pem\n  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.pem\n  min_version: TLS13\n";
        std::fs::write(pki.dir.path().join("web.yml"), config).unwrap();
        // Relative names resolve against the config file's directory.
        let flags = HttpFlags {
            http_address: "127.0.0.1:0".parse().unwrap(),
            http_grace_period: Duration::from_secs(5).into(),
            http_read_timeout: Duration::from_secs(60).into(),
            http_config: Some(pki.dir.path().join("web.yml")),
        };
        let ctx = ServiceContext::new();
        let server = HttpServer::bind(&flags, &ctx, Router::new()).await.unwrap();
        let address = server.local_addr();
        tokio::spawn(server.serve(ctx.shutdown.clone()));

        let (status, _) = tls_get(address, &pki, Some((&pki.client_cert, &pki.client_key)))
            .await
            .unwrap();
        assert_eq!(status, 200);
        assert!(
            tls_get(address, &pki, None).await.is_err(),
            "no client certificate"
        );
        assert!(
            tls_get(address, &pki, Some((&pki.stranger_cert, &pki.stranger_key)))
                .await
                .is_err(),
            "client certificate from another CA"
        );
        ctx.shutdown.cancel();
    }

    #[tokio::test]
    async fn shutdown_waits_for_in_flight_requests() {
        let flags = HttpFlags {
            http_address: "127.0.0.1:0".parse().unwrap(),
            http_grace_period: Duration::from_secs(5).into(),
            http_read_timeout: Duration::from_secs(60).into(),
            http_config: None,
        };
        let ctx = ServiceContext::new();
        let routes = Router::new().route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_millis(500)).await;
                "slow done"
            }),
        );
        let server = HttpServer::bind(&flags, &ctx, routes).await.unwrap();
        let address = server.local_addr();
        let serving = tokio::spawn(server.serve(ctx.shutdown.clone()));
        let in_flight = tokio::spawn(async move { plain_get(address, "/slow", None).await });
        tokio::time::sleep(Duration::from_millis(100)).await;
        ctx.shutdown.cancel();
        let (status, body) = in_flight.await.unwrap();
        assert_eq!((status, body.as_str()), (200, "slow done"));
        tokio::time::timeout(Duration::from_secs(5), serving)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert!(
            TcpStream::connect(address).await.is_err(),
            "listener closed after shutdown"
        );
        assert!(!ctx.readiness.is_ready());
    }
}
