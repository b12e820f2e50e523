//! `type: GCS`: Google Cloud Storage.

use std::sync::Arc;

use object_store::ObjectStore;
use object_store::gcp::GoogleCloudStorageBuilder;
use serde::Deserialize;
use tracing::debug;

use super::http::HttpConfig;
use super::values::Secret;
use crate::error::{Error, Result};
use crate::options::BucketOptions;

/// Thanos' GCS `config` block, every key accepted.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GcsConfig {
    /// Bucket name (required).
    pub bucket: String,
    /// Service account key JSON, inline; empty = application default credentials
    /// (`GOOGLE_APPLICATION_CREDENTIALS`, the metadata server).
    pub service_account: Secret,
    /// gRPC transport (accepted, not applied: HTTP is used).
    pub use_grpc: bool,
    /// gRPC connection pool size (accepted, not applied).
    pub grpc_conn_pool_size: i64,
    /// HTTP client settings.
    pub http_config: HttpConfig,
    /// Upload chunk size in bytes; > 0 sets the multipart part size.
    pub chunk_size_bytes: i64,
    /// Retries on transient errors; 0 = the bucket's default.
    pub max_retries: i64,
}

impl GcsConfig {
    /// Checks required keys.
    pub(crate) fn validate(&self) -> Result<()> {
        if self.bucket.is_empty() {
            return Err(Error::config("missing required key `config.bucket`"));
        }
        Ok(())
    }

    /// Multipart part size when `chunk_size_bytes` is set.
    pub(crate) fn part_size(&self) -> Option<u64> {
        u64::try_from(self.chunk_size_bytes)
            .ok()
            .filter(|size| *size > 0)
    }

    /// Builds the `object_store` client.
    pub(crate) fn build(&self, options: &BucketOptions) -> Result<Arc<dyn ObjectStore>> {
        for (key, set) in [
            ("use_grpc", self.use_grpc),
            ("grpc_conn_pool_size", self.grpc_conn_pool_size != 0),
        ] {
            if set {
                debug!(
                    provider = "GCS",
                    key, "objstore config key accepted but not applied"
                );
            }
        }
        let mut builder = if self.service_account.is_empty() {
            GoogleCloudStorageBuilder::from_env()
        } else {
            GoogleCloudStorageBuilder::new().with_service_account_key(self.service_account.expose())
        };
        builder = builder
            .with_bucket_name(&self.bucket)
            .with_client_options(self.http_config.client_options("GCS", options, false)?)
            .with_retry(options.retry_config(self.max_retries));
        let store = builder.build().map_err(|source| Error::CreateClient {
            provider: "GCS",
            source: Box::new(source),
        })?;
        Ok(Arc::new(store))
    }
}
