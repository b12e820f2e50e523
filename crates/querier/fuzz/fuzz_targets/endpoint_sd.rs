//! Endpoint discovery files from outside: `--endpoint.sd-config` YAML, `--store.sd-files` files
//! (JSON or YAML, chosen by the file name as discovery does) and file SD globs; the first byte
//! picks which. Never panics; every endpoint found has a non-empty address, which then goes
//! through the DNS prefix and `host:port` parsing discovery applies before dialling.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use querier::fuzzing::{self, SdEndpoint};

fn addresses(endpoints: &[SdEndpoint]) {
    for endpoint in endpoints {
        let name = fuzzing::dns_name(&endpoint.address).unwrap_or(&endpoint.address);
        let _ = fuzzing::split_host_port(name);
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&kind, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    match kind % 4 {
        0 => {
            if let Ok(endpoints) = fuzzing::sd_config(text) {
                for endpoint in &endpoints {
                    assert!(!endpoint.address.is_empty());
                    assert_eq!(endpoint.address, endpoint.address.trim());
                }
                addresses(&endpoints);
            }
        }
        1 => {
            if let Ok(endpoints) = fuzzing::file_sd(text, Path::new("targets.json")) {
                addresses(&endpoints);
            }
        }
        2 => {
            if let Ok(endpoints) = fuzzing::file_sd(text, Path::new("targets.yml")) {
                addresses(&endpoints);
            }
        }
        _ => {
            let (pattern, name) = text.split_once('\n').unwrap_or((text, text));
            let _ = fuzzing::glob_matches(pattern, name);
            assert!(fuzzing::glob_matches("*", name));
            if !name.contains(['*', '?']) {
                assert!(
                    fuzzing::glob_matches(name, name),
                    "{name:?} does not match itself"
                );
            }
        }
    }
});
