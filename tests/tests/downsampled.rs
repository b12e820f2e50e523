//! Downsampled blocks (Thanos' 5m and 1h resolutions, aggregate chunks of encoding 0xFF) served
//! by the store gateway and read by the querier through `max_source_resolution`.
//!
//! The bucket holds 48h of raw data in 8h blocks, 5m blocks over the first 40h and a 1h block
//! over the first 24h, all built here: the raw samples aggregated per window as Thanos'
//! downsampler does (count, sum, min, max, and the counter with the batch's first raw sample
//! and last raw value) and written with the aggregate chunk codec and `BlockWriter`. A store
//! gateway and a querier run over it. Checked:
//!
//! - `max_over_time`, `min_over_time` and `sum_over_time` over windows aligned to the
//!   resolution answer exactly the raw answer with `max_source_resolution=5m` and `1h`, also
//!   where a window mixes resolutions (the store fills the 5m gap after 40h with raw blocks, the
//!   1h gap after 24h with 5m blocks); `avg_over_time` within 1e-9 where all of a window is 5m.
//! - `count_over_time` counts what Thanos' querier counts: one point per downsampled window (the
//!   count aggregate's points), so it equals the raw count only where the window is raw. This
//!   is Thanos' behaviour (its querier reads the count aggregate as samples), not raw equality.
//! - `max_source_resolution=auto` reads 5m data at a 25m step and 1h data at a 5h step (the same
//!   answers as the explicit resolutions, not the raw ones), raw data at a 1m step.
//! - `rate` over the downsampled counter is within [`RATE_BOUND`] of the raw rate.

#![allow(clippy::unwrap_used, clippy::print_stderr)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use e2e::api::{QueryAnswer, get_json, query_range_path};
use e2e::binaries::binary;
use e2e::points;
use prom_model::Labels;
use test_harness::{Process, free_port, http_get, wait_until};
use tsdb_block::chunkenc::{AggrPart, Encoding, encode_aggr_chunk, encode_xor};
use tsdb_block::meta::ThanosMeta;
use tsdb_block::writer::{BlockWriter, ChunkData, symbols_of};

const MINUTE: i64 = 60_000;
const HOUR: i64 = 60 * MINUTE;
const DAY: i64 = 24 * HOUR;
const SCRAPE: i64 = 15_000;
const RES_5M: i64 = 5 * MINUTE;
const RES_1H: i64 = HOUR;
/// The raw data's span, from the start.
const SPAN: i64 = 48 * HOUR;
const RAW_BLOCK: i64 = 8 * HOUR;
/// Where the 5m blocks end (raw data only after it).
const END_5M: i64 = 40 * HOUR;
/// Where the 1h block ends (5m and raw data only after it).
const END_1H: i64 = 24 * HOUR;
/// Raw samples per 5m window.
const PER_5M_WINDOW: f64 = (RES_5M / SCRAPE) as f64;
/// Windows per downsampled chunk (Thanos aims at about 120 samples per chunk).
const WINDOWS_PER_CHUNK: usize = 120;
/// Largest relative difference allowed between `rate(x[1h])` over the 5m counter aggregate
/// and over the raw samples. The 5m points see the increase over 11 of the window's 12 5m
/// windows, extrapolated to the hour; the raw rate sees 239 of its 240 scrape intervals. With
/// increments of 1 to 10 per scrape (1,320 an hour on average) the two differ by a few percent.
const RATE_BOUND: f64 = 0.10;

/// One series and its raw samples.
struct Series {
    labels: Labels,
    samples: Vec<(i64, f64)>,
}

/// A deterministic pseudo-random sequence (xorshift64*).
struct Noise(u64);

impl Noise {
    fn next(&mut self, below: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % below
    }
}

/// Two integer-valued gauges (sums stay exact in floating point) and two counters without
/// resets, one sample every [`SCRAPE`] over `span` from `start`.
fn data(start: i64, span: i64) -> Vec<Series> {
    let mut all = Vec::new();
    for (index, name) in ["a", "b"].into_iter().enumerate() {
        let mut noise = Noise(0x9E37_79B9_7F4A_7C15 + index as u64);
        let gauge = (start..start + span)
            .step_by(SCRAPE as usize)
            .map(|t| (t, noise.next(1_000) as f64 - 500.0))
            .collect();
        all.push(Series {
            labels: Labels::from_pairs([("__name__", "load"), ("series", name)]),
            samples: gauge,
        });
        let mut total = 1_000.0;
        let counter = (start..start + span)
            .step_by(SCRAPE as usize)
            .map(|t| {
                total += (1 + noise.next(10)) as f64;
                (t, total)
            })
            .collect();
        all.push(Series {
            labels: Labels::from_pairs([("__name__", "requests_total"), ("series", name)]),
            samples: counter,
        });
    }
    all.sort_by(|left, right| left.labels.cmp(&right.labels));
    all
}

/// The inclusive end of the `resolution` window holding `t`.
fn window_end(t: i64, resolution: i64) -> i64 {
    t - t.rem_euclid(resolution) + resolution - 1
}

/// One downsampled point: a window's aggregates at its (clamped) end.
#[derive(Debug, Clone, Copy)]
struct Window {
    t: i64,
    count: f64,
    sum: f64,
    min: f64,
    max: f64,
    /// The counter at the window's last sample (the raw value: the data has no resets).
    counter: f64,
}

/// The windows of `batch` (raw samples of whole windows), timestamps clamped to the batch's
/// last sample as Thanos' downsampler clamps them.
fn aggregate(batch: &[(i64, f64)], resolution: i64) -> Vec<Window> {
    let last_t = batch.last().unwrap().0;
    let mut windows: Vec<Window> = Vec::new();
    for &(t, v) in batch {
        let end = window_end(t, resolution).min(last_t);
        match windows.last_mut() {
            Some(window) if window.t == end => {
                window.count += 1.0;
                window.sum += v;
                window.min = window.min.min(v);
                window.max = window.max.max(v);
                window.counter = v;
            }
            _ => windows.push(Window {
                t: end,
                count: 1.0,
                sum: v,
                min: v,
                max: v,
                counter: v,
            }),
        }
    }
    windows
}

/// The downsampled chunks of `samples`: batches of [`WINDOWS_PER_CHUNK`] whole windows, each
/// an aggregate chunk; `(min_time, max_time, data)` with the times of the first and last window
/// as Thanos' chunk metas have them.
fn downsample(samples: &[(i64, f64)], resolution: i64) -> Vec<(i64, i64, Vec<u8>)> {
    let mut chunks = Vec::new();
    let mut rest = samples;
    while !rest.is_empty() {
        let first_window = window_end(rest[0].0, resolution);
        let batch_end = first_window + (WINDOWS_PER_CHUNK as i64 - 1) * resolution;
        let cut = rest.partition_point(|(t, _)| *t <= batch_end);
        let (batch, after) = rest.split_at(cut);
        rest = after;
        let windows = aggregate(batch, resolution);
        let part = |value: fn(&Window) -> f64| -> Vec<u8> {
            let points: Vec<(i64, f64)> = windows.iter().map(|w| (w.t, value(w))).collect();
            encode_xor(&points).into_bytes()
        };
        let (first, last) = (batch[0], batch[batch.len() - 1]);
        let mut counter: Vec<(i64, f64)> = vec![first];
        counter.extend(windows.iter().map(|w| (w.t, w.counter)));
        counter.push((windows.last().unwrap().t, last.1));
        let datas = [
            part(|w| w.count),
            part(|w| w.sum),
            part(|w| w.min),
            part(|w| w.max),
            encode_xor(&counter).into_bytes(),
        ];
        let parts = std::array::from_fn(|index| {
            Some(AggrPart {
                encoding: Encoding::Xor,
                data: &datas[index],
            })
        });
        chunks.push((
            windows[0].t,
            windows.last().unwrap().t,
            encode_aggr_chunk(&parts),
        ));
    }
    chunks
}

/// Writes one block over `[from, to)` of `series` at `resolution` into `bucket`.
fn write_block(bucket: &Path, series: &[Series], from: i64, to: i64, resolution: i64) {
    let symbols = symbols_of(series.iter().map(|s| &s.labels));
    let mut writer = BlockWriter::create(bucket, symbols).unwrap();
    for one in series {
        let start = one.samples.partition_point(|(t, _)| *t < from);
        let end = one.samples.partition_point(|(t, _)| *t < to);
        let samples = &one.samples[start..end];
        if resolution == 0 {
            writer.add_series_samples(&one.labels, samples).unwrap();
            continue;
        }
        let chunks = downsample(samples, resolution);
        let data: Vec<ChunkData<'_>> = chunks
            .iter()
            .map(|(min_time, max_time, data)| ChunkData {
                min_time: *min_time,
                max_time: *max_time,
                encoding: Encoding::ThanosAggr,
                data,
            })
            .collect();
        writer.add_series(&one.labels, &data).unwrap();
    }
    writer.set_time_range(from, to);
    let (mut meta, block_dir) = writer.finish().unwrap();
    let source = if resolution == 0 {
        "sidecar"
    } else {
        "compactor"
    };
    let mut thanos = ThanosMeta::new(
        BTreeMap::from([("cluster".to_owned(), "ds".to_owned())]),
        resolution,
        source,
    );
    thanos.files = e2e::blocks::thanos_files(&block_dir).unwrap();
    meta.thanos = Some(thanos);
    meta.write_to_dir(&block_dir).unwrap();
}

/// Raw 8h blocks over [`SPAN`], 5m blocks over `[0, 24h)` and `[24h, 40h)`, a 1h block over
/// `[0, 24h)` (offsets from `start`).
fn write_bucket(bucket: &Path, start: i64, series: &[Series]) {
    for from in (0..SPAN).step_by(RAW_BLOCK as usize) {
        write_block(bucket, series, start + from, start + from + RAW_BLOCK, 0);
    }
    write_block(bucket, series, start, start + END_1H, RES_5M);
    write_block(bucket, series, start + END_1H, start + END_5M, RES_5M);
    write_block(bucket, series, start, start + END_1H, RES_1H);
}

/// A service of ours on free ports, killed on drop.
struct Service {
    process: Process,
    http: SocketAddr,
    grpc: SocketAddr,
}

fn start(name: &str, args: &[String], dir: &Path) -> Service {
    let http: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let grpc: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let mut command = Command::new(binary(name).unwrap());
    command
        .arg(format!("--http-address={http}"))
        .arg(format!("--grpc-address={grpc}"))
        .arg("--http-grace-period=0s")
        .arg("--grpc-grace-period=0s")
        .args(args);
    let mut process = Process::spawn(name, command, dir).unwrap();
    let ready = wait_until(&format!("{name} ready"), Duration::from_secs(60), || {
        matches!(http_get(http, "/-/ready"), Ok((200, _)))
            || matches!(process.try_wait(), Ok(Some(_)))
    });
    if ready.is_err() || !matches!(process.try_wait(), Ok(None)) {
        process.print_log();
        panic!("{name} did not turn ready: {ready:?}");
    }
    Service {
        process,
        http,
        grpc,
    }
}

/// Answers by `series` label, each `(t, value)` pairs.
type Answer = BTreeMap<String, Vec<(i64, f64)>>;

struct Check {
    querier: SocketAddr,
    store: Service,
}

impl Check {
    /// `expr` from `from` to `to` every `step` at `resolution` (`max_source_resolution`).
    fn range(&self, expr: &str, from: i64, to: i64, step: i64, resolution: &str) -> Answer {
        let path = query_range_path(
            expr,
            from,
            to,
            step,
            &format!("&max_source_resolution={resolution}"),
        );
        let answer: QueryAnswer = get_json(self.querier, &path).unwrap();
        if !answer.is_success() {
            self.store.process.print_log();
        }
        assert!(
            answer.is_success(),
            "{expr} at {resolution}: {}",
            answer.json
        );
        assert!(
            answer.warnings().is_empty(),
            "{expr}: {:?}",
            answer.warnings()
        );
        let by_series: Answer = answer
            .result()
            .iter()
            .map(|series| {
                let name = series["metric"]["series"].as_str().unwrap().to_owned();
                (name, points(series))
            })
            .collect();
        assert_eq!(
            by_series.len(),
            2,
            "{expr} at {resolution}: {}",
            answer.json
        );
        let expected_points = ((to - from) / step + 1) as usize;
        for (name, points) in &by_series {
            assert_eq!(
                points.len(),
                expected_points,
                "{expr} {name} at {resolution}"
            );
        }
        by_series
    }
}

/// Whether two answers have the same points, values within `relative` of each other.
fn assert_close(what: &str, got: &Answer, expected: &Answer, relative: f64) -> f64 {
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        expected.keys().collect::<Vec<_>>(),
        "{what}"
    );
    let mut worst = 0.0_f64;
    for (name, points) in got {
        let reference = &expected[name];
        assert_eq!(points.len(), reference.len(), "{what} {name}");
        for (&(t, value), &(expected_t, expected_value)) in points.iter().zip(reference) {
            assert_eq!(t, expected_t, "{what} {name}");
            let difference = (value - expected_value).abs() / expected_value.abs().max(1.0);
            worst = worst.max(difference);
            assert!(
                difference <= relative,
                "{what} {name} at {t}: {value} against {expected_value} (relative {difference})"
            );
        }
    }
    worst
}

/// Raw samples of `series` (by `series` label and metric) in `(t - range, t]`.
fn raw_count(all: &[Series], metric: &str, name: &str, t: i64, range: i64) -> usize {
    let series = all
        .iter()
        .find(|s| s.labels.get("__name__") == Some(metric) && s.labels.get("series") == Some(name))
        .unwrap();
    series
        .samples
        .iter()
        .filter(|(sample_t, _)| *sample_t > t - range && *sample_t <= t)
        .count()
}

#[test]
fn downsampled_blocks_answer_like_raw_data_at_their_resolution() {
    let work = tempfile::tempdir().unwrap();
    let bucket = work.path().join("bucket");
    std::fs::create_dir_all(&bucket).unwrap();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let start_ms = (now - 10 * DAY) / DAY * DAY;
    let series = data(start_ms, SPAN);
    write_bucket(&bucket, start_ms, &series);

    let store = start(
        "store-gateway",
        &[
            format!(
                "--objstore.config=type: FILESYSTEM\nconfig:\n  directory: {}\n",
                bucket.display()
            ),
            format!("--data-dir={}", work.path().join("store").display()),
        ],
        work.path(),
    );
    let querier = start(
        "querier",
        &[
            format!("--endpoint={}", store.grpc),
            "--query.timeout=2m".to_owned(),
        ],
        work.path(),
    );
    wait_until(
        "the querier sees the store",
        Duration::from_secs(60),
        || {
            http_get(querier.http, "/api/v1/stores")
                .map(|(_, body)| body.contains(&store.grpc.to_string()))
                .unwrap_or(false)
        },
    )
    .unwrap();
    // Every block is loaded, downsampled ones included.
    assert_eq!(
        e2e::cluster::metric(store.http, "thanos_bucket_store_blocks_loaded"),
        Some(9.0)
    );
    let check = Check {
        querier: querier.http,
        store,
    };

    // 5m: windows of an hour ending a millisecond before a 5m boundary hold exactly twelve 5m
    // windows, and exactly the raw samples of those windows.
    let from = start_ms + HOUR + RES_5M - 1;
    let to = start_ms + SPAN - 1;
    for function in ["max_over_time", "min_over_time", "sum_over_time"] {
        let expr = format!("{function}(load[1h])");
        let raw = check.range(&expr, from, to, RES_5M, "0s");
        let downsampled = check.range(&expr, from, to, RES_5M, "5m");
        assert_close(&format!("{expr} 5m"), &downsampled, &raw, 0.0);
    }
    let to_5m = start_ms + END_5M - 1;
    let raw = check.range("avg_over_time(load[1h])", from, to_5m, RES_5M, "0s");
    let downsampled = check.range("avg_over_time(load[1h])", from, to_5m, RES_5M, "5m");
    assert_close("avg_over_time 5m", &downsampled, &raw, 1e-9);

    // count_over_time counts the count aggregate's points: one per 5m window before 40h, one
    // per raw sample after.
    let raw = check.range("count_over_time(load[1h])", from, to, RES_5M, "0s");
    let downsampled = check.range("count_over_time(load[1h])", from, to, RES_5M, "5m");
    for (name, points) in &downsampled {
        for &(t, value) in points {
            let lower = t - HOUR;
            let windows_before = ((start_ms + END_5M).min(t + 1) - (lower + 1)).max(0) / RES_5M;
            let raw_after = raw_count(
                &series,
                "load",
                name,
                t,
                (t - (start_ms + END_5M - 1)).clamp(0, HOUR),
            );
            assert_eq!(
                value,
                (windows_before as usize + raw_after) as f64,
                "{name} at {t}"
            );
        }
        let raw_points = &raw[name];
        assert!(raw_points.iter().all(|(_, count)| *count == 4.0 * 60.0));
        assert_eq!(
            points[0].1 * PER_5M_WINDOW,
            raw_points[0].1,
            "a window of 5m data counts windows"
        );
    }

    // 1h: windows of two hours ending before an hour boundary; 1h data before 24h, 5m data
    // up to 40h, raw data after.
    let from_1h = start_ms + 2 * HOUR - 1;
    for function in ["max_over_time", "min_over_time", "sum_over_time"] {
        let expr = format!("{function}(load[2h])");
        let raw = check.range(&expr, from_1h, to, RES_1H, "0s");
        let downsampled = check.range(&expr, from_1h, to, RES_1H, "1h");
        assert_close(&format!("{expr} 1h"), &downsampled, &raw, 0.0);
    }

    // auto: a 25m step allows 5m data, a 5h step 1h data, a 1m step raw data only.
    let counts = "count_over_time(load[2h])";
    let auto_5m = check.range(counts, from_1h, to, 25 * MINUTE, "auto");
    let explicit_5m = check.range(counts, from_1h, to, 25 * MINUTE, "5m");
    let raw_25m = check.range(counts, from_1h, to, 25 * MINUTE, "0s");
    assert_eq!(auto_5m, explicit_5m);
    assert_ne!(auto_5m, raw_25m);
    let auto_1h = check.range(counts, from_1h, to, 5 * HOUR, "auto");
    let explicit_1h = check.range(counts, from_1h, to, 5 * HOUR, "1h");
    assert_eq!(auto_1h, explicit_1h);
    assert_ne!(auto_1h, check.range(counts, from_1h, to, 5 * HOUR, "5m"));
    // Before 24h two 1h windows per 2h.
    assert_eq!(auto_1h["a"][0].1, 2.0);
    let short_to = from_1h + 3 * HOUR;
    assert_eq!(
        check.range(counts, from_1h, short_to, MINUTE, "auto"),
        check.range(counts, from_1h, short_to, MINUTE, "0s")
    );

    // rate over the counter aggregate, against raw.
    let expr = "rate(requests_total[1h])";
    let raw = check.range(expr, from, to, RES_5M, "0s");
    let downsampled = check.range(expr, from, to, RES_5M, "5m");
    let worst = assert_close("rate 5m", &downsampled, &raw, RATE_BOUND);
    eprintln!("rate over 5m data: largest relative difference from raw {worst:.4}");
    assert!(
        worst > 0.0,
        "the 5m rate should not be exactly the raw rate"
    );
}

#[test]
fn blocks_downsampled_by_our_compactor_answer_like_raw_data() {
    let work = tempfile::tempdir().unwrap();
    let bucket = work.path().join("bucket");
    std::fs::create_dir_all(&bucket).unwrap();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    // Raw 8h blocks over a 2d-aligned [0, 48h) plus one more: the compactor merges the first six
    // into a 2d block (the newest is held back) and downsamples that to 5m.
    let start_ms = (now - 10 * DAY) / (2 * DAY) * (2 * DAY);
    let series = data(start_ms, SPAN + RAW_BLOCK);
    for from in (0..SPAN + RAW_BLOCK).step_by(RAW_BLOCK as usize) {
        write_block(
            &bucket,
            &series,
            start_ms + from,
            start_ms + from + RAW_BLOCK,
            0,
        );
    }
    let objstore = format!(
        "--objstore.config=type: FILESYSTEM\nconfig:\n  directory: {}\n",
        bucket.display()
    );
    let output = Command::new(binary("compactor").unwrap())
        .arg(&objstore)
        .arg(format!(
            "--data-dir={}",
            work.path().join("compactor").display()
        ))
        .arg(format!("--http-address=127.0.0.1:{}", free_port()))
        .args(["--consistency-delay=0s", "--delete-delay=0s"])
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "{log}");
    let mut resolutions = Vec::new();
    for entry in std::fs::read_dir(&bucket).unwrap() {
        let dir = entry.unwrap().path();
        if dir.join("meta.json").is_file() {
            let meta = tsdb_block::meta::BlockMeta::read_from_dir(&dir).unwrap();
            resolutions.push((meta.resolution(), meta.max_time - meta.min_time));
        }
    }
    resolutions.sort();
    assert_eq!(
        resolutions,
        [(0, RAW_BLOCK), (0, SPAN), (RES_5M, SPAN)],
        "the 2d block, the newest 8h block and the 5m block: {log}"
    );

    let store = start(
        "store-gateway",
        &[
            objstore,
            format!("--data-dir={}", work.path().join("store").display()),
        ],
        work.path(),
    );
    let querier = start(
        "querier",
        &[
            format!("--endpoint={}", store.grpc),
            "--query.timeout=2m".to_owned(),
        ],
        work.path(),
    );
    wait_until(
        "the querier sees the store",
        Duration::from_secs(60),
        || {
            http_get(querier.http, "/api/v1/stores")
                .map(|(_, body)| body.contains(&store.grpc.to_string()))
                .unwrap_or(false)
        },
    )
    .unwrap();
    let check = Check {
        querier: querier.http,
        store,
    };
    let from = start_ms + HOUR + RES_5M - 1;
    let to = start_ms + SPAN - 1;
    // The 5m block answers: it counts windows, raw data counts samples.
    let counts = "count_over_time(load[1h])";
    assert_eq!(
        check.range(counts, from, to, RES_5M, "5m")["a"][0].1 * PER_5M_WINDOW,
        check.range(counts, from, to, RES_5M, "0s")["a"][0].1
    );
    for function in ["max_over_time", "min_over_time", "sum_over_time"] {
        let expr = format!("{function}(load[1h])");
        let raw = check.range(&expr, from, to, RES_5M, "0s");
        let downsampled = check.range(&expr, from, to, RES_5M, "5m");
        assert_close(&format!("{expr} 5m"), &downsampled, &raw, 0.0);
    }
    let raw = check.range("avg_over_time(load[1h])", from, to, RES_5M, "0s");
    let downsampled = check.range("avg_over_time(load[1h])", from, to, RES_5M, "5m");
    assert_close("avg_over_time 5m", &downsampled, &raw, 1e-9);
    let expr = "rate(requests_total[1h])";
    let raw = check.range(expr, from, to, RES_5M, "0s");
    let downsampled = check.range(expr, from, to, RES_5M, "5m");
    let worst = assert_close("rate 5m", &downsampled, &raw, RATE_BOUND);
    eprintln!("compactor-made 5m data: rate within {worst:.4} of raw");
}
