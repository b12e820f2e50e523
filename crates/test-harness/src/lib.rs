//! Test harness: starts real programs on 127.0.0.1 for thanos-rs tests.
//!
//! Every program runs as a [`Process`]: started on free ports, with its stdout and stderr captured
//! to a log file that is printed when a test fails, and killed when the handle is dropped (so a
//! panicking test still cleans up). Programs are found on `PATH` or in the project's tool folder
//! (`.tools/bin`, filled by `scripts/install-test-deps.sh`); a missing program is a test
//! **failure** with a message saying how to install it, never a silent skip.
//!
//! Modules: [`process`] (spawn, wait, kill), [`prometheus`] (Prometheus server and promtool),
//! [`moto`], [`s3s`] and [`azurite`] (S3 and Azure Blob servers for the object-storage tests),
//! [`memcached`] and [`redis`] (shared caches), [`pki`] (throw-away TLS certificates),
//! [`fault_proxy`] (a TCP proxy that delays, stalls, cuts or fails a server's connections).

pub mod azurite;
pub mod fault_proxy;
pub mod memcached;
pub mod moto;
pub mod pki;
pub mod process;
pub mod procfs;
pub mod prometheus;
pub mod redis;
pub mod s3s;

pub use azurite::{AZURITE_ACCOUNT, AZURITE_KEY, Azurite};
pub use fault_proxy::{Fault, FaultProxy};
pub use memcached::Memcached;
pub use moto::Moto;
pub use pki::TestPki;
pub use process::{Process, free_port, http_get, http_get_within, require_program, wait_until};
pub use prometheus::{Prometheus, PrometheusConfig, promtool};
pub use redis::Redis;
pub use s3s::S3sFs;
