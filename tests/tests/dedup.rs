//! The querier answers from both Prometheus replicas, de-duplicated along `replica`.

use std::collections::BTreeSet;
use std::time::Instant;

use e2e::api::labels;
use e2e::cluster::now_millis;
use e2e::{Cluster, ClusterOptions, SCRAPE_INTERVAL_MS, points};

/// The thanos-rs targets both replicas scrape: two sidecars, the store gateway, the querier.
const THANOS_TARGETS: usize = 4;

#[test]
fn querier_answers_from_both_replicas_deduplicated() {
    let started = Instant::now();
    let cluster = Cluster::start(ClusterOptions::default()).unwrap();
    let stores = cluster.healthy_stores().unwrap();
    let sidecar_labels: BTreeSet<String> = stores
        .iter()
        .filter(|(component, _, _)| component == "sidecar")
        .map(|(_, _, label_sets)| label_sets.clone())
        .collect();
    assert_eq!(
        sidecar_labels,
        BTreeSet::from([
            "[{\"replica\":\"a\"}]".to_owned(),
            "[{\"replica\":\"b\"}]".to_owned()
        ]),
        "{stores:?}"
    );
    cluster.wait_fresh_samples(5).unwrap();
    let now = now_millis();

    // Every target is scraped by both replicas: one series each once de-duplicated, without
    // the replica label...
    let deduplicated = cluster.query("up{job=\"thanos-rs\"}", now, "").unwrap();
    assert!(deduplicated.is_success(), "{:?}", deduplicated.json);
    let series: Vec<Vec<String>> = deduplicated.result().iter().map(labels).collect();
    assert_eq!(series.len(), THANOS_TARGETS, "{series:?}");
    for one in &series {
        assert!(
            one.iter().all(|label| !label.starts_with("replica=")),
            "{series:?}"
        );
    }
    // ... and one series per replica without de-duplication.
    let raw = cluster
        .query("up{job=\"thanos-rs\"}", now, "&dedup=false")
        .unwrap();
    assert!(raw.is_success(), "{:?}", raw.json);
    let replicas: Vec<String> = raw
        .result()
        .iter()
        .flat_map(labels)
        .filter(|label| label.starts_with("replica="))
        .collect();
    assert_eq!(replicas.len(), 2 * THANOS_TARGETS, "{:?}", raw.json);
    assert_eq!(
        replicas
            .iter()
            .filter(|label| *label == "replica=a")
            .count(),
        THANOS_TARGETS
    );

    // Each replica scrapes itself: two distinct series even de-duplicated.
    let own = cluster
        .query("count(up{job=\"prometheus\"})", now, "")
        .unwrap();
    assert_eq!(points(&own.result()[0])[0].1, 2.0, "{:?}", own.json);

    // De-duplicated raw samples follow one replica: no timestamp twice and about one sample per
    // scrape interval, where both replicas together hold twice as many.
    let window_ms = 10 * SCRAPE_INTERVAL_MS;
    let selector = format!("{}[{window_ms}ms]", cluster.history().up_selector());
    let one = cluster.query(&selector, now, "").unwrap();
    assert_eq!(one.result().len(), 1, "{:?}", one.json);
    let samples = points(&one.result()[0]);
    let timestamps: BTreeSet<i64> = samples.iter().map(|(t, _)| *t).collect();
    assert_eq!(timestamps.len(), samples.len(), "{samples:?}");
    assert!(
        samples.len() as i64 <= window_ms / SCRAPE_INTERVAL_MS + 1,
        "de-duplicated answer has {} samples in {window_ms} ms: {samples:?}",
        samples.len()
    );
    let both = cluster.query(&selector, now, "&dedup=false").unwrap();
    let per_replica: Vec<usize> = both.result().iter().map(|s| points(s).len()).collect();
    assert_eq!(per_replica.len(), 2, "{:?}", both.json);
    assert!(
        per_replica.iter().sum::<usize>() > samples.len(),
        "{per_replica:?} vs {}",
        samples.len()
    );

    // Dropping the cluster stops every program it started.
    let pids = cluster.pids();
    assert_eq!(pids.len(), 6);
    drop(cluster);
    for pid in pids {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        assert!(
            stat.is_empty() || stat.contains(") Z"),
            "process {pid} still running: {stat}"
        );
    }
    eprintln!(
        "querier_answers_from_both_replicas_deduplicated: {:?}",
        started.elapsed()
    );
}
