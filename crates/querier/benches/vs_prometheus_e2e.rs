//! End-to-end benchmark: the engine benchmark's heavy range queries through the real `querier`
//! and `store-gateway` binaries over a filesystem bucket, side by side with a real Prometheus 2.42
//! serving the same blocks from its data folder.
//!
//! The dataset is the engine benchmark's (`promql-engine/tests/support/dataset.rs`: 10,000
//! `app_requests_total` series plus ~1,300 error, gauge and histogram series, 8h at a 15s scrape
//! interval, ~21.7M samples). It is written once with `tsdb_block::BlockWriter` as four aligned
//! 2h blocks carrying a `thanos` section (external label `bench="e2e"`, resolution 0) and cached
//! under `target/querier-bench-data/<parameters>/bucket`. The store gateway reads that folder as
//! its FILESYSTEM bucket; Prometheus gets a copy of the same block folders as its TSDB (it ignores
//! the `thanos` section). Every query aggregates, so the external label never shows in answers.
//!
//! Per query: one warm-up run on each side, over which peak memory is measured (`VmHWM`, reset
//! through `/proc/<pid>/clear_refs` just before; for ours the querier's and the store gateway's
//! peaks are added), then [`RUNS`] timed runs each; the median wall time from the client over
//! HTTP `query_range` is reported, with the ratio and the geometric mean of ratios. The warm-up
//! answers are compared (same series, same timestamps, values within a relative 1e-9) so the
//! timings compare like with like. The load average is printed at the start and the end: the
//! machine may be shared.
//!
//! The binaries: `querier` is this package's own (built by `cargo bench`) unless `QUERIER_BIN`
//! names one; `store-gateway` is built with `cargo build --release -p store-gateway` unless
//! `STORE_GATEWAY_BIN` names one.
//!
//! Last runs (2026-12-05, 2 cores at load ~1.4, two runs): ratios 0.35-0.37, 0.36-0.41, 0.40,
//! 0.41-0.42 in the order of [`HEAVY_QUERIES`], geometric mean 0.38-0.40 (ours takes 40% of
//! Prometheus' time); peak RSS ours (querier + store gateway) 386-387, 186-193, 496-531, 452-490
//! MiB against Prometheus' 646-647, 897-899, 915-1072, 1110-1144 MiB. The querier's own peak
//! varies by up to ~130 MiB between identical runs.
//!
//! Before the StoreAPI servers stopped gzip-compressing answers (70% of the store gateway's CPU
//! time) the geometric mean was 1.22; without the chunk-bytes sharing (no copy of chunk data in
//! the store gateway or the querier) 0.53. Boxing the aggregate parts of `AggrChunk` (304 -> 104
//! bytes per chunk) took the first query's querier peak from 362-363 to 333 MiB. Decoding each series only when the engine takes it
//! moved the querier's peak from 446, 157-166, 614-624, 569-615 MiB to 427, 135-161, 483-598,
//! 428-527 MiB (two runs each, before the chunk-bytes change).
#![allow(clippy::print_stdout, clippy::unwrap_used, missing_docs)]

#[allow(dead_code, unreachable_pub)]
#[path = "../../promql-engine/tests/support/dataset.rs"]
mod dataset;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use dataset::{Dataset, HEAVY_QUERIES, Spec, copy_blocks, heavy_spec, url_encode};
use prom_model::Labels;
use serde_json::Value;
use test_harness::procfs::{load_average, memory, mib, reset_peak};
use test_harness::prometheus::{Prometheus, PrometheusConfig};
use test_harness::{Process, free_port, http_get, wait_until};
use tsdb_block::meta::{BlockMeta, ThanosMeta};
use tsdb_block::writer::{BlockWriter, symbols_of};

const RUNS: usize = 3;
const STEP_S: i64 = 15;
const BLOCK_MS: i64 = 2 * 3600 * 1000;

/// Writes the dataset as aligned 2h blocks with a thanos section into `bucket`.
fn write_blocks(data: &Dataset, spec: &Spec, bucket: &Path) {
    std::fs::create_dir_all(bucket).expect("create the bucket folder");
    let mut series: Vec<(&Labels, Vec<(i64, f64)>)> = data
        .families
        .iter()
        .flat_map(|family| family.series.iter())
        .map(|(labels, samples)| (labels, samples.iter().map(|s| (s.t, s.v)).collect()))
        .collect();
    series.sort_by(|a, b| a.0.cmp(b.0));
    let symbols = symbols_of(series.iter().map(|(labels, _)| *labels));
    let (first, last) = data.time_range();
    let mut block_start = spec.start_s * 1000;
    while block_start <= last {
        let block_end = block_start + BLOCK_MS;
        if block_end > first {
            let mut writer =
                BlockWriter::create(bucket, symbols.iter().cloned()).expect("start a block");
            for (labels, samples) in &series {
                let from = samples.partition_point(|(t, _)| *t < block_start);
                let to = samples.partition_point(|(t, _)| *t < block_end);
                if from < to {
                    writer
                        .add_series_samples(labels, &samples[from..to])
                        .expect("add a series");
                }
            }
            writer.set_time_range(block_start, block_end);
            let (mut meta, dir) = writer.finish().expect("finish a block");
            meta.thanos = Some(ThanosMeta::new(
                BTreeMap::from([("bench".to_owned(), "e2e".to_owned())]),
                0,
                "bench",
            ));
            meta.write_to_dir(&dir).expect("write meta.json");
            let _: &BlockMeta = &meta;
        }
        block_start = block_end;
    }
}

/// The cached bucket folder of `spec`, written when missing.
fn cached_bucket(spec: &Spec, data: &Dataset) -> PathBuf {
    let key = spec.cache_key();
    let root = test_harness::process::workspace_root()
        .join("target/querier-bench-data")
        .join(key);
    let bucket = root.join("bucket");
    let done = root.join("complete");
    if done.is_file() {
        println!("using cached blocks in {}", bucket.display());
        return bucket;
    }
    let _ = std::fs::remove_dir_all(&root);
    let began = Instant::now();
    write_blocks(data, spec, &bucket);
    std::fs::write(&done, format!("{spec:?}\n")).expect("mark blocks complete");
    println!(
        "wrote blocks with BlockWriter in {:.1?} ({})",
        began.elapsed(),
        bucket.display()
    );
    bucket
}

/// The store-gateway binary: `STORE_GATEWAY_BIN`, or a fresh release build.
fn store_gateway_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("STORE_GATEWAY_BIN") {
        return PathBuf::from(path);
    }
    let root = test_harness::process::workspace_root();
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(&root)
        .args([
            "build",
            "--release",
            "-p",
            "store-gateway",
            "--bin",
            "store-gateway",
        ])
        .status()
        .expect("run cargo build");
    assert!(
        status.success(),
        "cargo build --release -p store-gateway failed"
    );
    root.join("target/release/store-gateway")
}

/// A started binary with its HTTP address, killed on drop.
struct Service {
    process: Process,
    http: SocketAddr,
    grpc: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Service {
    fn start(name: &str, binary: &Path, args: &[String]) -> Service {
        let dir = tempfile::tempdir().expect("temp dir");
        let http: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let grpc: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let mut command = Command::new(binary);
        command
            .arg(format!("--http-address={http}"))
            .arg(format!("--grpc-address={grpc}"))
            .arg("--log.level=warn")
            .args(
                args.iter()
                    .map(|arg| arg.replace("{dir}", &dir.path().display().to_string())),
            );
        let process = Process::spawn(name, command, dir.path()).expect("spawn");
        let service = Service {
            process,
            http,
            grpc,
            _dir: dir,
        };
        let ready = wait_until(&format!("{name} ready"), Duration::from_secs(120), || {
            matches!(http_get(http, "/-/ready"), Ok((200, _)))
        });
        if let Err(error) = ready {
            service.process.print_log();
            panic!("{error:#}");
        }
        service
    }
}

/// GET over HTTP/1.0 with a generous read timeout; the body of a 200 answer.
fn get(address: SocketAddr, path: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect_timeout(&address, Duration::from_secs(2))
        .unwrap_or_else(|error| panic!("connect {address}: {error}"));
    stream
        .set_read_timeout(Some(Duration::from_secs(600)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.0\r\nHost: {address}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = Vec::new();
    stream
        .read_to_end(&mut response)
        .unwrap_or_else(|error| panic!("GET {path}: {error}"));
    let text = String::from_utf8_lossy(&response);
    let (head, body) = text.split_once("\r\n\r\n").expect("an HTTP answer");
    assert!(
        head.starts_with("HTTP/1.") && head.split_whitespace().nth(1) == Some("200"),
        "GET {path}: {head}\n{body}"
    );
    body.to_owned()
}

fn range_path(query: &str, range: (i64, i64)) -> String {
    format!(
        "/api/v1/query_range?query={}&start={}&end={}&step={STEP_S}",
        url_encode(query),
        range.0,
        range.1
    )
}

/// A matrix answer: series (labels as text) to points.
fn matrix(body: &str) -> BTreeMap<String, Vec<(f64, f64)>> {
    let json: Value = serde_json::from_str(body).expect("JSON answer");
    assert_eq!(json["status"], "success", "{body}");
    let mut out = BTreeMap::new();
    for series in json["data"]["result"].as_array().expect("a matrix") {
        let labels = series["metric"].to_string();
        let points = series["values"]
            .as_array()
            .expect("values")
            .iter()
            .map(|pair| {
                let t = pair[0].as_f64().expect("timestamp");
                let v = match pair[1].as_str().expect("value") {
                    "NaN" => f64::NAN,
                    "+Inf" => f64::INFINITY,
                    "-Inf" => f64::NEG_INFINITY,
                    text => text.parse().expect("number"),
                };
                (t, v)
            })
            .collect();
        out.insert(labels, points);
    }
    out
}

/// Panics unless the two answers hold the same series, timestamps and values (relative 1e-9).
fn assert_same(query: &str, ours: &str, theirs: &str) -> usize {
    let (ours, theirs) = (matrix(ours), matrix(theirs));
    let our_keys: Vec<&String> = ours.keys().collect();
    let their_keys: Vec<&String> = theirs.keys().collect();
    assert_eq!(our_keys, their_keys, "{query}: different series");
    let mut points = 0;
    for (labels, our_points) in &ours {
        let their_points = &theirs[labels];
        assert_eq!(
            our_points.len(),
            their_points.len(),
            "{query} {labels}: different point counts"
        );
        for (ours, theirs) in our_points.iter().zip(their_points) {
            assert_eq!(ours.0, theirs.0, "{query} {labels}: different timestamps");
            let same = (ours.1.is_nan() && theirs.1.is_nan())
                || ours.1 == theirs.1
                || (ours.1 - theirs.1).abs() <= 1e-9 * ours.1.abs().max(theirs.1.abs());
            assert!(
                same,
                "{query} {labels} at {}: ours {} prometheus {}",
                ours.0, ours.1, theirs.1
            );
        }
        points += our_points.len();
    }
    points
}

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

fn timed(runs: usize, mut run: impl FnMut()) -> Duration {
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let began = Instant::now();
        run();
        times.push(began.elapsed());
    }
    median(times)
}

fn main() {
    // `cargo bench` passes `--bench`; nothing to parse.
    println!("load average at start: {}", load_average());
    let spec = heavy_spec();
    let began = Instant::now();
    let data = Dataset::generate(&spec);
    let (first_t, last_t) = data.time_range();
    println!(
        "dataset: {} series, {} samples, generated in {:.1?}",
        data.series_count(),
        data.sample_count(),
        began.elapsed()
    );
    let bucket = cached_bucket(&spec, &data);
    drop(data);

    let gateway_binary = store_gateway_binary();
    // `QUERIER_BIN` compares another build (say, the one before a change) on the same data.
    let querier_binary = std::env::var_os("QUERIER_BIN").map_or_else(
        || PathBuf::from(env!("CARGO_BIN_EXE_querier")),
        PathBuf::from,
    );
    let objstore = format!(
        "type: FILESYSTEM\nconfig:\n  directory: {}\n",
        bucket.display()
    );
    let gateway = Service::start(
        "store-gateway",
        &gateway_binary,
        &[
            format!("--objstore.config={objstore}"),
            "--data-dir={dir}/data".to_owned(),
        ],
    );
    let querier = Service::start(
        "querier",
        &querier_binary,
        &[
            format!("--endpoint={}", gateway.grpc),
            "--query.timeout=10m".to_owned(),
        ],
    );

    let work = tempfile::tempdir().expect("temp dir");
    let data_dir = work.path().join("data");
    copy_blocks(&bucket, &data_dir).expect("copy blocks");
    let mut prometheus = Prometheus::start(PrometheusConfig {
        data_dir: Some(data_dir),
        retention: "100y".into(),
        scrape_interval: Duration::from_secs(60),
        ..PrometheusConfig::default()
    })
    .unwrap_or_else(|error| panic!("start prometheus: {error:#}"));
    let their_pid = prometheus.process().pid();
    let (querier_pid, gateway_pid) = (querier.process.pid(), gateway.process.pid());

    // Whole 8h span at a 15s step (1,921 steps), starting where the first 5m window is full.
    let range = (first_t / 1000 + 300, last_t / 1000);
    let probe = range_path("count(app_requests_total)", (range.1 - 60, range.1));
    let synced = wait_until("querier sees the blocks", Duration::from_secs(300), || {
        http_get(querier.http, &probe)
            .is_ok_and(|(status, body)| status == 200 && body.contains("\"values\""))
    });
    if let Err(error) = synced {
        gateway.process.print_log();
        querier.process.print_log();
        panic!("{error:#}");
    }
    println!(
        "querier + store-gateway ready; rss before queries: querier {}, store-gateway {}, prometheus {}",
        mib(memory(querier_pid).rss_kib),
        mib(memory(gateway_pid).rss_kib),
        mib(memory(their_pid).rss_kib)
    );
    println!(
        "range queries {}..{} step {STEP_S}s, median of {RUNS} after a warm-up",
        range.0, range.1
    );
    println!(
        "{:<78} {:>9} {:>9} {:>6}  {:>26}  {:>9}",
        "query", "ours", "prom", "ratio", "our peak (querier+gateway)", "prom peak"
    );
    let mut log_sum = 0.0;
    for query in HEAVY_QUERIES {
        let path = range_path(query, range);
        reset_peak(querier_pid);
        reset_peak(gateway_pid);
        let our_answer = get(querier.http, &path);
        let querier_peak = memory(querier_pid).peak_kib;
        let gateway_peak = memory(gateway_pid).peak_kib;
        reset_peak(their_pid);
        let their_answer = get(prometheus.addr(), &path);
        let their_peak = memory(their_pid).peak_kib;
        let points = assert_same(query, &our_answer, &their_answer);
        assert!(points > 0, "{query}: empty answers");

        let ours = timed(RUNS, || {
            get(querier.http, &path);
        });
        let theirs = timed(RUNS, || {
            get(prometheus.addr(), &path);
        });
        let ratio = ours.as_secs_f64() / theirs.as_secs_f64();
        log_sum += ratio.ln();
        println!(
            "{:<78} {:>8.3}s {:>8.3}s {:>6.2}  {:>9} ({:>6} + {:>6})  {:>9}",
            query,
            ours.as_secs_f64(),
            theirs.as_secs_f64(),
            ratio,
            mib(querier_peak + gateway_peak),
            mib(querier_peak),
            mib(gateway_peak),
            mib(their_peak),
        );
    }
    let geomean = (log_sum / HEAVY_QUERIES.len() as f64).exp();
    println!("geometric mean of time ratios (querier+store-gateway / prometheus): {geomean:.3}");
    println!("answers equal on every query (same series and timestamps, values within 1e-9)");
    println!("load average at end: {}", load_average());
    drop(prometheus);
    drop(querier);
    drop(gateway);
}
