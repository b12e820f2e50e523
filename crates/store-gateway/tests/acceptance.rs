//! storeapi's acceptance suite against the real store gateway: the suite's series are written as
//! OpenMetrics, turned into a block by `promtool tsdb create-blocks-from openmetrics`, given the
//! suite's external labels in `meta.json`, and served from a folder bucket.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::process::Command;

use common::*;
use prom_model::Labels;
use storeapi::SeriesData;
use storeapi::testing::{StoreFactory, TestStore, run_acceptance};
use tsdb_block::meta::{BlockMeta, ThanosMeta};

struct GatewayFactory;

fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The series as an OpenMetrics text, grouped by metric name.
fn openmetrics(series: &[SeriesData]) -> String {
    let mut by_name: BTreeMap<String, Vec<&SeriesData>> = BTreeMap::new();
    for one in series {
        by_name
            .entry(one.labels.get("__name__").unwrap_or_default().to_owned())
            .or_default()
            .push(one);
    }
    let mut text = String::new();
    for (name, members) in by_name {
        writeln!(text, "# TYPE {name} unknown").unwrap();
        for one in members {
            let labels: Vec<String> = one
                .labels
                .iter()
                .filter(|label| label.name != "__name__")
                .map(|label| format!("{}=\"{}\"", label.name, escape(&label.value)))
                .collect();
            for sample in &one.samples {
                let seconds = sample.t as f64 / 1000.0;
                writeln!(
                    text,
                    "{name}{{{}}} {} {seconds}",
                    labels.join(","),
                    sample.v
                )
                .unwrap();
            }
        }
    }
    text.push_str("# EOF\n");
    text
}

fn build_bucket(external: &Labels, series: &[SeriesData]) -> tempfile::TempDir {
    let bucket = tempfile::tempdir().unwrap();
    if series.is_empty() {
        return bucket;
    }
    let work = tempfile::tempdir().unwrap();
    let input = work.path().join("data.om");
    std::fs::write(&input, openmetrics(series)).unwrap();
    let out = work.path().join("blocks");
    let output = Command::new(test_harness::promtool().unwrap())
        .args(["tsdb", "create-blocks-from", "openmetrics"])
        .arg(&input)
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "promtool: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    for entry in std::fs::read_dir(&out).unwrap() {
        let path = entry.unwrap().path();
        let mut meta = BlockMeta::read_from_dir(&path).unwrap();
        let labels = external
            .iter()
            .map(|label| (label.name.clone(), label.value.clone()))
            .collect();
        meta.thanos = Some(ThanosMeta::new(labels, 0, "test"));
        meta.write_to_dir(&path).unwrap();
        copy_dir(&path, &bucket.path().join(meta.ulid.to_string())).unwrap();
    }
    bucket
}

impl StoreFactory for GatewayFactory {
    async fn start(&self, external_labels: Labels, series: Vec<SeriesData>) -> TestStore {
        let bucket = build_bucket(&external_labels, &series);
        let gateway =
            Gateway::start(&fs_objstore(bucket.path()), &[]).expect("start the store gateway");
        TestStore {
            store: gateway.client().await,
            info: gateway.info_client().await,
            guard: Box::new((gateway, bucket)),
        }
    }
}

#[test]
fn store_gateway_passes_the_storeapi_acceptance_suite() {
    runtime().block_on(run_acceptance(&GatewayFactory));
}
