//! `type: AZURE`: Azure Blob Storage (and Azurite).

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use object_store::ObjectStore;
use object_store::azure::{AzureConfigKey, MicrosoftAzureBuilder};
use serde::Deserialize;
use tracing::{debug, info};

use super::http::HttpConfig;
use super::values::{PromDuration, Secret};
use crate::error::{Error, Result};
use crate::options::BucketOptions;

/// Thanos' AZURE `config` block, every key accepted, with Thanos' defaults.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AzureConfig {
    /// Tenant of a service principal (with `client_id` and `client_secret`).
    pub az_tenant_id: String,
    /// Client id of a service principal, or of a user-assigned managed identity.
    pub client_id: String,
    /// Service principal secret.
    pub client_secret: Secret,
    /// Storage account name (required).
    pub storage_account: String,
    /// Storage account shared key.
    pub storage_account_key: Secret,
    /// Full connection string (`AccountName=...;AccountKey=...;BlobEndpoint=...`).
    pub storage_connection_string: Secret,
    /// Create the container at start-up when missing (default true; needs a shared key).
    pub storage_create_container: bool,
    /// Container name (required).
    pub container: String,
    /// Blob service domain (default `blob.core.windows.net`): URL `https://<account>.<endpoint>`.
    pub endpoint: String,
    /// Client id of a user-assigned managed identity.
    pub user_assigned_id: String,
    /// Retries on transient errors; 0 = the bucket's default.
    pub max_retries: i64,
    /// Reader settings.
    pub reader_config: ReaderConfig,
    /// Retry pipeline settings.
    pub pipeline_config: PipelineConfig,
    /// HTTP client settings.
    pub http_config: HttpConfig,
    /// Deprecated by Thanos; accepted, not applied.
    pub msi_resource: String,
}

impl Default for AzureConfig {
    fn default() -> Self {
        Self {
            az_tenant_id: String::new(),
            client_id: String::new(),
            client_secret: Secret::default(),
            storage_account: String::new(),
            storage_account_key: Secret::default(),
            storage_connection_string: Secret::default(),
            storage_create_container: true,
            container: String::new(),
            endpoint: "blob.core.windows.net".to_owned(),
            user_assigned_id: String::new(),
            max_retries: 0,
            reader_config: ReaderConfig::default(),
            pipeline_config: PipelineConfig::default(),
            http_config: HttpConfig::default(),
            msi_resource: String::new(),
        }
    }
}

/// The `reader_config` block.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReaderConfig {
    /// Retries of a broken download stream (accepted; retries follow `max_retries`).
    pub max_retry_requests: i64,
}

/// The `pipeline_config` block.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PipelineConfig {
    /// Retries per request (Thanos hands it to the SDK as its retry count); > 0 overrides the
    /// bucket's default.
    pub max_tries: i64,
    /// Time allowed for one attempt; > 0 sets the request timeout.
    pub try_timeout: PromDuration,
    /// First back-off between retries.
    pub retry_delay: PromDuration,
    /// Largest back-off between retries.
    pub max_retry_delay: PromDuration,
}

/// The parts of a storage connection string this client uses.
#[derive(Default)]
struct ConnectionString {
    account_name: String,
    account_key: Secret,
    blob_endpoint: String,
    protocol: String,
    endpoint_suffix: String,
    shared_access_signature: Secret,
}

impl ConnectionString {
    /// Parses `Key=Value;Key=Value`. Values may contain `=` (base64 keys); unknown keys are kept
    /// out. Errors name the key, never the value.
    fn parse(text: &str) -> Result<Self> {
        let mut parsed = ConnectionString::default();
        for part in text
            .split(';')
            .map(str::trim)
            .filter(|part| !part.is_empty())
        {
            let Some((key, value)) = part.split_once('=') else {
                return Err(Error::config(
                    "key `config.storage_connection_string`: an entry lacks `=`",
                ));
            };
            match key {
                "AccountName" => parsed.account_name = value.to_owned(),
                "AccountKey" => parsed.account_key = Secret::new(value),
                "BlobEndpoint" => parsed.blob_endpoint = value.trim_end_matches('/').to_owned(),
                "DefaultEndpointsProtocol" => parsed.protocol = value.to_owned(),
                "EndpointSuffix" => parsed.endpoint_suffix = value.to_owned(),
                "SharedAccessSignature" => parsed.shared_access_signature = Secret::new(value),
                _ => {}
            }
        }
        Ok(parsed)
    }
}

/// Where and how to reach the container, resolved from the config.
struct Resolved {
    account: String,
    /// The account's blob service URL, e.g. `https://acct.blob.core.windows.net` or
    /// `http://127.0.0.1:10000/devstoreaccount1`.
    service_url: String,
    account_key: Secret,
    shared_access_signature: Secret,
}

impl AzureConfig {
    /// Checks required keys and combinations, as Thanos' `validate` does.
    pub(crate) fn validate(&self) -> Result<()> {
        if self.storage_account.is_empty() {
            return Err(Error::config(
                "missing required key `config.storage_account`",
            ));
        }
        if self.container.is_empty() {
            return Err(Error::config("missing required key `config.container`"));
        }
        let has_user_assigned = !self.user_assigned_id.is_empty();
        if has_user_assigned && !self.storage_account_key.is_empty() {
            return Err(Error::config(
                "key `config.user_assigned_id` cannot be set with `config.storage_account_key`",
            ));
        }
        if has_user_assigned && !self.storage_connection_string.is_empty() {
            return Err(Error::config(
                "key `config.user_assigned_id` cannot be set with `config.storage_connection_string`",
            ));
        }
        if has_user_assigned && !self.client_id.is_empty() {
            return Err(Error::config(
                "key `config.user_assigned_id` cannot be set with `config.client_id`",
            ));
        }
        let principal = [
            !self.az_tenant_id.is_empty(),
            !self.client_id.is_empty(),
            !self.client_secret.is_empty(),
        ];
        if principal.iter().any(|set| *set) && !principal.iter().all(|set| *set) {
            return Err(Error::config(
                "keys `config.az_tenant_id`, `config.client_id` and `config.client_secret` must be set together",
            ));
        }
        if !self.storage_account_key.is_empty() && !self.storage_connection_string.is_empty() {
            return Err(Error::config(
                "keys `config.storage_account_key` and `config.storage_connection_string` cannot both be set",
            ));
        }
        if self.pipeline_config.max_tries < 0 {
            return Err(Error::config(
                "key `config.pipeline_config.max_tries` must be >= 0",
            ));
        }
        if self.reader_config.max_retry_requests < 0 {
            return Err(Error::config(
                "key `config.reader_config.max_retry_requests` must be >= 0",
            ));
        }
        if !self.storage_connection_string.is_empty() {
            ConnectionString::parse(self.storage_connection_string.expose())?;
        }
        Ok(())
    }

    fn resolve(&self) -> Result<Resolved> {
        if !self.storage_connection_string.is_empty() {
            let connection = ConnectionString::parse(self.storage_connection_string.expose())?;
            let account = if connection.account_name.is_empty() {
                self.storage_account.clone()
            } else {
                connection.account_name
            };
            let service_url = if !connection.blob_endpoint.is_empty() {
                connection.blob_endpoint
            } else {
                let protocol = if connection.protocol.is_empty() {
                    "https"
                } else {
                    &connection.protocol
                };
                let suffix = if connection.endpoint_suffix.is_empty() {
                    "core.windows.net"
                } else {
                    &connection.endpoint_suffix
                };
                format!("{protocol}://{account}.blob.{suffix}")
            };
            return Ok(Resolved {
                account,
                service_url,
                account_key: connection.account_key,
                shared_access_signature: connection.shared_access_signature,
            });
        }
        Ok(Resolved {
            account: self.storage_account.clone(),
            service_url: format!("https://{}.{}", self.storage_account, self.endpoint),
            account_key: self.storage_account_key.clone(),
            shared_access_signature: Secret::default(),
        })
    }

    /// Builds the `object_store` client.
    pub(crate) fn build(&self, options: &BucketOptions) -> Result<Arc<dyn ObjectStore>> {
        self.log_ignored();
        let resolved = self.resolve()?;
        let allow_http = resolved.service_url.starts_with("http://");
        let mut options = options.clone();
        if self.pipeline_config.max_tries > 0 {
            options.max_retries = usize::try_from(self.pipeline_config.max_tries).unwrap_or(0);
        }
        if !self.pipeline_config.retry_delay.0.is_zero() {
            options.init_backoff = self.pipeline_config.retry_delay.0;
        }
        if !self.pipeline_config.max_retry_delay.0.is_zero() {
            options.max_backoff = self.pipeline_config.max_retry_delay.0;
        }
        if !self.pipeline_config.try_timeout.0.is_zero() {
            options.request_timeout = Some(self.pipeline_config.try_timeout.0);
        }
        let mut builder = MicrosoftAzureBuilder::new()
            .with_account(&resolved.account)
            .with_container_name(&self.container)
            .with_endpoint(resolved.service_url.clone())
            .with_allow_http(allow_http)
            .with_client_options(
                self.http_config
                    .client_options("AZURE", &options, allow_http)?,
            )
            .with_retry(options.retry_config(self.max_retries));
        if !resolved.account_key.is_empty() {
            builder = builder.with_access_key(resolved.account_key.expose());
        } else if !resolved.shared_access_signature.is_empty() {
            builder = builder.with_config(
                AzureConfigKey::SasKey,
                resolved.shared_access_signature.expose(),
            );
        } else if !self.client_secret.is_empty() {
            builder = builder.with_client_secret_authorization(
                &self.client_id,
                self.client_secret.expose(),
                &self.az_tenant_id,
            );
        } else if !self.user_assigned_id.is_empty() {
            builder = builder.with_client_id(&self.user_assigned_id);
        }
        let store = builder.build().map_err(|source| Error::CreateClient {
            provider: "AZURE",
            source: Box::new(source),
        })?;
        Ok(Arc::new(store))
    }

    /// Creates the container when `storage_create_container` is set, as Thanos does at start-up.
    /// Needs a shared key (from `storage_account_key` or the connection string); with other
    /// credentials the step is skipped. An existing container is fine.
    pub(crate) async fn ensure_container(&self, options: &BucketOptions) -> Result<()> {
        if !self.storage_create_container {
            return Ok(());
        }
        let resolved = self.resolve()?;
        if resolved.account_key.is_empty() {
            debug!(
                container = %self.container,
                "not creating azure container: only possible with a shared key"
            );
            return Ok(());
        }
        let fail = |message: String| Error::CreateContainer {
            container: self.container.clone(),
            message,
        };
        let url = format!(
            "{}/{}?restype=container",
            resolved.service_url, self.container
        );
        let path = reqwest::Url::parse(&url)
            .map_err(|error| fail(format!("invalid container url: {error}")))?
            .path()
            .to_owned();
        let date = httpdate::fmt_http_date(std::time::SystemTime::now());
        let version = "2023-11-03";
        let string_to_sign = format!(
            "PUT\n\n\n\n\n\n\n\n\n\n\n\nx-ms-date:{date}\nx-ms-version:{version}\n/{account}{path}\nrestype:container",
            account = resolved.account
        );
        let signature = sign_shared_key(&resolved.account_key, &string_to_sign)
            .ok_or_else(|| fail("the account key is not valid base64".to_owned()))?;
        let client = reqwest::Client::builder()
            .connect_timeout(options.connect_timeout)
            .timeout(options.request_timeout.unwrap_or(Duration::from_secs(60)))
            .build()
            .map_err(|error| fail(format!("build http client: {error}")))?;
        let response = client
            .put(&url)
            .header("x-ms-date", date)
            .header("x-ms-version", version)
            .header("content-length", "0")
            .header(
                "authorization",
                format!("SharedKey {}:{signature}", resolved.account),
            )
            .send()
            .await
            .map_err(|error| fail(format!("send request: {}", error.without_url())))?;
        let status = response.status();
        if status.is_success() {
            info!(container = %self.container, "created azure container");
            return Ok(());
        }
        let code = response
            .headers()
            .get("x-ms-error-code")
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        if status.as_u16() == 409 && code == "ContainerAlreadyExists" {
            return Ok(());
        }
        Err(fail(format!("status {status}, error code {code:?}")))
    }

    fn log_ignored(&self) {
        let ignored = [
            ("msi_resource", !self.msi_resource.is_empty()),
            (
                "reader_config.max_retry_requests",
                self.reader_config.max_retry_requests != 0,
            ),
        ];
        for (key, set) in ignored {
            if set {
                debug!(
                    provider = "AZURE",
                    key, "objstore config key accepted but not applied"
                );
            }
        }
    }
}

/// Base64 HMAC-SHA256 of `string_to_sign` keyed with the base64-decoded account key, or `None`
/// for a key that is not base64.
fn sign_shared_key(account_key: &Secret, string_to_sign: &str) -> Option<String> {
    let engine = base64::engine::general_purpose::STANDARD;
    let key_bytes = engine.decode(account_key.expose()).ok()?;
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &key_bytes);
    let tag = ring::hmac::sign(&key, string_to_sign.as_bytes());
    Some(engine.encode(tag.as_ref()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_string_parses_azurite_form() {
        let parsed = ConnectionString::parse(
            "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=a2V5PQ==;BlobEndpoint=http://127.0.0.1:10000/devstoreaccount1/;",
        )
        .unwrap();
        assert_eq!(parsed.account_name, "devstoreaccount1");
        assert_eq!(parsed.account_key.expose(), "a2V5PQ==");
        assert_eq!(
            parsed.blob_endpoint,
            "http://127.0.0.1:10000/devstoreaccount1"
        );
        assert_eq!(parsed.protocol, "http");
    }

    #[test]
    fn connection_string_error_does_not_echo_value() {
        let error = ConnectionString::parse("AccountName=a;verysecretvalue")
            .err()
            .unwrap();
        assert!(!error.to_string().contains("verysecretvalue"), "{error}");
    }

    #[test]
    fn service_url_without_connection_string_uses_endpoint_domain() {
        let config = AzureConfig {
            storage_account: "acct".to_owned(),
            container: "c".to_owned(),
            ..AzureConfig::default()
        };
        let resolved = config.resolve().unwrap();
        assert_eq!(resolved.service_url, "https://acct.blob.core.windows.net");
    }
}
