//! A deterministic synthetic dataset shared by the differential test and the benchmark: counters
//! with resets, gauges and a classic histogram for several jobs and instances, written as
//! OpenMetrics for `promtool tsdb create-blocks-from openmetrics` and loadable, sample for sample,
//! into a [`MemoryStorage`].
//!
//! Every sample timestamp has a millisecond part between 100 and 900 (the exact value the
//! OpenMetrics parser derives from seconds text), so no sample ever sits on a whole second. As
//! queries are evaluated on whole seconds with whole-second ranges, offsets and subquery steps,
//! no sample lies on a window or lookback boundary, where Prometheus 2 (closed windows) and 3
//! (left-open windows) disagree.

use std::io::Write;
use std::path::Path;
use std::process::Command;

use prom_model::{Labels, Sample};
use promql_engine::MemoryStorage;

/// A small, fast pseudo-random generator (SplitMix64) so data and queries are reproducible.
#[derive(Debug, Clone)]
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`.
    pub(crate) fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in `0..n`.
    pub(crate) fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    pub(crate) fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    pub(crate) fn chance(&mut self, probability: f64) -> bool {
        self.unit() < probability
    }
}

/// The shape of a dataset; its `Debug` text keys cached blocks.
#[derive(Debug, Clone)]
pub(crate) struct Spec {
    /// First scrape, in seconds; a multiple of 2h so blocks align.
    pub(crate) start_s: i64,
    /// Number of scrapes per series.
    pub(crate) scrapes: usize,
    /// Scrape interval in seconds.
    pub(crate) interval_s: i64,
    /// Number of jobs.
    pub(crate) jobs: usize,
    /// Instances per job carrying `app_requests_total`.
    pub(crate) instances: usize,
    /// `method` values of `app_requests_total` (each with codes 200 and 500).
    pub(crate) methods: usize,
    /// Instances per job (the first ones) that also carry errors, gauges and the histogram.
    pub(crate) small_instances: usize,
    /// `method` values of the histogram.
    pub(crate) histogram_methods: usize,
    pub(crate) seed: u64,
}

/// The histogram's bucket bounds as written in `le`.
pub(crate) const BUCKETS: [&str; 7] = ["0.05", "0.1", "0.25", "0.5", "1", "2.5", "+Inf"];
const BUCKET_BOUNDS: [f64; 7] = [0.05, 0.1, 0.25, 0.5, 1.0, 2.5, f64::INFINITY];
const JOBS: [&str; 10] = [
    "api", "web", "batch", "auth", "cache", "db", "edge", "queue", "search", "mail",
];
const METHODS: [&str; 4] = ["get", "post", "put", "delete"];

/// One metric family: its OpenMetrics name and type and its series.
#[derive(Debug)]
pub(crate) struct Family {
    pub(crate) name: &'static str,
    pub(crate) kind: &'static str,
    pub(crate) series: Vec<(Labels, Vec<Sample>)>,
}

/// The whole dataset.
#[derive(Debug)]
pub(crate) struct Dataset {
    pub(crate) families: Vec<Family>,
}

/// The millisecond timestamp Prometheus' OpenMetrics parser makes of `millis` written as seconds
/// with three decimals (it multiplies the parsed float by 1000 and truncates).
fn openmetrics_millis(millis: i64) -> i64 {
    let text = format!("{}.{:03}", millis / 1000, millis % 1000);
    let seconds: f64 = text.parse().unwrap_or(0.0);
    (seconds * 1000.0) as i64
}

fn instance_name(index: usize) -> String {
    format!("host-{index}:{}", 9100 + index % 3)
}

/// Scrape timestamps of one target: the grid plus a jitter of 0–2 s and 100–900 ms.
fn scrape_times(spec: &Spec, rng: &mut Rng) -> Vec<i64> {
    (0..spec.scrapes)
        .map(|i| {
            let grid = (spec.start_s + i as i64 * spec.interval_s) * 1000;
            let jitter = 1000 * rng.below(3) as i64 + 100 + rng.below(801) as i64;
            let t = openmetrics_millis(grid + jitter);
            debug_assert!(t % 1000 != 0);
            t
        })
        .collect()
}

/// A counter from at least 5000, growing by 0–20 per scrape, halving on a rare reset. Halving
/// keeps the rate zero-point clamp far away (the extrapolation to zero always exceeds 1.1× the
/// average sample gap), so Prometheus 2.42's clamp order gives the same result as 3.x's.
fn counter(times: &[i64], rng: &mut Rng) -> Vec<Sample> {
    let mut value = 5000.0 + (rng.below(5000) as f64);
    times
        .iter()
        .map(|&t| {
            if rng.chance(0.002) {
                value = (value / 2.0).floor();
            } else {
                value += rng.below(21) as f64;
            }
            Sample::new(t, value)
        })
        .collect()
}

fn memory_gauge(times: &[i64], rng: &mut Rng) -> Vec<Sample> {
    let mut value = 1e9 + rng.below(1_000_000) as f64 * 1000.0;
    times
        .iter()
        .map(|&t| {
            value += (rng.below(2001) as f64 - 1000.0) * 1024.0;
            Sample::new(t, value)
        })
        .collect()
}

fn temperature_gauge(times: &[i64], rng: &mut Rng) -> Vec<Sample> {
    let phase = rng.unit() * 6.0;
    times
        .iter()
        .enumerate()
        .map(|(i, &t)| {
            let wave = 20.0 * (phase + i as f64 / 40.0).sin();
            let noise = (rng.below(1000) as f64 - 500.0) / 100.0;
            Sample::new(t, ((wave + noise) * 100.0).round() / 100.0)
        })
        .collect()
}

/// Bucket counters, `_count` and `_sum` of one histogram series group.
fn histogram(times: &[i64], rng: &mut Rng) -> (Vec<Vec<Sample>>, Vec<Sample>, Vec<Sample>) {
    let mean = 0.1 + rng.unit() * 0.5;
    let mut cumulative: Vec<f64> = BUCKET_BOUNDS
        .iter()
        .map(|&bound| {
            let share = if bound.is_infinite() {
                1.0
            } else {
                1.0 - (-bound / mean).exp()
            };
            (20_000.0 * share).floor()
        })
        .collect();
    let mut sum = 20_000.0 * mean;
    let mut buckets = vec![Vec::with_capacity(times.len()); BUCKET_BOUNDS.len()];
    let mut counts = Vec::with_capacity(times.len());
    let mut sums = Vec::with_capacity(times.len());
    for &t in times {
        for _ in 0..rng.below(30) {
            let latency = -mean * (1.0 - rng.unit()).ln();
            sum += (latency * 1000.0).round() / 1000.0;
            for (slot, bound) in BUCKET_BOUNDS.iter().enumerate() {
                if latency <= *bound {
                    cumulative[slot] += 1.0;
                }
            }
        }
        for (slot, samples) in buckets.iter_mut().enumerate() {
            samples.push(Sample::new(t, cumulative[slot]));
        }
        counts.push(Sample::new(t, cumulative[BUCKET_BOUNDS.len() - 1]));
        sums.push(Sample::new(t, (sum * 1000.0).round() / 1000.0));
    }
    (buckets, counts, sums)
}

fn labels(pairs: &[(&str, &str)]) -> Labels {
    Labels::from_pairs(pairs.iter().copied())
}

impl Dataset {
    /// Generates the dataset of `spec` (deterministic for a given spec).
    pub(crate) fn generate(spec: &Spec) -> Self {
        let mut rng = Rng::new(spec.seed);
        let mut requests = Family {
            name: "app_requests",
            kind: "counter",
            series: Vec::new(),
        };
        let mut errors = Family {
            name: "app_errors",
            kind: "counter",
            series: Vec::new(),
        };
        let mut memory = Family {
            name: "app_memory_bytes",
            kind: "gauge",
            series: Vec::new(),
        };
        let mut temperature = Family {
            name: "app_temperature_celsius",
            kind: "gauge",
            series: Vec::new(),
        };
        let mut latency = Family {
            name: "app_latency_seconds",
            kind: "histogram",
            series: Vec::new(),
        };
        for job in JOBS.iter().cycle().take(spec.jobs) {
            for instance_index in 0..spec.instances {
                let instance = instance_name(instance_index);
                let times = scrape_times(spec, &mut rng);
                let target = [("job", *job), ("instance", instance.as_str())];
                for method in METHODS.iter().cycle().take(spec.methods) {
                    for code in ["200", "500"] {
                        let mut pairs = target.to_vec();
                        pairs.extend([
                            ("__name__", "app_requests_total"),
                            ("method", method),
                            ("code", code),
                        ]);
                        requests
                            .series
                            .push((labels(&pairs), counter(&times, &mut rng)));
                    }
                }
                if instance_index >= spec.small_instances {
                    continue;
                }
                for kind in ["timeout", "refused"] {
                    let mut pairs = target.to_vec();
                    pairs.extend([("__name__", "app_errors_total"), ("kind", kind)]);
                    errors
                        .series
                        .push((labels(&pairs), counter(&times, &mut rng)));
                }
                let mut pairs = target.to_vec();
                pairs.push(("__name__", "app_memory_bytes"));
                memory
                    .series
                    .push((labels(&pairs), memory_gauge(&times, &mut rng)));
                let mut pairs = target.to_vec();
                pairs.push(("__name__", "app_temperature_celsius"));
                temperature
                    .series
                    .push((labels(&pairs), temperature_gauge(&times, &mut rng)));
                for method in METHODS.iter().cycle().take(spec.histogram_methods) {
                    let (buckets, counts, sums) = histogram(&times, &mut rng);
                    for (le, samples) in BUCKETS.iter().zip(buckets) {
                        let mut pairs = target.to_vec();
                        pairs.extend([
                            ("__name__", "app_latency_seconds_bucket"),
                            ("method", method),
                            ("le", le),
                        ]);
                        latency.series.push((labels(&pairs), samples));
                    }
                    for (name, samples) in [
                        ("app_latency_seconds_count", counts),
                        ("app_latency_seconds_sum", sums),
                    ] {
                        let mut pairs = target.to_vec();
                        pairs.extend([("__name__", name), ("method", method)]);
                        latency.series.push((labels(&pairs), samples));
                    }
                }
            }
        }
        Self {
            families: vec![requests, errors, memory, temperature, latency],
        }
    }

    pub(crate) fn series_count(&self) -> usize {
        self.families.iter().map(|f| f.series.len()).sum()
    }

    pub(crate) fn sample_count(&self) -> usize {
        self.families
            .iter()
            .flat_map(|f| f.series.iter())
            .map(|(_, samples)| samples.len())
            .sum()
    }

    /// First and last sample timestamps (ms).
    pub(crate) fn time_range(&self) -> (i64, i64) {
        let mut range = (i64::MAX, i64::MIN);
        for (_, samples) in self.families.iter().flat_map(|f| f.series.iter()) {
            if let (Some(first), Some(last)) = (samples.first(), samples.last()) {
                range = (range.0.min(first.t), range.1.max(last.t));
            }
        }
        range
    }

    /// Loads every sample into a [`MemoryStorage`], consuming the dataset.
    pub(crate) fn into_storage(self) -> MemoryStorage {
        let mut storage = MemoryStorage::new();
        for family in self.families {
            for (labels, samples) in family.series {
                storage.append(labels, samples);
            }
        }
        storage
    }

    /// Writes the dataset as OpenMetrics text: families contiguous, series time-ordered,
    /// timestamps in seconds with three decimals, final `# EOF`.
    pub(crate) fn write_openmetrics(&self, path: &Path) -> std::io::Result<()> {
        let file = std::fs::File::create(path)?;
        let mut out = std::io::BufWriter::with_capacity(1 << 20, file);
        for family in &self.families {
            writeln!(out, "# TYPE {} {}", family.name, family.kind)?;
            for (labels, samples) in &family.series {
                let name = labels.metric_name().unwrap_or_default();
                let mut prefix = format!("{name}{{");
                let mut first = true;
                for label in labels.iter().filter(|l| l.name != "__name__") {
                    if !first {
                        prefix.push(',');
                    }
                    first = false;
                    prefix.push_str(&format!("{}=\"{}\"", label.name, label.value));
                }
                prefix.push('}');
                for sample in samples {
                    writeln!(
                        out,
                        "{prefix} {} {}.{:03}",
                        sample.v,
                        sample.t / 1000,
                        sample.t % 1000
                    )?;
                }
            }
        }
        writeln!(out, "# EOF")?;
        out.flush()
    }

    /// Writes the dataset as OpenMetrics into `work` and turns it into blocks under `blocks`
    /// with promtool.
    pub(crate) fn create_blocks(&self, work: &Path, blocks: &Path) -> Result<(), String> {
        let promtool = test_harness::promtool().map_err(|error| format!("{error:#}"))?;
        let openmetrics = work.join("data.om");
        self.write_openmetrics(&openmetrics)
            .map_err(|error| format!("write {}: {error}", openmetrics.display()))?;
        std::fs::create_dir_all(blocks).map_err(|error| error.to_string())?;
        let output = Command::new(promtool)
            .args(["tsdb", "create-blocks-from", "openmetrics"])
            .arg(&openmetrics)
            .arg(blocks)
            .output()
            .map_err(|error| format!("run promtool: {error}"))?;
        let _ = std::fs::remove_file(&openmetrics);
        if !output.status.success() {
            return Err(format!(
                "promtool create-blocks-from: {}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ));
        }
        Ok(())
    }
}

/// Copies every block folder (ULID-named) of `blocks` into `data_dir`.
pub(crate) fn copy_blocks(blocks: &Path, data_dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(data_dir)?;
    for entry in std::fs::read_dir(blocks)? {
        let entry = entry?;
        if entry.path().join("meta.json").is_file() {
            copy_dir(&entry.path(), &data_dir.join(entry.file_name()))?;
        }
    }
    Ok(())
}

fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}

/// Percent-encodes a query parameter value.
pub(crate) fn url_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len() * 3);
    for byte in value.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(byte as char)
            }
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

impl Spec {
    /// A stable folder name for these parameters (FNV-1a of the spec's text), for benchmarks
    /// that cache the blocks they write.
    #[allow(dead_code)] // used by the benchmarks, not by every test that includes this module
    pub(crate) fn cache_key(&self) -> String {
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for byte in format!("{self:?}").bytes() {
            hash = (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
        }
        format!("{hash:016x}")
    }
}

/// The data of the heavy benchmarks (the engine's and the querier's, side by side with
/// Prometheus): 8 hours of 15 s scrapes, about 11k series and 21.7M samples.
#[allow(dead_code)] // used by the benchmarks, not by every test that includes this module
pub(crate) fn heavy_spec() -> Spec {
    Spec {
        // 2023-11-14T20:00:00Z, a multiple of 2h.
        start_s: 1_699_992_000,
        scrapes: 8 * 240,
        interval_s: 15,
        jobs: 10,
        instances: 250,
        methods: 2,
        small_instances: 10,
        histogram_methods: 1,
        seed: 7,
    }
}

/// The heavy benchmarks' queries, each run as a range query over the whole of [`heavy_spec`].
#[allow(dead_code)] // used by the benchmarks, not by every test that includes this module
pub(crate) const HEAVY_QUERIES: [&str; 4] = [
    "sum by (job) (rate(app_requests_total[5m]))",
    "histogram_quantile(0.9, sum by (le) (rate(app_latency_seconds_bucket[5m])))",
    r#"count({__name__=~".+"})"#,
    r#"sum(app_requests_total{instance=~".*1.*"})"#,
];
