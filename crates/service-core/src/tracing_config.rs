//! Thanos' tracing configuration (`--tracing.config` / `--tracing.config-file`).
//!
//! Only `type: OTLP` is supported; other Thanos tracer types (JAEGER, STACKDRIVER, ELASTIC_APM,
//! LIGHTSTEP, GOOGLE_CLOUD, DATADOG) are refused with a message naming the type.
//!
//! ```yaml
//! type: OTLP
//! config:
//!   client_type: grpc        # or http; default grpc
//!   endpoint: collector:4317 # host:port, no scheme
//!   insecure: true
//!   timeout: 10s
//!   headers: {x-tenant: a}
//!   tls_config: {ca_file: ca.pem, cert_file: c.pem, key_file: k.pem, server_name: x, insecure_skip_verify: false}
//! ```

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

use crate::duration::PromDuration;
use crate::error::{Error, Result};
use crate::flags::TracingFlags;

const WHAT: &str = "tracing.config";

/// A parsed tracing configuration.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum TracingConfig {
    /// Export spans with OTLP.
    Otlp(OtlpConfig),
}

/// OTLP exporter settings (Thanos' `pkg/tracing/otlp` config keys).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct OtlpConfig {
    /// `grpc` or `http`.
    pub client_type: OtlpClientType,
    /// `host:port` of the collector; defaults to `localhost:4317` (gRPC) or `localhost:4318`.
    pub endpoint: String,
    /// Plain text instead of TLS.
    pub insecure: bool,
    /// HTTP only: the path spans are posted to.
    pub url_path: String,
    /// Export timeout (Go duration syntax, e.g. `10s`).
    #[serde(deserialize_with = "deserialize_duration")]
    pub timeout: Option<PromDuration>,
    /// Extra headers (gRPC metadata) sent with every export.
    pub headers: BTreeMap<String, String>,
    /// TLS client settings.
    pub tls_config: OtlpTlsConfig,
    /// `gzip` or empty; accepted for compatibility, exports are sent uncompressed.
    pub compression: String,
    /// Accepted for compatibility, not used.
    pub reconnection_period: Option<String>,
    /// Accepted for compatibility, not used (the exporter retries with its own policy).
    pub retry_config: Option<serde_yaml_ng::Value>,
}

impl Default for OtlpConfig {
    fn default() -> Self {
        Self {
            client_type: OtlpClientType::Grpc,
            endpoint: String::new(),
            insecure: false,
            url_path: "/v1/traces".to_owned(),
            timeout: None,
            headers: BTreeMap::new(),
            tls_config: OtlpTlsConfig::default(),
            compression: String::new(),
            reconnection_period: None,
            retry_config: None,
        }
    }
}

/// OTLP transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OtlpClientType {
    /// OTLP/gRPC (port 4317).
    Grpc,
    /// OTLP/HTTP with protobuf bodies (port 4318).
    Http,
}

/// TLS settings for the exporter (Thanos' `exthttp.TLSConfig` keys).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct OtlpTlsConfig {
    /// CA bundle for the collector's certificate.
    pub ca_file: Option<PathBuf>,
    /// Client certificate.
    pub cert_file: Option<PathBuf>,
    /// Client key.
    pub key_file: Option<PathBuf>,
    /// Name to verify the collector's certificate against.
    pub server_name: Option<String>,
    /// Accept any collector certificate.
    pub insecure_skip_verify: bool,
}

impl OtlpTlsConfig {
    /// Whether anything beyond the system roots is configured.
    pub fn is_custom(&self) -> bool {
        self.ca_file.is_some()
            || self.cert_file.is_some()
            || self.server_name.is_some()
            || self.insecure_skip_verify
    }
}

fn deserialize_duration<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<PromDuration>, D::Error> {
    let text: Option<String> = Option::deserialize(deserializer)?;
    text.map(|text| text.parse().map_err(serde::de::Error::custom))
        .transpose()
}

#[derive(Debug, Deserialize)]
struct RawTracingConfig {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    config: Option<serde_yaml_ng::Value>,
}

fn config_error(message: impl Into<String>) -> Error {
    Error::Config {
        what: WHAT,
        message: message.into(),
    }
}

impl TracingConfig {
    /// Reads the flags: `None` when neither is given (tracing disabled), as in Thanos.
    pub fn from_flags(flags: &TracingFlags) -> Result<Option<Self>> {
        let yaml = match (&flags.tracing_config, &flags.tracing_config_file) {
            (Some(yaml), _) => yaml.clone(),
            (None, Some(path)) => {
                std::fs::read_to_string(path).map_err(|source| Error::ReadFile {
                    what: WHAT,
                    path: path.clone(),
                    source,
                })?
            }
            (None, None) => return Ok(None),
        };
        if yaml.trim().is_empty() {
            return Ok(None);
        }
        Self::parse(&yaml).map(Some)
    }

    /// Parses the YAML document.
    pub fn parse(yaml: &str) -> Result<Self> {
        let raw: RawTracingConfig =
            serde_yaml_ng::from_str(yaml).map_err(|error| config_error(error.to_string()))?;
        match raw.kind.to_ascii_uppercase().as_str() {
            "OTLP" => {
                let mut otlp: OtlpConfig = match raw.config {
                    Some(value) => serde_yaml_ng::from_value(value)
                        .map_err(|error| config_error(error.to_string()))?,
                    None => OtlpConfig::default(),
                };
                if otlp.endpoint.is_empty() {
                    otlp.endpoint = match otlp.client_type {
                        OtlpClientType::Grpc => "localhost:4317".to_owned(),
                        OtlpClientType::Http => "localhost:4318".to_owned(),
                    };
                }
                Ok(Self::Otlp(otlp))
            }
            other => Err(config_error(format!(
                "tracing type {other:?} is not supported by thanos-rs, only OTLP is"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn parses_otlp_grpc() {
        let yaml = "type: OTLP\nconfig:\n  client_type: grpc\n  endpoint: collector:4317\n  insecure: true\n  timeout: 10s\n  headers:\n    x-tenant: a\n";
        let TracingConfig::Otlp(config) = TracingConfig::parse(yaml).unwrap();
        assert_eq!(config.client_type, OtlpClientType::Grpc);
        assert_eq!(config.endpoint, "collector:4317");
        assert!(config.insecure);
        assert_eq!(config.timeout.unwrap().get(), Duration::from_secs(10));
        assert_eq!(config.headers["x-tenant"], "a");
    }

    #[test]
    fn fills_defaults() {
        let TracingConfig::Otlp(config) = TracingConfig::parse("type: otlp").unwrap();
        assert_eq!(config.client_type, OtlpClientType::Grpc);
        assert_eq!(config.endpoint, "localhost:4317");
        let TracingConfig::Otlp(config) = TracingConfig::parse(
            "type: OTLP\nconfig:\n  client_type: http\n  retry_config:\n    retry_enabled: true\n",
        )
        .unwrap();
        assert_eq!(config.endpoint, "localhost:4318");
        assert_eq!(config.url_path, "/v1/traces");
    }

    #[test]
    fn refuses_unknown_types_clearly() {
        let error = TracingConfig::parse("type: JAEGER\nconfig:\n  service_name: x\n").unwrap_err();
        assert_eq!(
            error.to_string(),
            "parse tracing.config: tracing type \"JAEGER\" is not supported by thanos-rs, only OTLP is"
        );
        assert!(TracingConfig::parse("type: OTLP\nconfig:\n  client_type: udp\n").is_err());
        assert!(TracingConfig::parse("type: OTLP\nconfig:\n  timeout: soon\n").is_err());
        assert!(TracingConfig::parse("config: {}\n").is_err());
    }

    #[test]
    fn flags_select_the_source() {
        assert_eq!(
            TracingConfig::from_flags(&TracingFlags::default()).unwrap(),
            None
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tracing.yml");
        std::fs::write(
            &path,
            "type: OTLP\nconfig:\n  endpoint: a:1\n  insecure: true\n",
        )
        .unwrap();
        let flags = TracingFlags {
            tracing_config_file: Some(path),
            tracing_config: None,
        };
        let Some(TracingConfig::Otlp(config)) = TracingConfig::from_flags(&flags).unwrap() else {
            panic!("expected an OTLP configuration");
        };
        assert_eq!(config.endpoint, "a:1");
    }
}
