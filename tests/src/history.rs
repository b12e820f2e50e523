//! The history every replica starts with, written as promtool blocks.
//!
//! Two families, both ending at [`History::end_ms`] just before Prometheus starts:
//! - [`HISTORY_METRIC`]`{series="0".."4"}`: counters with one sample every
//!   [`HISTORY_STEP_MS`]; sample `k` of series `i` has the value `k * (i + 1)`, so counts and sums
//!   over any window are known exactly;
//! - `up{job="thanos-rs", instance=<querier>}` = 1 every [`SCRAPE_INTERVAL_MS`]: the series the
//!   replicas keep scraping once they run, so one series spans bucket history and fresh data.
//!
//! Each replica gets its own `promtool tsdb create-blocks-from openmetrics` run (block ULIDs must
//! differ between replicas, as the sidecars upload both into one bucket).

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};

/// Scrape interval of both Prometheus replicas (and the step of the `up` history), in ms.
pub const SCRAPE_INTERVAL_MS: i64 = 2_000;
/// Step between two samples of [`HISTORY_METRIC`], in ms.
pub const HISTORY_STEP_MS: i64 = 15_000;
/// Length of the history, in ms (3h: promtool cuts it into two or three 2h-aligned blocks).
pub const HISTORY_LENGTH_MS: i64 = 3 * 3_600_000;
/// The history-only counter family.
pub const HISTORY_METRIC: &str = "e2e_history_total";
/// How many [`HISTORY_METRIC`] series there are.
pub const HISTORY_SERIES: usize = 5;

/// The generated history; see the [module docs](self).
#[derive(Debug, Clone)]
pub struct History {
    /// First sample time (ms, a whole second).
    pub start_ms: i64,
    /// Last sample time (ms, a whole second).
    pub end_ms: i64,
    /// The `instance` label of the `up` series (the querier's HTTP address).
    pub up_instance: String,
}

impl History {
    /// A history ending at `end_ms` (rounded down to a whole second), [`HISTORY_LENGTH_MS`] long.
    pub fn ending_at(end_ms: i64, up_instance: &str) -> Self {
        let end_ms = end_ms - end_ms.rem_euclid(1000);
        Self {
            start_ms: end_ms - HISTORY_LENGTH_MS,
            end_ms,
            up_instance: up_instance.to_owned(),
        }
    }

    /// The `(t, v)` samples of `HISTORY_METRIC{series="<series>"}`.
    pub fn counter_samples(&self, series: usize) -> Vec<(i64, f64)> {
        let factor = (series + 1) as f64;
        (0..)
            .map(|k: i64| (self.start_ms + k * HISTORY_STEP_MS, k as f64 * factor))
            .take_while(|(t, _)| *t <= self.end_ms)
            .collect()
    }

    /// Timestamps of the `up` history.
    pub fn up_timestamps(&self) -> Vec<i64> {
        (self.start_ms..=self.end_ms)
            .step_by(SCRAPE_INTERVAL_MS as usize)
            .collect()
    }

    /// The PromQL selector of the `up` series spanning history and fresh data.
    pub fn up_selector(&self) -> String {
        format!("up{{job=\"thanos-rs\",instance=\"{}\"}}", self.up_instance)
    }

    /// The history as OpenMetrics text (timestamps in seconds, families contiguous).
    pub fn openmetrics(&self) -> String {
        let mut text = String::new();
        text.push_str("# TYPE e2e_history counter\n");
        for series in 0..HISTORY_SERIES {
            for (t, v) in self.counter_samples(series) {
                let _ = writeln!(
                    text,
                    "{HISTORY_METRIC}{{series=\"{series}\"}} {v} {}",
                    seconds(t)
                );
            }
        }
        text.push_str("# TYPE up gauge\n");
        for t in self.up_timestamps() {
            let _ = writeln!(
                text,
                "up{{instance=\"{}\",job=\"thanos-rs\"}} 1 {}",
                self.up_instance,
                seconds(t)
            );
        }
        text.push_str("# EOF\n");
        text
    }

    /// Writes the history as blocks into the TSDB folder `data_dir` with promtool; returns how
    /// many blocks it holds afterwards.
    pub fn write_blocks(&self, data_dir: &Path) -> Result<usize> {
        std::fs::create_dir_all(data_dir)?;
        let input = data_dir.with_extension("om");
        std::fs::write(&input, self.openmetrics())?;
        let output = Command::new(test_harness::promtool()?)
            .args(["tsdb", "create-blocks-from", "openmetrics"])
            .arg(&input)
            .arg(data_dir)
            .output()
            .context("run promtool tsdb create-blocks-from openmetrics")?;
        if !output.status.success() {
            bail!(
                "promtool tsdb create-blocks-from openmetrics: {}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        std::fs::remove_file(&input)?;
        block_count(data_dir)
    }
}

/// How many block folders (ULID names with a `meta.json`) `dir` holds.
pub fn block_count(dir: &Path) -> Result<usize> {
    let mut blocks = 0;
    for entry in std::fs::read_dir(dir).with_context(|| format!("list {}", dir.display()))? {
        let entry = entry?;
        let is_ulid = entry.file_name().len() == 26;
        if is_ulid && entry.path().join("meta.json").is_file() {
            blocks += 1;
        }
    }
    Ok(blocks)
}

fn seconds(millis: i64) -> String {
    format!("{}.{:03}", millis.div_euclid(1000), millis.rem_euclid(1000))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_samples_are_known_exactly() {
        let history = History::ending_at(HISTORY_LENGTH_MS + 10_500, "127.0.0.1:1");
        assert_eq!(history.end_ms, HISTORY_LENGTH_MS + 10_000);
        assert_eq!(history.start_ms, 10_000);
        let samples = history.counter_samples(1);
        assert_eq!(
            samples.len() as i64,
            HISTORY_LENGTH_MS / HISTORY_STEP_MS + 1
        );
        assert_eq!(samples[2], (10_000 + 2 * HISTORY_STEP_MS, 4.0));
        assert_eq!(
            history.up_timestamps().len() as i64,
            HISTORY_LENGTH_MS / SCRAPE_INTERVAL_MS + 1
        );
        let text = history.openmetrics();
        assert!(
            text.contains("e2e_history_total{series=\"1\"} 2 25.000\n"),
            "{text:.300}"
        );
        assert!(text.ends_with("# EOF\n"));
    }
}
