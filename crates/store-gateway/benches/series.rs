//! `make bench`: the real store gateway binary over a filesystem bucket of 20 blocks (2 h each,
//! 50k series each: 50 metrics × 1000 Kubernetes-like pods, one sample every 30 s, Thanos
//! meta with external labels), written with tsdb-block's `BlockWriter` and kept under
//! `target/bench-data/` so that reruns skip the generation.
//!
//! Prints, for a 1k-series and a 50k-series selector over all blocks: `Series()` latency (cold,
//! min, median), bucket requests per query (from `thanos_objstore_bucket_operations_total`),
//! resident memory at rest and peak resident memory during the call (`VmRSS` sampled every
//! 2 ms). Then the resident memory at rest of gateways over 0, 10 and 20 blocks next to the size
//! of their index-headers on disk.
//!
//! `SERIES_BENCH_WRAPPER` names a program (with arguments) to start the gateway under, e.g.
//! `heaptrack -o /tmp/gateway` for a heap profile.
//!
//! Targets (issue #4): memory at rest grows with the number of blocks by no more than the
//! blocks' index-header size; a 50k-series call stays under 256 MiB of extra resident memory.

#![allow(
    clippy::print_stdout,
    clippy::unwrap_used,
    clippy::expect_used,
    missing_docs
)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use prom_model::Labels;
use storeapi::StoreClient;
use storeapi::proto::thanos::{self, label_matcher::Type as MatcherType, series_response};
use test_harness::process::workspace_root;
use test_harness::{Process, free_port, http_get, wait_until};
use tsdb_block::meta::{ThanosFile, ThanosMeta};
use tsdb_block::writer::{BlockWriter, symbols_of};
use ulid::Ulid;

const BLOCKS: usize = 20;
const METRICS: usize = 50;
const PODS: usize = 1000;
const BLOCK_MS: i64 = 2 * 3600 * 1000;
const SCRAPE_MS: i64 = 30_000;
/// Start of the first block (aligned to 2 h).
const START_MS: i64 = 1_699_999_200_000;
/// Changes whenever the generated data changes, so that a stale cache is rebuilt.
const DATA_VERSION: &str = "series-bench v1: 20 blocks, 50 metrics x 1000 pods, 30s";
/// Index cache size given to the gateway (`SERIES_BENCH_INDEX_CACHE` overrides): small, so that
/// resident memory shows the query.
const INDEX_CACHE_SIZE: &str = "32MB";

fn index_cache_size() -> String {
    std::env::var("SERIES_BENCH_INDEX_CACHE").unwrap_or_else(|_| INDEX_CACHE_SIZE.to_owned())
}
const TARGET_EXTRA_RSS: u64 = 256 * 1024 * 1024;

fn data_root() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| workspace_root().join("target"), PathBuf::from);
    target.join("bench-data").join("store-gateway-series")
}

/// A small deterministic generator (xorshift64*).
struct Random(u64);

impl Random {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

fn pod_labels(metric: usize, pod: usize) -> Labels {
    let containers = ["app", "db", "init", "proxy", "sidecar"];
    let app = pod / 25;
    let mut random = Random(0x9E37_79B9_7F4A_7C15 ^ (pod as u64 + 1));
    Labels::from_pairs([
        ("__name__", format!("bench_metric_{metric:02}_total")),
        ("container", containers[pod % containers.len()].to_owned()),
        (
            "instance",
            format!(
                "10.{}.{}.{}:8080",
                pod / 256 / 256,
                (pod / 256) % 256,
                pod % 256
            ),
        ),
        ("job", "kubernetes-pods".to_owned()),
        ("namespace", format!("team-{:02}", app % 20)),
        (
            "pod",
            format!("app-{app:02}-{:08x}-{:05x}", random.next() as u32, pod),
        ),
        (
            "uid",
            format!(
                "{:08x}-{:04x}-{:04x}-{:012x}",
                random.next() as u32,
                random.next() as u16,
                random.next() as u16,
                random.next() & 0xFFFF_FFFF_FFFF
            ),
        ),
    ])
}

fn write_block(bucket: &Path, index: usize, external: &BTreeMap<String, String>) {
    let min_time = START_MS + index as i64 * BLOCK_MS;
    let mut series: Vec<Labels> = (0..METRICS)
        .flat_map(|metric| (0..PODS).map(move |pod| pod_labels(metric, pod)))
        .collect();
    series.sort();
    let ulid = Ulid::from_parts(min_time as u64, 0xB10C_0000 + index as u128);
    let mut writer =
        BlockWriter::create_with_ulid(bucket, ulid, symbols_of(series.iter())).unwrap();
    writer.set_time_range(min_time, min_time + BLOCK_MS);
    let mut samples = Vec::with_capacity((BLOCK_MS / SCRAPE_MS) as usize);
    for (number, labels) in series.iter().enumerate() {
        let mut random = Random((number as u64 + 1) * 7919 + index as u64 * 104_729);
        let mut value = (random.next() % 1000) as f64;
        samples.clear();
        let mut t = min_time;
        while t < min_time + BLOCK_MS {
            value += (random.next() % 20) as f64;
            samples.push((t + (random.next() % 50) as i64, value));
            t += SCRAPE_MS;
        }
        writer.add_series_samples(labels, &samples).unwrap();
    }
    let (mut meta, dir) = writer.finish().unwrap();
    let mut thanos = ThanosMeta::new(external.clone(), 0, "test");
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir.join("chunks")).unwrap() {
        let entry = entry.unwrap();
        files.push(ThanosFile {
            rel_path: format!("chunks/{}", entry.file_name().to_string_lossy()),
            size_bytes: entry.metadata().unwrap().len() as i64,
            hash: None,
        });
    }
    files.push(ThanosFile {
        rel_path: "index".to_owned(),
        size_bytes: std::fs::metadata(dir.join("index")).unwrap().len() as i64,
        hash: None,
    });
    files.push(ThanosFile {
        rel_path: "meta.json".to_owned(),
        size_bytes: 0,
        hash: None,
    });
    files.sort_by(|a, b| a.rel_path.cmp(&b.rel_path));
    thanos.files = files;
    meta.thanos = Some(thanos);
    meta.write_to_dir(&dir).unwrap();
    let _ = std::fs::remove_file(dir.join("tombstones"));
}

/// Buckets with 0, 10 and 20 blocks (the smaller ones hard-link the first blocks).
struct Buckets {
    all: PathBuf,
    ten: PathBuf,
    empty: PathBuf,
}

fn link_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            link_tree(&entry.path(), &target);
        } else {
            std::fs::hard_link(entry.path(), &target)
                .or_else(|_| std::fs::copy(entry.path(), &target).map(|_| ()))
                .unwrap();
        }
    }
}

fn buckets() -> Buckets {
    let root = data_root();
    let buckets = Buckets {
        all: root.join("bucket-20"),
        ten: root.join("bucket-10"),
        empty: root.join("bucket-0"),
    };
    let stamp = root.join("DATA_VERSION");
    if std::fs::read_to_string(&stamp).ok().as_deref() == Some(DATA_VERSION) {
        println!("series bench: reusing the bucket in {}", root.display());
        return buckets;
    }
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&buckets.all).unwrap();
    std::fs::create_dir_all(&buckets.empty).unwrap();
    let started = Instant::now();
    let external: BTreeMap<String, String> = [("cluster", "bench"), ("replica", "0")]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    for index in 0..BLOCKS {
        write_block(&buckets.all, index, &external);
    }
    let mut ids: Vec<PathBuf> = std::fs::read_dir(&buckets.all)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .collect();
    ids.sort();
    for dir in ids.iter().take(BLOCKS / 2) {
        link_tree(dir, &buckets.ten.join(dir.file_name().unwrap()));
    }
    std::fs::write(&stamp, DATA_VERSION).unwrap();
    println!(
        "series bench: wrote {BLOCKS} blocks of {} series in {:.1?} to {}",
        METRICS * PODS,
        started.elapsed(),
        root.display()
    );
    buckets
}

fn dir_size(dir: &Path, file_name: &str) -> u64 {
    let mut total = 0;
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            total += dir_size(&path, file_name);
        } else if entry.file_name() == file_name {
            total += entry.metadata().map(|m| m.len()).unwrap_or(0);
        }
    }
    total
}

/// A running store gateway process over one bucket.
struct Gateway {
    process: Process,
    grpc: SocketAddr,
    http: SocketAddr,
    data_dir: PathBuf,
    _work: tempfile::TempDir,
}

impl Gateway {
    fn start(bucket: &Path) -> Gateway {
        let work = tempfile::tempdir_in(data_root()).unwrap();
        let data_dir = work.path().join("data");
        let grpc: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let http: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let binary = env!("CARGO_BIN_EXE_store-gateway");
        // `SERIES_BENCH_WRAPPER="heaptrack -o /tmp/gateway"` runs the gateway under a profiler
        // (the resident memory figures then describe the wrapper, not the gateway).
        let wrapper = std::env::var("SERIES_BENCH_WRAPPER").unwrap_or_default();
        let mut words = wrapper.split_whitespace();
        let mut command = match words.next() {
            Some(program) => {
                let mut command = Command::new(program);
                command.args(words).arg(binary);
                command
            }
            None => Command::new(binary),
        };
        command
            .arg(format!(
                "--objstore.config=type: FILESYSTEM\nconfig:\n  directory: {}\n",
                bucket.display()
            ))
            .arg(format!("--data-dir={}", data_dir.display()))
            .arg(format!("--grpc-address={grpc}"))
            .arg(format!("--http-address={http}"))
            .arg(format!("--index-cache-size={}", index_cache_size()))
            .arg("--log.level=warn");
        let process = Process::spawn("store-gateway", command, work.path()).unwrap();
        let gateway = Gateway {
            process,
            grpc,
            http,
            data_dir,
            _work: work,
        };
        let ready = wait_until("store gateway ready", Duration::from_secs(300), || {
            matches!(http_get(gateway.http, "/-/ready"), Ok((200, _)))
        });
        if ready.is_err() {
            gateway.process.print_log();
            panic!("the store gateway did not turn ready");
        }
        gateway
    }

    fn rss(&self) -> u64 {
        rss_bytes(self.process.pid())
    }

    /// Resident memory once it settled: the smallest of a few samples over a second.
    fn rss_at_rest(&self) -> u64 {
        std::thread::sleep(Duration::from_secs(2));
        (0..10)
            .map(|_| {
                std::thread::sleep(Duration::from_millis(100));
                self.rss()
            })
            .min()
            .unwrap_or(0)
    }

    /// Sum of `thanos_objstore_bucket_operations_total` (all operations, and `get_range`).
    fn bucket_operations(&self) -> (f64, f64) {
        let (_, text) = http_get(self.http, "/metrics").unwrap();
        let mut all = 0.0;
        let mut ranges = 0.0;
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("thanos_objstore_bucket_operations_total") {
                let value: f64 = rest
                    .rsplit(' ')
                    .next()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0.0);
                all += value;
                if rest.contains("operation=\"get_range\"") {
                    ranges += value;
                }
            }
        }
        (all, ranges)
    }

    fn header_bytes(&self) -> u64 {
        dir_size(&self.data_dir, "index-header")
    }
}

fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| {
            rest.trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<u64>()
                .ok()
        })
        .map_or(0, |kib| kib * 1024)
}

/// Samples a process' resident memory every 2 ms until dropped; keeps the peak.
struct PeakSampler {
    stop: Arc<AtomicBool>,
    peak: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl PeakSampler {
    fn start(pid: u32) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let peak = Arc::new(AtomicU64::new(0));
        let thread = {
            let (stop, peak) = (Arc::clone(&stop), Arc::clone(&peak));
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    peak.fetch_max(rss_bytes(pid), Ordering::Relaxed);
                    std::thread::sleep(Duration::from_millis(2));
                }
            })
        };
        Self {
            stop,
            peak,
            thread: Some(thread),
        }
    }

    fn finish(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            thread.join().unwrap();
        }
        self.peak.load(Ordering::Relaxed)
    }
}

fn matcher(kind: MatcherType, name: &str, value: &str) -> thanos::LabelMatcher {
    thanos::LabelMatcher {
        r#type: kind.into(),
        name: name.to_owned(),
        value: value.to_owned(),
    }
}

/// What one `Series()` call returned.
struct Answer {
    series: usize,
    chunks: usize,
    chunk_bytes: usize,
}

async fn series_call(grpc: SocketAddr, matchers: Vec<thanos::LabelMatcher>) -> Answer {
    let channel = storeapi::transport::connect(grpc).await.unwrap();
    let mut client = StoreClient::new(channel).max_decoding_message_size(256 * 1024 * 1024);
    let request = thanos::SeriesRequest {
        min_time: START_MS,
        max_time: START_MS + BLOCKS as i64 * BLOCK_MS,
        matchers,
        response_batch_size: 64,
        ..Default::default()
    };
    let mut stream = client.series(request).await.unwrap().into_inner();
    let mut answer = Answer {
        series: 0,
        chunks: 0,
        chunk_bytes: 0,
    };
    let mut count = |series: &thanos::Series| {
        answer.series += 1;
        answer.chunks += series.chunks.len();
        answer.chunk_bytes += series
            .chunks
            .iter()
            .map(|chunk| chunk.raw.as_ref().map_or(0, |raw| raw.data.len()))
            .sum::<usize>();
    };
    while let Some(frame) = stream.message().await.unwrap() {
        match frame.result {
            Some(series_response::Result::Series(series)) => count(&series),
            Some(series_response::Result::Batch(batch)) => batch.series.iter().for_each(&mut count),
            _ => {}
        }
    }
    answer
}

struct Measured {
    latencies: Vec<Duration>,
    requests: Vec<f64>,
    range_requests: Vec<f64>,
    peak_extra: Vec<u64>,
    series: usize,
    chunks: usize,
    chunk_bytes: usize,
}

fn measure(
    runtime: &tokio::runtime::Runtime,
    gateway: &Gateway,
    matchers: &[thanos::LabelMatcher],
    runs: usize,
    rest: u64,
) -> Measured {
    let mut measured = Measured {
        latencies: Vec::new(),
        requests: Vec::new(),
        range_requests: Vec::new(),
        peak_extra: Vec::new(),
        series: 0,
        chunks: 0,
        chunk_bytes: 0,
    };
    for _ in 0..runs {
        let (before, ranges_before) = gateway.bucket_operations();
        let sampler = PeakSampler::start(gateway.process.pid());
        let started = Instant::now();
        let answer = runtime.block_on(series_call(gateway.grpc, matchers.to_vec()));
        let latency = started.elapsed();
        let peak = sampler.finish();
        let (after, ranges_after) = gateway.bucket_operations();
        measured.latencies.push(latency);
        measured.requests.push(after - before);
        measured.range_requests.push(ranges_after - ranges_before);
        measured.peak_extra.push(peak.saturating_sub(rest));
        measured.series = answer.series;
        measured.chunks = answer.chunks;
        measured.chunk_bytes = answer.chunk_bytes;
    }
    measured
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / 1024.0 / 1024.0)
}

fn median(values: &[Duration]) -> Duration {
    let mut sorted = values.to_vec();
    sorted.sort();
    sorted[sorted.len() / 2]
}

fn main() {
    let buckets = buckets();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();

    let gateway = Gateway::start(&buckets.all);
    let rest = gateway.rss_at_rest();
    let small = vec![matcher(
        MatcherType::Eq,
        "__name__",
        "bench_metric_07_total",
    )];
    let large = vec![matcher(MatcherType::Re, "__name__", "bench_metric_.+")];
    let cases = [("1k-series", small, 5), ("50k-series", large, 3)];
    println!();
    println!(
        "store gateway Series() over {BLOCKS} blocks ({} series each, {}h each), index cache {}",
        METRICS * PODS,
        BLOCK_MS / 3_600_000,
        index_cache_size()
    );
    println!(
        "resident memory at rest after the initial sync: {}",
        mib(rest)
    );
    println!(
        "{:<11} {:>7} {:>8} {:>9} {:>9} {:>9} {:>9} {:>16} {:>16} {:>13}",
        "selector",
        "series",
        "chunks",
        "chunk MiB",
        "cold",
        "min",
        "median",
        "bucket req cold",
        "bucket req warm",
        "peak +RSS"
    );
    let mut worst_extra = 0;
    for (name, matchers, runs) in cases {
        let measured = measure(&runtime, &gateway, &matchers, runs, rest);
        let peak = measured.peak_extra.iter().copied().max().unwrap_or(0);
        if name.starts_with("50k") {
            worst_extra = peak;
        }
        println!(
            "{:<11} {:>7} {:>8} {:>9.1} {:>9.2?} {:>9.2?} {:>9.2?} {:>16} {:>16} {:>13}",
            name,
            measured.series,
            measured.chunks,
            measured.chunk_bytes as f64 / 1024.0 / 1024.0,
            measured.latencies[0],
            measured.latencies.iter().min().unwrap(),
            median(&measured.latencies),
            format!(
                "{} ({} ranged)",
                measured.requests[0], measured.range_requests[0]
            ),
            format!(
                "{} ({} ranged)",
                measured.requests[runs - 1],
                measured.range_requests[runs - 1]
            ),
            mib(peak),
        );
    }
    let after = gateway.rss_at_rest();
    println!("resident memory at rest after the queries: {}", mib(after));
    println!(
        "target: a 50k-series call under {} extra resident memory: {} ({})",
        mib(TARGET_EXTRA_RSS),
        if worst_extra < TARGET_EXTRA_RSS {
            "met"
        } else {
            "NOT met"
        },
        mib(worst_extra)
    );
    let headers_all = gateway.header_bytes();
    drop(gateway);

    println!();
    println!("resident memory at rest vs number of blocks");
    println!(
        "{:>6} {:>14} {:>22} {:>20}",
        "blocks", "RSS at rest", "index-headers on disk", "RSS growth vs 0"
    );
    let mut rows = Vec::new();
    for (blocks, bucket) in [(0, &buckets.empty), (BLOCKS / 2, &buckets.ten)] {
        let gateway = Gateway::start(bucket);
        rows.push((blocks, gateway.rss_at_rest(), gateway.header_bytes()));
    }
    rows.push((BLOCKS, rest, headers_all));
    let base = rows[0].1;
    for (blocks, rss, headers) in &rows {
        println!(
            "{:>6} {:>14} {:>22} {:>20}",
            blocks,
            mib(*rss),
            mib(*headers),
            mib(rss.saturating_sub(base))
        );
    }
    let (_, rss_ten, headers_ten) = rows[1];
    let (_, rss_all, headers_all) = rows[2];
    let growth = rss_all.saturating_sub(rss_ten);
    let header_growth = headers_all.saturating_sub(headers_ten);
    println!(
        "target: {} more blocks add no more resident memory than their index-headers: {} (+{} RSS for +{} of index-headers)",
        BLOCKS - BLOCKS / 2,
        if growth <= header_growth {
            "met"
        } else {
            "NOT met"
        },
        mib(growth),
        mib(header_growth)
    );
}
