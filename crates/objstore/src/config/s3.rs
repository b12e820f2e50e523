//! `type: S3`: Amazon S3 and S3-compatible servers (MinIO, Ceph, moto, s3s, ...).

use std::collections::BTreeMap;
use std::sync::Arc;

use base64::Engine as _;
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::{Attribute, Attributes, ObjectStore};
use serde::Deserialize;
use tracing::{debug, warn};

use super::http::HttpConfig;
use super::values::Secret;
use crate::error::{Error, Result};
use crate::options::BucketOptions;

/// Thanos' S3 `config` block, every key accepted, with Thanos' defaults.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct S3Config {
    /// Bucket name (required).
    pub bucket: String,
    /// `host[:port]` of the S3 API, without scheme (required), e.g. `s3.amazonaws.com`.
    pub endpoint: String,
    /// Region; derived from an `s3.<region>.amazonaws.com` endpoint, else `us-east-1`.
    pub region: String,
    /// Accepted, not applied.
    pub disable_dualstack: bool,
    /// Use the AWS SDK credential chain (environment, web identity, instance profile).
    pub aws_sdk_auth: bool,
    /// Access key id; with `secret_key`, static credentials.
    pub access_key: String,
    /// Use plain HTTP instead of HTTPS.
    pub insecure: bool,
    /// Signature v2 is not supported: requests are signed with v4 (logged).
    pub signature_version2: bool,
    /// Secret access key.
    pub secret_key: Secret,
    /// Session token for temporary credentials.
    pub session_token: Secret,
    /// Metadata set on every uploaded object; `X-Amz-Storage-Class` sets the storage class.
    pub put_user_metadata: BTreeMap<String, String>,
    /// HTTP client settings.
    pub http_config: HttpConfig,
    /// Request tracing (accepted, not applied).
    pub trace: TraceConfig,
    /// `""`/`v2` or `v1`; listings always use ListObjectsV2.
    pub list_objects_version: String,
    /// `auto` (virtual-hosted for AWS endpoints, path-style otherwise), `virtual-hosted` or `path`.
    pub bucket_lookup_type: String,
    /// Accepted, not applied.
    pub send_content_md5: bool,
    /// Upload every object with a single PUT.
    pub disable_multipart: bool,
    /// Multipart part size in bytes (default 64 MiB; 0 means 128 MiB).
    pub part_size: u64,
    /// Server-side encryption.
    pub sse_config: SseConfig,
    /// STS endpoint for the instance-profile chain (accepted, not applied).
    pub sts_endpoint: String,
    /// Retries on transient errors; 0 = the bucket's default.
    pub max_retries: i64,
}

impl Default for S3Config {
    fn default() -> Self {
        Self {
            bucket: String::new(),
            endpoint: String::new(),
            region: String::new(),
            disable_dualstack: false,
            aws_sdk_auth: false,
            access_key: String::new(),
            insecure: false,
            signature_version2: false,
            secret_key: Secret::default(),
            session_token: Secret::default(),
            put_user_metadata: BTreeMap::new(),
            http_config: HttpConfig::default(),
            trace: TraceConfig::default(),
            list_objects_version: String::new(),
            bucket_lookup_type: "auto".to_owned(),
            send_content_md5: true,
            disable_multipart: false,
            part_size: 64 * 1024 * 1024,
            sse_config: SseConfig::default(),
            sts_endpoint: String::new(),
            max_retries: 0,
        }
    }
}

/// The `trace` block.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TraceConfig {
    /// Log every request (accepted, not applied).
    pub enable: bool,
}

/// The `sse_config` block.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SseConfig {
    /// `SSE-S3`, `SSE-KMS` or `SSE-C`; empty = none.
    #[serde(rename = "type")]
    pub kind: String,
    /// KMS key id, required for `SSE-KMS`.
    pub kms_key_id: String,
    /// KMS encryption context (accepted, not applied).
    pub kms_encryption_context: BTreeMap<String, String>,
    /// Path of the file holding the 32-byte customer key, required for `SSE-C`.
    pub encryption_key: String,
}

impl S3Config {
    /// Checks required keys and value domains, as Thanos' `validate` does.
    pub(crate) fn validate(&self) -> Result<()> {
        if self.bucket.is_empty() {
            return Err(Error::config("missing required key `config.bucket`"));
        }
        if self.endpoint.is_empty() {
            return Err(Error::config("missing required key `config.endpoint`"));
        }
        if self.endpoint.contains("://") {
            return Err(Error::config(
                "key `config.endpoint` must be host[:port] without a scheme (use `insecure` for http)",
            ));
        }
        if self.aws_sdk_auth && !self.access_key.is_empty() {
            return Err(Error::config(
                "keys `config.aws_sdk_auth` and `config.access_key` are mutually exclusive",
            ));
        }
        if self.access_key.is_empty() && !self.secret_key.is_empty() {
            return Err(Error::config(
                "key `config.secret_key` is set but `config.access_key` is missing",
            ));
        }
        if !self.access_key.is_empty() && self.secret_key.is_empty() {
            return Err(Error::config(
                "key `config.access_key` is set but `config.secret_key` is missing",
            ));
        }
        match self.sse_config.kind.as_str() {
            "" | "SSE-S3" => {}
            "SSE-KMS" if self.sse_config.kms_key_id.is_empty() => {
                return Err(Error::config(
                    "key `config.sse_config.kms_key_id` is required for sse_config type SSE-KMS",
                ));
            }
            "SSE-C" if self.sse_config.encryption_key.is_empty() => {
                return Err(Error::config(
                    "key `config.sse_config.encryption_key` is required for sse_config type SSE-C",
                ));
            }
            "SSE-KMS" | "SSE-C" => {}
            other => {
                return Err(Error::config(format!(
                    "key `config.sse_config.type`: unsupported value {other:?} (want SSE-S3, SSE-KMS or SSE-C)"
                )));
            }
        }
        if !matches!(self.list_objects_version.as_str(), "" | "v1" | "v2") {
            return Err(Error::config(format!(
                "key `config.list_objects_version`: unsupported value {:?} (want v1 or v2)",
                self.list_objects_version
            )));
        }
        self.virtual_hosted()?;
        Ok(())
    }

    /// Whether requests address the bucket as `bucket.endpoint` rather than `endpoint/bucket`.
    fn virtual_hosted(&self) -> Result<bool> {
        match self.bucket_lookup_type.as_str() {
            "auto" | "" => Ok(self.endpoint.ends_with("amazonaws.com")
                || self.endpoint.contains("amazonaws.com:")),
            "virtual-hosted" => Ok(true),
            "path" => Ok(false),
            other => Err(Error::config(format!(
                "key `config.bucket_lookup_type`: unsupported value {other:?} (want auto, virtual-hosted or path)"
            ))),
        }
    }

    /// The region: configured, else taken from an `s3.<region>.amazonaws.com` endpoint, else
    /// `us-east-1`.
    fn effective_region(&self) -> String {
        if !self.region.is_empty() {
            return self.region.clone();
        }
        let host = self.endpoint.split(':').next().unwrap_or_default();
        let from_endpoint = host
            .strip_suffix(".amazonaws.com")
            .and_then(|rest| rest.rsplit('.').next())
            .filter(|region| *region != "s3" && !region.is_empty());
        from_endpoint.unwrap_or("us-east-1").to_owned()
    }

    /// Multipart part size, or `None` when multipart is disabled.
    pub(crate) fn effective_part_size(&self) -> Option<u64> {
        if self.disable_multipart {
            return None;
        }
        Some(if self.part_size == 0 {
            128 * 1024 * 1024
        } else {
            self.part_size
        })
    }

    /// Attributes set on every upload: `put_user_metadata`, with `X-Amz-Storage-Class` (any case)
    /// as the storage class.
    pub(crate) fn put_attributes(&self) -> Attributes {
        let mut attributes = Attributes::new();
        for (key, value) in &self.put_user_metadata {
            let attribute = if key.eq_ignore_ascii_case("x-amz-storage-class") {
                Attribute::StorageClass
            } else {
                Attribute::Metadata(key.clone().into())
            };
            attributes.insert(attribute, value.clone().into());
        }
        attributes
    }

    /// Builds the `object_store` client.
    pub(crate) fn build(&self, options: &BucketOptions) -> Result<Arc<dyn ObjectStore>> {
        self.log_ignored();
        let scheme = if self.insecure { "http" } else { "https" };
        let virtual_hosted = self.virtual_hosted()?;
        let endpoint_url = if virtual_hosted {
            format!("{scheme}://{}.{}", self.bucket, self.endpoint)
        } else {
            format!("{scheme}://{}", self.endpoint)
        };
        let mut builder = if self.access_key.is_empty() {
            // The SDK chain: AWS_* environment variables, web identity, instance metadata.
            AmazonS3Builder::from_env()
        } else {
            let mut static_keys = AmazonS3Builder::new()
                .with_access_key_id(&self.access_key)
                .with_secret_access_key(self.secret_key.expose());
            if !self.session_token.is_empty() {
                static_keys = static_keys.with_token(self.session_token.expose());
            }
            static_keys
        };
        builder = builder
            .with_bucket_name(&self.bucket)
            .with_region(self.effective_region())
            .with_endpoint(endpoint_url)
            .with_virtual_hosted_style_request(virtual_hosted)
            .with_allow_http(self.insecure)
            .with_client_options(
                self.http_config
                    .client_options("S3", options, self.insecure)?,
            )
            .with_retry(options.retry_config(self.max_retries));
        builder = self.with_encryption(builder)?;
        let store = builder.build().map_err(|source| Error::CreateClient {
            provider: "S3",
            source: Box::new(source),
        })?;
        Ok(Arc::new(store))
    }

    fn with_encryption(&self, builder: AmazonS3Builder) -> Result<AmazonS3Builder> {
        match self.sse_config.kind.as_str() {
            "SSE-S3" => {
                let key: AmazonS3ConfigKey =
                    "aws_server_side_encryption"
                        .parse()
                        .map_err(|source| Error::CreateClient {
                            provider: "S3",
                            source: Box::new(source),
                        })?;
                Ok(builder.with_config(key, "AES256"))
            }
            "SSE-KMS" => Ok(builder.with_sse_kms_encryption(&self.sse_config.kms_key_id)),
            "SSE-C" => {
                let path = &self.sse_config.encryption_key;
                let key = std::fs::read(path).map_err(|source| Error::ReadConfigFile {
                    path: path.into(),
                    source,
                })?;
                let encoded = base64::engine::general_purpose::STANDARD.encode(key);
                Ok(builder.with_ssec_encryption(encoded))
            }
            _ => Ok(builder),
        }
    }

    fn log_ignored(&self) {
        let defaults = S3Config::default();
        if self.signature_version2 {
            warn!("objstore S3 key `signature_version2` is not supported: signing with v4");
        }
        let ignored = [
            ("disable_dualstack", self.disable_dualstack),
            ("trace.enable", self.trace.enable),
            (
                "list_objects_version",
                !self.list_objects_version.is_empty(),
            ),
            (
                "send_content_md5",
                self.send_content_md5 != defaults.send_content_md5,
            ),
            ("sts_endpoint", !self.sts_endpoint.is_empty()),
            (
                "sse_config.kms_encryption_context",
                !self.sse_config.kms_encryption_context.is_empty(),
            ),
        ];
        for (key, set) in ignored {
            if set {
                debug!(
                    provider = "S3",
                    key, "objstore config key accepted but not applied"
                );
            }
        }
    }
}
