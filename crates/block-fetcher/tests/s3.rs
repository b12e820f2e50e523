//! The fetcher against a real S3 server (s3s-fs, started by the test harness): the recursive
//! listing with attributes works there, and an unchanged bucket costs one listing.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, SystemTime};

use block_fetcher::{Fetcher, FetcherConfig, Filters};
use bytes::Bytes;
use objstore::{Bucket, ObjstoreConfig};
use prometheus::Registry;
use test_harness::S3sFs;
use tsdb_block::meta::DeletionMark;
use ulid::Ulid;

use common::*;

#[tokio::test]
async fn s3_listing_finds_blocks_marks_and_partial_uploads_in_one_request() {
    let server = S3sFs::start("AKIDTHANOS", "secret-for-tests").expect("start s3s-fs");
    server.create_bucket("thanos").expect("create bucket");
    let yaml = format!(
        "type: S3\nconfig:\n  bucket: thanos\n  endpoint: {}\n  access_key: {}\n  secret_key: {}\n  insecure: true\n",
        server.endpoint(),
        server.access_key(),
        server.secret_key()
    );
    let registry = Registry::new();
    let config = ObjstoreConfig::parse(&yaml).unwrap();
    let bucket = Bucket::from_config(&config, test_options(), &registry)
        .await
        .unwrap();
    let now = SystemTime::now();
    let ids: Vec<Ulid> = (0..30)
        .map(|n| ulid_aged(now, Duration::from_secs(7200), n))
        .collect();
    for id in &ids[..29] {
        put_block(&bucket, &sidecar_meta(*id)).await;
    }
    let partial = ids[29];
    let started_upload = SystemTime::now();
    bucket
        .upload(
            &format!("{partial}/chunks/000001"),
            Bytes::from_static(b"x"),
        )
        .await
        .unwrap();
    put_mark(
        &bucket,
        &DeletionMark::new(ids[0], millis(now) / 1000 - 7200, ""),
    )
    .await;

    let fetcher = Fetcher::new(
        bucket.clone(),
        FetcherConfig {
            filters: Filters {
                deletion_mark_delay: Some(Duration::from_secs(3600)),
                deduplicate: true,
                ..Filters::default()
            },
            ..FetcherConfig::default()
        },
        &Registry::new(),
    )
    .unwrap();
    let before = bucket_operations(&registry);
    let first = fetcher.fetch_at(now).await.unwrap();
    assert_eq!(bucket_operations(&registry) - before, 1.0 + 29.0 + 1.0);
    assert_eq!(first.metas.len(), 28);
    assert!(!first.metas.contains_key(&ids[0]));
    assert_eq!(
        first.deletion_marks.keys().copied().collect::<Vec<_>>(),
        [ids[0]]
    );
    let partial_block = first.partial[&partial];
    let newest = partial_block
        .newest_modified
        .expect("s3 listings carry LastModified");
    // S3 times have a one-second resolution.
    assert!(
        newest + Duration::from_secs(2) >= started_upload,
        "{newest:?}"
    );
    assert!(!partial_block.has_deletion_mark);

    let before = bucket_operations(&registry);
    let second = fetcher.fetch_at(now).await.unwrap();
    assert!(bucket_operations(&registry) - before <= 2.0);
    assert_eq!(second, first);

    // The upload completes: only its meta is read.
    bucket
        .upload(
            &format!("{partial}/meta.json"),
            Bytes::from(sidecar_meta(partial).to_json()),
        )
        .await
        .unwrap();
    let gets = bucket_operations_of(&registry, "get");
    let third = fetcher.fetch_at(now).await.unwrap();
    assert_eq!(bucket_operations_of(&registry, "get") - gets, 1.0);
    assert!(third.metas.contains_key(&partial) && third.partial.is_empty());
}
