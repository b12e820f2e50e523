//! Faults with nothing lost (issue #24): real programs under bucket, process and disk faults.
//!
//! - **Bucket faults** under a running store gateway and querier: the S3 server (s3s-fs) killed
//!   or frozen with SIGSTOP, and, through [`FaultProxy`] in front of it, 503 answers, closed
//!   connections, answers cut mid-body, a stall and a slow-down. Each query during a fault
//!   answers exactly the full answer taken before, or fails, or (partial responses on) warns;
//!   never a shorter answer without a warning. Once the bucket is back the answer is exact again.
//! - **Sidecar SIGKILLed while it uploads**, restarted, in a loop: meanwhile a checker reads the
//!   bucket (a block folder with `meta.json` has all its files, whole) and the querier (each
//!   block's samples are all there or none); afterwards every block is in the bucket once, none
//!   uploaded again once complete, and the querier answers exactly what Prometheus answers.
//! - **A block deleted and four corrupted** (a chunk file and an index truncated to half, a chunk
//!   file missing its last 40 bytes, a chunk file with one byte changed) under a running store
//!   gateway: queries touching them fail or warn, the other blocks answer exactly, the store
//!   gateway stays healthy, and its next sync drops the deleted block cleanly.
//! - **Disk full**: the store gateway's data folder and the sidecar's upload staging folder on a
//!   tiny tmpfs of their own (a private mount namespace via `unshare`, so no root is needed and
//!   nothing outlives the process): the process stays up, nothing half-written is served or
//!   uploaded, and once the disk has room again everything is served and uploaded exactly once.
//!
//! The scenarios run one at a time (two cores) and print their figures.

#![allow(clippy::unwrap_used, clippy::print_stderr)]

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use e2e::api::{QueryAnswer, get_json, query_path};
use e2e::binaries::binary;
use e2e::cluster::metric;
use e2e::points;
use prom_model::Labels;
use serde_json::Value;
use test_harness::{
    Fault, FaultProxy, Process, Prometheus, PrometheusConfig, S3sFs, free_port, http_get, promtool,
    require_program, wait_until,
};
use tsdb_block::meta::{BlockMeta, ThanosFile, ThanosMeta};
use tsdb_block::writer::{BlockWriter, symbols_of};

const HOUR_MS: i64 = 3_600_000;
const BLOCK_MS: i64 = 2 * HOUR_MS;
const STEP_MS: i64 = 15_000;
/// The start of each block left out of a query of that block alone.
const BLOCK_MARGIN_MS: i64 = 600_000;
const ACCESS_KEY: &str = "AKIDFAULTS";
const SECRET_KEY: &str = "faults-secret-key";

/// One scenario at a time: they start several programs each and the machine has two cores.
fn serial() -> MutexGuard<'static, ()> {
    static SERIAL: Mutex<()> = Mutex::new(());
    SERIAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn now_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis() as i64)
}

/// Counters `metric{series="00".."NN"}`, one sample every [`STEP_MS`] from `start_ms` for
/// `blocks` 2h blocks; sample `k` of series `i` is `k * (i + 1)`.
#[derive(Debug, Clone)]
struct Data {
    metric: &'static str,
    start_ms: i64,
    blocks: usize,
    series: usize,
}

impl Data {
    fn end_ms(&self) -> i64 {
        self.start_ms + self.blocks as i64 * BLOCK_MS
    }

    fn series_label(index: usize) -> String {
        format!("{index:02}")
    }

    fn samples(&self, series: usize, from: i64, to: i64) -> Vec<(i64, f64)> {
        (self.start_ms..self.end_ms())
            .step_by(STEP_MS as usize)
            .filter(|t| *t >= from && *t < to)
            .map(|t| {
                (
                    t,
                    ((t - self.start_ms) / STEP_MS * (series as i64 + 1)) as f64,
                )
            })
            .collect()
    }

    /// The whole history of every series, by `series` label.
    fn expected(&self) -> BTreeMap<String, Vec<(i64, f64)>> {
        (0..self.series)
            .map(|i| {
                (
                    Self::series_label(i),
                    self.samples(i, self.start_ms, self.end_ms()),
                )
            })
            .collect()
    }

    /// The history without the 2h blocks listed in `missing` (by index).
    fn expected_without(&self, missing: &[usize]) -> BTreeMap<String, Vec<(i64, f64)>> {
        let mut expected = self.expected();
        for samples in expected.values_mut() {
            samples
                .retain(|(t, _)| !missing.contains(&(((t - self.start_ms) / BLOCK_MS) as usize)));
        }
        expected
    }

    /// The query path of every raw sample of every series: a range selector whose window has
    /// no sample on either edge (Prometheus 2's closed and 3's left-open windows agree).
    fn raw_query(&self, extra: &str) -> String {
        let time = self.end_ms() - STEP_MS + 1_000;
        let range = time - self.start_ms + 1_000;
        query_path(&format!("{}[{range}ms]", self.metric), time, extra)
    }

    /// Writes the blocks with a `thanos` section (external label `cluster="faults"`, the files
    /// and their sizes, as the sidecar uploads them) into `dir`; returns their metas, oldest
    /// first.
    fn write_bucket_blocks(&self, dir: &Path) -> Vec<BlockMeta> {
        let all: Vec<Labels> = (0..self.series)
            .map(|i| {
                Labels::from_pairs([
                    ("__name__", self.metric.to_owned()),
                    ("series", Self::series_label(i)),
                ])
            })
            .collect();
        let symbols = symbols_of(all.iter());
        let mut metas = Vec::new();
        for block in 0..self.blocks {
            let from = self.start_ms + block as i64 * BLOCK_MS;
            let to = from + BLOCK_MS;
            let mut writer = BlockWriter::create(dir, symbols.iter().cloned()).unwrap();
            for (i, labels) in all.iter().enumerate() {
                writer
                    .add_series_samples(labels, &self.samples(i, from, to))
                    .unwrap();
            }
            writer.set_time_range(from, to);
            let (mut meta, block_dir) = writer.finish().unwrap();
            let mut thanos = ThanosMeta::new(
                BTreeMap::from([("cluster".to_owned(), "faults".to_owned())]),
                0,
                "sidecar",
            );
            thanos.files = block_files(&block_dir);
            meta.thanos = Some(thanos);
            meta.write_to_dir(&block_dir).unwrap();
            metas.push(meta);
        }
        metas
    }

    /// The history as OpenMetrics text, for promtool.
    fn openmetrics(&self) -> String {
        let mut text = String::new();
        let family = self.metric.trim_end_matches("_total");
        let _ = writeln!(text, "# TYPE {family} counter");
        for series in 0..self.series {
            for (t, v) in self.samples(series, self.start_ms, self.end_ms()) {
                let _ = writeln!(
                    text,
                    "{}{{series=\"{}\"}} {v} {}.{:03}",
                    self.metric,
                    Self::series_label(series),
                    t / 1000,
                    t % 1000
                );
            }
        }
        text.push_str("# EOF\n");
        text
    }
}

/// The files of a block folder (but `meta.json`) with their sizes, as `thanos.files` lists them.
fn block_files(block_dir: &Path) -> Vec<ThanosFile> {
    let mut files = vec![ThanosFile {
        rel_path: "index".to_owned(),
        size_bytes: std::fs::metadata(block_dir.join("index")).unwrap().len() as i64,
        hash: None,
    }];
    for entry in std::fs::read_dir(block_dir.join("chunks")).unwrap() {
        let entry = entry.unwrap();
        files.push(ThanosFile {
            rel_path: format!("chunks/{}", entry.file_name().to_string_lossy()),
            size_bytes: entry.metadata().unwrap().len() as i64,
            hash: None,
        });
    }
    files.sort_by(|a, b| a.rel_path.cmp(&b.rel_path));
    files
}

/// The S3 objstore YAML for `endpoint`: one retry and a 2 s read timeout, so a fault shows
/// within seconds.
fn s3_objstore(endpoint: &str) -> String {
    format!(
        "type: S3\nconfig:\n  bucket: thanos\n  endpoint: {endpoint}\n  insecure: true\n  \
         access_key: {ACCESS_KEY}\n  secret_key: {SECRET_KEY}\n  max_retries: 1\n  \
         http_config:\n    response_header_timeout: 2s\n"
    )
}

/// A thanos-rs service on free ports.
struct Service {
    process: Process,
    http: SocketAddr,
    grpc: SocketAddr,
}

fn addresses() -> (SocketAddr, SocketAddr) {
    (
        format!("127.0.0.1:{}", free_port()).parse().unwrap(),
        format!("127.0.0.1:{}", free_port()).parse().unwrap(),
    )
}

/// The command of a thanos-rs binary on these addresses with `args`.
fn command(name: &str, http: SocketAddr, grpc: SocketAddr, args: &[String]) -> Command {
    let mut command = Command::new(binary(name).unwrap());
    command
        .arg(format!("--http-address={http}"))
        .arg(format!("--grpc-address={grpc}"))
        .arg("--http-grace-period=0s")
        .arg("--grpc-grace-period=0s")
        .arg("--log.level=info")
        .args(args);
    command
}

/// Starts `command` as `log_name` and waits for its `/-/ready`.
fn start_command(
    log_name: &str,
    command: Command,
    http: SocketAddr,
    grpc: SocketAddr,
    dir: &Path,
) -> Service {
    let mut process = Process::spawn(log_name, command, dir).unwrap();
    let ready = wait_until(
        &format!("{log_name} ready"),
        Duration::from_secs(60),
        || {
            matches!(http_get(http, "/-/ready"), Ok((200, _)))
                || matches!(process.try_wait(), Ok(Some(_)))
        },
    );
    if ready.is_err() || !matches!(process.try_wait(), Ok(None)) {
        process.print_log();
        panic!("{log_name} did not turn ready: {ready:?}");
    }
    Service {
        process,
        http,
        grpc,
    }
}

fn start(name: &str, args: &[String], dir: &Path) -> Service {
    let (http, grpc) = addresses();
    start_command(name, command(name, http, grpc, args), http, grpc, dir)
}

fn start_querier(store: SocketAddr, dir: &Path) -> Service {
    start(
        "querier",
        &[
            format!("--endpoint={store}"),
            "--query.timeout=2m".to_owned(),
        ],
        dir,
    )
}

fn get(addr: SocketAddr, path: &str) -> QueryAnswer {
    get_json(addr, path).unwrap()
}

/// An answer's matrix by `series` label (other labels must be `__name__` and external ones).
fn by_series(answer: &QueryAnswer) -> BTreeMap<String, Vec<(i64, f64)>> {
    answer
        .result()
        .iter()
        .map(|series| {
            let name = series["metric"]["series"]
                .as_str()
                .unwrap_or("?")
                .to_owned();
            (name, points(series))
        })
        .collect()
}

/// What one query during a fault gave.
#[derive(Debug, Clone, PartialEq)]
enum Outcome {
    /// The full answer, exactly (a warning may come with it).
    Exact,
    /// A partial answer with a warning.
    Warned(String),
    /// An error status.
    Failed(u16, String),
}

/// Judges `answer` against `expected`: exact, failed, or (with partial responses) shorter with a
/// warning. A shorter or different answer without a warning fails the test.
fn judge(
    what: &str,
    answer: &QueryAnswer,
    expected: &BTreeMap<String, Vec<(i64, f64)>>,
    partial: bool,
) -> Outcome {
    if !answer.is_success() {
        assert!(
            answer.status >= 400 && answer.json["status"] == "error",
            "{what}: neither success nor error: {} {}",
            answer.status,
            answer.json
        );
        let error = answer.json["error"].as_str().unwrap_or_default().to_owned();
        return Outcome::Failed(answer.status, error);
    }
    let got = by_series(answer);
    if &got == expected {
        return Outcome::Exact;
    }
    let warnings = answer.warnings();
    assert!(
        partial && !warnings.is_empty(),
        "{what}: a different answer without {}: {} series, {} samples instead of {} series, {} \
         samples; warnings {warnings:?}",
        if partial { "a warning" } else { "an error" },
        got.len(),
        got.values().map(Vec::len).sum::<usize>(),
        expected.len(),
        expected.values().map(Vec::len).sum::<usize>(),
    );
    Outcome::Warned(warnings.join("; "))
}

/// An outcome for the log: a long error cut to what failed (the store's status and the object)
/// and its last 100 characters (the cause).
fn short(outcome: &Outcome) -> String {
    let text = format!("{outcome:?}");
    let chars: Vec<char> = text.chars().collect();
    if chars.len() <= 260 {
        return text;
    }
    let start = text
        .find("desc = ")
        .map_or(0, |at| text[..at].chars().count());
    let head: String = chars[start..(start + 120).min(chars.len())]
        .iter()
        .collect();
    let tail: String = chars[chars.len() - 100..].iter().collect();
    format!("{head} ... {tail}")
}

/// Queries until the answer is exact without a warning (within `timeout`); returns how long it
/// took.
fn wait_exact(
    querier: SocketAddr,
    path: &str,
    expected: &BTreeMap<String, Vec<(i64, f64)>>,
    timeout: Duration,
) -> Duration {
    let started = Instant::now();
    let mut last = None;
    while started.elapsed() < timeout {
        let answer = get(querier, path);
        if answer.is_success() && answer.warnings().is_empty() && &by_series(&answer) == expected {
            return started.elapsed();
        }
        last = Some(answer.json);
        std::thread::sleep(Duration::from_millis(250));
    }
    panic!("no exact answer within {timeout:?}; last: {last:?}")
}

fn healthy(addr: SocketAddr) -> bool {
    matches!(http_get(addr, "/-/healthy"), Ok((200, _)))
}

/// How a bucket fault is made and ended.
#[derive(Debug, Clone, Copy)]
enum BucketFault {
    /// s3s-fs SIGKILLed, started again on the same port and folder.
    Killed,
    /// s3s-fs SIGSTOPped, then SIGCONTinued.
    Frozen,
    /// The proxy's fault.
    Proxy(Fault),
}

#[test]
fn bucket_faults_never_shorten_an_answer_silently() {
    let _serial = serial();
    let started = Instant::now();
    let work = tempfile::tempdir().unwrap();
    let mut s3 = S3sFs::start(ACCESS_KEY, SECRET_KEY).unwrap();
    s3.create_bucket("thanos").unwrap();
    let data = Data {
        metric: "faults_bucket_total",
        start_ms: (now_millis() - 12 * HOUR_MS) / BLOCK_MS * BLOCK_MS,
        blocks: 4,
        series: 20,
    };
    data.write_bucket_blocks(&s3.data_dir().join("thanos"));
    let proxy = FaultProxy::start(s3.addr()).unwrap();
    let store = start(
        "store-gateway",
        &[
            format!("--objstore.config={}", s3_objstore(&proxy.endpoint())),
            format!("--data-dir={}", work.path().join("store").display()),
            "--sync-block-duration=2s".to_owned(),
            "--index-cache-size=0".to_owned(),
        ],
        work.path(),
    );
    let querier = start_querier(store.grpc, work.path());
    let expected = data.expected();
    let path = data.raw_query("");
    let strict_path = data.raw_query("&partial_response=false");
    wait_exact(querier.http, &path, &expected, Duration::from_secs(60));
    eprintln!(
        "bucket faults: {} blocks x {} series served exactly after {:.1?}",
        data.blocks,
        data.series,
        started.elapsed()
    );

    // How many bytes one query reads from the bucket, for a bucket dying halfway through one.
    let before = proxy.bytes_down();
    wait_exact(querier.http, &path, &expected, Duration::from_secs(10));
    let query_bytes = proxy.bytes_down() - before;
    let faults = [
        ("s3s-fs killed", BucketFault::Killed),
        ("s3s-fs frozen (SIGSTOP)", BucketFault::Frozen),
        ("503 answers", BucketFault::Proxy(Fault::HttpStatus(503))),
        ("connections closed", BucketFault::Proxy(Fault::Close)),
        (
            "answers cut after 700 bytes",
            BucketFault::Proxy(Fault::CutAfter(700)),
        ),
        (
            "bucket closing everything halfway through a query",
            BucketFault::Proxy(Fault::CloseAfterTotal(query_bytes / 2)),
        ),
        ("bucket stalled", BucketFault::Proxy(Fault::Stall)),
        (
            "bucket slowed (25 ms per read)",
            BucketFault::Proxy(Fault::Delay(Duration::from_millis(25))),
        ),
    ];
    let mut passed = 0;
    for (name, fault) in faults {
        let began = Instant::now();
        let faulted_before = proxy.faulted();
        match fault {
            BucketFault::Killed => s3.stop(),
            BucketFault::Frozen => s3.process().signal("STOP").unwrap(),
            BucketFault::Proxy(fault) => proxy.set(fault),
        }
        let mut outcomes = Vec::new();
        for (partial, query) in [(true, &path), (false, &strict_path)] {
            let asked = Instant::now();
            let answer = get(querier.http, query);
            let outcome = judge(name, &answer, &expected, partial);
            eprintln!(
                "  {name}, partial_response={partial}: {} in {:.1?}",
                short(&outcome),
                asked.elapsed()
            );
            outcomes.push(outcome);
        }
        assert!(healthy(store.http), "{name}: store gateway unhealthy");
        assert!(healthy(querier.http), "{name}: querier unhealthy");
        match fault {
            BucketFault::Proxy(Fault::Delay(_)) => {
                assert!(
                    outcomes.iter().all(|outcome| *outcome == Outcome::Exact),
                    "{name}: a slow bucket must still answer exactly: {outcomes:?}"
                );
            }
            _ => {
                // The fault reached the queries: neither answered as if nothing happened, and
                // the strict one failed.
                assert!(
                    !outcomes.contains(&Outcome::Exact),
                    "{name}: the fault did not reach the query: {outcomes:?}"
                );
                assert!(
                    matches!(outcomes[1], Outcome::Failed(..)),
                    "{name}: without partial responses the query must fail: {outcomes:?}"
                );
            }
        }
        if let BucketFault::Proxy(
            Fault::Close | Fault::HttpStatus(_) | Fault::CutAfter(_) | Fault::CloseAfterTotal(_),
        ) = fault
        {
            assert!(
                proxy.faulted() > faulted_before,
                "{name}: no connection was faulted"
            );
        }
        match fault {
            BucketFault::Killed => s3.restart().unwrap(),
            BucketFault::Frozen => s3.process().signal("CONT").unwrap(),
            BucketFault::Proxy(_) => proxy.set(Fault::None),
        }
        let recovered = wait_exact(querier.http, &path, &expected, Duration::from_secs(60));
        let strict = get(querier.http, &strict_path);
        assert_eq!(judge(name, &strict, &expected, false), Outcome::Exact);
        passed += 1;
        eprintln!(
            "bucket fault {name}: passed in {:.1?} (exact again {recovered:.1?} after the bucket came back)",
            began.elapsed()
        );
    }
    assert_eq!(
        metric(store.http, "thanos_bucket_store_blocks_loaded"),
        Some(data.blocks as f64),
        "a bucket fault made the store gateway drop blocks"
    );
    eprintln!(
        "bucket faults: {passed} of {} passed, {} connections, {} faulted, {query_bytes} bytes \
         per query, in {:.1?}",
        faults.len(),
        proxy.accepted(),
        proxy.faulted(),
        started.elapsed()
    );
}

impl Data {
    /// The query path of block `block`'s raw samples alone, but its first [`BLOCK_MARGIN_MS`]
    /// (a store treats a block's exclusive end as inclusive, so a window reaching back to a
    /// block's start would touch the block before).
    fn block_query(&self, block: usize, extra: &str) -> String {
        let from = self.start_ms + block as i64 * BLOCK_MS;
        let time = from + BLOCK_MS - STEP_MS;
        query_path(
            &format!("{}[{}ms]", self.metric, time - from - BLOCK_MARGIN_MS),
            time,
            extra,
        )
    }

    /// Block `block`'s samples of every series.
    fn block_all(&self, block: usize) -> BTreeMap<String, Vec<(i64, f64)>> {
        let from = self.start_ms + block as i64 * BLOCK_MS;
        (0..self.series)
            .map(|i| {
                (
                    Self::series_label(i),
                    self.samples(i, from, from + BLOCK_MS),
                )
            })
            .collect()
    }

    /// What [`Data::block_query`] answers: block `block`'s samples of every series but its first
    /// [`BLOCK_MARGIN_MS`].
    fn block_expected(&self, block: usize) -> BTreeMap<String, Vec<(i64, f64)>> {
        let from = self.start_ms + block as i64 * BLOCK_MS;
        (0..self.series)
            .map(|i| {
                (
                    Self::series_label(i),
                    self.samples(i, from + BLOCK_MARGIN_MS + 1, from + BLOCK_MS),
                )
            })
            .collect()
    }
}

fn truncate_to_half(path: &Path) -> u64 {
    let size = std::fs::metadata(path).unwrap().len();
    let file = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    file.set_len(size / 2).unwrap();
    size
}

#[test]
fn a_deleted_and_a_corrupted_block_fail_loudly_while_the_rest_is_served() {
    let _serial = serial();
    let started = Instant::now();
    let work = tempfile::tempdir().unwrap();
    let s3 = S3sFs::start(ACCESS_KEY, SECRET_KEY).unwrap();
    s3.create_bucket("thanos").unwrap();
    let bucket = s3.data_dir().join("thanos");
    let data = Data {
        metric: "faults_damaged_total",
        start_ms: (now_millis() - 12 * HOUR_MS) / BLOCK_MS * BLOCK_MS,
        blocks: 6,
        series: 20,
    };
    let metas = data.write_bucket_blocks(&bucket);
    let store_dir = work.path().join("store");
    // Syncs every 10 s: the damage is done right after one, so the queries before the next one
    // see the store gateway still serving the deleted block.
    let store = start(
        "store-gateway",
        &[
            format!("--objstore.config={}", s3_objstore(&s3.endpoint())),
            format!("--data-dir={}", store_dir.display()),
            "--sync-block-duration=10s".to_owned(),
            "--index-cache-size=0".to_owned(),
        ],
        work.path(),
    );
    let querier = start_querier(store.grpc, work.path());
    let full = data.expected();
    wait_exact(
        querier.http,
        &data.raw_query(""),
        &full,
        Duration::from_secs(60),
    );
    for block in 0..data.blocks {
        let answer = get(querier.http, &data.block_query(block, ""));
        assert_eq!(
            judge("before", &answer, &data.block_expected(block), false),
            Outcome::Exact
        );
    }

    // Block 1 deleted, block 2's chunk file and block 3's index truncated to half, right after a
    // sync.
    // Block 4's chunk file loses its last 40 bytes: the last chunk's end and checksum, inside
    // a range the store gateway reads (a ranged read past an object's end returns what there
    // is, so only the store gateway can notice the missing bytes).
    // Block 5's chunk file has one byte changed in the middle (same size: only the chunk's
    // checksum tells).
    let (deleted, chunk_damaged, index_damaged, chunk_end_cut, flipped) = (1, 2, 3, 4, 5);
    let id = |block: usize| metas[block].ulid.to_string();
    let chunk_file = bucket.join(id(chunk_damaged)).join("chunks/000001");
    let index_file = bucket.join(id(index_damaged)).join("index");
    let chunk_end_file = bucket.join(id(chunk_end_cut)).join("chunks/000001");
    let flipped_file = bucket.join(id(flipped)).join("chunks/000001");
    let originals = [
        (chunk_file.clone(), std::fs::read(&chunk_file).unwrap()),
        (index_file.clone(), std::fs::read(&index_file).unwrap()),
        (
            chunk_end_file.clone(),
            std::fs::read(&chunk_end_file).unwrap(),
        ),
        (flipped_file.clone(), std::fs::read(&flipped_file).unwrap()),
    ];
    let syncs = metric(store.http, "thanos_blocks_meta_syncs_total").unwrap();
    wait_until("a store gateway sync", Duration::from_secs(30), || {
        metric(store.http, "thanos_blocks_meta_syncs_total").is_some_and(|n| n > syncs)
    })
    .unwrap();
    // The counter goes up when a sync starts; it lists six blocks in well under a second.
    let damaged_at = Instant::now();
    std::thread::sleep(Duration::from_secs(1));
    std::fs::remove_dir_all(bucket.join(id(deleted))).unwrap();
    truncate_to_half(&chunk_file);
    truncate_to_half(&index_file);
    let chunk_end_size = std::fs::metadata(&chunk_end_file).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&chunk_end_file)
        .unwrap()
        .set_len(chunk_end_size - 40)
        .unwrap();
    let mut bytes = std::fs::read(&flipped_file).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x10;
    std::fs::write(&flipped_file, bytes).unwrap();

    let mut outcomes = Vec::new();
    for (partial, extra) in [(true, ""), (false, "&partial_response=false")] {
        let answer = get(querier.http, &data.raw_query(extra));
        let outcome = judge("whole range over damaged blocks", &answer, &full, partial);
        assert_ne!(outcome, Outcome::Exact, "damage did not show: {outcome:?}");
        if !partial {
            assert!(matches!(outcome, Outcome::Failed(..)), "{outcome:?}");
        }
        outcomes.push(format!(
            "whole range, partial_response={partial}: {outcome:?}"
        ));
        for block in 0..data.blocks {
            let answer = get(querier.http, &data.block_query(block, extra));
            let what = format!("block {block} alone, partial_response={partial}");
            let outcome = judge(&what, &answer, &data.block_expected(block), partial);
            if block == 0 {
                assert_eq!(outcome, Outcome::Exact, "{what}: the intact block");
            } else {
                assert_ne!(outcome, Outcome::Exact, "{what}: damage did not show");
                if !partial {
                    assert!(
                        matches!(outcome, Outcome::Failed(..)),
                        "{what}: {outcome:?}"
                    );
                }
            }
            outcomes.push(format!("{what}: {}", short(&outcome)));
        }
        assert!(healthy(store.http), "store gateway unhealthy");
    }
    let before_resync = damaged_at.elapsed();
    assert!(
        before_resync < Duration::from_secs(9),
        "the queries took {before_resync:?}: a sync may have come between"
    );
    for outcome in &outcomes {
        eprintln!("  {outcome}");
    }

    // The next sync drops the deleted block (its local files too) and keeps the others.
    wait_until("the deleted block dropped", Duration::from_secs(30), || {
        metric(store.http, "thanos_bucket_store_block_drops_total") == Some(1.0)
    })
    .unwrap();
    assert_eq!(
        metric(store.http, "thanos_bucket_store_blocks_loaded"),
        Some(5.0)
    );
    assert!(
        !store_dir.join(id(deleted)).exists(),
        "local files of the dropped block remain"
    );
    let gone = get(
        querier.http,
        &data.block_query(deleted, "&partial_response=false"),
    );
    assert_eq!(
        judge("dropped block", &gone, &BTreeMap::new(), false),
        Outcome::Exact
    );
    let intact = get(
        querier.http,
        &data.block_query(0, "&partial_response=false"),
    );
    assert_eq!(
        judge("block 0", &intact, &data.block_expected(0), false),
        Outcome::Exact
    );
    for block in [chunk_damaged, index_damaged, chunk_end_cut, flipped] {
        let answer = get(
            querier.http,
            &data.block_query(block, "&partial_response=false"),
        );
        let outcome = judge(
            "damaged block after the resync",
            &answer,
            &data.block_expected(block),
            false,
        );
        assert!(
            matches!(outcome, Outcome::Failed(..)),
            "block {block}: {outcome:?}"
        );
    }
    assert!(healthy(store.http), "store gateway unhealthy");

    // Repaired files are served again, exactly; the whole range is the history without the
    // deleted block.
    for (path, bytes) in &originals {
        std::fs::write(path, bytes).unwrap();
    }
    let repaired = wait_exact(
        querier.http,
        &data.raw_query("&partial_response=false"),
        &data.expected_without(&[deleted]),
        Duration::from_secs(30),
    );
    eprintln!(
        "deleted and corrupted blocks: passed in {:.1?} ({} queries during the damage, exact {repaired:.1?} after the repair)",
        started.elapsed(),
        outcomes.len()
    );
}

/// The blocks of a TSDB folder: ULID → folder.
fn local_blocks(tsdb: &Path) -> BTreeMap<String, PathBuf> {
    std::fs::read_dir(tsdb)
        .unwrap()
        .flatten()
        .filter(|entry| entry.file_name().len() == 26 && entry.path().join("meta.json").is_file())
        .map(|entry| {
            (
                entry.file_name().to_string_lossy().into_owned(),
                entry.path(),
            )
        })
        .collect()
}

/// What the bucket looked like at one check.
#[derive(Debug, Default, Clone, Copy)]
struct BucketView {
    complete: usize,
    partial: usize,
}

/// Watches a bucket folder while a sidecar uploads into it: every top-level entry is a local
/// block; a block with `meta.json` has every file of the local block, whole and equal; a
/// `meta.json` once seen never changes (a block is uploaded at most once).
struct BucketWatch {
    bucket: PathBuf,
    local: BTreeMap<String, PathBuf>,
    metas: BTreeMap<String, Vec<u8>>,
}

impl BucketWatch {
    fn check(&mut self) -> Result<BucketView, String> {
        let mut view = BucketView::default();
        let Ok(entries) = std::fs::read_dir(&self.bucket) else {
            return Ok(view);
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(local) = self.local.get(&name) else {
                return Err(format!("unexpected object {name} in the bucket"));
            };
            let meta_path = entry.path().join("meta.json");
            let Ok(meta) = std::fs::read(&meta_path) else {
                view.partial += 1;
                continue;
            };
            let parsed = BlockMeta::from_json(&meta, &meta_path.display().to_string())
                .map_err(|error| format!("{name}: meta.json: {error}"))?;
            let thanos = parsed
                .thanos
                .as_ref()
                .ok_or_else(|| format!("{name}: meta.json without a thanos section"))?;
            let mut wanted = vec!["index".to_owned()];
            for chunk in std::fs::read_dir(local.join("chunks")).unwrap().flatten() {
                wanted.push(format!("chunks/{}", chunk.file_name().to_string_lossy()));
            }
            for file in &wanted {
                let local_size = std::fs::metadata(local.join(file)).unwrap().len();
                let remote_size = std::fs::metadata(entry.path().join(file)).map(|m| m.len());
                if remote_size.as_ref().ok() != Some(&local_size) {
                    return Err(format!(
                        "{name}: meta.json present but {file} is {remote_size:?} bytes, not {local_size}"
                    ));
                }
                let listed = thanos.files.iter().any(|listed| {
                    listed.rel_path == *file && listed.size_bytes as u64 == local_size
                });
                if !listed {
                    return Err(format!(
                        "{name}: meta.json does not list {file} ({local_size} bytes)"
                    ));
                }
            }
            match self.metas.get(&name) {
                Some(first) if *first != meta => {
                    return Err(format!(
                        "{name}: meta.json changed: the block was uploaded again"
                    ));
                }
                Some(_) => {}
                None => {
                    self.metas.insert(name, meta);
                }
            }
            view.complete += 1;
        }
        Ok(view)
    }

    /// At the end: every local block is complete in the bucket and its files equal the local
    /// ones byte for byte.
    fn check_final(&mut self) -> Result<(), String> {
        let view = self.check()?;
        if view.complete != self.local.len() || view.partial != 0 {
            return Err(format!("{view:?} of {} blocks", self.local.len()));
        }
        for (name, local) in &self.local {
            let remote = self.bucket.join(name);
            let mut files = vec!["index".to_owned()];
            for chunk in std::fs::read_dir(local.join("chunks")).unwrap().flatten() {
                files.push(format!("chunks/{}", chunk.file_name().to_string_lossy()));
            }
            for file in files {
                if std::fs::read(local.join(&file)).ok() != std::fs::read(remote.join(&file)).ok() {
                    return Err(format!("{name}/{file} differs from the local file"));
                }
            }
        }
        Ok(())
    }
}

/// Each block's samples of a querier answer are all there or not at all, and nothing else is:
/// returns how many blocks were visible.
fn whole_blocks_only(answer: &QueryAnswer, data: &Data) -> Result<usize, String> {
    // Before the store gateway loaded a block, it matches no query: an empty answer that says so.
    let nothing_loaded =
        answer.result().is_empty() && answer.warnings() == ["No StoreAPIs matched for this query"];
    if !answer.is_success() || !(answer.warnings().is_empty() || nothing_loaded) {
        return Err(format!("query failed or warned: {}", answer.json));
    }
    let got = by_series(answer);
    let mut visible = BTreeSet::new();
    for block in 0..data.blocks {
        let expected = data.block_all(block);
        let from = data.start_ms + block as i64 * BLOCK_MS;
        let mut present = 0;
        for (series, samples) in &expected {
            let in_block: Vec<(i64, f64)> = got
                .get(series)
                .map(|all| {
                    all.iter()
                        .copied()
                        .filter(|(t, _)| *t >= from && *t < from + BLOCK_MS)
                        .collect()
                })
                .unwrap_or_default();
            if in_block == *samples {
                present += 1;
            } else if !in_block.is_empty() {
                return Err(format!(
                    "block {block}, series {series}: {} of {} samples",
                    in_block.len(),
                    samples.len()
                ));
            }
        }
        match present {
            0 => {}
            n if n == expected.len() => {
                visible.insert(block);
            }
            n => return Err(format!("block {block}: {n} of {} series", expected.len())),
        }
    }
    let total: usize = got.values().map(Vec::len).sum();
    let expected_total: usize = visible
        .iter()
        .map(|b| data.block_all(*b).values().map(Vec::len).sum::<usize>())
        .sum();
    if total != expected_total {
        return Err(format!(
            "{total} samples, {expected_total} in the visible blocks {visible:?}"
        ));
    }
    Ok(visible.len())
}

/// How many files the bucket folder holds, at any depth.
fn bucket_files(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|entry| {
                    if entry.path().is_dir() {
                        bucket_files(&entry.path())
                    } else {
                        1
                    }
                })
                .sum()
        })
        .unwrap_or(0)
}

/// A tiny xorshift generator: the kill moments, from a printed seed.
struct Random(u64);

impl Random {
    fn below(&mut self, bound: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % bound
    }
}

/// A Prometheus with `data`'s history as promtool blocks, plus the store gateway and querier
/// over the bucket.
struct ShippingSetup {
    work: tempfile::TempDir,
    s3: S3sFs,
    data: Data,
    tsdb: PathBuf,
    prometheus: Prometheus,
    store: Service,
    querier: Service,
}

impl ShippingSetup {
    fn start(metric: &'static str, blocks: usize) -> Self {
        let work = tempfile::tempdir().unwrap();
        let s3 = S3sFs::start(ACCESS_KEY, SECRET_KEY).unwrap();
        s3.create_bucket("thanos").unwrap();
        let data = Data {
            metric,
            start_ms: (now_millis() - (blocks as i64 + 3) * BLOCK_MS) / BLOCK_MS * BLOCK_MS,
            blocks,
            series: 10,
        };
        let tsdb = work.path().join("prometheus");
        std::fs::create_dir_all(&tsdb).unwrap();
        let input = work.path().join("history.om");
        std::fs::write(&input, data.openmetrics()).unwrap();
        let output = Command::new(promtool().unwrap())
            .args(["tsdb", "create-blocks-from", "openmetrics"])
            .arg(&input)
            .arg(&tsdb)
            .output()
            .unwrap();
        assert!(output.status.success(), "promtool: {output:?}");
        assert_eq!(local_blocks(&tsdb).len(), blocks, "promtool's blocks");
        let prometheus = Prometheus::start(PrometheusConfig {
            external_labels: vec![("replica".to_owned(), "k".to_owned())],
            data_dir: Some(tsdb.clone()),
            ..PrometheusConfig::default()
        })
        .unwrap();
        let store = start(
            "store-gateway",
            &[
                format!("--objstore.config={}", s3_objstore(&s3.endpoint())),
                format!("--data-dir={}", work.path().join("store").display()),
                "--sync-block-duration=1s".to_owned(),
            ],
            work.path(),
        );
        let querier = start_querier(store.grpc, work.path());
        Self {
            work,
            s3,
            data,
            tsdb,
            prometheus,
            store,
            querier,
        }
    }

    fn sidecar_args(&self, bucket_endpoint: &str) -> Vec<String> {
        vec![
            format!("--prometheus.url={}", self.prometheus.url()),
            format!("--tsdb.path={}", self.tsdb.display()),
            format!("--objstore.config={}", s3_objstore(bucket_endpoint)),
            "--shipper.sync-interval=1s".to_owned(),
            "--prometheus.get_config_interval=1s".to_owned(),
        ]
    }

    fn watch(&self) -> BucketWatch {
        BucketWatch {
            bucket: self.s3.data_dir().join("thanos"),
            local: local_blocks(&self.tsdb),
            metas: BTreeMap::new(),
        }
    }

    /// The blocks recorded in the sidecar's shipper file.
    fn shipped(&self) -> usize {
        std::fs::read(self.tsdb.join("thanos.shipper.json"))
            .ok()
            .and_then(|bytes| serde_json::from_slice::<Value>(&bytes).ok())
            .and_then(|file| file["uploaded"].as_array().map(Vec::len))
            .unwrap_or(0)
    }

    /// After the uploads: the store gateway serves every block, and the querier answers exactly
    /// what Prometheus answers (and what was written), without a warning.
    fn check_answers_equal_prometheus(&self) {
        wait_until(
            "the store gateway to load every block",
            Duration::from_secs(60),
            || {
                metric(self.store.http, "thanos_bucket_store_blocks_loaded")
                    == Some(self.data.blocks as f64)
            },
        )
        .unwrap();
        let path = self.data.raw_query("&partial_response=false");
        let own = get(self.prometheus.addr(), &path);
        assert!(own.is_success(), "{}", own.json);
        assert_eq!(
            by_series(&own),
            self.data.expected(),
            "Prometheus' own answer"
        );
        wait_exact(
            self.querier.http,
            &path,
            &by_series(&own),
            Duration::from_secs(30),
        );
        let answer = get(self.querier.http, &path);
        for series in answer.result() {
            let labels: BTreeSet<&str> = series["metric"]
                .as_object()
                .unwrap()
                .keys()
                .map(String::as_str)
                .collect();
            assert_eq!(
                labels,
                BTreeSet::from(["__name__", "replica", "series"]),
                "{series}"
            );
        }
    }
}

#[test]
fn a_sidecar_killed_while_uploading_loses_and_doubles_nothing() {
    const ITERATIONS: usize = 8;
    let _serial = serial();
    let started = Instant::now();
    let setup = ShippingSetup::start("faults_shipped_total", 8);
    // The sidecar uploads through a proxy that slows every read and write, so a block takes
    // about a second to upload and the kills land in the middle of uploads.
    let proxy = FaultProxy::start(setup.s3.addr()).unwrap();
    proxy.set(Fault::Delay(Duration::from_millis(150)));
    let args = setup.sidecar_args(&proxy.endpoint());
    let seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(1, |elapsed| elapsed.as_nanos() as u64)
        | 1;
    let mut random = Random(seed);

    // The checker: the bucket and the querier, every 100 ms, until told to stop.
    let stop = Arc::new(AtomicBool::new(false));
    let checker = {
        let stop = Arc::clone(&stop);
        let mut watch = setup.watch();
        let querier = setup.querier.http;
        let store = setup.store.http;
        let data = setup.data.clone();
        let path = data.raw_query("&partial_response=false");
        std::thread::spawn(move || {
            let (mut checks, mut partial_seen, mut most_visible, mut hidden_partial) =
                (0, 0, 0, 0.0f64);
            while !stop.load(Ordering::Relaxed) {
                let view = watch.check()?;
                partial_seen = partial_seen.max(view.partial);
                let answer = get(querier, &path);
                most_visible = most_visible.max(whole_blocks_only(&answer, &data)?);
                if let Some(n) = metric(store, "thanos_blocks_meta_synced{state=\"no-meta-json\"}")
                {
                    hidden_partial = hidden_partial.max(n);
                }
                checks += 1;
                std::thread::sleep(Duration::from_millis(100));
            }
            Ok::<_, String>((checks, partial_seen, most_visible, hidden_partial, watch))
        })
    };

    let mut kills = Vec::new();
    let mut probe = setup.watch();
    let bucket = setup.s3.data_dir().join("thanos");
    for iteration in 0..ITERATIONS {
        let (http, grpc) = addresses();
        let mut sidecar = Process::spawn(
            &format!("sidecar.{iteration}"),
            command("sidecar", http, grpc, &args),
            setup.work.path(),
        )
        .unwrap();
        // Odd iterations kill at a random moment; even ones the moment an object of a block
        // without meta.json lands in the bucket (so some kills surely fall inside an upload).
        let spawned = Instant::now();
        let files_before = bucket_files(&bucket);
        let mid_upload = iteration % 2 == 0;
        if mid_upload {
            let deadline = spawned + Duration::from_secs(8);
            while Instant::now() < deadline
                && !(bucket_files(&bucket) > files_before && probe.check().unwrap().partial > 0)
            {
                std::thread::sleep(Duration::from_millis(10));
            }
        } else {
            std::thread::sleep(Duration::from_millis(300 + random.below(3_000)));
        }
        let after = spawned.elapsed();
        sidecar.kill();
        // What the proxy still held of the dead sidecar's requests reaches the bucket.
        std::thread::sleep(Duration::from_millis(400));
        let view = probe.check().unwrap();
        kills.push((after, view));
    }
    let killed_mid_upload = kills.iter().filter(|(_, view)| view.partial > 0).count();
    let before_final = probe.check().unwrap().complete;

    // The last start runs to the end.
    proxy.set(Fault::None);
    let (http, grpc) = addresses();
    let sidecar = start_command(
        "sidecar.final",
        command("sidecar", http, grpc, &args),
        http,
        grpc,
        setup.work.path(),
    );
    wait_until("every block shipped", Duration::from_secs(90), || {
        setup.shipped() == setup.data.blocks
    })
    .unwrap();
    setup.check_answers_equal_prometheus();
    stop.store(true, Ordering::Relaxed);
    let (checks, partial_seen, most_visible, hidden_partial, mut watch) = checker
        .join()
        .unwrap()
        .unwrap_or_else(|violation| panic!("{violation}"));
    watch.check_final().unwrap();
    // Only the blocks not complete before were uploaded by the last run.
    assert_eq!(
        metric(sidecar.http, "thanos_shipper_uploads_total"),
        Some((setup.data.blocks - before_final) as f64)
    );
    eprintln!(
        "sidecar kills (seed {seed}): {}",
        kills
            .iter()
            .map(|(after, view)| format!("{after:.1?}: {}+{} partial", view.complete, view.partial))
            .collect::<Vec<_>>()
            .join(", ")
    );
    eprintln!(
        "sidecar killed {ITERATIONS} times ({killed_mid_upload} in the middle of a block): {checks} checks, \
         up to {partial_seen} partial blocks in the bucket and {hidden_partial} without meta.json \
         in the store gateway, up to {most_visible} blocks visible; {before_final} of {} complete \
         before the last start; passed in {:.1?}",
        setup.data.blocks,
        started.elapsed()
    );
    assert!(
        killed_mid_upload >= 1,
        "no kill landed in the middle of an upload: {kills:?}"
    );
    drop(sidecar);
}

/// `command` run with `dir` on a tmpfs of `size_kib` KiB that only this process sees (a private
/// user and mount namespace: no root needed, and the mount goes away with the process), filled
/// but for `room_kib` KiB by a file `filler`. The process keeps its pid (`unshare` and `sh`
/// exec it), so killing it ends the mount too.
fn on_tiny_disk(command: &Command, dir: &Path, size_kib: u64, room_kib: u64) -> Command {
    std::fs::create_dir_all(dir).unwrap();
    let mut wrapped = Command::new(require_program("unshare").unwrap());
    wrapped
        .args(["--user", "--map-root-user", "--mount", "sh", "-c"])
        .arg(format!(
            "mount -t tmpfs -o size={size_kib}k tmpfs \"$1\" && \
             head -c {} /dev/zero > \"$1/filler\" && shift && exec \"$@\"",
            (size_kib - room_kib) * 1024
        ))
        .arg("sh")
        .arg(dir)
        .arg(command.get_program())
        .args(command.get_args());
    wrapped
}

/// Frees the tiny disk of [`on_tiny_disk`] from outside, through the process' own view of the
/// file system.
fn free_tiny_disk(pid: u32, dir: &Path) {
    let filler = PathBuf::from(format!("/proc/{pid}/root{}/filler", dir.display()));
    std::fs::remove_file(&filler)
        .unwrap_or_else(|error| panic!("remove {}: {error}", filler.display()));
}

#[test]
fn a_full_disk_stops_nothing_and_loses_nothing() {
    let _serial = serial();
    let started = Instant::now();

    // The store gateway's data folder (index-headers) on a full disk.
    let work = tempfile::tempdir().unwrap();
    let s3 = S3sFs::start(ACCESS_KEY, SECRET_KEY).unwrap();
    s3.create_bucket("thanos").unwrap();
    let data = Data {
        metric: "faults_disk_total",
        start_ms: (now_millis() - 12 * HOUR_MS) / BLOCK_MS * BLOCK_MS,
        blocks: 4,
        series: 20,
    };
    data.write_bucket_blocks(&s3.data_dir().join("thanos"));
    let store_dir = work.path().join("store");
    let (http, grpc) = addresses();
    let store_command = command(
        "store-gateway",
        http,
        grpc,
        &[
            format!("--objstore.config={}", s3_objstore(&s3.endpoint())),
            format!("--data-dir={}", store_dir.display()),
            "--sync-block-duration=1s".to_owned(),
        ],
    );
    let store = start_command(
        "store-gateway",
        on_tiny_disk(&store_command, &store_dir, 64, 4),
        http,
        grpc,
        work.path(),
    );
    let querier = start_querier(store.grpc, work.path());
    wait_until("failed block loads", Duration::from_secs(30), || {
        metric(store.http, "thanos_bucket_store_block_load_failures_total")
            .is_some_and(|n| n >= 2.0)
    })
    .unwrap();
    let loaded = metric(store.http, "thanos_bucket_store_blocks_loaded").unwrap();
    assert!(
        loaded < data.blocks as f64,
        "{loaded} blocks loaded on a full disk"
    );
    assert!(
        healthy(store.http),
        "store gateway unhealthy on a full disk"
    );
    let answer = get(querier.http, &data.raw_query(""));
    // The blocks whose index-header could not be written are not served; what is served is
    // whole blocks, exactly, and a warning names each block missing.
    let missing_warnings = answer
        .warnings()
        .iter()
        .filter(|warning| warning.contains("could not be loaded"))
        .count();
    let mut unwarned = answer.clone();
    unwarned.json["warnings"] = serde_json::Value::Array(Vec::new());
    let visible = whole_blocks_only(&unwarned, &data).unwrap();
    assert_eq!(visible as f64, loaded, "blocks answered");
    assert_eq!(
        missing_warnings as f64,
        data.blocks as f64 - loaded,
        "a shorter answer must say which blocks are missing: {:?}",
        answer.warnings()
    );
    let strict = get(querier.http, &data.raw_query("&partial_response=false"));
    assert!(
        !strict.is_success() && strict.json.to_string().contains("could not be loaded"),
        "without partial responses the answer must fail: status {} error {}",
        strict.status,
        strict.json["error"]
    );
    eprintln!(
        "disk full under the store gateway: {loaded} of {} blocks loaded, {visible} answered (warnings {:?})",
        data.blocks,
        answer.warnings()
    );
    free_tiny_disk(store.process.pid(), &store_dir);
    let recovered = wait_exact(
        querier.http,
        &data.raw_query("&partial_response=false"),
        &data.expected(),
        Duration::from_secs(30),
    );
    assert!(healthy(store.http));
    eprintln!(
        "disk full under the store gateway: passed in {:.1?} (exact {recovered:.1?} after the disk was freed)",
        started.elapsed()
    );
    drop(querier);
    drop(store);
    drop(s3);

    // The sidecar's upload staging folder (`<tsdb>/thanos`) on a full disk.
    let began = Instant::now();
    let setup = ShippingSetup::start("faults_staged_total", 4);
    let staging = setup.tsdb.join("thanos");
    let (http, grpc) = addresses();
    let sidecar_command = command(
        "sidecar",
        http,
        grpc,
        &setup.sidecar_args(&setup.s3.endpoint()),
    );
    let sidecar = start_command(
        "sidecar",
        on_tiny_disk(&sidecar_command, &staging, 64, 4),
        http,
        grpc,
        setup.work.path(),
    );
    wait_until("failed uploads", Duration::from_secs(30), || {
        metric(sidecar.http, "thanos_shipper_upload_failures_total").is_some_and(|n| n >= 2.0)
    })
    .unwrap();
    assert!(healthy(sidecar.http), "sidecar unhealthy on a full disk");
    let mut watch = setup.watch();
    let view = watch.check().unwrap();
    assert_eq!(
        view.partial, 0,
        "a block without meta.json in the bucket: {view:?}"
    );
    let answer = get(setup.querier.http, &setup.data.raw_query(""));
    whole_blocks_only(&answer, &setup.data).unwrap();
    let uploaded_while_full = metric(sidecar.http, "thanos_shipper_uploads_total").unwrap_or(0.0);
    free_tiny_disk(sidecar.process.pid(), &staging);
    wait_until("every block shipped", Duration::from_secs(60), || {
        setup.shipped() == setup.data.blocks
    })
    .unwrap();
    watch.check_final().unwrap();
    // One sidecar process throughout: each block was uploaded exactly once.
    assert_eq!(
        metric(sidecar.http, "thanos_shipper_uploads_total"),
        Some(setup.data.blocks as f64)
    );
    setup.check_answers_equal_prometheus();
    eprintln!(
        "disk full under the sidecar's staging folder: {uploaded_while_full} of {} blocks uploaded while full, \
         {} upload failures; passed in {:.1?}; disk scenarios {:.1?}",
        setup.data.blocks,
        metric(sidecar.http, "thanos_shipper_upload_failures_total").unwrap_or(0.0),
        began.elapsed(),
        started.elapsed()
    );
}
