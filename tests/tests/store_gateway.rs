//! Blocks the sidecars upload are served by the store gateway (S3 bucket on moto).

use std::time::Instant;

use e2e::cluster::{metric, now_millis};
use e2e::history::{HISTORY_METRIC, HISTORY_SERIES};
use e2e::{BucketKind, Cluster, ClusterOptions, Component, points};

#[test]
fn blocks_uploaded_by_the_sidecars_are_served_by_the_store_gateway() {
    let started = Instant::now();
    let mut cluster = Cluster::start(ClusterOptions {
        bucket: BucketKind::Moto,
        ..ClusterOptions::default()
    })
    .unwrap();
    cluster.wait_history_in_bucket().unwrap();
    let [blocks_a, blocks_b] = cluster.blocks_per_replica();
    assert!(blocks_a >= 2 && blocks_b >= 2, "{blocks_a} {blocks_b}");
    // Each sidecar uploaded its replica's blocks exactly once.
    for (component, blocks) in [
        (Component::SidecarA, blocks_a),
        (Component::SidecarB, blocks_b),
    ] {
        let uploads = metric(cluster.http(component), "thanos_shipper_uploads_total");
        assert_eq!(uploads, Some(blocks as f64), "{}", component.name());
    }
    assert_eq!(
        metric(
            cluster.http(Component::StoreGateway),
            "thanos_bucket_store_blocks_loaded"
        ),
        Some((blocks_a + blocks_b) as f64)
    );

    // With every Prometheus and sidecar gone, the whole history still comes back, from the
    // bucket only.
    for component in [
        Component::SidecarA,
        Component::SidecarB,
        Component::PrometheusA,
        Component::PrometheusB,
    ] {
        cluster.kill(component);
    }
    cluster.wait_healthy_stores(1).unwrap();
    let history = cluster.history().clone();
    let now = now_millis();
    let window = format!("{}ms", now - history.start_ms + 1000);
    for series in 0..HISTORY_SERIES {
        let expected = history.counter_samples(series);
        let selector = format!("{HISTORY_METRIC}{{series=\"{series}\"}}[{window}]");
        let answer = cluster.query(&selector, now, "").unwrap();
        assert!(answer.is_success(), "{:?}", answer.json);
        assert_eq!(answer.result().len(), 1, "{:?}", answer.json);
        assert_eq!(points(&answer.result()[0]), expected, "series {series}");
    }
    let up = cluster
        .query(&format!("{}[{window}]", history.up_selector()), now, "")
        .unwrap();
    let up_times: Vec<i64> = points(&up.result()[0]).iter().map(|(t, _)| *t).collect();
    assert_eq!(up_times, history.up_timestamps());

    // Without de-duplication the bucket holds both replicas' copies.
    let both = cluster
        .query(
            &format!("count_over_time({HISTORY_METRIC}{{series=\"0\"}}[{window}])"),
            now,
            "&dedup=false",
        )
        .unwrap();
    let counts: Vec<f64> = both.result().iter().map(|s| points(s)[0].1).collect();
    let expected = history.counter_samples(0).len() as f64;
    assert_eq!(counts, vec![expected, expected], "{:?}", both.json);
    eprintln!(
        "blocks_uploaded_by_the_sidecars_are_served_by_the_store_gateway: {:?}",
        started.elapsed()
    );
}
