//! `storeMatch[]`: selectors on a store's external labels and `__address__` restrict which
//! stores a query, range query, series, labels or label values request reaches.

#![allow(clippy::unwrap_used)]

mod common;

use common::{Querier, enc, endpoints, series, start_store};
use serde_json::Value;

const T0: i64 = 1_700_000_000_000;

/// The sorted `zone` label of every result series.
fn zones(data: &Value) -> Vec<String> {
    let mut zones: Vec<String> = data
        .as_array()
        .unwrap()
        .iter()
        .map(|item| {
            let labels = if item["metric"].is_object() {
                &item["metric"]
            } else {
                item
            };
            labels["zone"].as_str().unwrap_or("").to_owned()
        })
        .collect();
    zones.sort();
    zones
}

fn strings(data: &Value) -> Vec<String> {
    data.as_array()
        .unwrap()
        .iter()
        .map(|value| value.as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_match_restricts_the_stores_asked() {
    // Each store's series carry its zone as a series label, so answers show who answered; the
    // external labels differ too (`site`), and only the store in `b` has the `b_only` label.
    let a = start_store(
        &[("site", "a")],
        vec![series(
            &[("__name__", "up"), ("job", "x"), ("zone", "a")],
            [(T0, 1.0)],
        )],
    )
    .await;
    let b = start_store(
        &[("site", "b")],
        vec![series(
            &[
                ("__name__", "up"),
                ("b_only", "1"),
                ("job", "x"),
                ("zone", "b"),
            ],
            [(T0, 2.0)],
        )],
    )
    .await;
    let a_address = a.address().to_string();
    let b_address = b.address().to_string();
    let querier = Querier::start(&endpoints(&[&a, &b]), 2);
    let time = T0 / 1000 + 10;
    let by_address = |address: &str| enc(&format!("{{__address__=\"{address}\"}}"));

    // No storeMatch[]: both stores.
    let json = querier.ok(&format!("/api/v1/query?query=up&time={time}"));
    assert_eq!(zones(&json["data"]["result"]), ["a", "b"]);

    // By address (Thanos' use): only that store.
    let json = querier.ok(&format!(
        "/api/v1/query?query=up&time={time}&storeMatch[]={}",
        by_address(&b_address)
    ));
    assert_eq!(zones(&json["data"]["result"]), ["b"], "{json}");

    // By external label, on a range query.
    let json = querier.ok(&format!(
        "/api/v1/query_range?query=up&start={time}&end={}&step=5&storeMatch[]={}",
        time + 10,
        enc("{site=\"a\"}")
    ));
    assert_eq!(zones(&json["data"]["result"]), ["a"], "{json}");

    // Several selectors are alternatives; a regex on the address.
    let json = querier.ok(&format!(
        "/api/v1/query?query=up&time={time}&storeMatch[]={}&storeMatch[]={}",
        by_address(&a_address),
        by_address(&b_address)
    ));
    assert_eq!(zones(&json["data"]["result"]), ["a", "b"]);
    let json = querier.ok(&format!(
        "/api/v1/query?query=up&time={time}&storeMatch[]={}",
        enc("{__address__=~\"127\\\\.0\\\\.0\\\\.1:.*\"}")
    ));
    assert_eq!(zones(&json["data"]["result"]), ["a", "b"]);

    // No store matches: empty answer with Thanos' warning.
    let json = querier.ok(&format!(
        "/api/v1/query?query=up&time={time}&storeMatch[]={}",
        by_address("10.0.0.1:1")
    ));
    assert_eq!(zones(&json["data"]["result"]), Vec::<String>::new());
    assert!(
        json["warnings"]
            .to_string()
            .contains("No StoreAPIs matched")
    );

    // Series, labels and label values follow it too.
    let json = querier.ok(&format!(
        "/api/v1/series?match[]=up&start={}&end={}&storeMatch[]={}",
        time - 60,
        time,
        by_address(&a_address)
    ));
    assert_eq!(zones(&json["data"]), ["a"], "{json}");
    let json = querier.ok(&format!(
        "/api/v1/labels?start={}&end={}&storeMatch[]={}",
        time - 60,
        time,
        enc("{site=\"a\"}")
    ));
    assert!(
        !strings(&json["data"]).contains(&"b_only".to_owned()),
        "{json}"
    );
    let json = querier.ok(&format!(
        "/api/v1/labels?start={}&end={}&storeMatch[]={}",
        time - 60,
        time,
        enc("{site=\"b\"}")
    ));
    assert!(
        strings(&json["data"]).contains(&"b_only".to_owned()),
        "{json}"
    );
    let json = querier.ok(&format!(
        "/api/v1/label/zone/values?start={}&end={}&storeMatch[]={}",
        time - 60,
        time,
        by_address(&b_address)
    ));
    assert_eq!(strings(&json["data"]), ["b"], "{json}");
    let json = querier.ok(&format!(
        "/api/v1/label/zone/values?start={}&end={}",
        time - 60,
        time
    ));
    assert_eq!(strings(&json["data"]), ["a", "b"], "{json}");

    // A bad selector is a 400 naming the parameter.
    let (status, json) = querier.get(&format!(
        "/api/v1/query?query=up&time={time}&storeMatch[]={}",
        enc("{__address__=")
    ));
    assert_eq!(status, 400, "{json}");
    assert!(
        json["error"].as_str().unwrap().contains("storeMatch[]"),
        "{json}"
    );
}
