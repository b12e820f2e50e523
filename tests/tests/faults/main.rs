//! Faults with nothing lost (issue #24): real programs under bucket, process and disk faults.
//!
//! - **Bucket faults** under a running store gateway and querier: the S3 server (s3s-fs) killed
//!   or frozen with SIGSTOP, and, through [`FaultProxy`] in front of it, 503 answers, closed
//!   connections, answers cut mid-body, a stall and a slow-down. Each query during a fault
//!   answers exactly the full answer taken before, or fails, or (partial responses on) warns;
//!   never a shorter answer without a warning. Once the bucket is back the answer is exact again.
//! - **The same on Azure** (Azurite frozen, 503s, closed connections, cut answers).
//! - **The compactor** SIGKILLed at random moments 24 times, and run under bucket faults
//!   mid-compaction: every block with `meta.json` whole, every source block's data visible
//!   exactly once, and at the end the gap-free union of two replicas with different gaps.
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

mod azure;
mod bucket;
mod compactor;
mod damaged;
mod disk;
mod restarts;
mod sidecar;

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
use tsdb_block::meta::{BlockMeta, ThanosMeta};
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
            thanos.files = e2e::blocks::thanos_files(&block_dir).unwrap();
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

/// A bucket on a fresh s3s-fs holding `blocks` 2h blocks of 20 series of `metric`, ending at
/// least 2h ago, with a work folder; the blocks' metas in order.
fn s3_with_blocks(
    metric: &'static str,
    blocks: usize,
) -> (tempfile::TempDir, S3sFs, Data, Vec<BlockMeta>) {
    let work = tempfile::tempdir().unwrap();
    let s3 = S3sFs::start(ACCESS_KEY, SECRET_KEY).unwrap();
    s3.create_bucket("thanos").unwrap();
    let data = Data {
        metric,
        start_ms: (now_millis() - 12 * HOUR_MS) / BLOCK_MS * BLOCK_MS,
        blocks,
        series: 20,
    };
    let metas = data.write_bucket_blocks(&s3.data_dir().join("thanos"));
    (work, s3, data, metas)
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
