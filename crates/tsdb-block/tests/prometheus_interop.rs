//! Blocks written by [`BlockWriter`] load in a real Prometheus 2.42 server, which answers range
//! queries with exactly the samples written; promtool's dump of them equals ours.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;

use prom_model::Labels;
use test_harness::{Prometheus, PrometheusConfig};
use tsdb_block::reader::BlockReader;
use tsdb_block::writer::{BlockWriter, symbols_of};

/// A 2h-aligned start (ms) far from now, kept by the test server's long retention.
const START_MS: i64 = 1_599_998_400_000;
const STEP_MS: i64 = 15_000;
const POINTS: i64 = 400;

fn generated() -> BTreeMap<Labels, Vec<(i64, f64)>> {
    let mut series = BTreeMap::new();
    for index in 0..6i64 {
        let labels = Labels::from_pairs([
            ("__name__", "written_metric".to_owned()),
            ("instance", format!("host-{index}")),
            (
                "kind",
                if index % 2 == 0 {
                    "even".to_owned()
                } else {
                    "odd \"quoted\" ü".to_owned()
                },
            ),
        ]);
        let samples: Vec<(i64, f64)> = (0..POINTS)
            .filter(|point| index != 3 || !(100..160).contains(point))
            .map(|point| {
                let value = match index {
                    0 => point as f64,
                    1 => (point as f64) * 0.1 - 7.25,
                    2 => 1e300 / (point as f64 + 1.0),
                    _ => ((point * 7919 + index) % 1013) as f64 / 3.0,
                };
                (START_MS + point * STEP_MS, value)
            })
            .collect();
        series.insert(labels, samples);
    }
    series
}

fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|byte| {
            if byte.is_ascii_alphanumeric() || b"-_.~".contains(&byte) {
                (byte as char).to_string()
            } else {
                format!("%{byte:02X}")
            }
        })
        .collect()
}

fn selector(labels: &Labels) -> String {
    let matchers: Vec<String> = labels
        .iter()
        .map(|label| {
            format!(
                "{}={}",
                label.name,
                serde_json::to_string(&label.value).unwrap()
            )
        })
        .collect();
    format!("{{{}}}", matchers.join(","))
}

#[test]
fn prometheus_serves_blocks_written_by_block_writer() {
    let data = tempfile::tempdir().unwrap();
    let series = generated();
    let mut writer = BlockWriter::create(data.path(), symbols_of(series.keys())).unwrap();
    for (labels, samples) in &series {
        writer.add_series_samples(labels, samples).unwrap();
    }
    let (meta, block_dir) = writer.finish().unwrap();
    assert_eq!(meta.stats.num_series, 6);
    assert_eq!(meta.min_time, START_MS);
    assert_eq!(meta.max_time, START_MS + (POINTS - 1) * STEP_MS + 1);
    assert!(
        !data
            .path()
            .join(format!("{}.tmp-for-creation", meta.ulid))
            .exists()
    );

    // Our reader and promtool agree with what was written.
    let block = BlockReader::open(&block_dir).unwrap();
    assert_eq!(
        block.meta().stats.num_samples,
        series.values().map(|s| s.len() as u64).sum::<u64>()
    );
    let promtool_dump = common::promtool_dump(data.path(), &[]);
    assert_eq!(promtool_dump, common::our_dump(data.path(), &[]));
    let expected_lines: usize = series.values().map(Vec::len).sum();
    assert_eq!(
        String::from_utf8(promtool_dump).unwrap().lines().count(),
        expected_lines
    );

    let server = Prometheus::start(PrometheusConfig {
        data_dir: Some(data.path().to_owned()),
        retention: "100y".to_owned(),
        ..PrometheusConfig::default()
    })
    .unwrap();
    for (labels, samples) in &series {
        let path = format!(
            "/api/v1/query_range?query={}&start={}&end={}&step=15",
            percent_encode(&selector(labels)),
            START_MS / 1000,
            (START_MS + (POINTS - 1) * STEP_MS) / 1000
        );
        let body: serde_json::Value = serde_json::from_str(&server.get(&path).unwrap()).unwrap();
        let result = body["data"]["result"].as_array().unwrap();
        assert_eq!(result.len(), 1, "{labels}: {body}");
        let values = result[0]["values"].as_array().unwrap();
        // Points inside a gap shorter than the 5m lookback repeat the sample before the gap;
        // compare only the points that have a sample of their own.
        let answered: BTreeMap<i64, f64> = values
            .iter()
            .map(|pair| {
                let t = (pair[0].as_f64().unwrap() * 1000.0).round() as i64;
                let v: f64 = pair[1].as_str().unwrap().parse().unwrap();
                (t, v)
            })
            .collect();
        for (t, v) in samples {
            let got = answered
                .get(t)
                .unwrap_or_else(|| panic!("{labels}: no point at {t}"));
            assert!(
                common::same_value(*got, *v),
                "{labels} at {t}: {got} != {v}"
            );
        }
    }
}
