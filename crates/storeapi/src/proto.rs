//! Code generated from `proto/` by `build.rs` (prost messages, tonic clients and servers).
//!
//! The module tree mirrors the protobuf packages: [`thanos`] (StoreAPI types and the
//! `thanos.Store` service), [`thanos::info`] (the `thanos.info.Info` service), [`hintspb`] (store
//! hints carried in `google.protobuf.Any`) and [`prometheus`] (prompb, for remote read).
//! `google.protobuf` types come from [`prost_types`].

#![allow(
    missing_docs,
    unreachable_pub,
    missing_debug_implementations,
    rust_2018_idioms,
    clippy::all,
    clippy::pedantic,
    clippy::clone_on_ref_ptr,
    clippy::unwrap_used
)]

/// Package `thanos`: labels, chunks, series and the `Store` service.
pub mod thanos {
    include!(concat!(env!("OUT_DIR"), "/thanos.rs"));

    /// Package `thanos.info`: the `Info` service.
    pub mod info {
        include!(concat!(env!("OUT_DIR"), "/thanos.info.rs"));
    }
}

/// Package `hintspb`: request and response hints of the Thanos stores.
pub mod hintspb {
    include!(concat!(env!("OUT_DIR"), "/hintspb.rs"));
}

/// Package `prometheus`: Prometheus' remote read and write messages.
pub mod prometheus {
    include!(concat!(env!("OUT_DIR"), "/prometheus.rs"));
}
