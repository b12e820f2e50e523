//! Block discovery: new, removed, partial, marked and out-of-range blocks, and relabel sharding.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::*;
use test_harness::wait_until;

fn served_blocks(gateway: &Gateway) -> Vec<String> {
    let runtime = runtime();
    let result = runtime
        .block_on(series(gateway, request(vec![re("__name__", ".+")])))
        .unwrap();
    queried_blocks(&result)
}

#[test]
fn picks_up_new_blocks_and_drops_removed_ones_without_restart() {
    let blocks = make_blocks(3, 5, &[("cluster", "eu1")]).unwrap();
    let bucket = tempfile::tempdir().unwrap();
    let (first, rest) = blocks.ids.split_first().unwrap();
    copy_dir(&blocks.path(first), &bucket.path().join(first)).unwrap();
    // A partial upload (no meta.json) is invisible.
    let partial = &rest[0];
    copy_dir(&blocks.path(partial), &bucket.path().join(partial)).unwrap();
    std::fs::remove_file(bucket.path().join(partial).join("meta.json")).unwrap();

    let gateway =
        Gateway::start(&fs_objstore(bucket.path()), &["--sync-block-duration=1s"]).unwrap();
    assert_eq!(served_blocks(&gateway), std::slice::from_ref(first));
    assert_eq!(
        gateway.metric("thanos_blocks_meta_synced", &["state=\"no-meta-json\""]),
        1.0
    );
    assert_eq!(
        gateway.metric("thanos_bucket_store_blocks_loaded", &[]),
        1.0
    );

    // The upload completes and another block arrives.
    for id in rest {
        copy_dir(&blocks.path(id), &bucket.path().join(id)).unwrap();
    }
    wait_until("all blocks served", Duration::from_secs(20), || {
        served_blocks(&gateway) == blocks.ids
    })
    .unwrap();

    // One block is deleted (meta.json first, as Thanos deletes), another gets an old deletion
    // mark.
    std::fs::remove_file(bucket.path().join(first).join("meta.json")).unwrap();
    let marked = &rest[1];
    std::fs::write(
        bucket.path().join(marked).join("deletion-mark.json"),
        format!("{{\"id\":\"{marked}\",\"version\":1,\"deletion_time\":1000}}"),
    )
    .unwrap();
    let expected: Vec<String> = rest.iter().filter(|id| *id != marked).cloned().collect();
    wait_until("removed blocks dropped", Duration::from_secs(20), || {
        served_blocks(&gateway) == expected
    })
    .unwrap();
    std::fs::remove_dir_all(bucket.path().join(first)).unwrap();
    assert_eq!(served_blocks(&gateway), expected);
    assert!(gateway.metric("thanos_bucket_store_block_drops_total", &[]) >= 2.0);
    assert_eq!(
        gateway.metric(
            "thanos_blocks_meta_synced",
            &["state=\"marked-for-deletion\""]
        ),
        1.0
    );
    assert!(gateway.metric("thanos_blocks_meta_syncs_total", &[]) >= 2.0);
}

#[test]
fn time_range_and_consistency_delay_filter_blocks() {
    let blocks = make_blocks(2, 5, &[("cluster", "eu1")]).unwrap();
    let bucket = tempfile::tempdir().unwrap();
    for id in &blocks.ids {
        copy_dir(&blocks.path(id), &bucket.path().join(id)).unwrap();
    }
    let objstore = fs_objstore(bucket.path());
    // Only blocks ending after START+4h.
    let min_time = prom_model::time::format_rfc3339_millis((START + 4 * 3600) * 1000);
    let gateway = Gateway::start(&objstore, &[&format!("--min-time={min_time}")]).unwrap();
    let served = served_blocks(&gateway);
    assert!(
        !served.is_empty() && served.len() < blocks.ids.len(),
        "{served:?}"
    );
    assert!(gateway.metric("thanos_blocks_meta_synced", &["state=\"time-excluded\""]) >= 1.0);
    drop(gateway);
    // Relative max time far in the past: nothing.
    let gateway = Gateway::start(&objstore, &["--max-time=-1000w"]).unwrap();
    assert!(served_blocks(&gateway).is_empty());
    drop(gateway);
    // promtool just made the blocks: their ULIDs are younger than an hour.
    let gateway = Gateway::start(&objstore, &["--consistency-delay=1h"]).unwrap();
    assert!(served_blocks(&gateway).is_empty());
    assert_eq!(
        gateway.metric("thanos_blocks_meta_synced", &["state=\"too-fresh\""]),
        blocks.ids.len() as f64
    );
}

#[test]
fn hashmod_relabel_shards_blocks_between_two_gateways() {
    let blocks = make_blocks(2, 12, &[("cluster", "eu1")]).unwrap();
    assert!(blocks.ids.len() >= 6);
    let bucket = tempfile::tempdir().unwrap();
    for id in &blocks.ids {
        copy_dir(&blocks.path(id), &bucket.path().join(id)).unwrap();
    }
    let objstore = fs_objstore(bucket.path());
    let shard = |index: u32| {
        format!(
            "--selector.relabel-config=- action: hashmod\n  source_labels: [__block_id]\n  target_label: shard\n  modulus: 2\n- action: keep\n  source_labels: [shard]\n  regex: \"{index}\"\n"
        )
    };
    let zero = Gateway::start(&objstore, &[&shard(0)]).unwrap();
    let one = Gateway::start(&objstore, &[&shard(1)]).unwrap();
    let (mut served_zero, served_one) = (served_blocks(&zero), served_blocks(&one));
    assert!(
        served_zero.iter().all(|id| !served_one.contains(id)),
        "{served_zero:?} {served_one:?}"
    );
    served_zero.extend(served_one);
    served_zero.sort();
    assert_eq!(served_zero, blocks.ids);
    assert!(zero.metric("thanos_blocks_meta_synced", &["state=\"label-excluded\""]) >= 1.0);
}

#[test]
fn a_block_compacted_into_another_is_served_once() {
    let blocks = make_blocks(2, 3, &[("cluster", "eu1")]).unwrap();
    let bucket = tempfile::tempdir().unwrap();
    for id in &blocks.ids {
        copy_dir(&blocks.path(id), &bucket.path().join(id)).unwrap();
    }
    // A "compacted" copy of the first block: a new ULID whose sources are the first block.
    let source = &blocks.ids[0];
    let compacted = ulid::Ulid::new().to_string();
    copy_dir(&blocks.path(source), &bucket.path().join(&compacted)).unwrap();
    let mut meta =
        tsdb_block::meta::BlockMeta::read_from_dir(&bucket.path().join(&compacted)).unwrap();
    meta.ulid = compacted.parse().unwrap();
    meta.compaction.level = 2;
    meta.compaction.sources = vec![source.parse().unwrap()];
    meta.write_to_dir(&bucket.path().join(&compacted)).unwrap();

    let gateway = Gateway::start(&fs_objstore(bucket.path()), &[]).unwrap();
    let mut expected: Vec<String> = blocks.ids[1..].to_vec();
    expected.push(compacted);
    expected.sort();
    assert_eq!(served_blocks(&gateway), expected);
    assert_eq!(
        gateway.metric("thanos_blocks_meta_synced", &["state=\"duplicate\""]),
        1.0
    );
}
