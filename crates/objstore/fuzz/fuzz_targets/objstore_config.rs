//! The objstore YAML from outside (`--objstore.config` / `--objstore.config-file`), every
//! provider: parsed as given and, as the flags load it, after `$(NAME)` environment expansion.
//! Never panics; a configuration that parses names its provider, carries a prefix without
//! leading or trailing `/`, and parses the same way twice.
#![no_main]

use libfuzzer_sys::fuzz_target;
use objstore::{ObjstoreConfig, ProviderConfig};

fn check(config: &ObjstoreConfig, yaml: &str) {
    assert!(!config.prefix.starts_with('/') && !config.prefix.ends_with('/'));
    assert!(["S3", "AZURE", "GCS", "FILESYSTEM"].contains(&config.provider.name()));
    if let ProviderConfig::Filesystem(filesystem) = &config.provider {
        assert!(!filesystem.directory.as_os_str().is_empty());
    }
    // Secrets are redacted, and formatting never fails.
    let _ = format!("{config:?}");
    let again = ObjstoreConfig::parse(yaml).expect("a configuration parses twice");
    assert_eq!(&again, config);
}

fuzz_target!(|data: &[u8]| {
    let Ok(yaml) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(config) = ObjstoreConfig::parse(yaml) {
        check(&config, yaml);
    }
    let _ = ObjstoreConfig::from_flags(None, Some(yaml));
});
