//! The HTTP server's bounds against misbehaving clients, over real sockets: slow and short
//! bodies, oversized bodies, slow headers, and Prometheus' error JSON for errors that no
//! handler produced on API paths.

#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::routing::post;
use service_core::http_limits::MAX_BODY_BYTES;
use service_core::{HttpFlags, HttpServer, ServiceContext};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const READ_TIMEOUT: Duration = Duration::from_millis(500);

async fn server() -> (SocketAddr, ServiceContext) {
    server_with(None).await
}

async fn server_with(http_config: Option<std::path::PathBuf>) -> (SocketAddr, ServiceContext) {
    let flags = HttpFlags {
        http_address: "127.0.0.1:0".parse().unwrap(),
        http_grace_period: Duration::from_secs(1).into(),
        http_config,
        http_read_timeout: READ_TIMEOUT.into(),
    };
    let ctx = ServiceContext::new();
    let routes = Router::new().route(
        "/api/v1/echo",
        post(|body: Bytes| async move { format!("{}", body.len()) }),
    );
    let server = HttpServer::bind(&flags, &ctx, routes).await.unwrap();
    let address = server.local_addr();
    tokio::spawn(server.serve(ctx.shutdown.clone()));
    (address, ctx)
}

/// Sends `head` and `body` (as given, whatever the head declares), then reads until the server
/// closes or 10 s pass: status, headers and body text, and how long the answer took.
async fn exchange(address: SocketAddr, head: &str, body: &[u8]) -> (u16, String, Duration) {
    let mut stream = TcpStream::connect(address).await.unwrap();
    let started = Instant::now();
    stream.write_all(head.as_bytes()).await.unwrap();
    // The server may answer (and close) before taking all of a body it refuses.
    let _ = stream.write_all(body).await;
    let mut response = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut response)).await;
    let elapsed = started.elapsed();
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    (status, text, elapsed)
}

fn post_head(path: &str, length: usize) -> String {
    format!(
        "POST {path} HTTP/1.1\r\nHost: test\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {length}\r\nConnection: close\r\n\r\n"
    )
}

fn assert_error_json(text: &str, error_type: &str) {
    assert!(
        text.contains("content-type: application/json"),
        "not JSON: {text}"
    );
    assert!(
        text.contains(&format!(
            "{{\"status\":\"error\",\"errorType\":\"{error_type}\",\"error\":"
        )),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_are_bounded_in_size_and_time() {
    let (address, ctx) = server().await;
    // A 5 MiB form (above axum's default 2 MiB, within Prometheus' 10 MB) is accepted.
    let body = vec![b'a'; 5 << 20];
    let (status, text, _) = exchange(address, &post_head("/api/v1/echo", body.len()), &body).await;
    assert_eq!(status, 200, "{}", &text[..text.len().min(300)]);
    assert!(text.ends_with(&format!("{}", 5 << 20)), "{text}");
    // Declared larger than the limit: refused before it is read.
    let (status, text, _) = exchange(
        address,
        &post_head("/api/v1/echo", MAX_BODY_BYTES + 1),
        b"a=b",
    )
    .await;
    assert_eq!(status, 413, "{text}");
    assert_error_json(&text, "bad_data");
    // Shorter than its Content-Length: answered 408 after the read timeout, connection closed.
    let (status, text, elapsed) = exchange(address, &post_head("/api/v1/echo", 100), b"a=b").await;
    assert_eq!(status, 408, "{text}");
    assert_error_json(&text, "bad_data");
    assert!(
        elapsed >= READ_TIMEOUT && elapsed < READ_TIMEOUT * 8,
        "answered after {elapsed:?}"
    );
    // The server is still there for everyone else.
    let (status, _, _) = exchange(
        address,
        "GET /-/healthy HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n",
        b"",
    )
    .await;
    assert_eq!(status, 200);
    ctx.shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_headers_are_dropped() {
    let (address, ctx) = server().await;
    let (status, text, elapsed) =
        exchange(address, "GET /-/healthy HTTP/1.1\r\nHost: te", b"").await;
    // hyper closes the connection without an answer once the header read timeout passes.
    assert_ne!(status, 200, "{text}");
    assert!(elapsed < READ_TIMEOUT * 8, "closed after {elapsed:?}");
    ctx.shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_errors_without_a_handler_are_prometheus_json() {
    let (address, ctx) = server().await;
    let get =
        |path: &str| format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
    let (status, text, _) = exchange(address, &get("/api/v1/no-such-thing"), b"").await;
    assert_eq!(status, 404, "{text}");
    assert_error_json(&text, "not_found");
    let (status, text, _) = exchange(address, &get("/api/v1/echo"), b"").await;
    assert_eq!(status, 405, "{text}");
    assert_error_json(&text, "bad_data");
    assert!(text.contains("allow: POST"), "{text}");
    // Outside the API, a 404 stays as it was.
    let (status, text, _) = exchange(address, &get("/no-such-page"), b"").await;
    assert_eq!(status, 404, "{text}");
    assert!(!text.contains("\"status\":\"error\""), "{text}");
    ctx.shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_without_credentials_are_refused_before_their_body_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("web.yml");
    let hash = bcrypt::hash("secret", 4).unwrap();
    std::fs::write(&config, format!("basic_auth_users:\n  alice: {hash}\n")).unwrap();
    let (address, ctx) = server_with(Some(config)).await;
    // The body never comes: refused at once, not after the read timeout.
    let (status, text, elapsed) = exchange(address, &post_head("/api/v1/echo", 1000), b"").await;
    assert_eq!(status, 401, "{text}");
    assert!(elapsed < READ_TIMEOUT, "answered after {elapsed:?}");
    ctx.shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_request_heads_on_api_paths_get_error_json() {
    let (address, ctx) = server().await;
    // A URI over hyper's 65,534 bytes: 414 with Prometheus' error JSON on an API path.
    let long_query = "x".repeat(70_000);
    let (status, text, _) = exchange(
        address,
        &format!("GET /api/v1/query?query={long_query} HTTP/1.1\r\nHost: test\r\n\r\n"),
        b"",
    )
    .await;
    assert_eq!(status, 414, "{}", &text[..text.len().min(300)]);
    assert_error_json(&text, "bad_data");
    // A 60 KB URI is still served (Prometheus takes up to 1 MB of head).
    let query = "x".repeat(60_000);
    let (status, text, _) = exchange(
        address,
        &format!("GET /-/healthy?q={query} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n"),
        b"",
    )
    .await;
    assert_eq!(status, 200, "{}", &text[..text.len().min(300)]);
    // Headers of 600 KB fit (hyper's default buffer would refuse them); 3 MB: 431 with JSON.
    let header = "y".repeat(600_000);
    let (status, text, _) = exchange(
        address,
        &format!(
            "GET /-/healthy HTTP/1.1\r\nHost: test\r\nX-Big: {header}\r\nConnection: close\r\n\r\n"
        ),
        b"",
    )
    .await;
    assert_eq!(status, 200, "{}", &text[..text.len().min(300)]);
    let header = "y".repeat(3_000_000);
    let (status, text, _) = exchange(
        address,
        &format!("GET /api/v1/labels HTTP/1.1\r\nHost: test\r\nX-Big: {header}\r\n\r\n"),
        b"",
    )
    .await;
    assert_eq!(status, 431, "{}", &text[..text.len().min(300)]);
    assert_error_json(&text, "bad_data");
    // Off the API: hyper's own empty answer.
    let (status, text, _) = exchange(
        address,
        &format!("GET /metrics?q={long_query} HTTP/1.1\r\nHost: test\r\n\r\n"),
        b"",
    )
    .await;
    assert_eq!(status, 414, "{}", &text[..text.len().min(300)]);
    assert!(!text.contains("errorType"), "{text}");
    ctx.shutdown.cancel();
}
