//! Many small ranges of one object, with and without coalescing, from the filesystem backend and
//! from a real S3 server (s3s-fs, started here on a free port). Prints how many requests each
//! variant sends, then criterion's timings.
//!
//! Pattern: 256 ranges of 1 KiB, one every 16 KiB of an 8 MiB object (gaps of 15 KiB, below the
//! default 64 KiB coalescing gap), as a store gateway reads series and chunks of one block.

#![allow(clippy::print_stdout, missing_docs)]

use std::ops::Range;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use objstore::{Bucket, BucketOptions, DEFAULT_COALESCE_GAP, ObjstoreConfig, RangeOptions};
use prometheus::Registry;
use tokio::runtime::Runtime;

const OBJECT_SIZE: usize = 8 * 1024 * 1024;
const RANGES: u64 = 256;
const RANGE_LEN: u64 = 1024;
const STRIDE: u64 = 16 * 1024;

fn ranges() -> Vec<Range<u64>> {
    (0..RANGES)
        .map(|index| index * STRIDE..index * STRIDE + RANGE_LEN)
        .collect()
}

fn options(max_gap: u64) -> BucketOptions {
    BucketOptions {
        ranges: RangeOptions {
            max_gap,
            ..RangeOptions::default()
        },
        ..BucketOptions::default()
    }
}

/// A bucket per coalescing setting (each with its own registry to count requests).
struct Variant {
    label: &'static str,
    bucket: Bucket,
    registry: Registry,
}

fn get_range_requests(registry: &Registry) -> f64 {
    registry
        .gather()
        .iter()
        .filter(|family| family.name() == "thanos_objstore_bucket_operations_total")
        .flat_map(|family| family.get_metric())
        .filter(|metric| {
            metric
                .get_label()
                .iter()
                .any(|label| label.name() == "operation" && label.value() == "get_range")
        })
        .map(|metric| metric.get_counter().get_value())
        .sum()
}

async fn open_variants(config: &ObjstoreConfig) -> Vec<Variant> {
    let mut variants = Vec::new();
    for (label, max_gap) in [("coalesced", DEFAULT_COALESCE_GAP), ("uncoalesced", 0)] {
        let registry = Registry::new();
        let bucket = Bucket::from_config(config, options(max_gap), &registry)
            .await
            .expect("open bucket");
        variants.push(Variant {
            label,
            bucket,
            registry,
        });
    }
    let data = objstore::testing::pseudo_random(OBJECT_SIZE, 42);
    variants[0]
        .bucket
        .upload("block/chunks/000001", data)
        .await
        .expect("upload the object");
    variants
}

fn bench_backend(
    criterion: &mut Criterion,
    runtime: &Runtime,
    backend: &str,
    config: &ObjstoreConfig,
) {
    let variants = runtime.block_on(open_variants(config));
    let ranges = ranges();
    for variant in &variants {
        let before = get_range_requests(&variant.registry);
        let started = Instant::now();
        let parts = runtime
            .block_on(variant.bucket.get_ranges("block/chunks/000001", &ranges))
            .expect("get_ranges");
        let elapsed = started.elapsed();
        assert_eq!(parts.len(), ranges.len());
        let requests = get_range_requests(&variant.registry) - before;
        println!(
            "ranged_reads {backend}/{}: {} ranges of {RANGE_LEN} B -> {requests} requests, first call {elapsed:?}",
            variant.label,
            ranges.len()
        );
    }
    let mut group = criterion.benchmark_group(format!("ranged_reads/{backend}"));
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    for variant in &variants {
        group.bench_function(variant.label, |bencher| {
            bencher.iter(|| {
                runtime
                    .block_on(variant.bucket.get_ranges("block/chunks/000001", &ranges))
                    .expect("get_ranges")
            })
        });
    }
    group.finish();
}

fn ranged_reads(criterion: &mut Criterion) {
    let runtime = Runtime::new().expect("tokio runtime");
    let dir = tempfile::tempdir().expect("temp dir");
    bench_backend(
        criterion,
        &runtime,
        "filesystem",
        &ObjstoreConfig::filesystem(dir.path()),
    );

    let server = test_harness::S3sFs::start("AKIDBENCH", "bench-secret").expect("start s3s-fs");
    server.create_bucket("bench").expect("create bucket");
    let yaml = format!(
        "type: S3\nconfig:\n  bucket: bench\n  endpoint: {}\n  access_key: {}\n  secret_key: {}\n  insecure: true\n",
        server.endpoint(),
        server.access_key(),
        server.secret_key()
    );
    let config = ObjstoreConfig::parse(&yaml).expect("parse s3 config");
    bench_backend(criterion, &runtime, "s3s-fs", &config);
}

criterion_group!(benches, ranged_reads);
criterion_main!(benches);
