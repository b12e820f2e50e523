//! Object storage for thanos-rs: Thanos' objstore configuration and one [`Bucket`] type over
//! S3 (and S3-compatible servers), Azure Blob, GCS, a local directory and memory, built on the
//! `object_store` crate.
//!
//! What every service gets from here:
//!
//! * **Configuration** exactly as Thanos users write it ([`ObjstoreConfig`]): `type`, `config`,
//!   `prefix`; strict parsing (unknown or missing keys are errors naming the key);
//!   [`ObjstoreConfig::from_flags`] for `--objstore.config-file` / `--objstore.config`.
//! * **Operations** on [`Bucket`]: get, ranged get, many ranges of one object with nearby ranges
//!   coalesced ([`Bucket::get_ranges`]), upload (multipart above the part size), Thanos-style
//!   listing ([`Bucket::iter`]), delete, exists, attributes; retries with back-off on transient
//!   errors ([`BucketOptions`]).
//! * **Block layout order**: [`Bucket::upload_dir`] writes `meta.json` last,
//!   [`Bucket::delete_dir`] deletes it first.
//! * **Metrics** with Thanos' names on an injected `prometheus::Registry`.
//!
//! Invariants:
//!
//! * A missing object is [`ErrorKind::NotFound`], never confused with a failure, and is not
//!   counted in `thanos_objstore_bucket_operation_failures_total` on reads.
//! * Secrets (keys, tokens, connection strings, service accounts) never appear in `Debug`
//!   output, errors, logs or metrics: they are held in [`Secret`].
//! * No reader sees a half-written object: stores write atomically (the filesystem backend
//!   writes a temporary file and renames it), multipart uploads are aborted on error.
//!
//! Modules: [`config`] (the YAML), [`bucket`] (operations), [`layout`] (block upload/delete
//! order), `options` ([`BucketOptions`]), `metrics`, `ranges` (coalescing plan), `error`,
//! [`tls`] (the one crypto provider of every HTTP client);
//! `testing` (feature `testing`): the conformance suite every backend must pass.

pub mod bucket;
pub mod config;
mod error;
pub mod layout;
mod local;
mod metrics;
mod options;
mod ranges;
#[cfg(feature = "testing")]
pub mod testing;
pub mod tls;

pub use bucket::{Bucket, ObjectAttributes};
pub use config::{ObjstoreConfig, ProviderConfig, Secret};
pub use error::{Error, ErrorKind, Result};
pub use options::{BucketOptions, DEFAULT_COALESCE_GAP, DEFAULT_PART_SIZE, RangeOptions};
