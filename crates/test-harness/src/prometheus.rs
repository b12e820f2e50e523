//! A real Prometheus server (Debian's `prometheus` package) and its `promtool`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::process::{Process, free_port, http_get, require_program, wait_until};

/// The path of `promtool`, or an error saying how to install it.
pub fn promtool() -> Result<PathBuf> {
    require_program("promtool")
}

/// How to start a [`Prometheus`].
#[derive(Debug, Clone)]
pub struct PrometheusConfig {
    /// External labels (`global.external_labels`), e.g. `replica="a"`.
    pub external_labels: Vec<(String, String)>,
    /// Extra scrape targets as `host:port`, scraped every `scrape_interval`.
    pub scrape_targets: Vec<String>,
    /// Scrape interval (Prometheus also scrapes itself).
    pub scrape_interval: Duration,
    /// The TSDB folder; a fresh temporary folder when `None`. Blocks copied in before the start are
    /// served.
    pub data_dir: Option<PathBuf>,
    /// `--storage.tsdb.retention.time`, e.g. `"100y"` to keep old test blocks.
    pub retention: String,
}

impl Default for PrometheusConfig {
    fn default() -> Self {
        Self {
            external_labels: Vec::new(),
            scrape_targets: Vec::new(),
            scrape_interval: Duration::from_secs(5),
            data_dir: None,
            retention: "100y".to_owned(),
        }
    }
}

/// A running Prometheus on 127.0.0.1, killed on drop.
#[derive(Debug)]
pub struct Prometheus {
    process: Process,
    addr: SocketAddr,
    data_dir: PathBuf,
    _work_dir: tempfile::TempDir,
}

impl Prometheus {
    /// Starts Prometheus with equal min and max block durations (2h), as the sidecar needs, and
    /// waits until `/-/ready` answers 200.
    pub fn start(config: PrometheusConfig) -> Result<Self> {
        let binary = require_program("prometheus")?;
        let work_dir = tempfile::tempdir()?;
        let data_dir = config
            .data_dir
            .clone()
            .unwrap_or_else(|| work_dir.path().join("data"));
        let port = free_port();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse()?;
        let config_path = work_dir.path().join("prometheus.yml");
        std::fs::write(&config_path, render_config(&config, addr))?;

        let mut command = Command::new(binary);
        command
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!("--storage.tsdb.path={}", data_dir.display()))
            .arg(format!(
                "--storage.tsdb.retention.time={}",
                config.retention
            ))
            .arg("--storage.tsdb.min-block-duration=2h")
            .arg("--storage.tsdb.max-block-duration=2h")
            .arg("--web.enable-lifecycle")
            .arg("--web.enable-admin-api")
            .arg(format!("--web.listen-address={addr}"));
        let mut process = Process::spawn("prometheus", command, work_dir.path())?;
        let ready = wait_until("prometheus /-/ready", Duration::from_secs(60), || {
            matches!(http_get(addr, "/-/ready"), Ok((200, _)))
        });
        if let Err(error) = ready {
            process.print_log();
            if let Some(status) = process.try_wait()? {
                bail!("prometheus exited with {status} before it was ready");
            }
            return Err(error);
        }
        Ok(Self {
            process,
            addr,
            data_dir,
            _work_dir: work_dir,
        })
    }

    /// The listen address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The TSDB folder.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The process handle (to stop or kill it in fault tests).
    pub fn process(&mut self) -> &mut Process {
        &mut self.process
    }

    /// GETs `path_and_query` and returns the body of a 200 answer.
    pub fn get(&self, path_and_query: &str) -> Result<String> {
        let (status, body) =
            http_get(self.addr, path_and_query).with_context(|| format!("GET {path_and_query}"))?;
        if status != 200 {
            bail!("GET {path_and_query}: status {status}: {body}");
        }
        Ok(body)
    }
}

fn render_config(config: &PrometheusConfig, own_addr: SocketAddr) -> String {
    let mut yaml = String::from("global:\n");
    yaml.push_str(&format!(
        "  scrape_interval: {}ms\n  evaluation_interval: {}ms\n",
        config.scrape_interval.as_millis(),
        config.scrape_interval.as_millis()
    ));
    if !config.external_labels.is_empty() {
        yaml.push_str("  external_labels:\n");
        for (name, value) in &config.external_labels {
            yaml.push_str(&format!("    {name}: {value:?}\n"));
        }
    }
    yaml.push_str("scrape_configs:\n  - job_name: prometheus\n    static_configs:\n");
    yaml.push_str(&format!("      - targets: [\"{own_addr}\"]\n"));
    if !config.scrape_targets.is_empty() {
        yaml.push_str("  - job_name: thanos-rs\n    static_configs:\n      - targets:\n");
        for target in &config.scrape_targets {
            yaml.push_str(&format!("          - \"{target}\"\n"));
        }
    }
    yaml
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_names_external_labels_and_targets() {
        let config = PrometheusConfig {
            external_labels: vec![("replica".into(), "a".into())],
            scrape_targets: vec!["127.0.0.1:10902".into()],
            ..PrometheusConfig::default()
        };
        let yaml = render_config(&config, "127.0.0.1:9090".parse().unwrap());
        assert!(yaml.contains("replica: \"a\""), "{yaml}");
        assert!(yaml.contains("\"127.0.0.1:10902\""), "{yaml}");
        assert!(yaml.contains("scrape_interval: 5000ms"), "{yaml}");
    }
}
