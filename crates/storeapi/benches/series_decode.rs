//! Decoding a series' wire chunks to samples, the querier's first step for every series: the
//! chunks' parts together ([`decode_xor_parts`], what the querier calls) against one chunk at a
//! time ([`decode_float_samples`]), for series of 4, 16, 48 and 200 chunks of 120 samples. The
//! values are a counter with scrape jitter, so both timestamps and values take the usual paths.
//! Each pass decodes 24,000 samples (as many series as it takes), so the figures compare per
//! sample: time / 24,000.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use prom_model::Sample;
use storeapi::chunk::{decode_float_samples, decode_xor_parts, raw_chunks};
use storeapi::proto::thanos::{AggrChunk, Chunk};

const SAMPLES_PER_PASS: usize = 24_000;

/// One series of `chunks` raw chunks: a counter scraped every 15 s with a little jitter.
fn series(chunks: usize) -> Vec<AggrChunk> {
    let samples: Vec<Sample> = (0..chunks as i64 * 120)
        .map(|index| {
            Sample::new(
                1_700_000_000_000 + index * 15_000 + (index * 7) % 3,
                (index * 3 + (index * 7919) % 5) as f64,
            )
        })
        .collect();
    raw_chunks(&samples, 120)
}

fn raw(chunk: &AggrChunk) -> Option<&Chunk> {
    chunk.raw.as_ref()
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("series_decode");
    group.throughput(Throughput::Elements(SAMPLES_PER_PASS as u64));
    for chunks in [4, 16, 48, 200] {
        let one_series = series(chunks);
        let copies = SAMPLES_PER_PASS / (chunks * 120);
        group.bench_function(format!("{chunks}_chunks/together"), |b| {
            b.iter(|| {
                for _ in 0..copies {
                    black_box(decode_xor_parts(black_box(&one_series), raw));
                }
            })
        });
        group.bench_function(format!("{chunks}_chunks/one_by_one"), |b| {
            b.iter(|| {
                for _ in 0..copies {
                    let decoded: Vec<Vec<Sample>> = black_box(&one_series)
                        .iter()
                        .filter_map(|chunk| decode_float_samples(chunk.raw.as_ref()?).ok())
                        .collect();
                    black_box(decoded);
                }
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
