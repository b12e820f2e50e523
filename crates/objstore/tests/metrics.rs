//! Thanos' bucket metrics: names, labels, not-found not counted as failure, and request counts
//! of coalesced ranged reads.

use std::ops::Range;

use bytes::Bytes;
use objstore::{Bucket, BucketOptions, RangeOptions};
use prometheus::Registry;

fn bucket_with(registry: &Registry, max_gap: u64) -> Bucket {
    let options = BucketOptions {
        ranges: RangeOptions {
            max_gap,
            ..RangeOptions::default()
        },
        ..BucketOptions::default()
    };
    Bucket::in_memory("metrics-test", options, registry).expect("open in-memory bucket")
}

/// The value of `name{bucket="metrics-test",operation=...}` (counter or histogram count).
fn value(registry: &Registry, name: &str, operation: &str) -> f64 {
    for family in registry.gather() {
        if family.name() != name {
            continue;
        }
        for metric in family.get_metric() {
            let labels: Vec<(&str, &str)> = metric
                .get_label()
                .iter()
                .map(|label| (label.name(), label.value()))
                .collect();
            if labels.contains(&("bucket", "metrics-test"))
                && labels.contains(&("operation", operation))
            {
                if family.get_field_type() == prometheus::proto::MetricType::HISTOGRAM {
                    return metric.get_histogram().get_sample_count() as f64;
                }
                return metric.get_counter().get_value();
            }
        }
    }
    panic!("no series {name}{{operation={operation:?}}}");
}

#[tokio::test]
async fn operations_are_counted_with_thanos_names_and_labels() {
    let registry = Registry::new();
    let bucket = bucket_with(&registry, 0);
    let total = "thanos_objstore_bucket_operations_total";
    let failures = "thanos_objstore_bucket_operation_failures_total";
    for operation in [
        "get",
        "get_range",
        "exists",
        "upload",
        "delete",
        "iter",
        "attributes",
    ] {
        assert_eq!(
            value(&registry, total, operation),
            0.0,
            "{operation} starts at 0"
        );
    }
    bucket
        .upload("a", Bytes::from_static(b"hello"))
        .await
        .unwrap();
    bucket.get("a").await.unwrap();
    bucket.get_range("a", 1..3).await.unwrap();
    assert!(bucket.exists("a").await.unwrap());
    bucket.attributes("a").await.unwrap();
    bucket.iter("").await.unwrap();
    bucket.delete("a").await.unwrap();
    for operation in [
        "get",
        "get_range",
        "exists",
        "upload",
        "delete",
        "iter",
        "attributes",
    ] {
        assert_eq!(
            value(&registry, total, operation),
            1.0,
            "{operation} counted"
        );
        assert_eq!(
            value(&registry, failures, operation),
            0.0,
            "{operation} no failure"
        );
        assert_eq!(
            value(
                &registry,
                "thanos_objstore_bucket_operation_duration_seconds",
                operation
            ),
            1.0,
            "{operation} timed"
        );
    }
    assert_eq!(
        value(
            &registry,
            "thanos_objstore_bucket_operation_fetched_bytes_total",
            "get"
        ),
        5.0
    );
    assert_eq!(
        value(
            &registry,
            "thanos_objstore_bucket_operation_fetched_bytes_total",
            "get_range"
        ),
        2.0
    );
    let families = registry.gather();
    let upload_time = families
        .iter()
        .find(|family| family.name() == "thanos_objstore_bucket_last_successful_upload_time")
        .expect("last upload time gauge");
    assert!(upload_time.get_metric()[0].get_gauge().get_value() > 1.6e9);
}

#[tokio::test]
async fn missing_objects_are_not_failures_on_reads() {
    let registry = Registry::new();
    let bucket = bucket_with(&registry, 0);
    let failures = "thanos_objstore_bucket_operation_failures_total";
    assert!(bucket.get("missing").await.unwrap_err().is_not_found());
    assert!(
        bucket
            .get_range("missing", 0..1)
            .await
            .unwrap_err()
            .is_not_found()
    );
    assert!(
        bucket
            .attributes("missing")
            .await
            .unwrap_err()
            .is_not_found()
    );
    assert!(!bucket.exists("missing").await.unwrap());
    for operation in ["get", "get_range", "attributes", "exists"] {
        assert_eq!(value(&registry, failures, operation), 0.0, "{operation}");
        assert_eq!(
            value(
                &registry,
                "thanos_objstore_bucket_operations_total",
                operation
            ),
            1.0,
            "{operation}"
        );
    }
    // A range starting past the end is a real failure.
    bucket
        .upload("small", Bytes::from_static(b"abc"))
        .await
        .unwrap();
    let error = bucket.get_range("small", 10..20).await.unwrap_err();
    assert_eq!(error.kind(), objstore::ErrorKind::InvalidRange, "{error}");
    assert_eq!(value(&registry, failures, "get_range"), 1.0);
}

#[tokio::test]
async fn coalescing_reduces_requests() {
    let data = objstore::testing::pseudo_random(1_000_000, 9);
    // 100 ranges of 100 bytes every 1000 bytes: gaps of 900 bytes.
    let ranges: Vec<Range<u64>> = (0..100u64).map(|i| i * 1000..i * 1000 + 100).collect();
    let mut requests = Vec::new();
    for max_gap in [0, 1024] {
        let registry = Registry::new();
        let bucket = bucket_with(&registry, max_gap);
        bucket.upload("object", data.clone()).await.unwrap();
        let parts = bucket.get_ranges("object", &ranges).await.unwrap();
        for (range, part) in ranges.iter().zip(&parts) {
            assert_eq!(*part, data.slice(range.start as usize..range.end as usize));
        }
        requests.push(value(
            &registry,
            "thanos_objstore_bucket_operations_total",
            "get_range",
        ));
    }
    assert_eq!(
        requests,
        vec![100.0, 1.0],
        "requests without and with coalescing"
    );
}

/// `thanos_objstore_bucket_operations_total{operation="get_range"}` of the one bucket on
/// `registry`, whatever its name.
fn get_range_operations(registry: &Registry) -> f64 {
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

/// A FILESYSTEM bucket reads ranges from its files: it merges only ranges less than a page
/// apart, however large the configured gap, and the parts are the same.
#[tokio::test]
async fn filesystem_ranges_merge_only_across_small_gaps() {
    let data = objstore::testing::pseudo_random(1_000_000, 7);
    // 100 ranges of 100 bytes: gaps of 900 bytes, then of 9,900 bytes.
    let near: Vec<Range<u64>> = (0..100u64).map(|i| i * 1000..i * 1000 + 100).collect();
    let far: Vec<Range<u64>> = (0..100u64).map(|i| i * 10_000..i * 10_000 + 100).collect();
    let mut requests = Vec::new();
    for ranges in [&near, &far] {
        let dir = tempfile::tempdir().unwrap();
        let registry = Registry::new();
        let yaml = format!(
            "type: FILESYSTEM\nconfig:\n  directory: {}\n",
            dir.path().display()
        );
        let config = objstore::ObjstoreConfig::parse(&yaml).unwrap();
        let options = BucketOptions {
            ranges: RangeOptions {
                max_gap: 1 << 20,
                ..RangeOptions::default()
            },
            ..BucketOptions::default()
        };
        let bucket = Bucket::from_config(&config, options, &registry)
            .await
            .unwrap();
        bucket.upload("dir/object", data.clone()).await.unwrap();
        let mut asked = ranges.clone();
        // One range past the end stops there.
        asked.push(999_990..1_000_100);
        let parts = bucket.get_ranges("dir/object", &asked).await.unwrap();
        for (range, part) in asked.iter().zip(&parts) {
            let end = range.end.min(1_000_000) as usize;
            assert_eq!(*part, data.slice(range.start as usize..end), "{range:?}");
        }
        requests.push(get_range_operations(&registry));
        // A range starting past the end is still an invalid range.
        let error = bucket
            .get_ranges("dir/object", &[0..10, 1_000_000..1_000_010])
            .await
            .unwrap_err();
        assert_eq!(error.kind(), objstore::ErrorKind::InvalidRange, "{error}");
    }
    assert_eq!(requests, vec![2.0, 101.0], "reads of near and far ranges");
}

#[tokio::test]
async fn two_buckets_share_a_registry_but_not_a_name() {
    let registry = Registry::new();
    let _first = Bucket::in_memory("one", BucketOptions::default(), &registry).unwrap();
    let _second = Bucket::in_memory("two", BucketOptions::default(), &registry).unwrap();
    let error = Bucket::in_memory("one", BucketOptions::default(), &registry).unwrap_err();
    assert!(
        error.to_string().contains("register bucket metrics"),
        "{error}"
    );
}
