//! The fetcher against in-memory and faulty buckets: states, marks, partial blocks, caches, and
//! what a pass costs in bucket operations.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use block_fetcher::{
    BlockState, Fetcher, FetcherConfig, Filters, ListingMode, RelabelConfig, TimeBound,
};
use bytes::Bytes;
use objstore::Bucket;
use prometheus::Registry;
use tsdb_block::meta::{DeletionMark, NoCompactMark, NoDownsampleMark, source};
use ulid::Ulid;

use common::*;

fn fetcher(bucket: &Bucket, config: FetcherConfig, registry: &Registry) -> Fetcher {
    Fetcher::new(bucket.clone(), config, registry).unwrap()
}

fn store_gateway_filters() -> Filters {
    Filters {
        min_time: TimeBound::Absolute(500),
        max_time: TimeBound::Relative(0),
        relabel: RelabelConfig::parse(
            "- action: keep\n  source_labels: [cluster]\n  regex: eu.*\n",
        )
        .unwrap(),
        consistency_delay: Duration::from_secs(30 * 60),
        deletion_mark_delay: Some(Duration::from_secs(3600)),
        deduplicate: true,
        replica_labels: Vec::new(),
    }
}

#[tokio::test]
async fn every_block_ends_in_the_state_thanos_gives_it() {
    let registry = Registry::new();
    let bucket = Bucket::in_memory("test", test_options(), &registry).unwrap();
    let now = SystemTime::now();
    let old = |random| ulid_aged(now, Duration::from_secs(7200), random);
    let now_seconds = millis(now) / 1000;

    let loaded = old(1);
    put_block(&bucket, &sidecar_meta(loaded)).await;
    let partial = old(2);
    bucket
        .upload(
            &format!("{partial}/chunks/000001"),
            Bytes::from_static(b"x"),
        )
        .await
        .unwrap();
    let corrupted = old(3);
    bucket
        .upload(
            &format!("{corrupted}/meta.json"),
            Bytes::from_static(b"{\"ulid\": 3"),
        )
        .await
        .unwrap();
    let time_excluded = old(4);
    let mut early = sidecar_meta(time_excluded);
    (early.min_time, early.max_time) = (0, 400);
    put_block(&bucket, &early).await;
    let label_excluded = old(5);
    put_block(
        &bucket,
        &meta(label_excluded, &[("cluster", "us1")], source::SIDECAR, &[]),
    )
    .await;
    let too_fresh = ulid_aged(now, Duration::from_secs(60), 6);
    put_block(&bucket, &sidecar_meta(too_fresh)).await;
    let fresh_compacted = ulid_aged(now, Duration::from_secs(60), 7);
    put_block(
        &bucket,
        &meta(
            fresh_compacted,
            &[("cluster", "eu1")],
            source::COMPACTOR,
            &[],
        ),
    )
    .await;
    let deleted = old(8);
    put_block(&bucket, &sidecar_meta(deleted)).await;
    put_mark(&bucket, &DeletionMark::new(deleted, now_seconds - 7200, "")).await;
    let recently_marked = old(9);
    put_block(&bucket, &sidecar_meta(recently_marked)).await;
    put_mark(
        &bucket,
        &DeletionMark::new(recently_marked, now_seconds - 60, ""),
    )
    .await;
    let source_block = old(10);
    put_block(&bucket, &sidecar_meta(source_block)).await;
    let compacted = old(11);
    put_block(
        &bucket,
        &meta(
            compacted,
            &[("cluster", "eu1")],
            source::COMPACTOR,
            &[source_block, old(99)],
        ),
    )
    .await;
    let bad_mark = old(12);
    put_block(&bucket, &sidecar_meta(bad_mark)).await;
    bucket
        .upload(
            &format!("{bad_mark}/deletion-mark.json"),
            Bytes::from_static(b"{\"id\""),
        )
        .await
        .unwrap();
    let deleting = old(13);
    bucket
        .upload(&format!("{deleting}/index"), Bytes::from_static(b"x"))
        .await
        .unwrap();
    put_mark(&bucket, &DeletionMark::new(deleting, now_seconds - 10, "")).await;
    // Not block folders.
    bucket
        .upload("debug/metas/x.json", Bytes::from_static(b"{}"))
        .await
        .unwrap();

    let config = FetcherConfig {
        filters: store_gateway_filters(),
        ..FetcherConfig::default()
    };
    let snapshot = fetcher(&bucket, config, &registry)
        .fetch_at(now)
        .await
        .unwrap();
    let expected: BTreeMap<Ulid, &str> = [
        (loaded, "loaded"),
        (partial, "no-meta-json"),
        (corrupted, "corrupted-meta-json"),
        (time_excluded, "time-excluded"),
        (label_excluded, "label-excluded"),
        (too_fresh, "too-fresh"),
        (fresh_compacted, "loaded"),
        (deleted, "marked-for-deletion"),
        (recently_marked, "loaded"),
        (source_block, "duplicate"),
        (compacted, "loaded"),
        (bad_mark, "loaded"),
        (deleting, "no-meta-json"),
    ]
    .into_iter()
    .collect();
    assert_eq!(states(&snapshot), expected);
    let loaded_ids: Vec<Ulid> = snapshot.metas.keys().copied().collect();
    let mut expected_loaded = vec![
        loaded,
        fresh_compacted,
        recently_marked,
        compacted,
        bad_mark,
    ];
    expected_loaded.sort();
    assert_eq!(loaded_ids, expected_loaded);
    assert_eq!(snapshot.duplicates, [source_block]);
    assert!(snapshot.failed.is_empty());
    let marked: Vec<Ulid> = snapshot.deletion_marks.keys().copied().collect();
    let mut expected_marked = vec![deleted, recently_marked, deleting];
    expected_marked.sort();
    assert_eq!(marked, expected_marked, "the unparsable mark is skipped");
    assert_eq!(
        snapshot.deletion_marks[&deleted].deletion_time,
        now_seconds - 7200
    );
    assert_eq!(snapshot.partial.len(), 2);
    assert!(!snapshot.partial[&partial].has_deletion_mark);
    assert!(snapshot.partial[&deleting].has_deletion_mark);
    assert!(snapshot.partial[&partial].newest_modified.is_some());

    for (state, count) in [
        ("loaded", 5.0),
        ("no-meta-json", 2.0),
        ("corrupted-meta-json", 1.0),
        ("time-excluded", 1.0),
        ("label-excluded", 1.0),
        ("too-fresh", 1.0),
        ("marked-for-deletion", 1.0),
        ("duplicate", 1.0),
        ("failed", 0.0),
        ("marked-for-no-compact", 0.0),
    ] {
        assert_eq!(
            metric(&registry, "thanos_blocks_meta_synced", &[("state", state)]),
            count,
            "{state}"
        );
    }
    assert_eq!(
        metric(&registry, "thanos_blocks_meta_syncs_total", &[]),
        1.0
    );
    assert_eq!(
        metric(&registry, "thanos_blocks_meta_sync_failures_total", &[]),
        0.0
    );
}

#[tokio::test]
async fn without_filters_every_readable_meta_passes() {
    let registry = Registry::new();
    let bucket = Bucket::in_memory("test", test_options(), &registry).unwrap();
    let now = SystemTime::now();
    let fresh = ulid_aged(now, Duration::from_secs(1), 1);
    put_block(&bucket, &sidecar_meta(fresh)).await;
    let marked = ulid_aged(now, Duration::from_secs(1), 2);
    put_block(&bucket, &sidecar_meta(marked)).await;
    put_mark(&bucket, &DeletionMark::new(marked, 0, "")).await;
    let snapshot = fetcher(&bucket, FetcherConfig::default(), &registry)
        .fetch_at(now)
        .await
        .unwrap();
    assert_eq!(
        snapshot.metas.keys().copied().collect::<Vec<_>>(),
        [fresh, marked]
    );
    assert_eq!(
        snapshot.deletion_marks.keys().copied().collect::<Vec<_>>(),
        [marked]
    );
}

#[tokio::test]
async fn compactor_view_removes_replica_labels_before_deduplication_and_reads_its_marks() {
    let registry = Registry::new();
    let bucket = Bucket::in_memory("test", test_options(), &registry).unwrap();
    let now = SystemTime::now();
    let old = |random| ulid_aged(now, Duration::from_secs(7200), random);
    let (replica_a, replica_b, compacted) = (old(1), old(2), old(3));
    put_block(
        &bucket,
        &meta(
            replica_a,
            &[("cluster", "eu1"), ("replica", "a")],
            source::SIDECAR,
            &[],
        ),
    )
    .await;
    put_block(
        &bucket,
        &meta(
            replica_b,
            &[("cluster", "eu1"), ("replica", "b")],
            source::SIDECAR,
            &[],
        ),
    )
    .await;
    // Compacted from both replicas: once the replica label is gone, both are its duplicates.
    put_block(
        &bucket,
        &meta(
            compacted,
            &[("cluster", "eu1")],
            source::COMPACTOR,
            &[replica_a, replica_b],
        ),
    )
    .await;
    put_mark(&bucket, &NoCompactMark::new(compacted, 10, "manual", "")).await;
    put_mark(&bucket, &NoDownsampleMark::new(compacted, 11, "manual", "")).await;
    let config = FetcherConfig {
        metric_prefix: "thanos_bucket_ui".to_owned(),
        filters: Filters {
            deduplicate: true,
            replica_labels: vec!["replica".to_owned()],
            deletion_mark_delay: Some(Duration::from_secs(24 * 3600)),
            ..Filters::default()
        },
        read_no_compact_marks: true,
        read_no_downsample_marks: true,
        ..FetcherConfig::default()
    };
    let snapshot = fetcher(&bucket, config, &registry)
        .fetch_at(now)
        .await
        .unwrap();
    assert_eq!(
        snapshot.metas.keys().copied().collect::<Vec<_>>(),
        [compacted]
    );
    let mut duplicates = vec![replica_a, replica_b];
    duplicates.sort();
    assert_eq!(snapshot.duplicates, duplicates);
    assert_eq!(snapshot.no_compact_marks[&compacted].reason, "manual");
    assert_eq!(
        snapshot.no_downsample_marks[&compacted].no_downsample_time,
        11
    );
    // Thanos' odd no-underscore prefix of the global UI fetcher.
    let synced = |state| {
        metric(
            &registry,
            "thanos_bucket_uiblocks_meta_synced",
            &[("state", state)],
        )
    };
    assert_eq!(synced("duplicate"), 2.0);
    assert_eq!(synced("loaded"), 1.0);
    assert_eq!(synced("marked-for-no-compact"), 1.0);
    assert_eq!(synced("marked-for-no-downsample"), 1.0);
    assert_eq!(
        metric(
            &registry,
            "thanos_bucket_uiblocks_meta_modified",
            &[("modified", "replica-label-removed")]
        ),
        2.0
    );
}

#[tokio::test]
async fn an_unchanged_bucket_costs_one_listing_and_a_new_block_one_meta_read() {
    let registry = Registry::new();
    let bucket = Bucket::in_memory("test", test_options(), &registry).unwrap();
    let now = SystemTime::now();
    let ids: Vec<Ulid> = (0..200)
        .map(|n| ulid_aged(now, Duration::from_secs(7200), n))
        .collect();
    for id in &ids {
        put_block(&bucket, &sidecar_meta(*id)).await;
    }
    for id in ids.iter().step_by(20) {
        put_mark(&bucket, &DeletionMark::new(*id, millis(now) / 1000, "")).await;
        put_mark(&bucket, &NoCompactMark::new(*id, 1, "manual", "")).await;
    }
    let config = FetcherConfig {
        filters: store_gateway_filters(),
        read_no_compact_marks: true,
        ..FetcherConfig::default()
    };
    let fetcher = fetcher(&bucket, config, &registry);

    let before = bucket_operations(&registry);
    let first = fetcher.fetch_at(now).await.unwrap();
    assert_eq!(first.metas.len(), 200);
    assert_eq!(first.deletion_marks.len(), 10);
    assert_eq!(first.no_compact_marks.len(), 10);
    assert_eq!(bucket_operations(&registry) - before, 1.0 + 200.0 + 20.0);

    let before = bucket_operations(&registry);
    let second = fetcher.fetch_at(now).await.unwrap();
    assert!(bucket_operations(&registry) - before <= 2.0);
    assert_eq!(bucket_operations_of(&registry, "get"), 220.0);
    assert_eq!(second, first);

    let new_block = ulid_aged(now, Duration::from_secs(7000), 1000);
    put_block(&bucket, &sidecar_meta(new_block)).await;
    let (gets, iters) = (
        bucket_operations_of(&registry, "get"),
        bucket_operations_of(&registry, "iter"),
    );
    let third = fetcher.fetch_at(now).await.unwrap();
    assert_eq!(bucket_operations_of(&registry, "get") - gets, 1.0);
    assert_eq!(bucket_operations_of(&registry, "iter") - iters, 1.0);
    assert_eq!(third.metas.len(), 201);
    assert!(third.metas.contains_key(&new_block));
}

#[tokio::test]
async fn marks_are_read_again_only_when_changed_and_forgotten_when_removed() {
    let registry = Registry::new();
    let bucket = Bucket::in_memory("test", test_options(), &registry).unwrap();
    let now = SystemTime::now();
    let id = ulid_aged(now, Duration::from_secs(7200), 1);
    put_block(&bucket, &sidecar_meta(id)).await;
    let config = FetcherConfig {
        filters: store_gateway_filters(),
        ..FetcherConfig::default()
    };
    let fetcher = fetcher(&bucket, config, &registry);
    let now_seconds = millis(now) / 1000;

    put_mark(&bucket, &DeletionMark::new(id, now_seconds, "")).await;
    let snapshot = fetcher.fetch_at(now).await.unwrap();
    assert_eq!(snapshot.states[&id], BlockState::Loaded);
    let gets = bucket_operations_of(&registry, "get");
    fetcher.fetch_at(now).await.unwrap();
    assert_eq!(
        bucket_operations_of(&registry, "get"),
        gets,
        "an unchanged mark is not read"
    );

    // Rewritten (another deletion time and details): read again, the block is now hidden.
    put_mark(&bucket, &DeletionMark::new(id, now_seconds - 7200, "again")).await;
    let snapshot = fetcher.fetch_at(now).await.unwrap();
    assert_eq!(bucket_operations_of(&registry, "get"), gets + 1.0);
    assert_eq!(snapshot.states[&id], BlockState::MarkedForDeletion);
    assert_eq!(snapshot.deletion_marks[&id].details, "again");

    bucket
        .delete(&format!("{id}/deletion-mark.json"))
        .await
        .unwrap();
    let snapshot = fetcher.fetch_at(now).await.unwrap();
    assert_eq!(snapshot.states[&id], BlockState::Loaded);
    assert!(snapshot.deletion_marks.is_empty());
}

#[tokio::test]
async fn a_read_failure_is_the_failed_state_and_a_listing_failure_fails_the_pass() {
    let registry = Registry::new();
    let (bucket, store) = FaultyStore::bucket(&registry);
    let now = SystemTime::now();
    let (good, unreadable, unreadable_mark) = (
        ulid_aged(now, Duration::from_secs(7200), 1),
        ulid_aged(now, Duration::from_secs(7200), 2),
        ulid_aged(now, Duration::from_secs(7200), 3),
    );
    for id in [good, unreadable, unreadable_mark] {
        put_block(&bucket, &sidecar_meta(id)).await;
    }
    put_mark(&bucket, &DeletionMark::new(unreadable_mark, 0, "")).await;
    store.fail_reads_of(&format!("{unreadable}/meta.json"));
    store.fail_reads_of(&format!("{unreadable_mark}/deletion-mark.json"));
    let config = FetcherConfig {
        filters: store_gateway_filters(),
        ..FetcherConfig::default()
    };
    let fetcher = fetcher(&bucket, config, &registry);
    let snapshot = fetcher.fetch_at(now).await.unwrap();
    assert_eq!(snapshot.metas.keys().copied().collect::<Vec<_>>(), [good]);
    let mut failed = vec![unreadable, unreadable_mark];
    failed.sort();
    assert_eq!(snapshot.failed, failed);
    assert_eq!(snapshot.states[&unreadable], BlockState::Failed);
    assert_eq!(snapshot.states[&unreadable_mark], BlockState::Failed);
    assert_eq!(
        metric(
            &registry,
            "thanos_blocks_meta_synced",
            &[("state", "failed")]
        ),
        2.0
    );

    // Healed: both are read again (a failure is not cached).
    store.heal();
    let snapshot = fetcher.fetch_at(now).await.unwrap();
    assert!(snapshot.failed.is_empty());
    assert_eq!(snapshot.states[&unreadable], BlockState::Loaded);
    assert_eq!(
        snapshot.states[&unreadable_mark],
        BlockState::MarkedForDeletion
    );

    // A bucket that cannot be listed: the pass fails and is counted.
    let unreachable = objstore::ObjstoreConfig::parse(
        "type: S3\nconfig:\n  bucket: b\n  endpoint: 127.0.0.1:1\n  access_key: a\n  secret_key: s\n  insecure: true\n",
    )
    .unwrap();
    let failing_registry = Registry::new();
    let failing_bucket = Bucket::from_config(&unreachable, test_options(), &failing_registry)
        .await
        .unwrap();
    let failing =
        Fetcher::new(failing_bucket, FetcherConfig::default(), &failing_registry).unwrap();
    let error = failing.fetch_at(now).await.unwrap_err();
    assert!(
        matches!(error, block_fetcher::Error::List { .. }),
        "{error}"
    );
    assert_eq!(
        metric(
            &failing_registry,
            "thanos_blocks_meta_sync_failures_total",
            &[]
        ),
        1.0
    );
}

#[tokio::test]
async fn metas_cached_on_disk_spare_the_reads_after_a_restart() {
    let cache_dir = tempfile::tempdir().unwrap();
    let registry = Registry::new();
    let bucket = Bucket::in_memory("test", test_options(), &registry).unwrap();
    let now = SystemTime::now();
    let ids: Vec<Ulid> = (0..5)
        .map(|n| ulid_aged(now, Duration::from_secs(7200), n))
        .collect();
    for id in &ids {
        put_block(&bucket, &sidecar_meta(*id)).await;
    }
    let config = FetcherConfig {
        cache_dir: Some(cache_dir.path().to_owned()),
        ..FetcherConfig::default()
    };
    let first = fetcher(&bucket, config.clone(), &Registry::new())
        .fetch_at(now)
        .await
        .unwrap();
    let cached = cache_dir
        .path()
        .join("meta-syncer")
        .join(ids[0].to_string())
        .join("meta.json");
    assert!(cached.is_file(), "{}", cached.display());

    // A new fetcher (a restart) over the same folder reads no meta from the bucket.
    let gets = bucket_operations_of(&registry, "get");
    let restarted = fetcher(&bucket, config.clone(), &Registry::new());
    let second = restarted.fetch_at(now).await.unwrap();
    assert_eq!(bucket_operations_of(&registry, "get"), gets);
    assert_eq!(second.metas, first.metas);

    // A block gone from the bucket is gone from the cache folder.
    bucket.delete_dir(&ids[0].to_string()).await.unwrap();
    let third = restarted.fetch_at(now).await.unwrap();
    assert_eq!(third.metas.len(), 4);
    assert!(!cached.exists());

    // A damaged cached copy is replaced by the bucket's.
    let damaged = cache_dir
        .path()
        .join("meta-syncer")
        .join(ids[1].to_string())
        .join("meta.json");
    std::fs::write(&damaged, b"not json").unwrap();
    let gets = bucket_operations_of(&registry, "get");
    let again = fetcher(&bucket, config, &Registry::new())
        .fetch_at(now)
        .await
        .unwrap();
    assert_eq!(bucket_operations_of(&registry, "get"), gets + 1.0);
    assert_eq!(again.metas, third.metas);
    assert!(tsdb_block::meta::BlockMeta::read_from_dir(damaged.parent().unwrap()).is_ok());
}

#[tokio::test]
async fn a_rewritten_meta_is_read_again() {
    let registry = Registry::new();
    let bucket = Bucket::in_memory("test", test_options(), &registry).unwrap();
    let now = SystemTime::now();
    let id = ulid_aged(now, Duration::from_secs(7200), 1);
    put_block(&bucket, &sidecar_meta(id)).await;
    let fetcher = fetcher(&bucket, FetcherConfig::default(), &registry);
    let first = fetcher.fetch_at(now).await.unwrap();
    assert_eq!(
        first.metas[&id].thanos.as_ref().unwrap().labels["cluster"],
        "eu1"
    );
    let relabelled = meta(id, &[("cluster", "eu2-rewritten")], source::SIDECAR, &[]);
    bucket
        .upload(
            &format!("{id}/meta.json"),
            Bytes::from(relabelled.to_json()),
        )
        .await
        .unwrap();
    let second = fetcher.fetch_at(now).await.unwrap();
    assert_eq!(
        second.metas[&id].thanos.as_ref().unwrap().labels["cluster"],
        "eu2-rewritten"
    );
}

#[tokio::test]
async fn per_directory_listing_gives_the_same_view() {
    let registry = Registry::new();
    let bucket = Bucket::in_memory("test", test_options(), &registry).unwrap();
    let now = SystemTime::now();
    let ids: Vec<Ulid> = (0..4)
        .map(|n| ulid_aged(now, Duration::from_secs(7200), n))
        .collect();
    for id in &ids[..3] {
        put_block(&bucket, &sidecar_meta(*id)).await;
    }
    bucket
        .upload(&format!("{}/index", ids[3]), Bytes::from_static(b"x"))
        .await
        .unwrap();
    put_mark(&bucket, &DeletionMark::new(ids[0], 0, "")).await;
    let config = |listing| FetcherConfig {
        listing,
        filters: store_gateway_filters(),
        ..FetcherConfig::default()
    };
    let recursive = fetcher(&bucket, config(ListingMode::Recursive), &Registry::new())
        .fetch_at(now)
        .await
        .unwrap();
    let iters = bucket_operations_of(&registry, "iter");
    let per_directory = fetcher(&bucket, config(ListingMode::PerDirectory), &Registry::new())
        .fetch_at(now)
        .await
        .unwrap();
    assert_eq!(bucket_operations_of(&registry, "iter") - iters, 5.0);
    assert_eq!(per_directory.states, recursive.states);
    assert_eq!(per_directory.metas, recursive.metas);
    assert_eq!(per_directory.deletion_marks, recursive.deletion_marks);
    assert_eq!(per_directory.partial[&ids[3]].newest_modified, None);
    assert!(recursive.partial[&ids[3]].newest_modified.is_some());
}
