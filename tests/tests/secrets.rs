//! Secrets stay secret (issue #24): with the bucket's secret key in the objstore config, every
//! program at debug log level, queries answered and then the bucket gone (so that every bucket
//! error is logged), the key appears in no log line and on no `/metrics` page.

use std::time::Duration;

use e2e::cluster::{now_millis, wait_until_ok};
use e2e::history::HISTORY_METRIC;
use e2e::{BucketKind, Cluster, ClusterOptions, Component};
use test_harness::http_get;

/// A key that no program would print by chance.
const SECRET: &str = "sEcReT-9f3b7c1e-do-not-print";

#[test]
fn the_bucket_secret_is_in_no_log_and_no_metrics_page() {
    let mut cluster = Cluster::start(ClusterOptions {
        bucket: BucketKind::Moto,
        secret_key: SECRET.to_owned(),
    })
    .unwrap();
    assert!(cluster.objstore_yaml().contains(SECRET));
    cluster.wait_history_in_bucket().unwrap();
    let answer = cluster
        .query(&format!("count({HISTORY_METRIC})"), now_millis(), "")
        .unwrap();
    assert!(answer.is_success(), "{:?}", answer.json);

    // Every bucket call fails from here: uploads, syncs and queries log their errors.
    cluster.stop_bucket();
    let store_gateway = cluster.http(Component::StoreGateway);
    let failures_before = bucket_failures(store_gateway);
    wait_until_ok("failed bucket syncs", Duration::from_secs(60), || {
        Ok(bucket_failures(store_gateway) > failures_before)
    })
    .unwrap();
    let _ = cluster.query(
        &format!("count_over_time({HISTORY_METRIC}[12h])"),
        now_millis(),
        "",
    );

    let logs = cluster.all_logs().unwrap();
    let lowercase = logs.to_lowercase();
    assert!(
        lowercase.contains("level=debug") || lowercase.contains("\"level\":\"debug\""),
        "the programs must run at debug level for this test to mean anything"
    );
    assert!(
        lowercase.contains("level=warn") || lowercase.contains("level=error"),
        "the stopped bucket must have caused logged errors"
    );
    assert!(
        !logs.contains(SECRET),
        "the secret key is in a log: {}",
        line_with(&logs, SECRET)
    );
    for component in [
        Component::SidecarA,
        Component::SidecarB,
        Component::StoreGateway,
        Component::Querier,
    ] {
        let (status, metrics) = http_get(cluster.http(component), "/metrics").unwrap();
        assert_eq!(status, 200);
        assert!(
            !metrics.contains(SECRET),
            "the secret key is on {}'s /metrics: {}",
            component.name(),
            line_with(&metrics, SECRET)
        );
    }
}

/// The store gateway's failed syncs and bucket operations so far.
fn bucket_failures(http: std::net::SocketAddr) -> f64 {
    [
        "thanos_blocks_meta_sync_failures_total",
        "thanos_objstore_bucket_operation_failures_total",
    ]
    .iter()
    .filter_map(|name| e2e::cluster::metric(http, name))
    .sum()
}

/// The first line of `text` containing `needle`, for the failure message.
fn line_with<'a>(text: &'a str, needle: &str) -> &'a str {
    text.lines()
        .find(|line| line.contains(needle))
        .unwrap_or_default()
}
