//! Killing the store gateway gives a partial response with a warning naming it.

use std::time::{Duration, Instant};

use e2e::cluster::{now_millis, wait_until_ok};
use e2e::history::{HISTORY_METRIC, HISTORY_SERIES};
use e2e::{BucketKind, Cluster, ClusterOptions, Component, points};

#[test]
fn killing_the_store_gateway_gives_a_partial_response_with_a_warning() {
    let started = Instant::now();
    let mut cluster = Cluster::start(ClusterOptions {
        bucket: BucketKind::Moto,
        ..ClusterOptions::default()
    })
    .unwrap();
    cluster.wait_history_in_bucket().unwrap();
    let store_gateway = cluster.grpc(Component::StoreGateway);
    let history = cluster.history().clone();
    let expr = format!("count_over_time({HISTORY_METRIC}[4h])");

    let healthy = cluster.query(&expr, now_millis(), "").unwrap();
    assert!(healthy.is_success(), "{:?}", healthy.json);
    assert!(healthy.warnings().is_empty(), "{:?}", healthy.json);

    // The querier checks its stores every 5 s and stops asking one whose check failed. Kill the
    // store gateway right after a check, so the next query still reaches it (and fails there)
    // as a query right after a crash would.
    let before = cluster.last_check(store_gateway).unwrap();
    wait_until_ok("a querier health check", Duration::from_secs(20), || {
        Ok(cluster.last_check(store_gateway)? != before)
    })
    .unwrap();
    cluster.kill(Component::StoreGateway);
    let now = now_millis();
    let partial = cluster.query(&expr, now, "").unwrap();
    assert!(partial.is_success(), "{:?}", partial.json);
    let warnings = partial.warnings();
    assert!(
        warnings
            .iter()
            .any(|warning| warning.contains(&store_gateway.to_string())),
        "no warning naming the store gateway {store_gateway}: {:?}",
        partial.json
    );
    // The sidecars still hold the whole history, so the partial answer is complete here.
    let counts: Vec<f64> = partial.result().iter().map(|s| points(s)[0].1).collect();
    assert_eq!(counts.len(), HISTORY_SERIES, "{:?}", partial.json);
    let expected = history.counter_samples(0).len() as f64;
    assert!(counts.iter().all(|count| *count == expected), "{counts:?}");

    // Without partial responses the same failure is an error naming the store gateway (the
    // querier still believes it healthy until its next check).
    let strict = cluster
        .query(&expr, now_millis(), "&partial_response=false")
        .unwrap();
    assert_eq!(strict.status, 422, "{:?}", strict.json);
    assert_eq!(strict.json["status"], "error", "{:?}", strict.json);
    assert!(
        strict.json["error"]
            .as_str()
            .is_some_and(|error| error.contains(&store_gateway.to_string())),
        "{:?}",
        strict.json
    );

    // After the next check it is listed with its error and left out of queries.
    cluster.wait_healthy_stores(2).unwrap();
    let stores = cluster.get("/api/v1/stores").unwrap();
    assert!(
        stores.json.to_string().contains(&store_gateway.to_string()),
        "{:?}",
        stores.json
    );
    let later = cluster.query(&expr, now_millis(), "").unwrap();
    assert!(later.is_success(), "{:?}", later.json);
    eprintln!(
        "killing_the_store_gateway_gives_a_partial_response_with_a_warning: {:?}",
        started.elapsed()
    );
}
