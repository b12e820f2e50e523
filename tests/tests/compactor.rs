//! sidecar → bucket → compactor → store gateway → querier: the compactor merges and
//! de-duplicates the blocks both replicas' sidecars uploaded, and every answer stays the same.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use e2e::cluster::{metric, now_millis};
use e2e::history::{HISTORY_METRIC, HISTORY_SERIES};
use e2e::{Cluster, ClusterOptions, Component, points};
use test_harness::wait_until;
use tsdb_block::meta::BlockMeta;

/// The metas of the blocks in a filesystem bucket that are live (`meta.json`, no deletion mark).
fn live_blocks(bucket: &Path) -> Vec<BlockMeta> {
    let mut metas = Vec::new();
    for entry in std::fs::read_dir(bucket).unwrap() {
        let dir = entry.unwrap().path();
        if dir.join("meta.json").is_file() && !dir.join("deletion-mark.json").exists() {
            metas.push(BlockMeta::read_from_dir(&dir).unwrap());
        }
    }
    metas.sort_by_key(|meta| (meta.min_time, meta.ulid));
    metas
}

/// Runs the compactor once (no `--wait`) over the cluster's bucket; returns its log.
fn compact_once(cluster: &Cluster, data_dir: &Path, extra: &[&str]) -> String {
    let program = e2e::binaries::binary("compactor").unwrap();
    let output = Command::new(program)
        .arg(format!("--objstore.config={}", cluster.objstore_yaml()))
        .arg(format!("--data-dir={}", data_dir.display()))
        .arg("--http-address=127.0.0.1:0")
        .args(["--consistency-delay=0s", "--delete-delay=0s"])
        .args(extra)
        .output()
        .unwrap();
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "compactor failed: {log}");
    log
}

/// Every history series over the whole history, as the querier answers it.
fn history_answers(cluster: &Cluster, dedup: bool) -> Vec<Vec<(i64, f64)>> {
    let history = cluster.history().clone();
    let now = now_millis();
    let window = format!("{}ms", now - history.start_ms + 1000);
    let extra = if dedup { "" } else { "&dedup=false" };
    let mut answers = Vec::new();
    for series in 0..HISTORY_SERIES {
        let selector = format!("{HISTORY_METRIC}{{series=\"{series}\"}}[{window}]");
        let answer = cluster.query(&selector, now, extra).unwrap();
        assert!(answer.is_success(), "{:?}", answer.json);
        for result in answer.result() {
            answers.push(points(&result));
        }
    }
    answers
}

#[test]
fn compactor_merges_and_deduplicates_the_sidecars_uploads_and_answers_stay_equal() {
    let started = Instant::now();
    let mut cluster = Cluster::start(ClusterOptions::default()).unwrap();
    cluster.wait_history_in_bucket().unwrap();
    // Only the bucket answers from here on.
    for component in [
        Component::SidecarA,
        Component::SidecarB,
        Component::PrometheusA,
        Component::PrometheusB,
    ] {
        cluster.kill(component);
    }
    cluster.wait_healthy_stores(1).unwrap();
    let bucket = cluster.work_dir().join("bucket");
    let before = live_blocks(&bucket);
    let [blocks_a, blocks_b] = cluster.blocks_per_replica();
    assert_eq!(before.len(), blocks_a + blocks_b);
    let deduplicated = history_answers(&cluster, true);
    let raw = history_answers(&cluster, false);
    assert_eq!(raw.len(), 2 * HISTORY_SERIES, "both replicas' copies");
    for series in 0..HISTORY_SERIES {
        assert_eq!(
            deduplicated[series],
            cluster.history().counter_samples(series)
        );
    }

    // Offline de-duplication: the replicas' blocks fall in one group and are merged vertically.
    let data_dir = cluster.work_dir().join("compactor");
    let log = compact_once(
        &cluster,
        &data_dir,
        &["--deduplication.replica-label=replica"],
    );
    let after = live_blocks(&bucket);
    assert!(
        after.len() < before.len(),
        "{} blocks before, {} after: {log}",
        before.len(),
        after.len()
    );
    let mut covered_sources = Vec::new();
    for meta in &after {
        let thanos = meta.thanos.as_ref().unwrap();
        // Thanos keeps `<replica label>="deduped"` on a block left without labels.
        assert!(
            thanos
                .labels
                .get("replica")
                .is_none_or(|value| value == "deduped"),
            "replica label removed: {:?}",
            thanos.labels
        );
        covered_sources.extend(meta.sources().iter().copied());
    }
    covered_sources.sort();
    let mut original: Vec<_> = before.iter().map(|meta| meta.ulid).collect();
    original.sort();
    assert_eq!(
        covered_sources, original,
        "every source block is in exactly one live block"
    );
    assert!(
        after.iter().any(|meta| meta.compaction.level >= 2
            && meta.thanos.as_ref().unwrap().source == "compactor"),
        "{after:?}"
    );
    // The sources are gone (--delete-delay=0s).
    for meta in &before {
        assert!(
            !bucket
                .join(meta.ulid.to_string())
                .join("meta.json")
                .exists()
        );
    }

    let store_gateway = cluster.http(Component::StoreGateway);
    wait_until(
        "the store gateway to load the compacted blocks",
        Duration::from_secs(60),
        || {
            metric(store_gateway, "thanos_bucket_store_blocks_loaded")
                .is_some_and(|loaded| loaded == after.len() as f64)
        },
    )
    .unwrap();
    assert_eq!(history_answers(&cluster, true), deduplicated);
    // One copy of each series is left in the bucket.
    let single = history_answers(&cluster, false);
    assert_eq!(
        single, deduplicated,
        "one copy after offline de-duplication"
    );

    // A second run over the result changes nothing.
    compact_once(
        &cluster,
        &data_dir,
        &["--deduplication.replica-label=replica"],
    );
    let again: Vec<_> = live_blocks(&bucket).iter().map(|meta| meta.ulid).collect();
    let after_ids: Vec<_> = after.iter().map(|meta| meta.ulid).collect();
    assert_eq!(again, after_ids);
    eprintln!(
        "compactor_merges_and_deduplicates_the_sidecars_uploads_and_answers_stay_equal: {:?}",
        started.elapsed()
    );
}
