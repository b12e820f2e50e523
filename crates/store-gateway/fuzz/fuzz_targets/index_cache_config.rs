//! The index-cache YAML from outside (`--index-cache.config` / `--index-cache.config-file`), all
//! backends (in-memory, memcached, redis). Never panics; a configuration that parses enables
//! only item types Thanos knows and parses the same way twice.
#![no_main]

use libfuzzer_sys::fuzz_target;
use store_gateway::cache::config::IndexCacheConfig;

fuzz_target!(|data: &[u8]| {
    let Ok(yaml) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(config) = IndexCacheConfig::parse(yaml) else {
        return;
    };
    for item in &config.enabled_items {
        assert!(["Postings", "Series", "ExpandedPostings"].contains(&item.as_str()));
    }
    let again = IndexCacheConfig::parse(yaml).expect("a configuration parses twice");
    assert_eq!(again.enabled_items, config.enabled_items);
    assert_eq!(again.ttl, config.ttl);
    let _ = format!("{config:?}");
});
