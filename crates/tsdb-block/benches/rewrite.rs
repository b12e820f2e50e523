//! `rewrite` throughput (samples per second) and its peak memory for two block sizes.
//!
//! Peak memory is the process' `VmHWM` after resetting it through `/proc/self/clear_refs`
//! (Linux), measured around one rewrite of each block.

#![allow(clippy::print_stderr)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use prom_model::Labels;
use tsdb_block::writer::{BlockWriter, rewrite_block, symbols_of};

const SAMPLES_PER_SERIES: i64 = 960;

fn write_block(parent: &Path, series_count: usize) -> (PathBuf, u64) {
    let series: Vec<Labels> = (0..series_count)
        .map(|index| {
            Labels::from_pairs([
                ("__name__", format!("metric_{}", index % 50)),
                ("instance", format!("host-{index}")),
                ("job", "bench".to_owned()),
            ])
        })
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let mut writer = BlockWriter::create(parent, symbols_of(&series)).expect("create block");
    let mut samples = Vec::with_capacity(SAMPLES_PER_SERIES as usize);
    for (index, labels) in series.iter().enumerate() {
        samples.clear();
        for point in 0..SAMPLES_PER_SERIES {
            let value = ((point * 7 + index as i64) % 100) as f64 * 0.5;
            samples.push((1_700_000_000_000 + point * 15_000, value));
        }
        writer
            .add_series_samples(labels, &samples)
            .expect("add series");
    }
    let (meta, dir) = writer.finish().expect("finish block");
    (dir, meta.stats.num_samples)
}

fn kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|line| line.starts_with(field))
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|value| value.parse().ok())
        .unwrap_or(0)
}

/// `(RSS before, VmHWM during, RssAnon before, peak RssAnon sampled every ms during)` in KiB.
/// VmHWM counts the mapped pages of the block being read (page cache); RssAnon is the heap.
fn peak_rewrite_memory(block: &Path, out: &Path) -> (u64, u64, u64, u64) {
    // Writing 5 resets VmHWM to the current RSS.
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    let before = kib("VmRSS:");
    let anon_before = kib("RssAnon:");
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let done = Arc::clone(&done);
        std::thread::spawn(move || {
            let mut peak = 0;
            while !done.load(Ordering::Relaxed) {
                peak = peak.max(kib("RssAnon:"));
                std::thread::sleep(Duration::from_millis(1));
            }
            peak
        })
    };
    rewrite_block(block, out).expect("rewrite");
    done.store(true, Ordering::Relaxed);
    let anon_peak = sampler.join().unwrap_or(0);
    (before, kib("VmHWM:"), anon_before, anon_peak)
}

fn bench_rewrite(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut group = c.benchmark_group("rewrite");
    group.sample_size(10);
    for series_count in [2_000usize, 8_000] {
        let parent = dir.path().join(format!("source-{series_count}"));
        std::fs::create_dir_all(&parent).expect("create dir");
        let (block, samples) = write_block(&parent, series_count);
        let out = dir.path().join(format!("out-{series_count}"));
        let (before, peak, anon_before, anon_peak) = peak_rewrite_memory(&block, &out);
        let _ = std::fs::remove_dir_all(&out);
        let block_size: u64 = ["index", "chunks/000001"]
            .iter()
            .map(|file| {
                std::fs::metadata(block.join(file))
                    .map(|m| m.len())
                    .unwrap_or(0)
            })
            .sum();
        eprintln!(
            "rewrite of {samples} samples ({series_count} series, block {block_size} bytes): \
             VmHWM {peak} KiB (+{} KiB over RSS before, incl. mapped block pages), \
             peak RssAnon {anon_peak} KiB (+{} KiB heap)",
            peak.saturating_sub(before),
            anon_peak.saturating_sub(anon_before)
        );
        group.throughput(Throughput::Elements(samples));
        group.bench_function(format!("{samples} samples"), |b| {
            b.iter(|| {
                let _ = std::fs::remove_dir_all(&out);
                rewrite_block(&block, &out).expect("rewrite")
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench_rewrite);
criterion_main!(benches);
