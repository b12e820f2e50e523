//! Side-by-side benchmark: heavy range queries in this engine and in a real Prometheus 2.42 over
//! the same data.
//!
//! The dataset (`tests/support/dataset.rs`) has 10,000 `app_requests_total` series plus ~1,300
//! error, gauge and histogram series over 8h at a 15s scrape interval (~21.7M samples). It is
//! turned into blocks with `promtool tsdb create-blocks-from openmetrics` once and cached under
//! `target/promql-bench-data/<parameters>/`; the identical samples are regenerated into a
//! [`MemoryStorage`] on every run. Prometheus serves copies of the cached blocks.
//!
//! Each query runs once on each side as a warm-up, then [`RUNS`] times; the median wall time is
//! reported (Prometheus timed from the client over HTTP `query_range`, so it includes JSON
//! encoding and transfer of small answers). Memory, measured over the warm-up run: our process'
//! peak RSS (`VmHWM`, reset through `/proc/<pid>/clear_refs` before the query; it includes the
//! ~345 MiB `MemoryStorage`) and its growth over the RSS before the query; the same for the
//! Prometheus process (whose RSS includes its block index and page-cache-backed chunks). Figures are noisy on a shared machine: the load
//! average is printed at the start and the end.
#![allow(clippy::print_stdout, missing_docs)]

#[allow(dead_code)]
#[path = "../tests/support/dataset.rs"]
mod dataset;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use dataset::{Dataset, HEAVY_QUERIES, Spec, copy_blocks, heavy_spec, url_encode};
use promql_engine::{Engine, EngineOptions, MemoryStorage, QueryOptions};
use test_harness::procfs::{load_average, memory, mib, reset_peak};
use test_harness::prometheus::{Prometheus, PrometheusConfig};

const RUNS: usize = 3;
const STEP_S: i64 = 15;

fn cached_blocks(spec: &Spec, data: &Dataset) -> PathBuf {
    let key = spec.cache_key();
    let root = test_harness::process::workspace_root()
        .join("target/promql-bench-data")
        .join(key);
    let blocks = root.join("blocks");
    let done = root.join("complete");
    if done.is_file() {
        println!("using cached blocks in {}", blocks.display());
        return blocks;
    }
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).expect("create the bench data folder");
    let began = Instant::now();
    data.create_blocks(&root, &blocks)
        .unwrap_or_else(|error| panic!("{error}"));
    std::fs::write(&done, format!("{spec:?}\n")).expect("mark blocks complete");
    println!(
        "wrote openmetrics and created blocks in {:.1?} ({})",
        began.elapsed(),
        blocks.display()
    );
    blocks
}

struct Figures {
    ours: Duration,
    theirs: Duration,
    our_peak_kib: u64,
    our_growth_kib: u64,
    their_peak_kib: u64,
    their_growth_kib: u64,
}

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

fn run_ours(engine: &Engine, storage: &MemoryStorage, query: &str, range: (i64, i64)) -> usize {
    let result = engine
        .range_query(
            storage,
            query,
            range.0 * 1000,
            range.1 * 1000,
            STEP_S * 1000,
            &QueryOptions::default(),
        )
        .unwrap_or_else(|error| panic!("{query}: {error}"));
    match result.value {
        promql_engine::Value::Matrix(matrix) => matrix.iter().map(|s| s.points.len()).sum(),
        _ => 0,
    }
}

fn run_theirs(prometheus: &Prometheus, query: &str, range: (i64, i64)) -> usize {
    let path = format!(
        "/api/v1/query_range?query={}&start={}&end={}&step={STEP_S}",
        url_encode(query),
        range.0,
        range.1
    );
    let body = prometheus
        .get(&path)
        .unwrap_or_else(|error| panic!("{query}: {error:#}"));
    body.matches("],[").count() + body.matches("\"values\"").count()
}

fn measure(
    engine: &Engine,
    storage: &MemoryStorage,
    prometheus: &Prometheus,
    their_pid: u32,
    query: &str,
    range: (i64, i64),
) -> Figures {
    let our_pid = std::process::id();
    // Memory is measured over the warm-up run: later runs reuse memory the allocators kept.
    reset_peak(our_pid);
    let our_before = memory(our_pid).rss_kib;
    let our_points = run_ours(engine, storage, query, range);
    let our_peak_kib = memory(our_pid).peak_kib;
    reset_peak(their_pid);
    let their_before = memory(their_pid).rss_kib;
    let their_points = run_theirs(prometheus, query, range);
    let their_peak_kib = memory(their_pid).peak_kib;
    assert_eq!(
        our_points, their_points,
        "{query}: ours and prometheus' answers differ in size"
    );

    let mut ours = Vec::new();
    for _ in 0..RUNS {
        let began = Instant::now();
        run_ours(engine, storage, query, range);
        ours.push(began.elapsed());
    }
    let mut theirs = Vec::new();
    for _ in 0..RUNS {
        let began = Instant::now();
        run_theirs(prometheus, query, range);
        theirs.push(began.elapsed());
    }
    Figures {
        ours: median(ours),
        theirs: median(theirs),
        our_peak_kib,
        our_growth_kib: our_peak_kib.saturating_sub(our_before),
        their_peak_kib,
        their_growth_kib: their_peak_kib.saturating_sub(their_before),
    }
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
    let blocks = cached_blocks(&spec, &data);
    let our_pid = std::process::id();
    let storage = data.into_storage();
    println!(
        "memory storage loaded; our rss {}",
        mib(memory(our_pid).rss_kib)
    );

    let work = tempfile::tempdir().expect("temp dir");
    let data_dir = work.path().join("data");
    copy_blocks(&blocks, &data_dir).expect("copy blocks");
    let mut prometheus = Prometheus::start(PrometheusConfig {
        data_dir: Some(data_dir),
        retention: "100y".into(),
        scrape_interval: Duration::from_secs(60),
        ..PrometheusConfig::default()
    })
    .unwrap_or_else(|error| panic!("start prometheus: {error:#}"));
    let their_pid = prometheus.process().pid();

    let engine = Engine::new(EngineOptions {
        timeout: Duration::from_secs(600),
        ..EngineOptions::default()
    });
    // Whole 8h span at a 15s step (1,921 steps), starting where the first 5m window is full.
    let range = (first_t / 1000 + 300, last_t / 1000);
    println!(
        "range queries {}..{} step {STEP_S}s, median of {RUNS} after a warm-up",
        range.0, range.1
    );
    println!(
        "{:<80} {:>9} {:>9} {:>6}  {:>18}  {:>18}",
        "query", "ours", "prom", "ratio", "our peak (+growth)", "prom peak (+growth)"
    );
    let mut log_sum = 0.0;
    let mut slower = Vec::new();
    for query in HEAVY_QUERIES {
        let figures = measure(&engine, &storage, &prometheus, their_pid, query, range);
        let ratio = figures.ours.as_secs_f64() / figures.theirs.as_secs_f64();
        log_sum += ratio.ln();
        if ratio > 1.0 {
            slower.push(query);
        }
        println!(
            "{:<80} {:>8.3}s {:>8.3}s {:>6.2}  {:>8} (+{:>6})  {:>8} (+{:>6})",
            query,
            figures.ours.as_secs_f64(),
            figures.theirs.as_secs_f64(),
            ratio,
            mib(figures.our_peak_kib),
            mib(figures.our_growth_kib),
            mib(figures.their_peak_kib),
            mib(figures.their_growth_kib),
        );
    }
    let geomean = (log_sum / HEAVY_QUERIES.len() as f64).exp();
    println!("geometric mean of ratios (ours / prometheus): {geomean:.3} (target <= 0.5)");
    if slower.is_empty() {
        println!("no query slower than prometheus");
    } else {
        println!("slower than prometheus: {slower:?}");
    }
    println!("load average at end: {}", load_average());
    drop(prometheus);
}
