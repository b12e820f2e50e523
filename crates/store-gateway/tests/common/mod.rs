//! Shared test helpers: real blocks from `promtool`, buckets, and the real binary.

#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use storeapi::proto::thanos;
use storeapi::testing::{SeriesResult, collect_series};
use storeapi::{Compression, StoreClient};
use test_harness::{Process, free_port, http_get, promtool, wait_until};
use tonic::transport::Channel;
use tsdb_block::meta::{BlockMeta, ThanosMeta};

/// Series by their label text (`{a="b", c="d"}`) → samples `(t, v)`.
pub type Dump = BTreeMap<String, Vec<(i64, f64)>>;

/// First sample timestamp of generated data (seconds).
pub const START: i64 = 1_700_000_000;

/// Blocks made by promtool from a generated OpenMetrics file, with a thanos section.
#[derive(Debug)]
pub struct Blocks {
    pub dir: tempfile::TempDir,
    pub ids: Vec<String>,
}

impl Blocks {
    pub fn path(&self, id: &str) -> PathBuf {
        self.dir.path().join(id)
    }
}

/// `series` series of two metrics with one sample a minute for `hours` hours, written by
/// `promtool tsdb create-blocks-from openmetrics`, each block given `labels` as external labels.
pub fn make_blocks(series: usize, hours: i64, labels: &[(&str, &str)]) -> Result<Blocks> {
    let work = tempfile::tempdir()?;
    let mut text = String::new();
    writeln!(
        text,
        "# HELP requests_total Requests.\n# TYPE requests_total counter"
    )?;
    for index in 0..series {
        for step in 0..hours * 60 {
            let t = START + step * 60;
            writeln!(
                text,
                "requests_total{{instance=\"i{index}\",job=\"j{}\"}} {} {t}",
                index % 3,
                step * (index as i64 + 1)
            )?;
        }
    }
    writeln!(
        text,
        "# HELP temperature Temperature.\n# TYPE temperature gauge"
    )?;
    for index in 0..series {
        for step in 0..hours * 60 {
            let t = START + step * 60;
            writeln!(
                text,
                "temperature{{room=\"r{index}\"}} {} {t}",
                (step as f64) * 0.25 - index as f64
            )?;
        }
    }
    text.push_str("# EOF\n");
    let input = work.path().join("data.om");
    std::fs::write(&input, text)?;
    let out = tempfile::tempdir()?;
    let status = Command::new(promtool()?)
        .args(["tsdb", "create-blocks-from", "openmetrics"])
        .arg(&input)
        .arg(out.path())
        .output()?;
    if !status.status.success() {
        bail!(
            "promtool create-blocks-from: {}",
            String::from_utf8_lossy(&status.stderr)
        );
    }
    let mut ids = Vec::new();
    for entry in std::fs::read_dir(out.path())? {
        let path = entry?.path();
        if !path.join("meta.json").exists() {
            continue;
        }
        let mut meta = BlockMeta::read_from_dir(&path)?;
        let external = labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        meta.thanos = Some(ThanosMeta::new(external, 0, "test"));
        meta.write_to_dir(&path)?;
        let _ = std::fs::remove_file(path.join("tombstones"));
        ids.push(meta.ulid.to_string());
    }
    ids.sort();
    Ok(Blocks { dir: out, ids })
}

/// `promtool tsdb dump` of one block (on a copy, with an empty `wal` folder).
pub fn dump(block: &Path) -> Result<Dump> {
    let copy = tempfile::tempdir()?;
    let name = block.file_name().context("block name")?;
    copy_dir(block, &copy.path().join(name))?;
    std::fs::create_dir_all(copy.path().join("wal"))?;
    let output = Command::new(promtool()?)
        .args(["tsdb", "dump"])
        .arg(copy.path())
        .output()?;
    if !output.status.success() {
        bail!(
            "promtool tsdb dump: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let mut dump = Dump::new();
    for line in String::from_utf8(output.stdout)?.lines() {
        let mut parts = line.rsplitn(3, ' ');
        let (Some(t), Some(v), Some(labels)) = (parts.next(), parts.next(), parts.next()) else {
            bail!("unexpected dump line {line:?}");
        };
        dump.entry(labels.to_owned())
            .or_default()
            .push((t.parse()?, v.parse()?));
    }
    Ok(dump)
}

/// Dumps of several blocks merged.
pub fn dump_all(blocks: &Blocks, ids: &[String]) -> Result<Dump> {
    let mut all = Dump::new();
    for id in ids {
        for (labels, samples) in dump(&blocks.path(id))? {
            all.entry(labels).or_default().extend(samples);
        }
    }
    for samples in all.values_mut() {
        samples.sort_by_key(|sample| sample.0);
    }
    Ok(all)
}

pub fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), target)?;
        }
    }
    Ok(())
}

/// The label text promtool prints, without the `skip` labels.
pub fn label_text(labels: &[thanos::Label], skip: &[&str]) -> String {
    let parts: Vec<String> = labels
        .iter()
        .filter(|label| !skip.contains(&label.name.as_str()))
        .map(|label| format!("{}={:?}", label.name, label.value))
        .collect();
    format!("{{{}}}", parts.join(", "))
}

/// Served series as a dump: labels without `skip`, samples decoded from the XOR chunks.
pub fn served_dump(result: &SeriesResult, skip: &[&str]) -> Dump {
    let mut dump = Dump::new();
    for series in &result.series {
        let samples = dump.entry(label_text(&series.labels, skip)).or_default();
        for chunk in &series.chunks {
            let raw = chunk.raw.as_ref().expect("raw chunk");
            for sample in storeapi::chunk::decode_float_samples(raw).expect("xor chunk") {
                samples.push((sample.t, sample.v));
            }
        }
        samples.sort_by_key(|sample| sample.0);
    }
    dump
}

/// A filesystem objstore configuration.
pub fn fs_objstore(dir: &Path) -> String {
    format!(
        "type: FILESYSTEM\nconfig:\n  directory: {}\n",
        dir.display()
    )
}

/// An S3 objstore configuration for moto.
pub fn s3_objstore(endpoint: &str, bucket: &str) -> String {
    format!(
        "type: S3\nconfig:\n  bucket: {bucket}\n  endpoint: {endpoint}\n  insecure: true\n  access_key: test\n  secret_key: test\n  region: us-east-1\n"
    )
}

/// A running store gateway, killed on drop.
#[derive(Debug)]
pub struct Gateway {
    pub process: Process,
    pub grpc: SocketAddr,
    pub http: SocketAddr,
    pub data_dir: tempfile::TempDir,
}

impl Gateway {
    /// Starts the binary and waits for `/-/ready`.
    pub fn start(objstore: &str, extra: &[&str]) -> Result<Self> {
        let gateway = Self::spawn(objstore, extra)?;
        gateway.wait_ready()?;
        Ok(gateway)
    }

    /// Starts the binary without waiting.
    pub fn spawn(objstore: &str, extra: &[&str]) -> Result<Self> {
        let data_dir = tempfile::tempdir()?;
        let grpc: SocketAddr = format!("127.0.0.1:{}", free_port()).parse()?;
        let http: SocketAddr = format!("127.0.0.1:{}", free_port()).parse()?;
        let mut command = Command::new(env!("CARGO_BIN_EXE_store-gateway"));
        command
            .arg(format!("--objstore.config={objstore}"))
            .arg(format!(
                "--data-dir={}",
                data_dir.path().join("data").display()
            ))
            .arg(format!("--grpc-address={grpc}"))
            .arg(format!("--http-address={http}"))
            .arg("--log.level=debug")
            .args(extra);
        let process = Process::spawn("store-gateway", command, data_dir.path())?;
        Ok(Self {
            process,
            grpc,
            http,
            data_dir,
        })
    }

    pub fn wait_ready(&self) -> Result<()> {
        let ready = wait_until("store gateway ready", Duration::from_secs(60), || {
            matches!(http_get(self.http, "/-/ready"), Ok((200, _)))
        });
        if ready.is_err() {
            self.process.print_log();
        }
        ready
    }

    pub fn metrics(&self) -> String {
        http_get(self.http, "/metrics")
            .map(|(_, body)| body)
            .unwrap_or_default()
    }

    /// The sum of a metric's samples whose line contains every one of `filters`.
    pub fn metric(&self, name: &str, filters: &[&str]) -> f64 {
        self.metrics()
            .lines()
            .filter(|line| !line.starts_with('#'))
            .filter(|line| line.starts_with(name) && line[name.len()..].starts_with(['{', ' ']))
            .filter(|line| filters.iter().all(|filter| line.contains(filter)))
            .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    pub async fn client(&self) -> StoreClient<Channel> {
        let channel = storeapi::transport::connect(self.grpc)
            .await
            .expect("connect to the store gateway");
        storeapi::store_client(channel, Compression::None)
    }

    pub async fn info_client(&self) -> storeapi::InfoClient<Channel> {
        let channel = storeapi::transport::connect(self.grpc)
            .await
            .expect("connect to the store gateway");
        storeapi::info_client(channel, Compression::None)
    }
}

/// A Series request over everything with `matchers`.
pub fn request(matchers: Vec<thanos::LabelMatcher>) -> thanos::SeriesRequest {
    thanos::SeriesRequest {
        min_time: i64::MIN,
        max_time: i64::MAX,
        matchers,
        ..Default::default()
    }
}

pub fn re(name: &str, value: &str) -> thanos::LabelMatcher {
    storeapi::testing::matcher(thanos::label_matcher::Type::Re, name, value)
}

pub fn eq(name: &str, value: &str) -> thanos::LabelMatcher {
    storeapi::testing::matcher(thanos::label_matcher::Type::Eq, name, value)
}

/// Calls Series.
pub async fn series(
    gateway: &Gateway,
    request: thanos::SeriesRequest,
) -> Result<SeriesResult, tonic::Status> {
    let mut client = gateway.client().await;
    collect_series(&mut client, request).await
}

/// The block ids in a result's hints.
pub fn queried_blocks(result: &SeriesResult) -> Vec<String> {
    let mut ids: Vec<String> = result
        .hints
        .iter()
        .filter_map(|any| {
            storeapi::hints::unpack::<storeapi::proto::hintspb::SeriesResponseHints>(any).ok()
        })
        .flat_map(|hints| hints.queried_blocks.into_iter().map(|block| block.id))
        .collect();
    ids.sort();
    ids
}

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}
