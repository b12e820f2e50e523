//! The process-wide TLS crypto provider of the HTTP clients (S3, Azure, GCS and the sidecar's
//! Prometheus client).
//!
//! `reqwest` is built without a bundled provider (`rustls-no-provider`), so that the workspace
//! carries one crypto stack, `ring`, which the gRPC side (tonic, service-core) already uses,
//! instead of also building `aws-lc-sys` (a C library that is the largest single item of a clean
//! build). A `rustls` client with no provider refuses to start, so every place that builds an
//! HTTP client calls [`install_crypto_provider`] first.

use std::sync::Once;

/// Makes `ring` the process' default `rustls` crypto provider unless one is installed already.
/// Cheap and idempotent: call it before building any HTTPS client.
pub fn install_crypto_provider() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        if rustls::crypto::CryptoProvider::get_default().is_none() {
            // A concurrent installer elsewhere in the process may win the race; either
            // provider serves, so the loser's error says nothing worth reporting.
            let _ = rustls::crypto::ring::default_provider().install_default();
        }
    });
}
