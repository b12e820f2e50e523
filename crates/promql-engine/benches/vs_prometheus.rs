//! Side-by-side benchmark matrix: this engine and a real Prometheus 2.42 over the same data, one
//! query shape at a time.
//!
//! The dataset (`tests/support/dataset.rs`) has 10,000 `app_requests_total` series plus ~1,300
//! error, gauge and histogram series over 8h at a 15s scrape interval (~21.7M samples). It is
//! turned into blocks with `promtool tsdb create-blocks-from openmetrics` once and cached under
//! `target/promql-bench-data/<parameters>/`; the identical samples are regenerated into a
//! [`MemoryStorage`] on every run. Prometheus serves copies of the cached blocks.
//!
//! The matrix (`tests/support/shapes.rs`, shared with the querier's end-to-end benchmark): 45
//! shapes covering every operator class, each run as a range query over the whole 8h at every
//! step of `BENCH_STEPS` and as an instant query at its end. Knobs:
//! - `BENCH_RUNS`: timed runs per case after the warm-up (default 3; without it, 1 for a side
//!   whose warm-up took over 5 s);
//! - `BENCH_FILTER`: comma-separated substrings of shape names (default: every shape);
//! - `BENCH_STEPS`: comma-separated steps in seconds and `instant` (default `15,60,instant`).
//!
//! For example `BENCH_FILTER=heavy,subquery BENCH_RUNS=1 cargo bench -p promql-engine --bench
//! vs_prometheus`.
//!
//! Per case the median wall time is reported: ours is the engine call alone (no JSON rendering:
//! the querier's renderer, `querier::render::query_data`, is out of this package's reach, so the
//! `raw_*` shapes' rendering cost shows only on Prometheus' side here and on both in the querier's
//! end-to-end benchmark); Prometheus is timed from the client over HTTP, so it includes encoding
//! and transferring its JSON. Memory, measured over the warm-up run: our process' peak RSS
//! (`VmHWM`, reset through `/proc/<pid>/clear_refs` before the query; it includes the ~345 MiB
//! `MemoryStorage`) and its growth over the RSS before the query; the same for the Prometheus
//! process. The warm-up answers are compared (same series and timestamps, values within a
//! relative 1e-9): a mismatch, an error or an empty answer on both sides is shown in the `answer`
//! column and listed after the table, never aborting the run. Ratios above 1 (ours slower) are
//! marked `*`. Figures are noisy on a shared machine: the load average is printed at the start and
//! the end.
//!
//! Last runs: see the end of this comment.
#![allow(clippy::print_stdout, missing_docs)]

#[allow(dead_code)]
#[path = "../tests/support/compare.rs"]
mod compare;
#[allow(dead_code)]
#[path = "../tests/support/dataset.rs"]
mod dataset;
#[allow(dead_code)]
#[path = "../tests/support/shapes.rs"]
mod shapes;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use compare::{Answer, from_engine, from_prometheus};
use dataset::{Dataset, Spec, copy_blocks, heavy_spec};
use promql_engine::{Engine, EngineOptions, MemoryStorage, QueryOptions};
use shapes::{Case, Knobs, Measured, Mode, QueryTimes, Verdict};
use test_harness::http_get_within;
use test_harness::procfs::{load_average, memory, mib, reset_peak};
use test_harness::prometheus::{Prometheus, PrometheusConfig};

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

/// Both sides of the bench.
struct Sides<'a> {
    engine: &'a Engine,
    storage: &'a MemoryStorage,
    prometheus: &'a Prometheus,
    their_pid: u32,
    times: QueryTimes,
}

impl Sides<'_> {
    fn ours(&self, case: &Case) -> Result<promql_engine::QueryResult, promql_engine::Error> {
        let options = QueryOptions::default();
        match case.mode {
            Mode::Range(step) => self.engine.range_query(
                self.storage,
                case.shape.query,
                self.times.start * 1000,
                self.times.end * 1000,
                step * 1000,
                &options,
            ),
            Mode::Instant => self.engine.instant_query(
                self.storage,
                case.shape.query,
                self.times.instant * 1000,
                &options,
            ),
        }
    }

    /// Prometheus' answer body, or why there is none.
    fn theirs(&self, case: &Case) -> Result<String, String> {
        let path = shapes::api_path(case, &self.times);
        http_get_within(self.prometheus.addr(), &path, Duration::from_secs(600))
            .map(|(_, body)| body)
            .map_err(|error| format!("GET {path}: {error:#}"))
    }

    fn measure(&self, knobs: &Knobs, case: Case) -> Measured {
        let our_pid = std::process::id();
        // Memory is measured over the warm-up run: later runs reuse memory the allocators kept.
        reset_peak(our_pid);
        let our_before = memory(our_pid).rss_kib;
        let began = Instant::now();
        let our_result = self.ours(&case);
        let our_warm_up = began.elapsed();
        let our_peak = memory(our_pid).peak_kib;
        let our_failed = our_result.is_err();
        let our_answer = from_engine(our_result);

        reset_peak(self.their_pid);
        let their_before = memory(self.their_pid).rss_kib;
        let began = Instant::now();
        let their_body = self.theirs(&case);
        let their_warm_up = began.elapsed();
        let their_peak = memory(self.their_pid).peak_kib;
        let their_answer = match their_body {
            Ok(body) => from_prometheus(&body).unwrap_or_else(Answer::Error),
            Err(error) => Answer::Error(error),
        };
        let their_failed = matches!(their_answer, Answer::Error(_));
        let verdict: Verdict = shapes::verdict(&our_answer, &their_answer);
        drop((our_answer, their_answer));

        let our_runs = knobs.runs_after(our_warm_up);
        let their_runs = knobs.runs_after(their_warm_up);
        let ours = (!our_failed).then(|| {
            shapes::timed(our_runs, || {
                let _ = self.ours(&case);
            })
        });
        let theirs = (!their_failed).then(|| {
            shapes::timed(their_runs, || {
                let _ = self.theirs(&case);
            })
        });
        Measured {
            case,
            ours,
            theirs,
            runs: (our_runs, their_runs),
            our_memory: format!(
                "{} (+{})",
                mib(our_peak),
                mib(our_peak.saturating_sub(our_before))
            ),
            their_memory: format!(
                "{} (+{})",
                mib(their_peak),
                mib(their_peak.saturating_sub(their_before))
            ),
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

    let engine = Engine::new(EngineOptions {
        timeout: Duration::from_secs(600),
        ..EngineOptions::default()
    });
    let times = shapes::query_times(first_t, last_t);
    let their_pid = prometheus.process().pid();
    let sides = Sides {
        engine: &engine,
        storage: &storage,
        prometheus: &prometheus,
        their_pid,
        times,
    };
    println!(
        "{} cases; range queries {}..{}, instant queries at {}; median of {} timed runs after a warm-up{}",
        cases.len(),
        times.start,
        times.end,
        times.instant,
        knobs.runs,
        if knobs.runs_given {
            ""
        } else {
            " (1 when the warm-up took over 5s)"
        }
    );
    shapes::print_header("our peak (+growth)", "prom peak (+growth)");
    let mut rows = Vec::with_capacity(cases.len());
    for case in cases {
        let row = sides.measure(&knobs, case);
        shapes::print_row(&row);
        rows.push(row);
    }
    shapes::print_summary(&rows, &knobs.modes);
    println!("load average at end: {}", load_average());
    drop(prometheus);
}
