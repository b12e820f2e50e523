//! Shared index caches against real memcached and redis servers.

#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use test_harness::{Memcached, Redis};

/// Runs a query on one gateway, then on a second one sharing the cache: the second one must
/// answer alike from cache hits only, with hits of each of `hit_items`.
fn check_shared_cache(cache_config: &str, hit_items: &[&str]) {
    let blocks = make_blocks(6, 3, &[("cluster", "eu1")]).unwrap();
    let bucket = tempfile::tempdir().unwrap();
    for id in &blocks.ids {
        copy_dir(&blocks.path(id), &bucket.path().join(id)).unwrap();
    }
    let objstore = fs_objstore(bucket.path());
    let flag = format!("--index-cache.config={cache_config}");
    let runtime = runtime();
    let query = request(vec![eq("__name__", "requests_total"), re("job", "j0|j2")]);
    let expected = {
        let gateway = Gateway::start(&objstore, &[&flag]).unwrap();
        let result = runtime.block_on(series(&gateway, query.clone())).unwrap();
        assert_eq!(
            gateway.metric("thanos_store_index_cache_hits_total", &[]),
            0.0
        );
        assert!(gateway.metric("thanos_store_index_cache_items_added_total", &[]) > 0.0);
        result.series
    };
    // A second gateway finds the first one's items in the shared cache.
    let gateway = Gateway::start(&objstore, &[&flag]).unwrap();
    let result = runtime.block_on(series(&gateway, query)).unwrap();
    assert_eq!(result.series, expected);
    let requests = gateway.metric("thanos_store_index_cache_requests_total", &[]);
    let hits = gateway.metric("thanos_store_index_cache_hits_total", &[]);
    assert!(
        requests > 0.0 && hits == requests,
        "hits {hits} of {requests}"
    );
    for item in hit_items {
        let label = format!("item_type=\"{item}\"");
        assert!(
            gateway.metric("thanos_store_index_cache_hits_total", &[&label]) > 0.0,
            "no {item} hits"
        );
    }
}

#[test]
fn memcached_index_cache_is_shared_between_gateways() {
    let memcached = Memcached::start().unwrap();
    check_shared_cache(
        &format!(
            "type: MEMCACHED\nconfig:\n  addresses: [\"{}\"]\n  timeout: 2s\n  max_idle_connections: 10\n",
            memcached.address()
        ),
        &["ExpandedPostings", "Series"],
    );
}

#[test]
fn redis_index_cache_is_shared_between_gateways() {
    let redis = Redis::start().unwrap();
    check_shared_cache(
        &format!(
            "type: REDIS\nconfig:\n  addr: {}\n  db: 1\nttl: 10m\nenabled_items: [Postings, Series]\n",
            redis.address()
        ),
        &["Postings", "Series"],
    );
}

#[test]
fn in_memory_cache_config_and_bad_config() {
    let blocks = make_blocks(2, 1, &[("cluster", "eu1")]).unwrap();
    let bucket = tempfile::tempdir().unwrap();
    for id in &blocks.ids {
        copy_dir(&blocks.path(id), &bucket.path().join(id)).unwrap();
    }
    let objstore = fs_objstore(bucket.path());
    let gateway = Gateway::start(
        &objstore,
        &["--index-cache.config=type: IN-MEMORY\nconfig:\n  max_size: 1MB\nenabled_items: [Postings]\n"],
    )
    .unwrap();
    let runtime = runtime();
    runtime
        .block_on(series(&gateway, request(vec![eq("room", "r0")])))
        .unwrap();
    runtime
        .block_on(series(&gateway, request(vec![eq("room", "r0")])))
        .unwrap();
    assert!(
        gateway.metric(
            "thanos_store_index_cache_hits_total",
            &["item_type=\"Postings\""]
        ) > 0.0
    );
    assert_eq!(
        gateway.metric(
            "thanos_store_index_cache_requests_total",
            &["item_type=\"Series\""]
        ),
        0.0
    );
    drop(gateway);

    let mut bad = Gateway::spawn(
        &objstore,
        &["--index-cache.config=type: IN-MEMORY\nunknown: 1\n"],
    )
    .unwrap();
    test_harness::wait_until(
        "bad config to stop the gateway",
        std::time::Duration::from_secs(20),
        || matches!(bad.process.try_wait(), Ok(Some(_))),
    )
    .unwrap();
    assert!(
        bad.process.log().contains("index-cache.config"),
        "{}",
        bad.process.log()
    );
}
