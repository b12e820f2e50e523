//! Prometheus' data model, shared by every thanos-rs crate.
//!
//! This crate is the bottom layer of the workspace: it knows nothing about files, the network or
//! async runtimes. It holds the few types every other crate speaks:
//!
//! - [`Label`] and [`Labels`]: a series' identity, always kept sorted by label name;
//! - [`Matcher`]: a label matcher (`=`, `!=`, `=~`, `!~`) with Prometheus' fully anchored regex
//!   semantics and empty-value rules;
//! - [`Sample`] and the staleness marker ([`STALE_NAN_BITS`], [`is_stale_nan`]);
//! - [`time`]: Unix timestamps as UTC calendar dates and RFC 3339 text;
//! - [`dedup`]: replica de-duplication of sample lists (Thanos' penalty algorithm, the chain
//!   merge), shared by the querier and the compactor.
//!
//! **Invariant:** a [`Labels`] value is sorted by name and holds no duplicate names; every
//! constructor enforces it, so code that compares or merges label sets may rely on it.

pub mod dedup;
mod error;
mod labels;
mod matcher;
mod sample;
pub mod time;

pub use error::{Error, Result};
pub use labels::{Label, Labels, METRIC_NAME};
pub use matcher::{MatchType, Matcher};
pub use sample::{STALE_NAN_BITS, Sample, is_stale_nan, stale_nan};
