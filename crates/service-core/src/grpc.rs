//! gRPC server and client plumbing with Thanos' transport settings (spec §1.1): message sizes
//! up to `i32::MAX`, 10 s keepalive pings allowed, `--grpc-server-max-connection-age`, TLS and
//! mutual TLS from the flags, the standard `grpc.health.v1.Health` service, and `snappy`
//! request decompression.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::Uri;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio_rustls::TlsConnector;
use tokio_util::sync::CancellationToken;
use tonic::body::Body;
use tonic::server::NamedService;
use tonic::service::RoutesBuilder;
use tonic::transport::{Channel, Endpoint, Server};
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

use crate::error::{Error, Result};
use crate::flags::{GrpcClientFlags, GrpcFlags};
use crate::lifecycle::{Readiness, ReadinessState, ServiceContext};
use crate::listener::{accept_connections, bind};
use crate::propagation::TraceContextLayer;
use crate::snappy::SnappyDecompressionLayer;
use crate::tls::{ClientAuth, ClientTlsSettings, ServerTlsSettings, client_config, server_config};

/// Thanos' message size limit (`math.MaxInt32`) for both directions. Generated servers and
/// clients must apply it: `StoreServer::new(svc).max_decoding_message_size(MAX_MESSAGE_SIZE)
/// .max_encoding_message_size(MAX_MESSAGE_SIZE)`; tonic's 4 MiB default is too small for large
/// `Series` frames.
pub const MAX_MESSAGE_SIZE: usize = i32::MAX as usize;

/// How often clients ping an idle connection (Thanos: 10 s) and how long they wait for the ack.
pub const CLIENT_KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
/// How long a client waits for a keepalive ping's acknowledgement (Thanos: 5 s).
pub const CLIENT_KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(5);

/// A bound gRPC server with the health service registered; services are added before
/// [`GrpcServer::serve`].
#[derive(Debug)]
pub struct GrpcServer {
    listener: TcpListener,
    local_addr: SocketAddr,
    tls: Option<Arc<rustls::ServerConfig>>,
    grace_period: Duration,
    max_connection_age: Duration,
    routes: RoutesBuilder,
    health: HealthReporter,
    readiness: Readiness,
}

impl GrpcServer {
    /// Binds `--grpc-address` and loads the server TLS flags.
    pub async fn bind(flags: &GrpcFlags, ctx: &ServiceContext) -> Result<Self> {
        let tls = server_tls(flags)?.map(Arc::new);
        let listener = bind(flags.grpc_address).await?;
        let local_addr = listener.local_addr().unwrap_or(flags.grpc_address);
        let (health, health_service) = tonic_health::server::health_reporter();
        let mut routes = RoutesBuilder::default();
        routes.add_service(health_service);
        Ok(Self {
            listener,
            local_addr,
            tls,
            grace_period: flags.grpc_grace_period.get(),
            max_connection_age: flags.grpc_server_max_connection_age.get(),
            routes,
            health,
            readiness: ctx.readiness.clone(),
        })
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Registers a generated service (apply [`MAX_MESSAGE_SIZE`] to it first).
    pub fn add_service<S>(&mut self, service: S) -> &mut Self
    where
        S: tower::Service<http::Request<Body>, Error = Infallible>
            + NamedService
            + Clone
            + Send
            + Sync
            + 'static,
        S::Response: axum::response::IntoResponse,
        S::Future: Send + 'static,
    {
        self.routes.add_service(service);
        self
    }

    /// The health reporter, to set per-service statuses. The overall status (service name `""`)
    /// follows the service's [`Readiness`].
    pub fn health_reporter(&self) -> HealthReporter {
        self.health.clone()
    }

    /// Serves until `shutdown` is cancelled, then stops accepting and lets in-flight calls
    /// finish within `--grpc-grace-period`.
    pub async fn serve(self, shutdown: CancellationToken) -> Result<()> {
        let Self {
            listener,
            local_addr,
            tls,
            grace_period,
            max_connection_age,
            routes,
            health,
            readiness,
        } = self;
        tokio::spawn(mirror_readiness(readiness, health, shutdown.clone()));
        tracing::info!(address = %local_addr, tls = tls.is_some(), "listening for gRPC requests");
        let incoming = accept_connections(listener, tls, shutdown.clone(), "grpc");
        let incoming = tokio_stream::wrappers::ReceiverStream::new(incoming);
        let incoming = tokio_stream::StreamExt::map(incoming, Ok::<_, std::io::Error>);
        let server = Server::builder()
            .max_connection_age(max_connection_age)
            .tcp_nodelay(true)
            .layer(TraceContextLayer::new("grpc"))
            .layer(SnappyDecompressionLayer)
            .add_routes(routes.routes());
        let stop = shutdown.clone();
        let serving = server.serve_with_incoming_shutdown(incoming, stop.cancelled_owned());
        tokio::pin!(serving);
        let outcome = tokio::select! {
            outcome = &mut serving => outcome,
            () = shutdown.cancelled() => {
                tracing::info!(address = %local_addr, "gRPC server shutting down");
                match tokio::time::timeout(grace_period, &mut serving).await {
                    Ok(outcome) => outcome,
                    Err(_elapsed) => {
                        tracing::warn!(grace_period = ?grace_period, "gRPC grace period over, closing connections");
                        Ok(())
                    }
                }
            }
        };
        outcome.map_err(|source| Error::Grpc {
            address: local_addr,
            source,
        })?;
        tracing::info!("gRPC server stopped");
        Ok(())
    }
}

/// Keeps the overall health status (`""`) equal to readiness.
async fn mirror_readiness(
    readiness: Readiness,
    health: HealthReporter,
    shutdown: CancellationToken,
) {
    let mut changes = readiness.subscribe();
    loop {
        let status = match *changes.borrow_and_update() {
            ReadinessState::Ready => ServingStatus::Serving,
            ReadinessState::NotReady(_) => ServingStatus::NotServing,
        };
        health.set_service_status("", status).await;
        tokio::select! {
            () = shutdown.cancelled() => break,
            changed = changes.changed() => if changed.is_err() { break },
        }
    }
    health
        .set_service_status("", ServingStatus::NotServing)
        .await;
}

fn server_tls(flags: &GrpcFlags) -> Result<Option<rustls::ServerConfig>> {
    let (cert_file, key_file) = match (&flags.grpc_server_tls_cert, &flags.grpc_server_tls_key) {
        (None, None) => {
            if flags.grpc_server_tls_client_ca.is_some() {
                return Err(Error::TlsConfig(
                    "--grpc-server-tls-client-ca needs --grpc-server-tls-cert and --grpc-server-tls-key"
                        .to_owned(),
                ));
            }
            return Ok(None);
        }
        (Some(cert_file), Some(key_file)) => (cert_file.clone(), key_file.clone()),
        _ => {
            return Err(Error::TlsConfig(
                "--grpc-server-tls-cert and --grpc-server-tls-key must be given together"
                    .to_owned(),
            ));
        }
    };
    let client_auth = if flags.grpc_server_tls_client_ca.is_some() {
        ClientAuth::RequireAndVerifyClientCert
    } else {
        ClientAuth::NoClientCert
    };
    let settings = ServerTlsSettings {
        cert_file,
        key_file,
        client_ca_file: flags.grpc_server_tls_client_ca.clone(),
        client_auth,
        min_version: flags.grpc_server_tls_min_version,
    };
    server_config(&settings, &[b"h2"]).map(Some)
}

/// A lazily connecting channel to `address` (`host:port`, Thanos style, no scheme), with
/// keepalive pings and TLS per the client flags. Use [`MAX_MESSAGE_SIZE`] on the generated
/// client and [`crate::TraceContextInterceptor`] to propagate traces.
pub fn grpc_channel(address: &str, flags: &GrpcClientFlags) -> Result<Channel> {
    let endpoint_error = |message: String| Error::GrpcEndpoint {
        endpoint: address.to_owned(),
        message,
    };
    let uri: Uri = format!("http://{address}")
        .parse()
        .map_err(|error: http::uri::InvalidUri| endpoint_error(error.to_string()))?;
    let host = uri
        .host()
        .ok_or_else(|| endpoint_error("missing host".to_owned()))?
        .to_owned();
    let endpoint = Endpoint::from(uri)
        .http2_keep_alive_interval(CLIENT_KEEPALIVE_INTERVAL)
        .keep_alive_timeout(CLIENT_KEEPALIVE_TIMEOUT)
        .keep_alive_while_idle(true)
        .tcp_nodelay(true);
    if !flags.grpc_client_tls_secure {
        return Ok(endpoint.connect_lazy());
    }
    let settings = ClientTlsSettings {
        ca_file: flags.grpc_client_tls_ca.clone(),
        cert_file: flags.grpc_client_tls_cert.clone(),
        key_file: flags.grpc_client_tls_key.clone(),
        skip_verify: flags.grpc_client_tls_skip_verify,
    };
    let connector = TlsConnector::from(Arc::new(client_config(&settings, &[b"h2"])?));
    // Bracketed IPv6 hosts lose their brackets for certificate matching.
    let name = flags.grpc_client_server_name.clone().unwrap_or_else(|| {
        host.trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned()
    });
    let server_name = crate::tls::server_name(&name)?;
    let connect = tower::service_fn(move |uri: Uri| {
        let connector = connector.clone();
        let server_name = server_name.clone();
        async move {
            let host = uri
                .host()
                .unwrap_or_default()
                .trim_start_matches('[')
                .trim_end_matches(']');
            let port = uri.port_u16().unwrap_or(443);
            let tcp = tokio::net::TcpStream::connect((host, port)).await?;
            tcp.set_nodelay(true)?;
            let tls = connector.connect(server_name, tcp).await?;
            Ok::<_, std::io::Error>(TokioIo::new(tls))
        }
    });
    Ok(endpoint.connect_with_connector_lazy(connect))
}

#[cfg(test)]
mod tests {
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_check_response::ServingStatus as Status;
    use tonic_health::pb::health_client::HealthClient;

    use super::*;
    use crate::duration::PromDuration;
    use crate::flags::TlsVersion;
    use test_harness::TestPki;

    fn server_flags(pki: Option<&TestPki>) -> GrpcFlags {
        GrpcFlags {
            grpc_address: "127.0.0.1:0".parse().unwrap(),
            grpc_grace_period: PromDuration::new(Duration::from_secs(5)),
            grpc_server_tls_cert: pki.map(|pki| pki.server_cert.clone()),
            grpc_server_tls_key: pki.map(|pki| pki.server_key.clone()),
            grpc_server_tls_client_ca: pki.map(|pki| pki.ca.clone()),
            grpc_server_tls_min_version: TlsVersion::Tls13,
            grpc_server_max_connection_age: PromDuration::new(Duration::from_secs(3600)),
        }
    }

    async fn overall_status(channel: Channel) -> Result<Status, tonic::Status> {
        let mut client = HealthClient::new(channel);
        let response = client
            .check(HealthCheckRequest {
                service: String::new(),
            })
            .await?;
        Ok(response.into_inner().status())
    }

    async fn start(
        flags: &GrpcFlags,
    ) -> (
        SocketAddr,
        ServiceContext,
        tokio::task::JoinHandle<Result<()>>,
    ) {
        let ctx = ServiceContext::new();
        let server = GrpcServer::bind(flags, &ctx).await.unwrap();
        let address = server.local_addr();
        let serving = tokio::spawn(server.serve(ctx.shutdown.clone()));
        (address, ctx, serving)
    }

    #[tokio::test]
    async fn health_follows_readiness() {
        let (address, ctx, serving) = start(&server_flags(None)).await;
        let channel = grpc_channel(&address.to_string(), &GrpcClientFlags::default()).unwrap();
        assert_eq!(
            overall_status(channel.clone()).await.unwrap(),
            Status::NotServing
        );
        ctx.readiness.set_ready();
        let mut status = Status::NotServing;
        for _ in 0..50 {
            status = overall_status(channel.clone()).await.unwrap();
            if status == Status::Serving {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(status, Status::Serving);
        ctx.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(5), serving)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
    }

    #[tokio::test]
    async fn mutual_tls_between_our_server_and_client() {
        let pki = TestPki::generate().unwrap();
        let (address, ctx, _serving) = start(&server_flags(Some(&pki))).await;
        let mut client_flags = GrpcClientFlags {
            grpc_client_tls_secure: true,
            grpc_client_tls_ca: Some(pki.ca.clone()),
            grpc_client_tls_cert: Some(pki.client_cert.clone()),
            grpc_client_tls_key: Some(pki.client_key.clone()),
            grpc_client_server_name: Some("localhost".to_owned()),
            ..GrpcClientFlags::default()
        };
        let channel = grpc_channel(&address.to_string(), &client_flags).unwrap();
        assert_eq!(overall_status(channel).await.unwrap(), Status::NotServing);

        client_flags.grpc_client_tls_cert = Some(pki.stranger_cert.clone());
        client_flags.grpc_client_tls_key = Some(pki.stranger_key.clone());
        let channel = grpc_channel(&address.to_string(), &client_flags).unwrap();
        assert!(
            overall_status(channel).await.is_err(),
            "foreign client certificate accepted"
        );

        client_flags.grpc_client_tls_cert = None;
        client_flags.grpc_client_tls_key = None;
        let channel = grpc_channel(&address.to_string(), &client_flags).unwrap();
        assert!(
            overall_status(channel).await.is_err(),
            "missing client certificate accepted"
        );

        let plain = grpc_channel(&address.to_string(), &GrpcClientFlags::default()).unwrap();
        assert!(
            overall_status(plain).await.is_err(),
            "plain text accepted on a TLS port"
        );
        ctx.shutdown.cancel();
    }

    #[tokio::test]
    async fn client_skip_verify_accepts_unknown_ca() {
        let pki = TestPki::generate().unwrap();
        let mut flags = server_flags(Some(&pki));
        flags.grpc_server_tls_client_ca = None;
        let (address, ctx, _serving) = start(&flags).await;
        let verify = GrpcClientFlags {
            grpc_client_tls_secure: true,
            ..GrpcClientFlags::default()
        };
        let channel = grpc_channel(&address.to_string(), &verify).unwrap();
        assert!(overall_status(channel).await.is_err(), "unknown CA trusted");
        let skip = GrpcClientFlags {
            grpc_client_tls_skip_verify: true,
            ..verify
        };
        let channel = grpc_channel(&address.to_string(), &skip).unwrap();
        assert_eq!(overall_status(channel).await.unwrap(), Status::NotServing);
        ctx.shutdown.cancel();
    }

    #[tokio::test]
    async fn accepts_snappy_compressed_requests() {
        use http_body_util::BodyExt;
        use tower::ServiceExt;

        let (address, ctx, _serving) = start(&server_flags(None)).await;
        let channel = grpc_channel(&address.to_string(), &GrpcClientFlags::default()).unwrap();
        // HealthCheckRequest { service: "snappy.Test" }: field 1, length-delimited.
        let name = b"snappy.Test";
        let mut message = vec![0x0a, name.len() as u8];
        message.extend_from_slice(name);
        let compressed = crate::snappy::snappy_compress(&message).unwrap();
        let mut framed = vec![1];
        framed.extend_from_slice(&(compressed.len() as u32).to_be_bytes());
        framed.extend_from_slice(&compressed);
        let request = http::Request::builder()
            .method("POST")
            .uri(format!("http://{address}/grpc.health.v1.Health/Check"))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .header("grpc-encoding", "snappy")
            .body(Body::new(http_body_util::Full::new(bytes::Bytes::from(
                framed,
            ))))
            .unwrap();
        let response = channel.oneshot(request).await.unwrap();
        let header_status = response.headers().get("grpc-status").cloned();
        let collected = response.into_body().collect().await.unwrap();
        let status = header_status
            .or_else(|| {
                collected
                    .trailers()
                    .and_then(|trailers| trailers.get("grpc-status").cloned())
            })
            .unwrap();
        // NOT_FOUND: tonic decoded the service name, so the message arrived decompressed.
        // Without decompression it would answer UNIMPLEMENTED (12) or INTERNAL (13).
        assert_eq!(status, "5");
        ctx.shutdown.cancel();
    }

    #[test]
    fn refuses_half_configured_tls() {
        let mut flags = server_flags(None);
        flags.grpc_server_tls_cert = Some("cert.pem".into());
        assert!(server_tls(&flags).is_err());
        let mut flags = server_flags(None);
        flags.grpc_server_tls_client_ca = Some("ca.pem".into());
        assert!(server_tls(&flags).is_err());
        assert!(grpc_channel("", &GrpcClientFlags::default()).is_err());
    }
}
