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

#[test]
fn exceeding_a_limit_is_resource_exhausted() {
    let blocks = make_blocks(5, 3, &[("cluster", "eu1")]).unwrap();
    let bucket = folder_bucket(&blocks);
    let runtime = runtime();
    let gateway = Gateway::start(
        &fs_objstore(bucket.path()),
        &["--store.limits.request-series=3"],
    )
    .unwrap();
    let error = runtime
        .block_on(series(
            &gateway,
            request(vec![eq("__name__", "temperature")]),
        ))
        .unwrap_err();
    assert_eq!(error.code(), tonic::Code::ResourceExhausted);
    assert!(
        error.message().contains("series limit"),
        "{}",
        error.message()
    );
    let fine = runtime
        .block_on(series(&gateway, request(vec![eq("room", "r1")])))
        .unwrap();
    assert_eq!(fine.series.len(), 1);
    drop(gateway);

    let gateway = Gateway::start(
        &fs_objstore(bucket.path()),
        &["--store.limits.request-samples=200"],
    )
    .unwrap();
    let error = runtime
        .block_on(series(&gateway, request(vec![eq("room", "r1")])))
        .unwrap_err();
    assert_eq!(error.code(), tonic::Code::ResourceExhausted);
    assert!(
        error.message().contains("samples limit"),
        "{}",
        error.message()
    );
    drop(gateway);

    // Bytes: ten bytes stop any request that reads postings; a generous limit lets the same
    // request through. Label calls with matchers are counted too.
    let gateway = Gateway::start(
        &fs_objstore(bucket.path()),
        &["--store.grpc.downloaded-bytes-limit=10"],
    )
    .unwrap();
    let error = runtime
        .block_on(series(&gateway, request(vec![eq("room", "r1")])))
        .unwrap_err();
    assert_eq!(error.code(), tonic::Code::ResourceExhausted);
    assert!(
        error
            .message()
            .contains("exceeded bytes limit while fetching"),
        "{}",
        error.message()
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
    let gateway = Gateway::start(
        &fs_objstore(bucket.path()),
        &["--store.grpc.downloaded-bytes-limit=64MB"],
    )
    .unwrap();
    let fine = runtime
        .block_on(series(&gateway, request(vec![eq("room", "r1")])))
        .unwrap();
    assert_eq!(fine.series.len(), 1);
    drop(gateway);

    // The deprecated touched-series flag is the series limit, for label calls too.
    let gateway = Gateway::start(
        &fs_objstore(bucket.path()),
        &["--store.grpc.touched-series-limit=3"],
    )
    .unwrap();
    let error = runtime
        .block_on(series(
            &gateway,
            request(vec![eq("__name__", "temperature")]),
        ))
        .unwrap_err();
    assert_eq!(error.code(), tonic::Code::ResourceExhausted);
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
