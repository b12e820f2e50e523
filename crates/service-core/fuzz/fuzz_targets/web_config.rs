//! The web configuration from outside (`--http.config`: TLS and basic-auth YAML) and the
//! `Authorization` header every request may carry. The input is the YAML, a NUL byte, then the
//! header. Never panics; a TLS configuration that parses names absolute files (relative ones are
//! resolved against the file's directory) and asks for client certificates whenever it names a
//! client CA.
#![no_main]

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use service_core::{BasicAuth, ClientAuth, WebConfig};

/// A user whose hash is not a valid bcrypt hash, so checking a header costs no bcrypt rounds
/// while still going through the header's parsing and the user lookup.
fn basic_auth() -> &'static BasicAuth {
    static AUTH: OnceLock<BasicAuth> = OnceLock::new();
    AUTH.get_or_init(|| {
        let users = BTreeMap::from([("admin".to_owned(), "$2y$04$not-a-real-hash".to_owned())]);
        BasicAuth::new(users).expect("a user with a $2 hash is accepted")
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (yaml, header) = text.split_once('\0').unwrap_or((text, ""));
    if let Ok(config) = WebConfig::parse(yaml, Path::new("/etc/thanos")) {
        if let Some(tls) = &config.tls {
            assert!(tls.cert_file.is_absolute() && tls.key_file.is_absolute());
            if let Some(ca) = &tls.client_ca_file {
                assert!(ca.is_absolute());
                assert_ne!(tls.client_auth, ClientAuth::NoClientCert);
            }
        }
        let _ = format!("{config:?}");
    }
    assert!(!basic_auth().check_header(Some(header)));
});
