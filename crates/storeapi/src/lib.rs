//! Thanos' StoreAPI over gRPC, wire-compatible with Thanos.
//!
//! Every thanos-rs component that serves or queries series speaks the StoreAPI: the sidecar and
//! the store gateway serve it, the querier calls it on all of them and serves it again. This
//! crate holds what they all need once:
//!
//! - the protobuf types and tonic services generated from `proto/` (packages `thanos`,
//!   `thanos.info`, `hintspb`, `prometheus`), in [`proto`];
//! - `Any`-packed store hints with Thanos' type URLs ([`hints`]);
//! - conversions between wire labels and matchers and [`prom_model`]'s ([`convert`]);
//! - chunk encodings and sample iteration over XOR chunks ([`chunk`]);
//! - the k-way merge of sorted `Series` streams ([`merge`]);
//! - the querier's store selection, Thanos' `storeMatches` ([`selection`]);
//! - `without_replica_labels` handling ([`replica`]);
//! - client and server set-up: message limits, gzip, snappy request decompression ([`transport`]);
//! - an in-memory reference store ([`memory`]) and, behind the `testing` feature, the StoreAPI
//!   acceptance suite every store runs (`testing`).
//!
//! **Invariants** (compatibility sheet §1):
//! - Field numbers, message and package names in `proto/` are exactly Thanos' and Prometheus';
//!   the tests in `tests/wire.rs` pin the bytes.
//! - A `Series` stream is sorted by labels (label by label, name then value, shorter first) and
//!   each series is complete before the next starts; [`merge::merge_series`] relies on it and
//!   preserves it.
//! - Series labels include the store's external labels; an external label wins on collision.
//! - Thanos `Chunk.data` is a Prometheus chunk body without its encoding byte, with Thanos'
//!   own encoding numbers ([`chunk::thanos_to_prometheus_encoding`]).
//! - Bad client input (a bad regex, an unknown enum value) is `InvalidArgument`, never a panic.
//!
//! Services generated here have default method stubs: an implementor of
//! [`proto::thanos::store_server::Store`] writes only the methods it serves, the others answer
//! `Unimplemented` (the legacy `Store/Info` usually stays so).

pub mod chunk;
pub mod convert;
mod error;
pub mod hints;
pub mod memory;
pub mod merge;
pub mod proto;
pub mod replica;
pub mod selection;
#[cfg(feature = "testing")]
pub mod testing;
pub mod transport;

pub use error::{Error, Result};
pub use memory::{MemoryStore, SeriesData};
pub use merge::{MergedSeries, SeriesResponseStream, merge_series};
pub use proto::thanos::info::info_client::InfoClient;
pub use proto::thanos::store_client::StoreClient;
pub use selection::{SkipReason, StoreRange, store_matches};
pub use transport::{
    Compression, MAX_MESSAGE_SIZE, info_client, info_server, store_client, store_server,
};
