//! `--prometheus.http-client(-file)`: how the sidecar authenticates to Prometheus, in Thanos'
//! HTTP client YAML.
//!
//! Supported: `basic_auth` (`username`, `password` or `password_file`), `bearer_token` /
//! `bearer_token_file`, and `tls_config.insecure_skip_verify` (what the Prometheus Operator
//! writes). Other keys (`tls_config` files, `transport_config`) are accepted and ignored with a
//! warning.

use std::path::Path;

use serde::Deserialize;
use tracing::warn;

use crate::error::{Error, Result};

/// The parsed HTTP client configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HttpClientConfig {
    /// `basic_auth` as (username, password).
    pub basic_auth: Option<(String, String)>,
    /// `bearer_token` (or the content of `bearer_token_file`).
    pub bearer_token: Option<String>,
    /// `tls_config.insecure_skip_verify`.
    pub insecure_skip_verify: bool,
}

#[derive(Deserialize, Default)]
struct RawConfig {
    #[serde(default)]
    basic_auth: Option<RawBasicAuth>,
    #[serde(default)]
    bearer_token: Option<String>,
    #[serde(default)]
    bearer_token_file: Option<String>,
    #[serde(default)]
    tls_config: Option<RawTlsConfig>,
    #[serde(flatten)]
    other: serde_yaml_ng::Mapping,
}

#[derive(Deserialize, Default)]
struct RawBasicAuth {
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    password_file: String,
}

#[derive(Deserialize, Default)]
struct RawTlsConfig {
    #[serde(default)]
    insecure_skip_verify: bool,
    #[serde(flatten)]
    other: serde_yaml_ng::Mapping,
}

fn read_secret(path: &str, flag: &'static str) -> Result<String> {
    std::fs::read_to_string(path)
        .map(|text| text.trim().to_owned())
        .map_err(|error| Error::InvalidFlag {
            flag,
            detail: format!("read {path}: {error}"),
        })
}

impl HttpClientConfig {
    /// Reads `--prometheus.http-client-file` or parses `--prometheus.http-client`; `None` when
    /// neither is set.
    pub fn from_flags(file: Option<&Path>, inline: Option<&str>) -> Result<Option<Self>> {
        let flag = "prometheus.http-client-file";
        let yaml = match (file, inline) {
            (Some(path), _) => {
                std::fs::read_to_string(path).map_err(|error| Error::InvalidFlag {
                    flag,
                    detail: format!("read {}: {error}", path.display()),
                })?
            }
            (None, Some(inline)) => inline.to_owned(),
            (None, None) => return Ok(None),
        };
        Self::parse(&yaml).map(Some)
    }

    /// Parses the YAML.
    pub fn parse(yaml: &str) -> Result<Self> {
        let flag = "prometheus.http-client-file";
        let raw: Option<RawConfig> =
            serde_yaml_ng::from_str(yaml).map_err(|error| Error::InvalidFlag {
                flag,
                detail: error.to_string(),
            })?;
        let raw = raw.unwrap_or_default();
        let basic_auth = match raw.basic_auth {
            Some(auth) => {
                let password = if auth.password_file.is_empty() {
                    auth.password
                } else {
                    read_secret(&auth.password_file, flag)?
                };
                Some((auth.username, password))
            }
            None => None,
        };
        let bearer_token = match (raw.bearer_token, raw.bearer_token_file) {
            (_, Some(path)) if !path.is_empty() => Some(read_secret(&path, flag)?),
            (Some(token), _) if !token.is_empty() => Some(token),
            _ => None,
        };
        let tls = raw.tls_config.unwrap_or_default();
        for key in raw.other.keys().chain(tls.other.keys()) {
            warn!(key = ?key, "ignoring unsupported prometheus http client setting");
        }
        Ok(Self {
            basic_auth,
            bearer_token,
            insecure_skip_verify: tls.insecure_skip_verify,
        })
    }

    /// Applies the client-wide settings.
    pub(crate) fn configure(&self, builder: reqwest::ClientBuilder) -> reqwest::ClientBuilder {
        builder.tls_danger_accept_invalid_certs(self.insecure_skip_verify)
    }

    /// Adds the credentials to a request.
    pub(crate) fn authorize(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        if let Some((username, password)) = &self.basic_auth {
            return request.basic_auth(username, Some(password));
        }
        if let Some(token) = &self.bearer_token {
            return request.bearer_auth(token);
        }
        request
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operator_file_and_basic_auth_parse() {
        let operator =
            HttpClientConfig::parse("tls_config:\n  insecure_skip_verify: true\n").unwrap();
        assert!(operator.insecure_skip_verify);
        assert_eq!(operator.basic_auth, None);

        let dir = tempfile::tempdir().unwrap();
        let password = dir.path().join("password");
        std::fs::write(&password, "s3cret\n").unwrap();
        let yaml = format!(
            "basic_auth:\n  username: admin\n  password_file: {}\ntransport_config:\n  idle_conn_timeout: 1m\n",
            password.display()
        );
        let config = HttpClientConfig::parse(&yaml).unwrap();
        assert_eq!(
            config.basic_auth,
            Some(("admin".to_owned(), "s3cret".to_owned()))
        );
        assert!(!config.insecure_skip_verify);
        assert_eq!(
            HttpClientConfig::parse("").unwrap(),
            HttpClientConfig::default()
        );
        assert_eq!(HttpClientConfig::from_flags(None, None).unwrap(), None);
        assert!(HttpClientConfig::parse("basic_auth: [").is_err());
    }
}
