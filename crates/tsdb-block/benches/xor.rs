//! XOR chunk encode and decode throughput, per sample.
//!
//! Run briefly with `cargo bench -p tsdb-block --bench xor -- --warm-up-time 1 --measurement-time 3`.
//! Targets: decode at most 3 ns/sample, encode at most 8 ns/sample. Three data shapes, 200 chunks
//! of 120 samples each: `counter` (15s scrapes with occasional jitter, a counter growing by
//! random steps), `gauge` (random full-precision values), `steady` (exact 15s scrapes of a
//! counter growing at a constant rate). Throughput is reported in samples per second.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tsdb_block::chunkenc::{XorEncoder, XorIterator};

const SAMPLES_PER_CHUNK: usize = 120;
const CHUNKS: usize = 200;

/// Series shaped like scrapes: 15s interval with occasional millisecond jitter.
fn timestamps(rng: &mut StdRng, start: i64) -> Vec<i64> {
    (0..SAMPLES_PER_CHUNK as i64)
        .map(|index| {
            let jitter = if rng.random_bool(0.1) {
                rng.random_range(0..5)
            } else {
                0
            };
            start + index * 15_000 + jitter
        })
        .collect()
}

/// A counter that grows by small integer steps and sometimes stays flat.
fn counter_chunk(rng: &mut StdRng) -> Vec<(i64, f64)> {
    let mut value = rng.random_range(0..1_000_000) as f64;
    timestamps(rng, 1_700_000_000_000)
        .into_iter()
        .map(|t| {
            if rng.random_bool(0.7) {
                value += rng.random_range(1..100) as f64;
            }
            (t, value)
        })
        .collect()
}

/// A gauge with full-precision random values (the expensive case for the value bits).
fn gauge_chunk(rng: &mut StdRng) -> Vec<(i64, f64)> {
    timestamps(rng, 1_700_000_000_000)
        .into_iter()
        .map(|t| (t, rng.random_range(0.0..100.0)))
        .collect()
}

/// The easy case: exact 15s scrapes of a counter growing at a constant rate.
fn steady_chunk(rng: &mut StdRng) -> Vec<(i64, f64)> {
    let start = rng.random_range(0..1_000_000) as f64;
    (0..SAMPLES_PER_CHUNK as i64)
        .map(|index| {
            (
                1_700_000_000_000 + index * 15_000,
                start + 10.0 * index as f64,
            )
        })
        .collect()
}

fn encode(chunk: &[(i64, f64)]) -> XorEncoder {
    let mut encoder = XorEncoder::new();
    for &(t, v) in chunk {
        encoder.append(t, v);
    }
    encoder
}

fn bench_kind(criterion: &mut Criterion, name: &str, make: fn(&mut StdRng) -> Vec<(i64, f64)>) {
    let mut rng = StdRng::seed_from_u64(42);
    let chunks: Vec<Vec<(i64, f64)>> = (0..CHUNKS).map(|_| make(&mut rng)).collect();
    let encoded: Vec<Vec<u8>> = chunks
        .iter()
        .map(|chunk| encode(chunk).into_bytes())
        .collect();
    let mut group = criterion.benchmark_group(format!("xor/{name}"));
    group.throughput(Throughput::Elements((CHUNKS * SAMPLES_PER_CHUNK) as u64));
    group.bench_function("encode", |bencher| {
        bencher.iter(|| {
            let mut total = 0;
            for chunk in &chunks {
                total += encode(black_box(chunk)).len();
            }
            total
        })
    });
    group.bench_function("decode", |bencher| {
        bencher.iter(|| {
            let mut sum = 0.0;
            let mut last = 0;
            for data in &encoded {
                for (t, v) in XorIterator::new(black_box(data)) {
                    last = t;
                    sum += v;
                }
            }
            (last, sum)
        })
    });
    group.finish();
}

fn benches(criterion: &mut Criterion) {
    bench_kind(criterion, "counter", counter_chunk);
    bench_kind(criterion, "gauge", gauge_chunk);
    bench_kind(criterion, "steady", steady_chunk);
}

criterion_group!(xor, benches);
criterion_main!(xor);
