//! Logging and tracing set-up: a `tracing` subscriber writing Thanos-style logfmt or JSON lines
//! to stderr, and, when `--tracing.config` asks for it, OTLP span export.

mod log_format;

use std::collections::HashMap;
use std::time::Duration;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig, WithTonicConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::layer::SubscriberExt;

use crate::error::{Error, Result};
use crate::flags::{GrpcClientFlags, LogFlags, LogLevel, TracingFlags};
use crate::tracing_config::{OtlpClientType, OtlpConfig, TracingConfig};

/// Libraries whose debug output drowns ours; they log at info at most.
const NOISY_TARGETS: [&str; 7] = [
    "h2",
    "hyper",
    "hyper_util",
    "tower",
    "tonic",
    "rustls",
    "opentelemetry",
];

/// Keeps the tracer provider alive; call [`TelemetryGuard::shutdown`] before exiting to flush
/// buffered spans.
#[derive(Debug)]
#[must_use = "dropping the guard does not flush spans; call shutdown()"]
pub struct TelemetryGuard {
    provider: Option<SdkTracerProvider>,
}

impl TelemetryGuard {
    /// Flushes and stops span export (blocking; call it outside async workers).
    pub fn shutdown(self) {
        if let Some(provider) = self.provider
            && let Err(error) = provider.shutdown()
        {
            tracing::warn!(%error, "flush traces");
        }
    }
}

fn level_filter(level: LogLevel) -> LevelFilter {
    match level {
        LogLevel::Debug => LevelFilter::DEBUG,
        LogLevel::Info => LevelFilter::INFO,
        LogLevel::Warn => LevelFilter::WARN,
        LogLevel::Error => LevelFilter::ERROR,
    }
}

/// Installs the process-wide subscriber. `service` names the OTLP resource (`service.name`).
///
/// Must run inside a tokio runtime when tracing is configured (the exporter runs on it);
/// [`crate::service_main`] takes care of that. Fails if a subscriber is already installed.
pub fn init_telemetry(
    service: &str,
    log: &LogFlags,
    tracing_flags: &TracingFlags,
) -> Result<TelemetryGuard> {
    let level = level_filter(log.log_level);
    let mut targets = Targets::new().with_default(level);
    for noisy in NOISY_TARGETS {
        targets = targets.with_target(noisy, level.min(LevelFilter::INFO));
    }
    let log_layer = tracing_subscriber::fmt::layer()
        .event_format(log_format::ThanosFormat {
            format: log.log_format,
        })
        .with_writer(std::io::stderr);

    let provider = match TracingConfig::from_flags(tracing_flags)? {
        Some(TracingConfig::Otlp(config)) => Some(otlp_provider(service, &config)?),
        None => None,
    };
    let otel_layer = provider.as_ref().map(|provider| {
        tracing_opentelemetry::layer().with_tracer(provider.tracer(service.to_owned()))
    });
    let subscriber = tracing_subscriber::registry()
        .with(targets)
        .with(log_layer)
        .with(otel_layer);
    tracing::subscriber::set_global_default(subscriber)
        .map_err(|error| Error::Telemetry(error.to_string()))?;
    if provider.is_some() {
        tracing::info!("tracing enabled (OTLP)");
    }
    Ok(TelemetryGuard { provider })
}

fn otlp_provider(service: &str, config: &OtlpConfig) -> Result<SdkTracerProvider> {
    let telemetry_error = |message: String| Error::Telemetry(format!("OTLP exporter: {message}"));
    if !config.compression.is_empty() && config.compression != "none" {
        tracing::warn!(compression = %config.compression, "OTLP compression is not supported, sending uncompressed");
    }
    let timeout = config
        .timeout
        .map_or(Duration::from_secs(10), |timeout| timeout.get());
    let exporter = match config.client_type {
        OtlpClientType::Grpc => {
            let builder = opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .with_timeout(timeout)
                .with_metadata(grpc_metadata(&config.headers)?);
            let builder = if config.insecure {
                builder.with_endpoint(format!("http://{}", config.endpoint))
            } else if config.tls_config.is_custom() {
                let flags = GrpcClientFlags {
                    grpc_client_tls_secure: true,
                    grpc_client_tls_skip_verify: config.tls_config.insecure_skip_verify,
                    grpc_client_tls_cert: config.tls_config.cert_file.clone(),
                    grpc_client_tls_key: config.tls_config.key_file.clone(),
                    grpc_client_tls_ca: config.tls_config.ca_file.clone(),
                    grpc_client_server_name: config.tls_config.server_name.clone(),
                };
                builder.with_channel(crate::grpc::grpc_channel(&config.endpoint, &flags)?)
            } else {
                builder
                    .with_endpoint(format!("https://{}", config.endpoint))
                    .with_tls_config(tonic::transport::ClientTlsConfig::new().with_native_roots())
            };
            builder
                .build()
                .map_err(|error| telemetry_error(error.to_string()))?
        }
        OtlpClientType::Http => {
            if !config.insecure {
                return Err(telemetry_error(
                    "client_type http supports plain text only (insecure: true); use client_type grpc for TLS"
                        .to_owned(),
                ));
            }
            let headers: HashMap<String, String> = config.headers.clone().into_iter().collect();
            opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .with_endpoint(format!("http://{}{}", config.endpoint, config.url_path))
                .with_timeout(timeout)
                .with_headers(headers)
                .build()
                .map_err(|error| telemetry_error(error.to_string()))?
        }
    };
    // Export on the tokio runtime: the tonic and hyper clients need its reactor.
    let processor =
        opentelemetry_sdk::trace::span_processor_with_async_runtime::BatchSpanProcessor::builder(
            exporter,
            opentelemetry_sdk::runtime::Tokio,
        )
        .build();
    let resource = Resource::builder()
        .with_service_name(service.to_owned())
        .build();
    Ok(SdkTracerProvider::builder()
        .with_span_processor(processor)
        .with_resource(resource)
        .build())
}

fn grpc_metadata(
    headers: &std::collections::BTreeMap<String, String>,
) -> Result<tonic::metadata::MetadataMap> {
    let mut metadata = tonic::metadata::MetadataMap::new();
    for (name, value) in headers {
        let invalid = || Error::Telemetry(format!("OTLP exporter: invalid header {name:?}"));
        let key = tonic::metadata::MetadataKey::from_bytes(name.to_ascii_lowercase().as_bytes())
            .map_err(|_| invalid())?;
        let value =
            tonic::metadata::MetadataValue::try_from(value.as_str()).map_err(|_| invalid())?;
        metadata.insert(key, value);
    }
    Ok(metadata)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use axum::Router;
    use axum::body::Bytes;
    use axum::http::HeaderMap;
    use axum::routing::post;
    use opentelemetry::trace::{Span as _, Tracer as _};
    use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
        TraceService, TraceServiceServer,
    };
    use opentelemetry_proto::tonic::collector::trace::v1::{
        ExportTraceServiceRequest, ExportTraceServiceResponse,
    };
    use opentelemetry_proto::tonic::common::v1::any_value::Value;
    use tokio::sync::mpsc;

    use super::*;
    use crate::{GrpcFlags, GrpcServer, HttpFlags, HttpServer, ServiceContext, TlsVersion};

    struct Collector(mpsc::UnboundedSender<ExportTraceServiceRequest>);

    #[tonic::async_trait]
    impl TraceService for Collector {
        async fn export(
            &self,
            request: tonic::Request<ExportTraceServiceRequest>,
        ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
            let _ = self.0.send(request.into_inner());
            Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
        }
    }

    /// Sends one span through a provider built from `yaml` and returns what the collector got.
    async fn export_one_span(
        yaml: String,
        mut received: mpsc::UnboundedReceiver<ExportTraceServiceRequest>,
    ) -> ExportTraceServiceRequest {
        let TracingConfig::Otlp(config) = TracingConfig::parse(&yaml).unwrap();
        let provider = otlp_provider("demo-svc", &config).unwrap();
        let mut span = provider.tracer("test").start("test-span");
        span.end();
        let provider = tokio::task::spawn_blocking(move || {
            let _ = provider.force_flush();
            provider
        })
        .await
        .unwrap();
        let request = tokio::time::timeout(Duration::from_secs(20), received.recv())
            .await
            .unwrap()
            .unwrap();
        tokio::task::spawn_blocking(move || provider.shutdown())
            .await
            .unwrap()
            .unwrap();
        request
    }

    fn check_request(request: &ExportTraceServiceRequest) {
        let resource_spans = &request.resource_spans[0];
        let span_names: Vec<&str> = resource_spans
            .scope_spans
            .iter()
            .flat_map(|scope| scope.spans.iter().map(|span| span.name.as_str()))
            .collect();
        assert_eq!(span_names, ["test-span"]);
        let service_name = resource_spans
            .resource
            .as_ref()
            .unwrap()
            .attributes
            .iter()
            .find(|attribute| attribute.key == "service.name")
            .and_then(|attribute| attribute.value.as_ref()?.value.clone());
        assert_eq!(
            service_name,
            Some(Value::StringValue("demo-svc".to_owned()))
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn exports_spans_with_otlp_grpc() {
        let (sender, received) = mpsc::unbounded_channel();
        let ctx = ServiceContext::new();
        let flags = GrpcFlags {
            grpc_address: "127.0.0.1:0".parse().unwrap(),
            grpc_grace_period: Duration::from_secs(1).into(),
            grpc_server_tls_cert: None,
            grpc_server_tls_key: None,
            grpc_server_tls_client_ca: None,
            grpc_server_tls_min_version: TlsVersion::Tls13,
            grpc_server_max_connection_age: Duration::from_secs(3600).into(),
        };
        let mut server = GrpcServer::bind(&flags, &ctx).await.unwrap();
        server.add_service(TraceServiceServer::new(Collector(sender)));
        let address = server.local_addr();
        tokio::spawn(server.serve(ctx.shutdown.clone()));
        let yaml = format!("type: OTLP\nconfig:\n  endpoint: {address}\n  insecure: true\n");
        check_request(&export_one_span(yaml, received).await);
        ctx.shutdown.cancel();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn exports_spans_with_otlp_http() {
        let (sender, received) = mpsc::unbounded_channel();
        let ctx = ServiceContext::new();
        let routes = Router::new().route(
            "/v1/traces",
            post(move |headers: HeaderMap, body: Bytes| async move {
                assert_eq!(headers["content-type"], "application/x-protobuf");
                let request = <ExportTraceServiceRequest as prost::Message>::decode(body).unwrap();
                let _ = sender.send(request);
                ""
            }),
        );
        let flags = HttpFlags {
            http_address: "127.0.0.1:0".parse().unwrap(),
            http_grace_period: Duration::from_secs(1).into(),
            http_config: None,
            http_read_timeout: Duration::from_secs(60).into(),
        };
        let server = HttpServer::bind(&flags, &ctx, routes).await.unwrap();
        let address = server.local_addr();
        tokio::spawn(server.serve(ctx.shutdown.clone()));
        let yaml = format!(
            "type: OTLP\nconfig:\n  client_type: http\n  endpoint: {address}\n  insecure: true\n"
        );
        check_request(&export_one_span(yaml, received).await);
        ctx.shutdown.cancel();
    }

    #[test]
    fn http_exporter_refuses_tls() {
        let TracingConfig::Otlp(config) =
            TracingConfig::parse("type: OTLP\nconfig:\n  client_type: http\n").unwrap();
        let error = otlp_provider("svc", &config).unwrap_err();
        assert!(error.to_string().contains("plain text only"), "{error}");
    }
}
