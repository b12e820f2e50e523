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
