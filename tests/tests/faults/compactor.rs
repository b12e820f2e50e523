//! The compactor SIGKILLed at random moments, 24 times, then left to finish: no sample lost or
//! doubled, no two visible blocks holding the same data, no half-written block that looks whole.

use std::collections::{BTreeMap, BTreeSet};

use prom_model::{MatchType, Matcher};
use tsdb_block::reader::BlockReader;
use ulid::Ulid;

use super::*;

/// The block folders of a filesystem bucket that have `meta.json`, with their metas.
fn metas_in(bucket: &Path) -> Vec<(PathBuf, BlockMeta)> {
    let mut metas = Vec::new();
    for entry in std::fs::read_dir(bucket).unwrap() {
        let dir = entry.unwrap().path();
        if Ulid::from_string(&dir.file_name().unwrap().to_string_lossy()).is_err() {
            continue;
        }
        if dir.join("meta.json").is_file() {
            let meta = BlockMeta::read_from_dir(&dir)
                .unwrap_or_else(|error| panic!("{}: meta.json unreadable: {error}", dir.display()));
            metas.push((dir, meta));
        }
    }
    metas.sort_by_key(|(_, meta)| (meta.min_time, meta.ulid));
    metas
}

/// What a store gateway would serve: blocks with `meta.json`, minus those whose sources another
/// block of the same resolution covers.
fn visible(metas: &[(PathBuf, BlockMeta)]) -> Vec<(PathBuf, BlockMeta)> {
    metas
        .iter()
        .filter(|(_, meta)| {
            let sources: BTreeSet<Ulid> = meta.sources().iter().copied().collect();
            !metas.iter().any(|(_, other)| {
                other.ulid != meta.ulid
                    && other.resolution() == meta.resolution()
                    && other.sources().len() > sources.len()
                    && sources
                        .iter()
                        .all(|source| other.sources().contains(source))
            })
        })
        .cloned()
        .collect()
}

/// Every block with `meta.json` is whole: its listed files have their sizes and it opens.
fn check_whole(metas: &[(PathBuf, BlockMeta)]) {
    for (dir, meta) in metas {
        if let Some(thanos) = &meta.thanos {
            for file in &thanos.files {
                if file.rel_path == "meta.json" {
                    continue;
                }
                let size = std::fs::metadata(dir.join(&file.rel_path))
                    .unwrap_or_else(|error| {
                        panic!("block {} lacks {}: {error}", meta.ulid, file.rel_path)
                    })
                    .len();
                assert_eq!(
                    size as i64, file.size_bytes,
                    "{} {}",
                    meta.ulid, file.rel_path
                );
            }
        }
        BlockReader::open(dir)
            .unwrap_or_else(|error| panic!("block {} looks whole but is not: {error}", meta.ulid));
    }
}

/// The visible raw blocks hold each original source exactly once.
fn check_sources(visible: &[(PathBuf, BlockMeta)], originals: &BTreeSet<Ulid>) {
    let mut seen: BTreeMap<Ulid, Ulid> = BTreeMap::new();
    for (_, meta) in visible.iter().filter(|(_, meta)| meta.resolution() == 0) {
        for source in meta.sources() {
            if let Some(previous) = seen.insert(*source, meta.ulid) {
                panic!(
                    "source {source} is visible twice: in {previous} and {}",
                    meta.ulid
                );
            }
        }
    }
    let seen: BTreeSet<Ulid> = seen.into_keys().collect();
    assert_eq!(&seen, originals, "every original block's data is visible");
}

/// Every sample of the visible raw blocks, by `series` label.
fn samples_of(visible: &[(PathBuf, BlockMeta)]) -> BTreeMap<String, Vec<(i64, f64)>> {
    let mut all: BTreeMap<String, Vec<(i64, f64)>> = BTreeMap::new();
    let matcher = Matcher::new(MatchType::Regex, "__name__", ".+").unwrap();
    for (dir, meta) in visible.iter().filter(|(_, meta)| meta.resolution() == 0) {
        let reader = BlockReader::open(dir).unwrap();
        for series in reader
            .select(std::slice::from_ref(&matcher), i64::MIN, i64::MAX)
            .unwrap()
        {
            let series = series.unwrap();
            let mut samples = Vec::new();
            reader.samples(&series, &mut samples).unwrap();
            let name = series.labels.get("series").unwrap_or("").to_owned();
            assert!(!samples.is_empty(), "{}: empty series", meta.ulid);
            all.entry(name).or_default().extend(samples);
        }
    }
    for samples in all.values_mut() {
        samples.sort_by_key(|(t, _)| *t);
    }
    all
}

/// Writes `data` twice into the bucket folder `bucket`, as replicas `a` and `b` with different
/// gaps (each misses one 2h block the other has); returns the block ids.
fn write_replicas(bucket: &Path, data: &Data) -> BTreeSet<Ulid> {
    let mut originals = BTreeSet::new();
    for (replica, missing) in [("a", 5usize), ("b", 17usize)] {
        let metas = data.write_bucket_blocks(bucket);
        for (index, mut meta) in metas.into_iter().enumerate() {
            let dir = bucket.join(meta.ulid.to_string());
            if index == missing {
                std::fs::remove_dir_all(&dir).unwrap();
                continue;
            }
            if let Some(thanos) = meta.thanos.as_mut() {
                thanos
                    .labels
                    .insert("replica".to_owned(), replica.to_owned());
            }
            meta.write_to_dir(&dir).unwrap();
            originals.insert(meta.ulid);
        }
    }
    originals
}

/// The end state after the compactor finished: nothing lost or doubled, the gap-free union of
/// the replicas in few raw blocks, the 2d block downsampled once.
fn check_finished(bucket: &Path, data: &Data, originals: &BTreeSet<Ulid>) -> (usize, usize) {
    let metas = metas_in(bucket);
    check_whole(&metas);
    let visible = visible(&metas);
    check_sources(&visible, originals);
    let raw_blocks = visible
        .iter()
        .filter(|(_, meta)| meta.resolution() == 0)
        .count();
    assert!(
        raw_blocks < originals.len() / 4,
        "{raw_blocks} raw blocks left of {}",
        originals.len()
    );
    assert_eq!(
        samples_of(&visible),
        data.expected(),
        "totals conserved, gap-free"
    );
    let two_days = visible
        .iter()
        .find(|(_, meta)| meta.resolution() == 0 && meta.max_time - meta.min_time == 48 * HOUR_MS)
        .expect("a 2d block");
    let five_minutes: Vec<&BlockMeta> = visible
        .iter()
        .map(|(_, meta)| meta)
        .filter(|meta| meta.resolution() == 300_000)
        .collect();
    assert_eq!(five_minutes.len(), 1, "one 5m block: {five_minutes:?}");
    assert_eq!(five_minutes[0].sources(), two_days.1.sources());
    (raw_blocks, visible.len())
}

/// A small deterministic generator for the kill moments (the seed is printed).
fn next_random(state: &mut u64) -> u64 {
    *state = state
        .wrapping_mul(6_364_136_223_846_793_005)
        .wrapping_add(1_442_695_040_888_963_407);
    *state >> 33
}

#[test]
fn compactor_killed_at_random_moments_loses_and_doubles_nothing() {
    let _serial = serial();
    let started = Instant::now();
    let work = tempfile::tempdir().unwrap();
    let bucket = work.path().join("bucket");
    std::fs::create_dir_all(&bucket).unwrap();
    let data = Data {
        metric: "compactor_kill_total",
        start_ms: (now_millis() - 72 * HOUR_MS) / (2 * 24 * HOUR_MS) * (2 * 24 * HOUR_MS),
        // 52h: the first 2d window fills, its 2d block (≥ 40h) is downsampled to 5m.
        blocks: 26,
        series: 20,
    };
    let originals = write_replicas(&bucket, &data);
    let objstore = format!(
        "type: FILESYSTEM\nconfig:\n  directory: {}\n",
        bucket.display()
    );
    let program = binary("compactor").unwrap();
    let compactor = |wait: bool| {
        let mut command = Command::new(&program);
        command
            .arg(format!("--objstore.config={objstore}"))
            .arg(format!("--data-dir={}", work.path().join("data").display()))
            .arg(format!("--http-address=127.0.0.1:{}", free_port()))
            .args([
                "--consistency-delay=0s",
                "--delete-delay=0s",
                "--deduplication.replica-label=replica",
                "--wait-interval=1s",
            ]);
        if wait {
            command.arg("--wait");
        }
        command
    };

    let mut seed = now_millis() as u64;
    eprintln!("compactor kill loop: seed {seed}");
    let logs = work.path().join("logs");
    let kills = 24;
    for round in 0..kills {
        let mut process =
            Process::spawn(&format!("compactor-{round}"), compactor(true), &logs).unwrap();
        let delay = 100 + next_random(&mut seed) % 1_400;
        std::thread::sleep(Duration::from_millis(delay));
        process.kill();
        let metas = metas_in(&bucket);
        check_whole(&metas);
        check_sources(&visible(&metas), &originals);
    }
    // Left alone, it finishes; a second run finds nothing to do.
    for run in 0..2 {
        let output = compactor(false).output().unwrap();
        assert!(
            output.status.success(),
            "final run {run}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let (raw_blocks, visible) = check_finished(&bucket, &data, &originals);
    eprintln!(
        "compactor kill loop: {kills} kills, {} blocks -> {raw_blocks} raw blocks ({} visible), {:?}",
        originals.len(),
        visible,
        started.elapsed()
    );
}

#[test]
fn compactor_under_bucket_faults_mid_compaction_loses_and_doubles_nothing() {
    let _serial = serial();
    let started = Instant::now();
    let work = tempfile::tempdir().unwrap();
    let s3 = S3sFs::start(ACCESS_KEY, SECRET_KEY).unwrap();
    s3.create_bucket("thanos").unwrap();
    let bucket = s3.data_dir().join("thanos");
    let data = Data {
        metric: "compactor_faults_total",
        start_ms: (now_millis() - 72 * HOUR_MS) / (2 * 24 * HOUR_MS) * (2 * 24 * HOUR_MS),
        blocks: 26,
        series: 20,
    };
    let originals = write_replicas(&bucket, &data);
    let proxy = FaultProxy::start(s3.addr()).unwrap();
    let compactor = |endpoint: &str, wait: bool, http: SocketAddr| {
        let mut command = Command::new(binary("compactor").unwrap());
        command
            .arg(format!("--objstore.config={}", s3_objstore(endpoint)))
            .arg(format!("--data-dir={}", work.path().join("data").display()))
            .arg(format!("--http-address={http}"))
            .args([
                "--consistency-delay=0s",
                "--delete-delay=0s",
                "--deduplication.replica-label=replica",
                "--wait-interval=1s",
            ]);
        if wait {
            command.arg("--wait");
        }
        command
    };
    let http: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let logs = work.path().join("logs");
    let mut process =
        Process::spawn("compactor", compactor(&proxy.endpoint(), true, http), &logs).unwrap();
    let faults = [
        Fault::HttpStatus(503),
        Fault::Close,
        Fault::CutAfter(20_000),
        Fault::Stall,
        Fault::Delay(Duration::from_millis(300)),
        Fault::CloseAfterTotal(200_000),
        Fault::HttpStatus(500),
    ];
    for fault in faults {
        std::thread::sleep(Duration::from_millis(700));
        proxy.set(fault);
        std::thread::sleep(Duration::from_millis(1_500));
        proxy.set(Fault::None);
        let metas = metas_in(&bucket);
        check_whole(&metas);
        check_sources(&visible(&metas), &originals);
        assert!(
            matches!(process.try_wait(), Ok(None)),
            "the compactor exited under {fault:?}: {}",
            process.log()
        );
    }
    let retries = metric(http, "thanos_compact_retries_total").unwrap_or(0.0);
    let failures = metric(http, "thanos_objstore_bucket_operation_failures_total").unwrap_or(0.0);
    process.kill();
    assert!(failures > 0.0, "the faults reached the compactor");
    // Without faults it finishes (a second run finds nothing to do).
    for run in 0..2 {
        let output = compactor(
            &s3.endpoint(),
            false,
            format!("127.0.0.1:{}", free_port()).parse().unwrap(),
        )
        .output()
        .unwrap();
        assert!(
            output.status.success(),
            "final run {run}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let (raw_blocks, visible) = check_finished(&bucket, &data, &originals);
    eprintln!(
        "compactor under bucket faults: {} faults, {failures} failed bucket operations, {retries} \
         retried iterations, {} blocks -> {raw_blocks} raw blocks ({visible} visible), {:?}",
        faults.len(),
        originals.len(),
        started.elapsed()
    );
}
