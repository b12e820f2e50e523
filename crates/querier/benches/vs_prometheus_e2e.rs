//! End-to-end benchmark matrix: the engine benchmark's query shapes through the real `querier`
//! and `store-gateway` binaries over a filesystem bucket, side by side with a real Prometheus 2.42
//! serving the same blocks from its data folder.
//!
//! The dataset is the engine benchmark's (`promql-engine/tests/support/dataset.rs`: 10,000
//! `app_requests_total` series plus ~1,300 error, gauge and histogram series, 8h at a 15s scrape
//! interval, ~21.7M samples). It is written once with `tsdb_block::BlockWriter` as four aligned
//! 2h blocks carrying a `thanos` section (external label `bench="e2e"`, resolution 0) and cached
//! under `target/querier-bench-data/<parameters>/bucket`. The store gateway reads that folder as
//! its FILESYSTEM bucket; Prometheus gets a copy of the same block folders as its TSDB (it ignores
//! the `thanos` section).
//!
//! The queries are the engine benchmark's matrix (`promql-engine/tests/support/shapes.rs`): 46
//! shapes covering every operator class, each as a range query over the whole 8h at every step of
//! `BENCH_STEPS` and as an instant query at its end, chosen with the same knobs: `BENCH_RUNS`
//! (timed runs, default 3; without it, 1 for a side whose warm-up took over 5 s), `BENCH_FILTER`
//! (comma-separated substrings of shape names), `BENCH_STEPS` (seconds and `instant`, default
//! `15,60,instant`). Answers are JSON on both sides, so the `raw_*` shapes time our rendering of
//! large answers against Prometheus'.
//!
//! Per case: one warm-up run on each side, over which peak memory is measured (`VmHWM`, reset
//! through `/proc/<pid>/clear_refs` just before; for ours the querier's and the store gateway's
//! peaks are added), then the timed runs; the median wall time from the client over HTTP is
//! reported, with the ratio (`*` when ours is slower) and the geometric mean of ratios. The
//! warm-up answers are compared (same series, same timestamps, values within a relative 1e-9;
//! the external label is dropped from ours): mismatches, errors and answers empty on both sides
//! are shown in the `answer` column and listed after the table, never aborting the run. The load
//! average is printed at the start and the end: the machine may be shared.
//!
//! The binaries: `querier` is this package's own (built by `cargo bench`) unless `QUERIER_BIN`
//! names one; `store-gateway` is built with `cargo build --release -p store-gateway` unless
//! `STORE_GATEWAY_BIN` names one.
//!
//! Full matrix (2026-12-08: streamed selections, chunk reads bounded by the series' chunk
//! lists, FILESYSTEM reads without the remote coalescing gap, freed heap returned after
//! requests; load 1.3-2.2, nothing else running; the instant column at commit eeecb9c with
//! `BENCH_RUNS=5`, the range columns at d1631ac with the default runs). All 133 answers equal.
//! Geometric mean ours / Prometheus: 15s 0.283, 60s 0.376, instant 1.319 (all 0.52). Slower
//! than Prometheus: 3 of 88 range cases (`predict_linear` 15s 1.26, since parallelised: 155 ->
//! 88 ms; `absent` 60s 1.2 vs 1.1 ms; `at_end` 15s 90 vs 82 ms) and 34 of 45 instant cases:
//! every small one (Prometheus answers in 1-6 ms; ours pays ~0.5 ms for the StoreAPI round
//! trip and its task hand-offs: `absent` 0.8 vs 0.3 ms, `delta_gauge` 2.4 vs 1.3 ms) and the
//! heavy ones by 1.03-1.20 (`group_left` 203 vs 169 ms, `count_values` 83 vs 71 ms). Peak
//! memory (querier + store gateway) below Prometheus' in all 133 cases: range 65-606 MiB
//! against 208-2,376 MiB, instant 36-76 MiB against 72-103 MiB.
//!
//! Last matrix run (2026-12-07, the per-step engine before the rewrite, a subset only:
//! `BENCH_FILTER=heavy_rate_sum,raw_large,ignoring BENCH_STEPS=60,instant BENCH_RUNS=1`, load
//! ~1.7 plus the engine benchmark running alongside), ours / Prometheus ms (ratio):
//! `heavy_rate_sum_by_job` 1852 / 3661 (0.51), 208 / 102 (2.03*); `raw_large` 824 / 110 (7.47*),
//! 27 / 9 (2.83*); `ignoring` 414 / 84 (4.94*), 9 / 3 (2.73*); every answer equal; peaks ours
//! (querier + store gateway) 167-388 MiB, Prometheus 282-376 MiB.
//!
//! Querier / store gateway overhead round (2026-12-07, same engine on both sides of the
//! comparison, load ~1-2, medians of 9 runs; before -> after, ratio to Prometheus in brackets):
//! `raw_large` instant 12.8 ms (2.23) -> 9.9-11.4 ms (0.84-1.36), 15s 521 ms (2.35) -> 232-246
//! ms (0.67-0.94); `ignoring` instant 5.8 ms (1.44) -> 4.6-5.1 ms (1.22-1.55);
//! `heavy_rate_sum_by_job` instant 141 ms (1.77) -> 109-117 ms (1.04-1.43), 15s 1.72 s (0.39)
//! -> 1.81-1.94 s (0.33-0.36) with the querier's peak 386 -> 170-177 MiB (Prometheus 641-668
//! MiB). The changes: label symbols of series entries memoised per selection in the store
//! gateway (its CPU per heavy instant query 92 -> 69 ms), answers rendered in one pass on the
//! blocking thread, series decoded when the engine reads them (not all when it takes them),
//! and no lane splitting for chunks one after the other.
//!
//! Last runs of the four historical heavy queries alone (2026-12-05, range queries at 15s from
//! the first full 5m window, 2 cores at load ~1.4, two runs): ratios 0.35-0.37, 0.36-0.41, 0.40,
//! 0.41-0.42 in the order of `dataset::HEAVY_QUERIES`, geometric mean 0.38-0.40 (ours takes 40% of
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
#[path = "../../promql-engine/tests/support/compare.rs"]
mod compare;
#[allow(dead_code, unreachable_pub)]
#[path = "../../promql-engine/tests/support/dataset.rs"]
mod dataset;
#[allow(dead_code, unreachable_pub)]
#[path = "../../promql-engine/tests/support/shapes.rs"]
mod shapes;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use compare::{Answer, from_prometheus};
use dataset::{Dataset, Spec, copy_blocks, heavy_spec};
use prom_model::Labels;
use shapes::{Case, Knobs, Measured, QueryTimes};
use test_harness::procfs::{load_average, memory, mib, reset_peak};
use test_harness::prometheus::{Prometheus, PrometheusConfig};
use test_harness::{Process, free_port, http_get, wait_until};
use tsdb_block::meta::{BlockMeta, ThanosMeta};
use tsdb_block::writer::{BlockWriter, symbols_of};

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

/// GET over HTTP/1.0 with a generous read timeout: the body whatever the status (an error
/// answer's JSON names the error), or why there is none.
fn get(address: SocketAddr, path: &str) -> Result<String, String> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect_timeout(&address, Duration::from_secs(2))
        .map_err(|error| format!("connect {address}: {error}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(600)))
        .map_err(|error| error.to_string())?;
    write!(
        stream,
        "GET {path} HTTP/1.0\r\nHost: {address}\r\nConnection: close\r\n\r\n"
    )
    .map_err(|error| format!("GET {path}: {error}"))?;
    let mut response = Vec::new();
    stream
        .read_to_end(&mut response)
        .map_err(|error| format!("GET {path}: {error}"))?;
    let text = String::from_utf8_lossy(&response);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("GET {path}: not an HTTP answer"))?;
    if !head.starts_with("HTTP/1.") {
        return Err(format!("GET {path}: {head}"));
    }
    Ok(body.to_owned())
}

/// The external label every block carries: the querier shows it, Prometheus (which ignores the
/// `thanos` section) does not.
const EXTERNAL_LABEL: &str = "bench=\"e2e\"";

/// An HTTP answer as a comparable [`Answer`]; `strip_external` drops [`EXTERNAL_LABEL`] from
/// every series (the querier's side).
fn answer(body: Result<String, String>, strip_external: bool) -> Answer {
    let answer = match body {
        Ok(body) => from_prometheus(&body).unwrap_or_else(Answer::Error),
        Err(error) => Answer::Error(error),
    };
    match answer {
        Answer::Rows { kind, mut rows } if strip_external => {
            for row in &mut rows {
                row.labels = row
                    .labels
                    .replace(&format!("{EXTERNAL_LABEL}, "), "")
                    .replace(&format!(", {EXTERNAL_LABEL}"), "")
                    .replace(&format!("{{{EXTERNAL_LABEL}}}"), "{}");
            }
            Answer::Rows { kind, rows }
        }
        other => other,
    }
}

/// The three processes under test.
struct Sides {
    querier: SocketAddr,
    prometheus: SocketAddr,
    querier_pid: u32,
    gateway_pid: u32,
    their_pid: u32,
    times: QueryTimes,
}

impl Sides {
    fn measure(&self, knobs: &Knobs, case: Case) -> Measured {
        let path = shapes::api_path(&case, &self.times);
        reset_peak(self.querier_pid);
        reset_peak(self.gateway_pid);
        let began = Instant::now();
        let our_body = get(self.querier, &path);
        let our_warm_up = began.elapsed();
        let querier_peak = memory(self.querier_pid).peak_kib;
        let gateway_peak = memory(self.gateway_pid).peak_kib;
        reset_peak(self.their_pid);
        let began = Instant::now();
        let their_body = get(self.prometheus, &path);
        let their_warm_up = began.elapsed();
        let their_peak = memory(self.their_pid).peak_kib;
        let our_answer = answer(our_body, true);
        let their_answer = answer(their_body, false);
        let our_failed = matches!(our_answer, Answer::Error(_));
        let their_failed = matches!(their_answer, Answer::Error(_));
        let verdict = shapes::verdict(&our_answer, &their_answer);
        drop((our_answer, their_answer));

        let our_runs = knobs.runs_after(our_warm_up);
        let their_runs = knobs.runs_after(their_warm_up);
        let ours = (!our_failed).then(|| {
            shapes::timed(our_runs, || {
                let _ = get(self.querier, &path);
            })
        });
        let theirs = (!their_failed).then(|| {
            shapes::timed(their_runs, || {
                let _ = get(self.prometheus, &path);
            })
        });
        Measured {
            case,
            ours,
            theirs,
            runs: (our_runs, their_runs),
            our_memory: format!(
                "{} ({}+{})",
                mib(querier_peak + gateway_peak),
                (querier_peak + 512) / 1024,
                (gateway_peak + 512) / 1024
            ),
            their_memory: mib(their_peak),
            verdict,
        }
    }
}

fn main() {
    // `cargo bench` passes `--bench`; nothing to parse.
    let knobs = Knobs::from_env().unwrap_or_else(|error| panic!("{error}"));
    let cases = knobs.cases();
    assert!(!cases.is_empty(), "BENCH_FILTER matches no shape");
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

    let times = shapes::query_times(first_t, last_t);
    let probe = format!(
        "/api/v1/query_range?query=count(app_requests_total)&start={}&end={}&step=15",
        times.end - 60,
        times.end
    );
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
    let sides = Sides {
        querier: querier.http,
        prometheus: prometheus.addr(),
        querier_pid,
        gateway_pid,
        their_pid,
        times,
    };
    shapes::run_matrix(
        &knobs,
        &times,
        ("ours MiB (querier+gw)", "prom peak"),
        |case| sides.measure(&knobs, case),
    );
    println!("load average at end: {}", load_average());
    drop(prometheus);
    drop(querier);
    drop(gateway);
}
