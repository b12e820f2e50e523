//! The store gateway over real promtool blocks, in a folder bucket and in moto S3: what it serves
//! equals `promtool tsdb dump`, and repeated queries hit the index cache.

#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use storeapi::proto::thanos;
use storeapi::proto::thanos::info::InfoRequest;

const EXTERNAL: &[(&str, &str)] = &[("cluster", "eu1"), ("replica", "a")];

fn check_gateway(gateway: &Gateway, blocks: &Blocks) {
    let expected = dump_all(blocks, &blocks.ids).unwrap();
    let runtime = runtime();
    let result = runtime
        .block_on(series(gateway, request(vec![re("__name__", ".+")])))
        .unwrap();
    // Every series carries the external labels, sorted in place.
    for one in &result.series {
        assert_eq!(
            storeapi::convert::label_value(&one.labels, "cluster"),
            Some("eu1")
        );
        let mut sorted = one.labels.clone();
        storeapi::convert::sort_labels(&mut sorted);
        assert_eq!(sorted, one.labels);
    }
    let served = served_dump(&result, &["cluster", "replica"]);
    assert_eq!(served.len(), expected.len());
    assert_eq!(served, expected);
    assert_eq!(queried_blocks(&result), blocks.ids);

    // Block matchers in the request hints select blocks by external labels and __block_id.
    let mut by_block = request(vec![re("__name__", ".+")]);
    by_block.hints = Some(storeapi::hints::pack(
        &storeapi::proto::hintspb::SeriesRequestHints {
            block_matchers: vec![eq("__block_id", &blocks.ids[0])],
            enable_query_stats: false,
        },
    ));
    let result = runtime.block_on(series(gateway, by_block)).unwrap();
    assert_eq!(queried_blocks(&result), [blocks.ids[0].clone()]);
    assert_eq!(
        served_dump(&result, &["cluster", "replica"]),
        dump_all(blocks, &blocks.ids[..1]).unwrap()
    );

    // Vertical sharding splits the series with none lost or repeated.
    let mut sharded: Vec<String> = Vec::new();
    for shard_index in 0..3 {
        let mut one_shard = request(vec![re("__name__", ".+")]);
        one_shard.shard_info = Some(thanos::ShardInfo {
            shard_index,
            total_shards: 3,
            by: true,
            labels: vec!["instance".to_owned(), "room".to_owned()],
        });
        let result = runtime.block_on(series(gateway, one_shard)).unwrap();
        assert!(!result.series.is_empty() && result.series.len() < expected.len());
        sharded.extend(served_dump(&result, &["cluster", "replica"]).into_keys());
    }
    sharded.sort();
    assert_eq!(sharded, expected.keys().cloned().collect::<Vec<_>>());

    // Matchers and time ranges.
    let mut narrow = request(vec![eq("__name__", "requests_total"), eq("job", "j1")]);
    narrow.min_time = (START + 3600) * 1000;
    narrow.max_time = (START + 3 * 3600) * 1000;
    let result = runtime.block_on(series(gateway, narrow.clone())).unwrap();
    assert!(!result.series.is_empty());
    for one in &result.series {
        assert_eq!(
            storeapi::convert::label_value(&one.labels, "job"),
            Some("j1")
        );
        for chunk in &one.chunks {
            assert!(chunk.max_time >= narrow.min_time && chunk.min_time <= narrow.max_time);
        }
    }
    // External label matchers select or exclude whole blocks.
    let other_cluster = runtime
        .block_on(series(gateway, request(vec![eq("cluster", "us1")])))
        .unwrap();
    assert!(other_cluster.series.is_empty());
    let by_cluster = runtime
        .block_on(series(gateway, request(vec![eq("cluster", "eu1")])))
        .unwrap();
    assert_eq!(by_cluster.series.len(), expected.len());

    // skip_chunks and batching.
    let mut labels_only = request(vec![eq("__name__", "temperature")]);
    labels_only.skip_chunks = true;
    labels_only.response_batch_size = 4;
    let result = runtime.block_on(series(gateway, labels_only)).unwrap();
    assert!(result.series.iter().all(|one| one.chunks.is_empty()));
    assert!(result.batch_frames > 0 && result.largest_batch <= 4);

    // Labels APIs.
    runtime.block_on(async {
        let mut client = gateway.client().await;
        let names = client
            .label_names(thanos::LabelNamesRequest {
                start: i64::MIN,
                end: i64::MAX,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .names;
        assert_eq!(
            names,
            ["__name__", "cluster", "instance", "job", "replica", "room"]
        );
        let values = client
            .label_values(thanos::LabelValuesRequest {
                label: "job".to_owned(),
                start: i64::MIN,
                end: i64::MAX,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .values;
        assert_eq!(values, ["j0", "j1", "j2"]);
        let values = client
            .label_values(thanos::LabelValuesRequest {
                label: "__name__".to_owned(),
                start: i64::MIN,
                end: i64::MAX,
                matchers: vec![eq("room", "r1")],
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .values;
        assert_eq!(values, ["temperature"]);
        let names = client
            .label_names(thanos::LabelNamesRequest {
                start: i64::MIN,
                end: i64::MAX,
                matchers: vec![eq("__name__", "temperature")],
                without_replica_labels: vec!["replica".to_owned()],
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .names;
        assert_eq!(names, ["__name__", "cluster", "room"]);

        let info = gateway
            .info_client()
            .await
            .info(InfoRequest {})
            .await
            .unwrap()
            .into_inner();
        assert_eq!(info.component_type, "store");
        assert_eq!(info.label_sets.len(), 1);
        let store = info.store.unwrap();
        assert!(store.supports_sharding && store.supports_without_replica_labels);
        assert_eq!(store.min_time, START * 1000);
        assert!(store.max_time > START * 1000 + 4 * 3600 * 1000);
    });
}

/// `get_range` requests counted by the bucket metrics.
fn range_reads(gateway: &Gateway) -> f64 {
    gateway.metric(
        "thanos_objstore_bucket_operations_total",
        &["operation=\"get_range\""],
    )
}

fn check_cache_saves_requests(gateway: &Gateway) {
    let runtime = runtime();
    let query = request(vec![
        eq("__name__", "requests_total"),
        re("instance", "i1|i2"),
    ]);
    let before = range_reads(gateway);
    let first = runtime.block_on(series(gateway, query.clone())).unwrap();
    let after_first = range_reads(gateway);
    let second = runtime.block_on(series(gateway, query)).unwrap();
    let after_second = range_reads(gateway);
    assert_eq!(first.series, second.series);
    assert!(
        after_second - after_first < after_first - before,
        "second query made {} range reads, first {}",
        after_second - after_first,
        after_first - before
    );
    assert!(gateway.metric("thanos_store_index_cache_hits_total", &[]) > 0.0);
    // Both Series calls went through the series gate (`--store.grpc.series-max-concurrency`,
    // default 20), as ThanosStoreSeriesGateLatencyHigh reads it.
    let gate = |name: &str| gateway.metric(&format!("thanos_bucket_store_series_{name}"), &[]);
    assert_eq!(gate("gate_queries_max"), 20.0);
    assert_eq!(gate("gate_queries_in_flight"), 0.0);
    assert!(gate("gate_queries_total") >= 2.0);
    assert!(gate("gate_duration_seconds_count") >= 2.0);
}

#[test]
fn serves_promtool_blocks_from_a_folder_like_promtool_dump() {
    let blocks = make_blocks(12, 5, EXTERNAL).unwrap();
    assert!(
        blocks.ids.len() >= 3,
        "expected several 2h blocks, got {:?}",
        blocks.ids
    );
    let bucket = tempfile::tempdir().unwrap();
    for id in &blocks.ids {
        copy_dir(&blocks.path(id), &bucket.path().join(id)).unwrap();
    }
    let gateway = Gateway::start(&fs_objstore(bucket.path()), &[]).unwrap();
    check_gateway(&gateway, &blocks);
    check_cache_saves_requests(&gateway);
    // The index-header was built locally; the blocks were never downloaded whole.
    for id in &blocks.ids {
        let header = gateway
            .data_dir
            .path()
            .join("data")
            .join(id)
            .join("index-header");
        assert!(header.is_file(), "{} missing", header.display());
        // Thanos' binary index-header: the symbol table and the index tail from the postings
        // offset table on, between a 14-byte head and a 20-byte trailer.
        let header = std::fs::read(header).unwrap();
        let index = std::fs::read(blocks.path(id).join("index")).unwrap();
        let toc_len = tsdb_block::index::TOC_LEN as usize;
        let toc =
            tsdb_block::index::Toc::decode(&index[index.len() - toc_len..], index.len() as u64)
                .unwrap();
        assert_eq!(&header[..6], &[0xBA, 0xAA, 0xD7, 0x92, 1, 2]);
        let mut copied = index[toc.symbols as usize..toc.series as usize].to_vec();
        copied.extend_from_slice(&index[toc.postings_table as usize..]);
        assert_eq!(&header[14..header.len() - 20], copied.as_slice());
        assert!(
            !gateway
                .data_dir
                .path()
                .join("data")
                .join(id)
                .join("chunks")
                .exists()
        );
    }
}

#[test]
fn serves_promtool_blocks_from_moto_s3_like_promtool_dump() {
    let blocks = make_blocks(12, 5, EXTERNAL).unwrap();
    let moto = test_harness::Moto::start().unwrap();
    moto.create_bucket("blocks").unwrap();
    let objstore = s3_objstore(&moto.endpoint(), "blocks");
    let runtime = runtime();
    runtime.block_on(async {
        let config = objstore::ObjstoreConfig::parse(&objstore).unwrap();
        let registry = prometheus::Registry::new();
        let bucket =
            objstore::Bucket::from_config(&config, objstore::BucketOptions::default(), &registry)
                .await
                .unwrap();
        for id in &blocks.ids {
            bucket.upload_dir(&blocks.path(id), id).await.unwrap();
        }
    });
    let gateway = Gateway::start(&objstore, &[]).unwrap();
    check_gateway(&gateway, &blocks);
    check_cache_saves_requests(&gateway);
}

#[test]
fn idle_index_headers_are_released_and_loaded_again_from_disk() {
    let blocks = make_blocks(4, 3, EXTERNAL).unwrap();
    let bucket = tempfile::tempdir().unwrap();
    for id in &blocks.ids {
        copy_dir(&blocks.path(id), &bucket.path().join(id)).unwrap();
    }
    let gateway = Gateway::start(
        &fs_objstore(bucket.path()),
        &[
            "--store.index-header-lazy-reader-idle-timeout=1s",
            "--sync-block-duration=1h",
        ],
    )
    .unwrap();
    let unloads = || gateway.metric("thanos_bucket_store_indexheader_lazy_unload_total", &[]);
    test_harness::wait_until(
        "idle headers released",
        std::time::Duration::from_secs(20),
        || unloads() >= blocks.ids.len() as f64,
    )
    .unwrap();
    let index_reads = gateway.metric(
        "thanos_objstore_bucket_operations_total",
        &["operation=\"get_range\""],
    );
    let runtime = runtime();
    let result = runtime
        .block_on(series(&gateway, request(vec![re("__name__", ".+")])))
        .unwrap();
    assert_eq!(
        served_dump(&result, &["cluster", "replica"]),
        dump_all(&blocks, &blocks.ids).unwrap()
    );
    assert!(gateway.metric("thanos_bucket_store_indexheader_lazy_load_total", &[]) >= 1.0);
    // Headers came back from the local files: the only range reads are postings, series, chunks
    // (three coalesced reads per block at most).
    let after = gateway.metric(
        "thanos_objstore_bucket_operations_total",
        &["operation=\"get_range\""],
    );
    assert!(
        after - index_reads <= 3.0 * blocks.ids.len() as f64,
        "{index_reads} -> {after}"
    );
}
