//! XOR chunk encode and decode throughput, per sample.
//!
//! Run briefly with `cargo bench -p tsdb-block --bench xor -- --warm-up-time 1 --measurement-time 3`.
//! Targets: decode at most 3 ns/sample, encode at most 8 ns/sample. Three data shapes, 200 chunks
//! of 120 samples each: `counter` (15s scrapes with occasional jitter, a counter growing by
//! random steps), `gauge` (random full-precision values), `steady` (exact 15s scrapes of a
//! counter growing at a constant rate). Throughput is reported in samples per second.
//! `decode` goes through `XorIterator::for_each_sample` summing the values (the closure's running
//! sum is part of the loop), `columns` through `XorIterator::decode_columns` into two reused
//! columns, `iterate` through the `Iterator` implementation, `batch` all 200 chunks in one call
//! of `decode_xor_chunks` (AVX-512 lanes, the path `BlockReader::samples` and the querier take)
//! into two reused columns. The decoding loop calls no function
//! (errors leave it as plain data), so the compiler keeps the `f64` sum in a register: a call
//! anywhere in the loop makes it spill the sum around every sample, a store-to-load chain of
//! about 3.3 ns/sample on the Zen 4 test machine whatever the decoder does.
//!
//! This VM's timings vary by up to 40% between identical runs (the host's load, not ours):
//! compare variants by the minimum of several interleaved runs of `XOR_PROFILE` (below) under
//! `/usr/bin/time`, and read criterion's medians as the typical case.
//!
//! For stable instruction counts on a noisy machine, `XOR_PROFILE=<shape>:<encode|decode|columns|iterate|batch|decode_into>:<passes>`
//! skips criterion and runs that many passes over the 200 chunks, e.g.
//! `XOR_PROFILE=gauge:decode:11 valgrind --tool=cachegrind --cache-sim=no target/release/deps/xor-*`;
//! the difference between two pass counts divided by the extra samples is instructions per sample.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tsdb_block::chunkenc::{XorEncoder, XorIterator, decode_xor_chunks};

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

/// Generates one chunk's samples.
type MakeChunk = fn(&mut StdRng) -> Vec<(i64, f64)>;

/// The chunks of one shape: raw samples and encoded bytes.
type Chunks = (Vec<Vec<(i64, f64)>>, Vec<Vec<u8>>);

/// The chunks of one shape, raw and encoded.
fn make_chunks(make: MakeChunk) -> Chunks {
    let mut rng = StdRng::seed_from_u64(42);
    let chunks: Vec<Vec<(i64, f64)>> = (0..CHUNKS).map(|_| make(&mut rng)).collect();
    let encoded: Vec<Vec<u8>> = chunks
        .iter()
        .map(|chunk| encode(chunk).into_bytes())
        .collect();
    (chunks, encoded)
}

/// One encode pass over all chunks.
fn encode_pass(chunks: &[Vec<(i64, f64)>]) -> usize {
    let mut total = 0;
    for chunk in chunks {
        total += encode(black_box(chunk)).len();
    }
    total
}

/// One decode pass over all chunks through the fastest public path,
/// [`XorIterator::for_each_sample`].
fn decode_pass(encoded: &[Vec<u8>]) -> (i64, f64) {
    let mut sum = 0.0;
    let mut last = 0;
    for data in encoded {
        XorIterator::new(black_box(data))
            .for_each_sample(|t, v| {
                last = t;
                sum += v;
            })
            .ok();
    }
    (last, sum)
}

/// One decode pass over all chunks through [`XorIterator::decode_columns`], into two reused
/// columns.
fn columns_pass(encoded: &[Vec<u8>], timestamps: &mut Vec<i64>, values: &mut Vec<f64>) -> usize {
    let mut total = 0;
    for data in encoded {
        timestamps.clear();
        values.clear();
        XorIterator::new(black_box(data))
            .decode_columns(timestamps, values)
            .ok();
        total += black_box(&values).len();
    }
    total
}

/// One decode pass over all chunks at once through [`decode_xor_chunks`] (sixteen chunks side
/// by side with AVX-512), into two reused columns, as `columns` decodes chunk by chunk.
fn batch_pass(encoded: &[&[u8]], timestamps: &mut Vec<i64>, values: &mut Vec<f64>) -> usize {
    timestamps.clear();
    values.clear();
    decode_xor_chunks(black_box(encoded), timestamps, values).ok();
    black_box(&values).len()
}

/// One decode pass over all chunks through the [`Iterator`] implementation.
fn iterate_pass(encoded: &[Vec<u8>]) -> (i64, f64) {
    let mut sum = 0.0;
    let mut last = 0;
    for data in encoded {
        for (t, v) in XorIterator::new(black_box(data)) {
            last = t;
            sum += v;
        }
    }
    (last, sum)
}

const SHAPES: [(&str, MakeChunk); 3] = [
    ("counter", counter_chunk),
    ("gauge", gauge_chunk),
    ("steady", steady_chunk),
];

fn bench_kind(criterion: &mut Criterion, name: &str, make: MakeChunk) {
    let (chunks, encoded) = make_chunks(make);
    let mut group = criterion.benchmark_group(format!("xor/{name}"));
    group.throughput(Throughput::Elements((CHUNKS * SAMPLES_PER_CHUNK) as u64));
    group.bench_function("encode", |bencher| bencher.iter(|| encode_pass(&chunks)));
    group.bench_function("decode", |bencher| bencher.iter(|| decode_pass(&encoded)));
    let (mut timestamps, mut values) = (Vec::new(), Vec::new());
    group.bench_function("columns", |bencher| {
        bencher.iter(|| columns_pass(&encoded, &mut timestamps, &mut values))
    });
    group.bench_function("iterate", |bencher| bencher.iter(|| iterate_pass(&encoded)));
    let views: Vec<&[u8]> = encoded.iter().map(Vec::as_slice).collect();
    group.bench_function("batch", |bencher| {
        bencher.iter(|| batch_pass(&views, &mut timestamps, &mut values))
    });
    group.finish();
}

fn benches(criterion: &mut Criterion) {
    for (name, make) in SHAPES {
        bench_kind(criterion, name, make);
    }
}

criterion_group!(xor, benches);

/// `XOR_PROFILE=<shape>:<encode|decode|columns|iterate|batch|decode_into>:<passes>`: run passes without criterion.
fn profile(spec: &str) {
    let mut parts = spec.split(':');
    let (Some(shape), Some(operation), Some(passes)) = (parts.next(), parts.next(), parts.next())
    else {
        panic!("XOR_PROFILE must be <shape>:<encode|decode>:<passes>, not {spec:?}");
    };
    let passes: usize = passes.parse().expect("passes is a number");
    let make = SHAPES
        .iter()
        .find(|(name, _)| *name == shape)
        .map(|(_, make)| *make)
        .expect("shape is counter, gauge or steady");
    let (chunks, encoded) = make_chunks(make);
    for _ in 0..passes {
        match operation {
            "encode" => {
                black_box(encode_pass(&chunks));
            }
            "decode" => {
                black_box(decode_pass(&encoded));
            }
            "iterate" => {
                black_box(iterate_pass(&encoded));
            }
            "columns" => {
                let (mut timestamps, mut values) = (Vec::new(), Vec::new());
                black_box(columns_pass(&encoded, &mut timestamps, &mut values));
            }
            "batch" => {
                let views: Vec<&[u8]> = encoded.iter().map(Vec::as_slice).collect();
                let (mut timestamps, mut values) = (Vec::new(), Vec::new());
                black_box(batch_pass(&views, &mut timestamps, &mut values));
            }
            "decode_into" => {
                let mut out = Vec::with_capacity(SAMPLES_PER_CHUNK);
                for data in &encoded {
                    out.clear();
                    black_box(XorIterator::new(black_box(data)).decode_into(&mut out)).ok();
                    black_box(&out);
                }
            }
            _ => panic!("operation is encode or decode, not {operation:?}"),
        }
    }
}

fn main() {
    if let Ok(spec) = std::env::var("XOR_PROFILE") {
        profile(&spec);
        return;
    }
    xor();
    Criterion::default().configure_from_args().final_summary();
}
