//! Two replicas with different gaps behind the real querier: de-duplicated answers have no
//! gaps and no doubled samples; `dedup=false` shows both replicas.

#![allow(clippy::unwrap_used)]

mod common;

use common::{Querier, enc, endpoints, points, series, start_store};

const T0: i64 = 1_700_000_000_000;
const MINUTE: i64 = 60_000;

fn replica(offset: i64, gap: std::ops::Range<i64>, value: f64) -> Vec<(i64, f64)> {
    (0..=120)
        .map(|i| T0 + i * 15_000 + offset)
        .filter(|t| !gap.contains(&(t - T0)))
        .map(|t| (t, value))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_with_different_gaps_merge_without_gaps_or_doubles() {
    let labels = [("__name__", "up"), ("job", "api")];
    let a = start_store(
        &[("cluster", "eu"), ("replica", "a")],
        vec![series(&labels, replica(0, 5 * MINUTE..10 * MINUTE, 1.0))],
    )
    .await;
    let b = start_store(
        &[("cluster", "eu"), ("replica", "b")],
        vec![series(
            &labels,
            replica(3_000, 15 * MINUTE..20 * MINUTE, 2.0),
        )],
    )
    .await;
    let mut args = endpoints(&[&a, &b]);
    args.push("--query.replica-label=replica".to_owned());
    let querier = tokio::task::spawn_blocking(move || Querier::start(&args, 2))
        .await
        .unwrap();

    let end = T0 + 30 * MINUTE;
    let raw = querier.ok(&format!(
        "/api/v1/query?query={}&time={}",
        enc("up[31m]"),
        end as f64 / 1000.0
    ));
    let result = raw["data"]["result"].as_array().unwrap();
    assert_eq!(result.len(), 1, "{raw}");
    assert_eq!(
        result[0]["metric"],
        serde_json::json!({"__name__": "up", "cluster": "eu", "job": "api"})
    );
    let samples = points(&result[0]);
    let gaps: Vec<i64> = samples.windows(2).map(|w| w[1].0 - w[0].0).collect();
    // The penalty (twice the last interval) may skip up to two samples of the other replica
    // at a switch, as in Thanos; a replica's 5m gap never shows.
    assert!(
        gaps.iter().all(|gap| *gap >= 12_000 && *gap <= 45_000),
        "gaps {gaps:?}"
    );
    assert!(
        samples.len() >= 110 && samples.len() <= 121,
        "{} samples",
        samples.len()
    );
    // Both gaps were filled from the other replica.
    assert!(
        samples
            .iter()
            .any(|(t, v)| *v == 2.0 && (T0 + 5 * MINUTE..T0 + 10 * MINUTE).contains(t))
    );
    assert!(
        samples
            .iter()
            .any(|(t, v)| *v == 1.0 && (T0 + 15 * MINUTE..T0 + 20 * MINUTE).contains(t))
    );

    // A range query with a short lookback has a point at every step.
    let range = querier.ok(&format!(
        "/api/v1/query_range?query=up&start={}&end={}&step=15&lookback_delta=40s",
        (T0 + 30_000) / 1000,
        end / 1000
    ));
    let result = range["data"]["result"].as_array().unwrap();
    assert_eq!(result.len(), 1, "{range}");
    assert_eq!(points(&result[0]).len(), 119, "{range}");

    // Without de-duplication both replicas appear with their replica label.
    let both = querier.ok(&format!(
        "/api/v1/query?query={}&time={}&dedup=false",
        enc("count_over_time(up[31m])"),
        end / 1000
    ));
    let result = both["data"]["result"].as_array().unwrap();
    assert_eq!(result.len(), 2, "{both}");
    assert_eq!(result[0]["metric"]["replica"], "a");
    assert_eq!(result[0]["value"][1], "101");
    assert_eq!(result[1]["metric"]["replica"], "b");

    // `replicaLabels[]` overrides the flag: de-duplicating on another label keeps `replica`.
    let other = querier.ok(&format!(
        "/api/v1/query?query=up&time={}&replicaLabels[]=cluster",
        end / 1000
    ));
    let result = other["data"]["result"].as_array().unwrap();
    assert_eq!(result.len(), 2, "{other}");
    assert!(
        result.iter().all(|one| one["metric"]["cluster"].is_null()),
        "{other}"
    );

    // Series and label APIs hide the replica label when de-duplicating.
    let series = querier.ok("/api/v1/series?match[]=up");
    assert_eq!(
        series["data"],
        serde_json::json!([{"__name__": "up", "cluster": "eu", "job": "api"}])
    );
    let names = querier.ok("/api/v1/labels");
    assert_eq!(
        names["data"],
        serde_json::json!(["__name__", "cluster", "job"])
    );
    let names = querier.ok("/api/v1/labels?dedup=false");
    assert_eq!(
        names["data"],
        serde_json::json!(["__name__", "cluster", "job", "replica"])
    );
}
