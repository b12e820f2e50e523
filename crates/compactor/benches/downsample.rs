//! Downsampling throughput (raw samples per second) and peak memory.
//!
//! For each case the bench writes a raw block (series × 48h at 15 s, counters with resets),
//! then re-executes itself once per step (raw → 5m, then 5m → 1h) so each child's `VmHWM`
//! (peak resident set from `/proc/self/status`) measures that step alone. `VmHWM` includes the
//! source block's memory-mapped pages, so the block size is printed next to it.
//!
//! `cargo bench -p compactor --bench downsample`; `DOWNSAMPLE_BENCH_SERIES=a,b` sets the
//! series counts of the cases (default `10000,30000`).

#![allow(clippy::print_stdout, clippy::unwrap_used, missing_docs)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use compactor::downsample::{RESOLUTION_1H, RESOLUTION_5M, downsample_block};
use prom_model::Labels;
use tsdb_block::meta::{BlockMeta, ThanosMeta};
use tsdb_block::writer::BlockWriter;

const CHILD_SOURCE: &str = "DOWNSAMPLE_BENCH_CHILD_SOURCE";
const CHILD_OUT: &str = "DOWNSAMPLE_BENCH_CHILD_OUT";
const CHILD_RESOLUTION: &str = "DOWNSAMPLE_BENCH_CHILD_RESOLUTION";
const SCRAPE_MS: i64 = 15_000;
const SPAN_MS: i64 = 48 * 3_600_000;
const START_MS: i64 = 1_700_000_000_000;

fn main() {
    if let Ok(source) = std::env::var(CHILD_SOURCE) {
        child(
            Path::new(&source),
            Path::new(&std::env::var(CHILD_OUT).unwrap()),
            std::env::var(CHILD_RESOLUTION).unwrap().parse().unwrap(),
        );
        return;
    }
    // `cargo bench` passes `--bench`; a filter argument is not supported.
    let cases = std::env::var("DOWNSAMPLE_BENCH_SERIES").unwrap_or_else(|_| "10000,30000".into());
    for series in cases.split(',').map(|s| s.trim().parse::<usize>().unwrap()) {
        run_case(series);
    }
}

fn run_case(series: usize) {
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let (raw, samples) = write_raw_block(dir.path(), series);
    println!(
        "case {series} series x 48h @15s: {samples} raw samples, block {:.1} MiB, written in {:.1} s",
        dir_size(&raw) as f64 / (1 << 20) as f64,
        started.elapsed().as_secs_f64()
    );
    let five = spawn_child(&raw, dir.path(), RESOLUTION_5M, samples, "raw -> 5m");
    spawn_child(&five, dir.path(), RESOLUTION_1H, samples, "5m -> 1h");
}

/// Runs one downsampling step in a fresh process; returns the output block's folder.
fn spawn_child(
    source: &Path,
    out: &Path,
    resolution: i64,
    raw_samples: u64,
    step: &str,
) -> PathBuf {
    let output = Command::new(std::env::current_exe().unwrap())
        .env(CHILD_SOURCE, source)
        .env(CHILD_OUT, out)
        .env(CHILD_RESOLUTION, resolution.to_string())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report = String::from_utf8(output.stdout).unwrap();
    let mut fields = report.split_whitespace();
    let seconds: f64 = fields.next().unwrap().parse().unwrap();
    let peak_kib: u64 = fields.next().unwrap().parse().unwrap();
    let block = PathBuf::from(fields.next().unwrap());
    println!(
        "  {step}: {seconds:.2} s, {:.2} M raw samples/s, peak RSS {:.1} MiB, output {:.1} MiB",
        raw_samples as f64 / seconds / 1e6,
        peak_kib as f64 / 1024.0,
        dir_size(&block) as f64 / (1 << 20) as f64,
    );
    block
}

/// Child mode: downsample, then print seconds, VmHWM in KiB and the output folder.
fn child(source: &Path, out: &Path, resolution: i64) {
    let started = Instant::now();
    let downsampled = downsample_block(source, out, resolution).unwrap().unwrap();
    let seconds = started.elapsed().as_secs_f64();
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let peak_kib = status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or("0");
    println!("{seconds} {peak_kib} {}", downsampled.dir.display());
}

/// A raw block of `series` counters over 48h at 15 s; returns its folder and sample count.
fn write_raw_block(parent: &Path, series: usize) -> (PathBuf, u64) {
    let mut labels: Vec<Labels> = (0..series)
        .map(|index| {
            Labels::from_pairs([
                ("__name__", "bench_requests_total".to_owned()),
                ("instance", format!("host-{:04}", index / 10)),
                ("path", format!("/api/{}", index % 10)),
            ])
        })
        .collect();
    labels.sort();
    let symbols = tsdb_block::writer::symbols_of(labels.iter());
    let mut writer = BlockWriter::create(parent, symbols).unwrap();
    let points = SPAN_MS / SCRAPE_MS;
    let mut samples = Vec::with_capacity(points as usize);
    let mut state: u64 = 0x2545_F491_4F6C_DD1D;
    for series_labels in &labels {
        samples.clear();
        let mut value = 0.0;
        for point in 0..points {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            // A reset about every 2,000 scrapes, else an increase of 0..15.
            if state.is_multiple_of(2_000) {
                value = 0.0;
            } else {
                value += (state % 16) as f64;
            }
            samples.push((START_MS + point * SCRAPE_MS, value));
        }
        writer.add_series_samples(series_labels, &samples).unwrap();
    }
    let total = writer.num_samples();
    let (_, dir) = writer
        .finish_with(|meta: &mut BlockMeta| {
            meta.min_time = START_MS;
            meta.max_time = START_MS + SPAN_MS;
            meta.thanos = Some(ThanosMeta::new(Default::default(), 0, "sidecar"));
        })
        .unwrap();
    (dir, total)
}

fn dir_size(dir: &Path) -> u64 {
    let mut total = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let meta = entry.metadata().unwrap();
        total += if meta.is_dir() {
            dir_size(&entry.path())
        } else {
            meta.len()
        };
    }
    total
}
