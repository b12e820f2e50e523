//! Block merge benchmark: throughput of horizontal (chunks copied as stored) and vertical
//! (decoded, merged, re-encoded) merges of 4 source blocks, and peak RSS of merges of 4 blocks
//! of 50k and of 200k series.
//!
//! `cargo bench -p compactor --bench merge`. Each RSS case runs in a child process (this binary
//! again, with `MERGE_BENCH_CHILD` set) that only opens and merges the prepared blocks and reads
//! its own `VmHWM` from `/proc/self/status`. `VmHWM` counts the resident pages of the
//! memory-mapped source files too; `RssAnon` (heap) is reported beside it.

#![allow(
    clippy::unwrap_used,
    clippy::print_stdout,
    clippy::print_stderr,
    missing_docs
)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use compactor::merge::{DedupFunc, MergeOptions, merge_blocks_counted};
use prom_model::Labels;
use tsdb_block::writer::{BlockWriter, symbols_of};

const HOUR: i64 = 3_600_000;
const CHILD: &str = "MERGE_BENCH_CHILD";

fn series_labels(index: usize) -> Labels {
    Labels::from_pairs([
        ("__name__", format!("bench_metric_{}", index % 20)),
        ("instance", format!("host-{:04}", index % 1000)),
        ("job", "bench".to_owned()),
        ("series", format!("{index:07}")),
    ])
}

/// Writes a block of `series` series with samples every `step` ms from `start` (offset by
/// `offset` ms) for 2 hours, values a noisy counter.
fn write_block(parent: &Path, series: usize, start: i64, offset: i64, step: i64) -> (PathBuf, u64) {
    let labels: Vec<Labels> = (0..series).map(series_labels).collect();
    let mut sorted: Vec<&Labels> = labels.iter().collect();
    sorted.sort();
    let mut writer = BlockWriter::create(parent, symbols_of(sorted.iter().copied())).unwrap();
    writer.set_time_range(start, start + 2 * HOUR);
    let mut samples = Vec::new();
    for (rank, labels) in sorted.iter().enumerate() {
        samples.clear();
        let mut value = rank as f64;
        let mut t = start + offset;
        while t < start + 2 * HOUR {
            value += ((t / step) % 7) as f64 + 0.25;
            samples.push((t, value));
            t += step;
        }
        writer.add_series_samples(labels, &samples).unwrap();
    }
    let (meta, dir) = writer.finish().unwrap();
    (dir, meta.stats.num_samples)
}

/// 4 adjacent 2h blocks (horizontal) or 4 replicas of the same 2h, 1 s apart (vertical).
fn sources(parent: &Path, series: usize, step: i64, vertical: bool) -> (Vec<PathBuf>, u64) {
    let mut dirs = Vec::new();
    let mut samples = 0;
    for block in 0..4i64 {
        let (start, offset) = if vertical {
            (0, block * 1000)
        } else {
            (block * 2 * HOUR, 0)
        };
        let (dir, count) = write_block(parent, series, start, offset, step);
        dirs.push(dir);
        samples += count;
    }
    (dirs, samples)
}

fn options(dedup: DedupFunc) -> MergeOptions {
    MergeOptions {
        dedup,
        labels: [("cluster".to_owned(), "bench".to_owned())].into(),
        resolution: 0,
    }
}

fn throughput(name: &str, sources: &[PathBuf], samples: u64, out: &Path, dedup: DedupFunc) {
    let started = Instant::now();
    let (merged, counters) = merge_blocks_counted(sources, out, &options(dedup)).unwrap();
    let elapsed = started.elapsed();
    let merged = merged.unwrap();
    println!(
        "{name:<32} {:>7.1} M samples/s  ({samples} input samples in {:.2} s; output {} samples, \
         {} chunks; passed through {}, decoded {}, duplicates {})",
        samples as f64 / elapsed.as_secs_f64() / 1e6,
        elapsed.as_secs_f64(),
        merged.meta.stats.num_samples,
        merged.meta.stats.num_chunks,
        counters.chunks_passed_through,
        counters.chunks_decoded,
        counters.chunks_deduplicated,
    );
    std::fs::remove_dir_all(&merged.dir).unwrap();
}

fn status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// The child: merges the blocks named on the command line, prints its memory figures.
fn child(args: &[String]) {
    let out = PathBuf::from(&args[0]);
    let sources: Vec<PathBuf> = args[1..].iter().map(PathBuf::from).collect();
    let started = Instant::now();
    let (merged, _) = merge_blocks_counted(&sources, &out, &options(DedupFunc::OneToOne)).unwrap();
    let merged = merged.unwrap();
    println!(
        "VmHWM {} KiB, RssAnon {} KiB, RssFile {} KiB, {} series, {:.2} s",
        status_kib("VmHWM:"),
        status_kib("RssAnon:"),
        status_kib("RssFile:"),
        merged.meta.stats.num_series,
        started.elapsed().as_secs_f64()
    );
}

fn rss(name: &str, work: &Path, series: usize) {
    let parent = work.join(format!("rss-{series}"));
    let (dirs, _) = sources(&parent, series, 60_000, false);
    let bytes: u64 = dirs.iter().map(|dir| dir_size(dir)).sum();
    let output = Command::new(std::env::current_exe().unwrap())
        .env(CHILD, "1")
        .arg(parent.join("out"))
        .args(&dirs)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    println!(
        "{name:<32} {} (sources {} MiB)",
        String::from_utf8_lossy(&output.stdout).trim(),
        bytes >> 20
    );
    std::fs::remove_dir_all(&parent).unwrap();
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

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|arg| !arg.starts_with("--"))
        .collect();
    if std::env::var_os(CHILD).is_some() {
        child(&args);
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let out = work.path().join("out");

    let horizontal = work.path().join("horizontal");
    let (dirs, samples) = sources(&horizontal, 50_000, 15_000, false);
    throughput(
        "horizontal 4 x 50k x 2h@15s",
        &dirs,
        samples,
        &out,
        DedupFunc::OneToOne,
    );
    std::fs::remove_dir_all(&horizontal).unwrap();

    let vertical = work.path().join("vertical");
    let (dirs, samples) = sources(&vertical, 50_000, 15_000, true);
    throughput(
        "vertical one-to-one 4 x 50k",
        &dirs,
        samples,
        &out,
        DedupFunc::OneToOne,
    );
    throughput(
        "vertical penalty 4 x 50k",
        &dirs,
        samples,
        &out,
        DedupFunc::Penalty,
    );
    std::fs::remove_dir_all(&vertical).unwrap();

    rss("peak RSS 4 x 50k x 2h@60s", work.path(), 50_000);
    rss("peak RSS 4 x 200k x 2h@60s", work.path(), 200_000);
}
