//! End-to-end tests of thanos-rs: the whole topology, started from real programs.
//!
//! A [`Cluster`] starts, on 127.0.0.1 and free ports, two real Prometheus 2.42 replicas (external
//! labels `replica="a"` and `replica="b"`) scraping themselves and every thanos-rs component, a
//! `sidecar` for each, a `store-gateway` and a `querier` with `--query.replica-label=replica`,
//! over a per-test bucket (a `TempDir` folder or a moto S3 server). Before Prometheus starts, each
//! replica's TSDB folder receives the same [`History`] as promtool-made blocks, so the sidecars
//! have finished blocks to upload at once and every scenario knows exactly which samples the
//! bucket holds.
//!
//! **Invariants.**
//! - Every program runs as a [`test_harness::Process`]: its output goes to one log file per
//!   component, printed when the test fails, and it is killed when the [`Cluster`] is dropped,
//!   also on panic.
//! - Binaries come from the workspace target folder next to the test executable; a missing one is
//!   a failure telling to run `cargo build --workspace --bins`, never a skip. A missing program
//!   (Prometheus, promtool, moto) is a failure too.
//! - The cluster is returned only when every component answers `/-/ready` and the querier sees
//!   all four StoreAPI endpoints healthy.
//!
//! **Modules.** [`binaries`] (finding our binaries), [`history`] (the generated history and its
//! blocks), [`cluster`] (the topology, kill and restart), [`api`] (the querier's HTTP API and its
//! JSON), [`continuity`] (one sample per scrape over a window: none lost, none doubled).

pub mod api;
pub mod binaries;
pub mod blocks;
pub mod cluster;
pub mod continuity;
pub mod history;

pub use api::{QueryAnswer, enc, format_time, points};
pub use binaries::binary;
pub use cluster::{BucketKind, Cluster, ClusterOptions, Component};
pub use history::{History, SCRAPE_INTERVAL_MS};
