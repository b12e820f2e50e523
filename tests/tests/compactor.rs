//! sidecar → bucket → compactor → store gateway → querier: the compactor merges and
//! de-duplicates the blocks both replicas' sidecars uploaded, and every answer stays the same.

#![allow(clippy::unwrap_used, clippy::print_stderr)]

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use e2e::api::query_path;
use e2e::cluster::{metric, now_millis};
use e2e::history::{HISTORY_METRIC, HISTORY_SERIES};
use e2e::{Cluster, ClusterOptions, Component, points};
use test_harness::{Prometheus, PrometheusConfig, wait_until};
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

/// A form POST; returns the status and the body.
fn http_post(addr: std::net::SocketAddr, path: &str, form: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    write!(
        stream,
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{form}",
        form.len()
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    let status = answer
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    let body = answer.split("\r\n\r\n").nth(1).unwrap_or("").to_owned();
    (status, body)
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
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
    assert_eq!(deduplicated.len(), HISTORY_SERIES);
    for (series, answer) in deduplicated.iter().enumerate() {
        assert_eq!(*answer, cluster.history().counter_samples(series));
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

    // Prometheus itself loads the compacted blocks and answers the same history.
    let prometheus_dir = cluster.work_dir().join("prometheus-from-bucket");
    for meta in &after {
        copy_dir(
            &bucket.join(meta.ulid.to_string()),
            &prometheus_dir.join(meta.ulid.to_string()),
        );
    }
    let prometheus = Prometheus::start(PrometheusConfig {
        data_dir: Some(prometheus_dir),
        ..PrometheusConfig::default()
    })
    .unwrap();
    let history = cluster.history().clone();
    let now = now_millis();
    let window = format!("{}ms", now - history.start_ms + 1000);
    for (series, expected) in deduplicated.iter().enumerate() {
        let selector = format!("{HISTORY_METRIC}{{series=\"{series}\"}}[{window}]");
        let body = prometheus.get(&query_path(&selector, now, "")).unwrap();
        let json: serde_json::Value = serde_json::from_str(&body).unwrap();
        let result = json["data"]["result"].as_array().unwrap();
        assert_eq!(result.len(), 1, "{body}");
        assert_eq!(points(&result[0]), *expected, "Prometheus, series {series}");
    }
    drop(prometheus);

    // A second run over the result changes nothing.
    compact_once(
        &cluster,
        &data_dir,
        &["--deduplication.replica-label=replica"],
    );
    let again: Vec<_> = live_blocks(&bucket).iter().map(|meta| meta.ulid).collect();
    let after_ids: Vec<_> = after.iter().map(|meta| meta.ulid).collect();
    assert_eq!(again, after_ids);

    // The block viewer API of a compactor running with --wait.
    let http: std::net::SocketAddr = format!("127.0.0.1:{}", test_harness::free_port())
        .parse()
        .unwrap();
    let mut command = Command::new(e2e::binaries::binary("compactor").unwrap());
    command
        .arg(format!("--objstore.config={}", cluster.objstore_yaml()))
        .arg(format!("--data-dir={}", data_dir.display()))
        .arg(format!("--http-address={http}"))
        .args([
            "--wait",
            "--consistency-delay=0s",
            "--deduplication.replica-label=replica",
        ])
        .arg("--disable-admin-operations");
    let _waiting =
        test_harness::Process::spawn("compactor-wait", command, &cluster.work_dir().join("logs"))
            .unwrap();
    let blocks = |view: &str| -> Option<Vec<String>> {
        let (status, body) = test_harness::http_get(http, &format!("/api/v1/blocks{view}")).ok()?;
        let json: serde_json::Value = serde_json::from_str(&body).ok()?;
        (status == 200 && json["data"]["refreshedAt"] != "0001-01-01T00:00:00Z").then(|| {
            json["data"]["blocks"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|block| block["ulid"].as_str().unwrap_or("").to_owned())
                .collect()
        })
    };
    let mut expected: Vec<String> = after_ids.iter().map(ToString::to_string).collect();
    expected.sort();
    for view in ["?view=loaded", ""] {
        wait_until(
            "the block viewer to list the blocks",
            Duration::from_secs(30),
            || {
                blocks(view).is_some_and(|mut listed| {
                    listed.sort();
                    listed == expected
                })
            },
        )
        .unwrap();
    }
    let (status, body) = http_post(
        http,
        "/api/v1/blocks/mark",
        &format!("id={}&action=DELETION", after_ids[0]),
    );
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("bad_data"), "{body}");

    eprintln!(
        "compactor_merges_and_deduplicates_the_sidecars_uploads_and_answers_stay_equal: {:?}",
        started.elapsed()
    );
}

/// Waits until the compactor at `http` finished `iterations` iterations; returns its bucket
/// operations count then (read within the `--wait-interval` pause that follows).
fn operations_after(http: std::net::SocketAddr, iterations: f64) -> f64 {
    wait_until("compactor iterations", Duration::from_secs(60), || {
        metric(http, "thanos_compact_iterations_total").is_some_and(|n| n >= iterations)
    })
    .unwrap();
    metric(http, "thanos_objstore_bucket_operations_total").unwrap()
}

#[test]
fn an_iteration_over_an_unchanged_bucket_of_200_blocks_costs_one_listing() {
    let work = tempfile::tempdir().unwrap();
    let bucket = work.path().join("bucket");
    std::fs::create_dir_all(&bucket).unwrap();
    let labels = prom_model::Labels::from_pairs([("__name__", "up".to_owned())]);
    let start = now_millis() - 10 * 3_600_000;
    let blocks = 200;
    for index in 0..blocks {
        let symbols = tsdb_block::writer::symbols_of([&labels]);
        let mut writer = tsdb_block::writer::BlockWriter::create(&bucket, symbols).unwrap();
        let samples: Vec<(i64, f64)> = (0..8).map(|i| (start + i * 15_000, 1.0)).collect();
        writer.add_series_samples(&labels, &samples).unwrap();
        let (mut meta, dir) = writer.finish().unwrap();
        // Every block its own group: nothing to compact, only the bookkeeping of a pass.
        meta.thanos = Some(tsdb_block::meta::ThanosMeta::new(
            std::collections::BTreeMap::from([("cluster".to_owned(), format!("c{index}"))]),
            0,
            "sidecar",
        ));
        meta.write_to_dir(&dir).unwrap();
    }
    let http: std::net::SocketAddr = format!("127.0.0.1:{}", test_harness::free_port())
        .parse()
        .unwrap();
    let mut command = Command::new(e2e::binaries::binary("compactor").unwrap());
    command
        .arg(format!(
            "--objstore.config=type: FILESYSTEM\nconfig:\n  directory: {}\n",
            bucket.display()
        ))
        .arg(format!("--data-dir={}", work.path().join("data").display()))
        .arg(format!("--http-address={http}"))
        .args(["--wait", "--wait-interval=1s", "--consistency-delay=0s"]);
    let _compactor =
        test_harness::Process::spawn("compactor", command, &work.path().join("logs")).unwrap();
    // The first iteration reads every meta; later ones find the bucket unchanged.
    let after_two = operations_after(http, 2.0);
    let after_five = operations_after(http, 5.0);
    let per_iteration = (after_five - after_two) / 3.0;
    eprintln!(
        "compactor: {per_iteration} bucket operations per iteration over {blocks} unchanged blocks"
    );
    assert!(
        per_iteration <= 1.0,
        "{per_iteration} bucket operations per iteration over {blocks} unchanged blocks"
    );
}

/// Writes `count` adjacent 2h blocks of 10 series with external label `cluster` into `bucket`
/// (oldest first); returns their ids.
fn write_group(bucket: &Path, cluster: &str, start: i64, count: i64) -> Vec<ulid::Ulid> {
    let all: Vec<prom_model::Labels> = (0..10)
        .map(|i| {
            prom_model::Labels::from_pairs([
                ("__name__", "group_test".to_owned()),
                ("series", format!("{i}")),
            ])
        })
        .collect();
    let mut ids = Vec::new();
    for block in 0..count {
        let from = start + block * 7_200_000;
        let symbols = tsdb_block::writer::symbols_of(all.iter());
        let mut writer = tsdb_block::writer::BlockWriter::create(bucket, symbols).unwrap();
        for labels in &all {
            let samples: Vec<(i64, f64)> =
                (0..480).map(|i| (from + i * 15_000, i as f64)).collect();
            writer.add_series_samples(labels, &samples).unwrap();
        }
        writer.set_time_range(from, from + 7_200_000);
        let (mut meta, dir) = writer.finish().unwrap();
        meta.thanos = Some(tsdb_block::meta::ThanosMeta::new(
            std::collections::BTreeMap::from([("cluster".to_owned(), cluster.to_owned())]),
            0,
            "sidecar",
        ));
        meta.write_to_dir(&dir).unwrap();
        ids.push(meta.ulid);
    }
    ids
}

#[test]
fn a_corrupt_block_stops_only_its_group_and_says_how_out() {
    let work = tempfile::tempdir().unwrap();
    let bucket = work.path().join("bucket");
    std::fs::create_dir_all(&bucket).unwrap();
    let day = 24 * 3_600_000;
    let start = (now_millis() - 3 * day) / day * day;
    // Five blocks each: the four of the first 8h window compact, the fifth is the newest.
    let broken = write_group(&bucket, "broken", start, 5);
    let healthy = write_group(&bucket, "healthy", start, 5);
    // One byte of a chunk of the broken group's first block changes (its checksum no longer
    // matches).
    let segment = bucket.join(broken[0].to_string()).join("chunks/000001");
    let mut bytes = std::fs::read(&segment).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x5a;
    std::fs::write(&segment, bytes).unwrap();

    let http: std::net::SocketAddr = format!("127.0.0.1:{}", test_harness::free_port())
        .parse()
        .unwrap();
    let mut command = Command::new(e2e::binaries::binary("compactor").unwrap());
    command
        .arg(format!(
            "--objstore.config=type: FILESYSTEM\nconfig:\n  directory: {}\n",
            bucket.display()
        ))
        .arg(format!("--data-dir={}", work.path().join("data").display()))
        .arg(format!("--http-address={http}"))
        .args(["--wait", "--wait-interval=1s", "--consistency-delay=0s"]);
    let compactor =
        test_harness::Process::spawn("compactor", command, &work.path().join("logs")).unwrap();
    wait_until(
        "the compactor to stop the broken group",
        Duration::from_secs(60),
        || {
            metric(http, "thanos_compact_halted") == Some(1.0)
                && metric(http, "thanos_compact_iterations_total").is_some_and(|n| n >= 2.0)
        },
    )
    .unwrap();
    assert_eq!(metric(http, "thanos_compact_group_problem"), Some(1.0));
    let live = live_blocks(&bucket);
    let by_cluster = |cluster: &str| -> Vec<&BlockMeta> {
        live.iter()
            .filter(|meta| meta.thanos.as_ref().unwrap().labels["cluster"] == cluster)
            .collect()
    };
    // The healthy group compacted its first 8h window; the broken one is untouched.
    let compacted: Vec<&BlockMeta> = by_cluster("healthy")
        .into_iter()
        .filter(|meta| meta.compaction.level == 2)
        .collect();
    assert_eq!(compacted.len(), 1, "{live:?}");
    assert_eq!(compacted[0].sources(), &healthy[..4]);
    let broken_live: Vec<ulid::Ulid> = by_cluster("broken").iter().map(|meta| meta.ulid).collect();
    assert_eq!(broken_live, broken);
    // Its error line names the block and the way out, and comes again on the next pass.
    let log = compactor.log();
    let lines: Vec<&str> = log
        .lines()
        .filter(|line| line.contains("level=error") && line.contains(&broken[0].to_string()))
        .collect();
    assert!(lines.len() >= 2, "{log}");
    assert!(lines[0].contains("way out"), "{}", lines[0]);
}
