//! Helpers for the sidecar's integration tests: start the real `sidecar` binary next to a real
//! Prometheus, build blocks with promtool, open the bucket the sidecar ships to.

#![allow(dead_code, unreachable_pub)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use objstore::{Bucket, BucketOptions, ObjstoreConfig};
use prom_model::Sample;
use storeapi::SeriesData;
use test_harness::{Process, free_port, http_get, promtool, wait_until};

/// A running sidecar, killed on drop.
#[derive(Debug)]
pub struct Sidecar {
    pub process: Process,
    pub http: SocketAddr,
    pub grpc: SocketAddr,
    _log_dir: tempfile::TempDir,
}

impl Sidecar {
    /// Starts the binary with `args` after `--http-address`/`--grpc-address` on free ports.
    pub fn spawn(args: &[String]) -> Result<Self> {
        let log_dir = tempfile::tempdir()?;
        let http: SocketAddr = format!("127.0.0.1:{}", free_port()).parse()?;
        let grpc: SocketAddr = format!("127.0.0.1:{}", free_port()).parse()?;
        // SIDECAR_BINARY runs the tests against another build (e.g. to compare memory figures).
        let binary = std::env::var_os("SIDECAR_BINARY").map_or_else(
            || PathBuf::from(env!("CARGO_BIN_EXE_sidecar")),
            PathBuf::from,
        );
        let mut command = Command::new(binary);
        command
            .args(args)
            .arg(format!("--http-address={http}"))
            .arg(format!("--grpc-address={grpc}"));
        let process = Process::spawn("sidecar", command, log_dir.path())?;
        Ok(Self {
            process,
            http,
            grpc,
            _log_dir: log_dir,
        })
    }

    /// Starts the binary and waits for `/-/ready`.
    pub fn start(args: &[String]) -> Result<Self> {
        let mut sidecar = Self::spawn(args)?;
        sidecar.wait_ready()?;
        Ok(sidecar)
    }

    /// Waits until `/-/ready` answers 200.
    pub fn wait_ready(&mut self) -> Result<()> {
        let http = self.http;
        let ready = wait_until("sidecar /-/ready", Duration::from_secs(60), || {
            matches!(http_get(http, "/-/ready"), Ok((200, _)))
        });
        if ready.is_err() {
            self.process.print_log();
        }
        ready
    }

    /// The value of an unlabelled metric on `/metrics`.
    pub fn metric(&self, name: &str) -> Result<f64> {
        let (_, body) = http_get(self.http, "/metrics")?;
        body.lines()
            .find_map(|line| line.strip_prefix(&format!("{name} ")))
            .context(format!("metric {name} missing"))?
            .trim()
            .parse()
            .context("metric value")
    }

    /// Waits until the shipper finished `passes` passes.
    pub fn wait_passes(&self, passes: f64) -> Result<()> {
        wait_until("shipper passes", Duration::from_secs(90), || {
            self.metric("thanos_shipper_dir_syncs_total")
                .is_ok_and(|value| value >= passes)
        })
    }

    /// gRPC clients.
    pub async fn clients(
        &self,
    ) -> Result<(
        storeapi::StoreClient<tonic::transport::Channel>,
        storeapi::InfoClient<tonic::transport::Channel>,
    )> {
        let channel = storeapi::transport::connect(self.grpc).await?;
        Ok((
            storeapi::store_client(channel.clone(), storeapi::Compression::None),
            storeapi::info_client(channel, storeapi::Compression::None),
        ))
    }
}

/// Thanos objstore YAML for a moto bucket.
pub fn s3_config(endpoint: &str, bucket: &str) -> String {
    format!(
        "type: S3\nconfig:\n  bucket: {bucket}\n  endpoint: {endpoint}\n  insecure: true\n  access_key: test\n  secret_key: test\n"
    )
}

/// Opens the bucket described by `yaml`.
pub async fn open_bucket(yaml: &str) -> Result<Bucket> {
    let config = ObjstoreConfig::parse(yaml)?;
    Ok(Bucket::from_config(
        &config,
        BucketOptions::default(),
        &prometheus::Registry::new(),
    )
    .await?)
}

fn format_value(value: f64) -> String {
    format!("{value:?}")
}

fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Writes `series` as OpenMetrics and converts them into blocks under `out` with promtool.
pub fn promtool_blocks(series: &[SeriesData], out: &Path) -> Result<()> {
    let mut sorted: Vec<&SeriesData> = series.iter().collect();
    sorted.sort_by_key(|one| one.labels.metric_name().unwrap_or_default().to_owned());
    let mut text = String::new();
    for one in sorted {
        let name = one.labels.metric_name().unwrap_or_default();
        let labels: Vec<String> = one
            .labels
            .iter()
            .filter(|label| label.name != "__name__")
            .map(|label| format!("{}=\"{}\"", label.name, escape(&label.value)))
            .collect();
        for Sample { t, v } in &one.samples {
            text.push_str(&format!(
                "{name}{{{}}} {} {}.{:03}\n",
                labels.join(","),
                format_value(*v),
                t / 1000,
                t % 1000
            ));
        }
    }
    text.push_str("# EOF\n");
    let work = tempfile::tempdir()?;
    let input = work.path().join("data.om");
    std::fs::write(&input, text)?;
    std::fs::create_dir_all(out)?;
    let output = Command::new(promtool()?)
        .args(["tsdb", "create-blocks-from", "openmetrics"])
        .arg(&input)
        .arg(out)
        .output()?;
    if !output.status.success() {
        bail!(
            "promtool create-blocks-from openmetrics: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(())
}

/// The ULID folders under `dir`.
pub fn block_dirs(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut blocks = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.len() == 26 && entry.path().join("meta.json").is_file() {
            blocks.push(entry.path());
        }
    }
    blocks.sort();
    Ok(blocks)
}
