//! Limits, corrupt blocks and bucket errors.

#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use storeapi::proto::thanos;

fn folder_bucket(blocks: &Blocks) -> tempfile::TempDir {
    let bucket = tempfile::tempdir().unwrap();
    for id in &blocks.ids {
        copy_dir(&blocks.path(id), &bucket.path().join(id)).unwrap();
    }
    bucket
}

/// Asserts that `request` to `gateway` fails with `ResourceExhausted` and a message
/// containing `text`.
fn assert_exhausted(
    runtime: &tokio::runtime::Runtime,
    gateway: &Gateway,
    request: thanos::SeriesRequest,
    text: &str,
) {
    let error = runtime.block_on(series(gateway, request)).unwrap_err();
    assert_eq!(error.code(), tonic::Code::ResourceExhausted, "{error}");
    assert!(error.message().contains(text), "{}", error.message());
}

/// Asserts that `request` to `gateway` answers `count` series.
fn assert_series(
    runtime: &tokio::runtime::Runtime,
    gateway: &Gateway,
    request: thanos::SeriesRequest,
    count: usize,
) {
    let answer = runtime.block_on(series(gateway, request)).unwrap();
    assert_eq!(answer.series.len(), count);
}

#[test]
fn exceeding_a_limit_is_resource_exhausted() {
    let blocks = make_blocks(5, 3, &[("cluster", "eu1")]).unwrap();
    let bucket = folder_bucket(&blocks);
    let runtime = runtime();
    let start = |flag: &str| Gateway::start(&fs_objstore(bucket.path()), &[flag]).unwrap();
    let all = || request(vec![eq("__name__", "temperature")]);
    let one = || request(vec![eq("room", "r1")]);

    let gateway = start("--store.limits.request-series=3");
    assert_exhausted(&runtime, &gateway, all(), "series limit");
    assert_series(&runtime, &gateway, one(), 1);
    drop(gateway);

    let gateway = start("--store.limits.request-samples=200");
    assert_exhausted(&runtime, &gateway, one(), "samples limit");
    drop(gateway);

    // Bytes: ten bytes stop any request that reads postings; a generous limit lets the same
    // request through. Label calls with matchers are counted too.
    let gateway = start("--store.grpc.downloaded-bytes-limit=10");
    assert_exhausted(
        &runtime,
        &gateway,
        one(),
        "exceeded bytes limit while fetching",
    );
    let status = runtime
        .block_on(async {
            let mut client = gateway.client().await;
            client
                .label_values(thanos::LabelValuesRequest {
                    label: "room".to_owned(),
                    matchers: vec![eq("__name__", "temperature")],
                    start: i64::MIN,
                    end: i64::MAX,
                    ..Default::default()
                })
                .await
        })
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status}");
    assert_eq!(
        gateway.metric(
            "thanos_bucket_store_queries_dropped_total",
            &["reason=\"bytes\""]
        ),
        2.0
    );
    drop(gateway);
    let gateway = start("--store.grpc.downloaded-bytes-limit=64MB");
    assert_series(&runtime, &gateway, one(), 1);
    drop(gateway);

    // The deprecated touched-series flag is the series limit.
    let gateway = start("--store.grpc.touched-series-limit=3");
    assert_exhausted(&runtime, &gateway, all(), "series limit");
}

#[test]
fn a_block_with_a_corrupt_index_is_skipped_and_counted() {
    let blocks = make_blocks(3, 5, &[("cluster", "eu1")]).unwrap();
    let bucket = folder_bucket(&blocks);
    let broken = &blocks.ids[1];
    let index = bucket.path().join(broken).join("index");
    let mut bytes = std::fs::read(&index).unwrap();
    let middle = bytes.len() - 200;
    for byte in &mut bytes[middle..middle + 100] {
        *byte ^= 0x5a;
    }
    std::fs::write(&index, bytes).unwrap();

    let gateway = Gateway::start(&fs_objstore(bucket.path()), &[]).unwrap();
    assert_eq!(
        gateway.metric("thanos_bucket_store_block_load_failures_total", &[]),
        1.0
    );
    let runtime = runtime();
    let result = runtime
        .block_on(series(&gateway, request(vec![re("__name__", ".+")])))
        .unwrap();
    let expected: Vec<String> = blocks
        .ids
        .iter()
        .filter(|id| *id != broken)
        .cloned()
        .collect();
    assert_eq!(queried_blocks(&result), expected);
    assert_eq!(
        served_dump(&result, &["cluster"]),
        dump_all(&blocks, &expected).unwrap()
    );
}

#[test]
fn a_bucket_error_reaches_the_caller() {
    let blocks = make_blocks(3, 3, &[("cluster", "eu1")]).unwrap();
    let bucket = folder_bucket(&blocks);
    let gateway = Gateway::start(&fs_objstore(bucket.path()), &[]).unwrap();
    for id in &blocks.ids {
        std::fs::remove_dir_all(bucket.path().join(id).join("chunks")).unwrap();
    }
    let runtime = runtime();
    let error = runtime
        .block_on(series(&gateway, request(vec![re("__name__", ".+")])))
        .unwrap_err();
    assert_ne!(error.code(), tonic::Code::Ok);
    assert!(
        error.message().contains("chunks/000001"),
        "{}",
        error.message()
    );
    // Labels only need the index, which is still there.
    let mut labels_only = request(vec![re("__name__", ".+")]);
    labels_only.skip_chunks = true;
    assert!(
        !runtime
            .block_on(series(&gateway, labels_only))
            .unwrap()
            .series
            .is_empty()
    );
}
