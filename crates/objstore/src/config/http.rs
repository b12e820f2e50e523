//! The `http_config` block shared by the S3, Azure and GCS configurations (Thanos' `exthttp`).

use object_store::{Certificate, ClientOptions};
use serde::Deserialize;
use tracing::debug;

use super::values::PromDuration;
use crate::error::{Error, Result};
use crate::options::BucketOptions;

/// HTTP client settings, with Thanos' defaults. Timeouts and TLS settings that `object_store`
/// exposes are applied; the others are accepted and logged at debug level.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// How long an idle pooled connection is kept (default `1m30s`).
    pub idle_conn_timeout: PromDuration,
    /// How long to wait for the response to start (default `2m`); applied as the read timeout.
    pub response_header_timeout: PromDuration,
    /// Skip TLS certificate verification.
    pub insecure_skip_verify: bool,
    /// TLS handshake timeout (default `10s`; accepted, not applied).
    pub tls_handshake_timeout: PromDuration,
    /// `Expect: 100-continue` timeout (default `1s`; accepted, not applied).
    pub expect_continue_timeout: PromDuration,
    /// Maximum idle connections overall (default 100; accepted, not applied).
    pub max_idle_conns: i64,
    /// Maximum idle connections per host (default 100).
    pub max_idle_conns_per_host: i64,
    /// Maximum connections per host, 0 = unlimited (accepted, not applied).
    pub max_conns_per_host: i64,
    /// TLS settings.
    pub tls_config: TlsConfig,
    /// Disable transparent compression (accepted, not applied).
    pub disable_compression: bool,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            idle_conn_timeout: PromDuration::from_secs(90),
            response_header_timeout: PromDuration::from_secs(120),
            insecure_skip_verify: false,
            tls_handshake_timeout: PromDuration::from_secs(10),
            expect_continue_timeout: PromDuration::from_secs(1),
            max_idle_conns: 100,
            max_idle_conns_per_host: 100,
            max_conns_per_host: 0,
            tls_config: TlsConfig::default(),
            disable_compression: false,
        }
    }
}

/// The `tls_config` block.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM file of CA certificates to trust in addition to the system's.
    pub ca_file: String,
    /// Client certificate file (accepted, not supported by the client: logged).
    pub cert_file: String,
    /// Client key file (accepted, not supported by the client: logged).
    pub key_file: String,
    /// Server name for verification (accepted, not applied).
    pub server_name: String,
    /// Skip TLS certificate verification.
    pub insecure_skip_verify: bool,
}

impl HttpConfig {
    /// The `object_store` client options for this block and the runtime `options`.
    pub(crate) fn client_options(
        &self,
        provider: &'static str,
        options: &BucketOptions,
        allow_http: bool,
    ) -> Result<ClientOptions> {
        self.log_ignored(provider);
        let mut client = ClientOptions::new()
            .with_allow_http(allow_http)
            .with_connect_timeout(options.connect_timeout)
            .with_pool_idle_timeout(self.idle_conn_timeout.0)
            .with_allow_invalid_certificates(
                self.insecure_skip_verify || self.tls_config.insecure_skip_verify,
            );
        client = match options.request_timeout {
            Some(timeout) => client.with_timeout(timeout),
            None => client.with_timeout_disabled(),
        };
        if !self.response_header_timeout.0.is_zero() {
            client = client.with_read_timeout(self.response_header_timeout.0);
        }
        if self.max_idle_conns_per_host > 0 {
            let per_host = usize::try_from(self.max_idle_conns_per_host).unwrap_or(usize::MAX);
            client = client.with_pool_max_idle_per_host(per_host);
        }
        if !self.tls_config.ca_file.is_empty() {
            let path = &self.tls_config.ca_file;
            let pem = std::fs::read(path).map_err(|source| Error::ReadConfigFile {
                path: path.into(),
                source,
            })?;
            let certificates = Certificate::from_pem_bundle(&pem).map_err(|_| {
                Error::config(format!(
                    "key `http_config.tls_config.ca_file`: {path} holds no valid PEM certificate"
                ))
            })?;
            for certificate in certificates {
                client = client.with_root_certificate(certificate);
            }
        }
        Ok(client)
    }

    fn log_ignored(&self, provider: &'static str) {
        let defaults = HttpConfig::default();
        let ignored = [
            (
                "http_config.tls_handshake_timeout",
                self.tls_handshake_timeout != defaults.tls_handshake_timeout,
            ),
            (
                "http_config.expect_continue_timeout",
                self.expect_continue_timeout != defaults.expect_continue_timeout,
            ),
            (
                "http_config.max_idle_conns",
                self.max_idle_conns != defaults.max_idle_conns,
            ),
            (
                "http_config.max_conns_per_host",
                self.max_conns_per_host != defaults.max_conns_per_host,
            ),
            ("http_config.disable_compression", self.disable_compression),
            (
                "http_config.tls_config.cert_file",
                !self.tls_config.cert_file.is_empty(),
            ),
            (
                "http_config.tls_config.key_file",
                !self.tls_config.key_file.is_empty(),
            ),
            (
                "http_config.tls_config.server_name",
                !self.tls_config.server_name.is_empty(),
            ),
        ];
        for (key, set) in ignored {
            if set {
                debug!(
                    provider,
                    key, "objstore config key accepted but not applied"
                );
            }
        }
    }
}
