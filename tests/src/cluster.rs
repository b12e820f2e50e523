//! The topology of `make run`, started from real programs for one test.
//!
//! ```text
//! prometheus-a ── sidecar-a ──┐
//! prometheus-b ── sidecar-b ──┼── querier (--query.replica-label=replica)
//!        bucket ── store-gateway ┘
//! ```
//!
//! Both replicas scrape themselves and the `/metrics` of every thanos-rs component; the sidecars
//! upload the replicas' blocks into the bucket, which the store gateway serves. Every port is
//! chosen free before anything starts, so Prometheus' scrape targets and the querier's endpoints
//! are known up front and a restarted component comes back on the same address.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use serde_json::Value;
use tempfile::TempDir;
use test_harness::{Moto, Process, free_port, http_get, require_program, wait_until};

use crate::api::{self, QueryAnswer};
use crate::binaries::binary;
use crate::history::{History, SCRAPE_INTERVAL_MS};

/// How long one component may take to answer `/-/ready`.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the sidecars and the store gateway may take to ship and load the history.
const UPLOAD_TIMEOUT: Duration = Duration::from_secs(90);
/// The replica label.
pub const REPLICA_LABEL: &str = "replica";

/// One program of the topology.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Component {
    /// Prometheus with `replica="a"`.
    PrometheusA,
    /// Prometheus with `replica="b"`.
    PrometheusB,
    /// The sidecar of replica a.
    SidecarA,
    /// The sidecar of replica b.
    SidecarB,
    /// The store gateway over the bucket.
    StoreGateway,
    /// The querier over both sidecars and the store gateway.
    Querier,
}

impl Component {
    /// Every component, in start order.
    pub const ALL: [Component; 6] = [
        Component::PrometheusA,
        Component::PrometheusB,
        Component::SidecarA,
        Component::SidecarB,
        Component::StoreGateway,
        Component::Querier,
    ];

    /// The log name (`prometheus-a`, `sidecar-b`, `store-gateway`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Component::PrometheusA => "prometheus-a",
            Component::PrometheusB => "prometheus-b",
            Component::SidecarA => "sidecar-a",
            Component::SidecarB => "sidecar-b",
            Component::StoreGateway => "store-gateway",
            Component::Querier => "querier",
        }
    }

    fn index(self) -> usize {
        match self {
            Component::PrometheusA => 0,
            Component::PrometheusB => 1,
            Component::SidecarA => 2,
            Component::SidecarB => 3,
            Component::StoreGateway => 4,
            Component::Querier => 5,
        }
    }
}

/// Where the blocks go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BucketKind {
    /// A `FILESYSTEM` bucket in the test's temporary folder (what `make run` uses).
    Filesystem,
    /// An S3 bucket on a moto server started for the test.
    Moto,
}

/// How to start a [`Cluster`].
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    /// The bucket backend.
    pub bucket: BucketKind,
    /// The S3 secret key every component is given (moto accepts any).
    pub secret_key: String,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        Self {
            bucket: BucketKind::Filesystem,
            secret_key: "test".to_owned(),
        }
    }
}

/// One program with fixed arguments and addresses, started again the same way on restart.
#[derive(Debug)]
struct Node {
    component: Component,
    program: PathBuf,
    args: Vec<String>,
    http: SocketAddr,
    grpc: Option<SocketAddr>,
    starts: usize,
    process: Option<Process>,
}

impl Node {
    fn spawn(&mut self, log_dir: &Path) -> Result<()> {
        let mut command = Command::new(&self.program);
        command.args(&self.args);
        self.starts += 1;
        let log_name = if self.starts == 1 {
            self.component.name().to_owned()
        } else {
            format!("{}.{}", self.component.name(), self.starts)
        };
        self.process = Some(Process::spawn(&log_name, command, log_dir)?);
        Ok(())
    }

    fn wait_ready(&mut self) -> Result<()> {
        let http = self.http;
        let name = self.component.name();
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if matches!(http_get(http, "/-/ready"), Ok((200, _))) {
                return Ok(());
            }
            let Some(process) = self.process.as_mut() else {
                bail!("{name} is not running");
            };
            if let Some(status) = process.try_wait()? {
                process.print_log();
                bail!("{name} exited with {status} before it was ready");
            }
            if Instant::now() > deadline {
                process.print_log();
                bail!("{name} did not answer /-/ready with 200 within {READY_TIMEOUT:?}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// The running topology; see the [module docs](self). Dropping it kills every program.
#[derive(Debug)]
pub struct Cluster {
    nodes: Vec<Node>,
    moto: Option<Moto>,
    moto_pid: Option<u32>,
    history: History,
    blocks_per_replica: [usize; 2],
    objstore_yaml: String,
    log_dir: PathBuf,
    // Dropped last: the programs above are killed before their folders go away.
    work: TempDir,
}

impl Cluster {
    /// Writes the history into both replicas' TSDB folders, starts every component in order and
    /// returns once all answer `/-/ready` and the querier sees four healthy stores. On failure the
    /// logs of everything started so far are printed.
    pub fn start(options: ClusterOptions) -> Result<Self> {
        let work = tempfile::Builder::new().prefix("thanos-rs-e2e").tempdir()?;
        let log_dir = work.path().join("logs");
        let mut moto = None;
        let mut moto_pid = None;
        let objstore_yaml = match options.bucket {
            BucketKind::Filesystem => {
                let bucket = work.path().join("bucket");
                std::fs::create_dir_all(&bucket)?;
                format!(
                    "type: FILESYSTEM\nconfig:\n  directory: {}\n",
                    bucket.display()
                )
            }
            BucketKind::Moto => {
                let mut server = Moto::start()?;
                moto_pid = Some(server.process().pid());
                server.create_bucket("thanos")?;
                let yaml = format!(
                    "type: S3\nconfig:\n  bucket: thanos\n  endpoint: {}\n  insecure: true\n  \
                     access_key: test\n  secret_key: {}\n",
                    server.endpoint(),
                    options.secret_key
                );
                moto = Some(server);
                yaml
            }
        };
        let objstore_file = work.path().join("objstore.yml");
        std::fs::write(&objstore_file, &objstore_yaml)?;

        let addr = || -> Result<SocketAddr> { Ok(format!("127.0.0.1:{}", free_port()).parse()?) };
        let http: Vec<SocketAddr> = (0..6).map(|_| addr()).collect::<Result<_>>()?;
        let grpc: Vec<SocketAddr> = (0..6).map(|_| addr()).collect::<Result<_>>()?;
        let querier_http = http[Component::Querier.index()];
        let history = History::ending_at(now_millis(), &querier_http.to_string());

        let prometheus = require_program("prometheus")?;
        let thanos_targets = [
            Component::SidecarA,
            Component::SidecarB,
            Component::StoreGateway,
            Component::Querier,
        ]
        .map(|component| http[component.index()].to_string());
        let mut blocks_per_replica = [0; 2];
        let mut data_dirs = Vec::new();
        let mut nodes = Vec::new();
        for (index, replica) in ["a", "b"].into_iter().enumerate() {
            let data_dir = work.path().join(format!("prometheus-{replica}"));
            blocks_per_replica[index] = history.write_blocks(&data_dir)?;
            data_dirs.push(data_dir.clone());
            let config_file = work.path().join(format!("prometheus-{replica}.yml"));
            std::fs::write(
                &config_file,
                prometheus_config(replica, http[index], &thanos_targets),
            )?;
            nodes.push(Node {
                component: Component::ALL[index],
                program: prometheus.clone(),
                args: vec![
                    format!("--config.file={}", config_file.display()),
                    format!("--storage.tsdb.path={}", data_dir.display()),
                    "--storage.tsdb.retention.time=100y".to_owned(),
                    "--storage.tsdb.min-block-duration=2h".to_owned(),
                    "--storage.tsdb.max-block-duration=2h".to_owned(),
                    "--web.enable-lifecycle".to_owned(),
                    "--web.enable-admin-api".to_owned(),
                    format!("--web.listen-address={}", http[index]),
                ],
                http: http[index],
                grpc: None,
                starts: 0,
                process: None,
            });
        }
        let service = |component: Component, program: &str, extra: Vec<String>| -> Result<Node> {
            let index = component.index();
            let mut args = vec![
                format!("--http-address={}", http[index]),
                format!("--grpc-address={}", grpc[index]),
                "--http-grace-period=1s".to_owned(),
                "--grpc-grace-period=1s".to_owned(),
                "--log.level=debug".to_owned(),
            ];
            args.extend(extra);
            Ok(Node {
                component,
                program: binary(program)?,
                args,
                http: http[index],
                grpc: Some(grpc[index]),
                starts: 0,
                process: None,
            })
        };
        let objstore_flag = format!("--objstore.config-file={}", objstore_file.display());
        for (index, component) in [Component::SidecarA, Component::SidecarB]
            .into_iter()
            .enumerate()
        {
            let extra = vec![
                format!("--prometheus.url=http://{}", http[index]),
                format!("--tsdb.path={}", data_dirs[index].display()),
                objstore_flag.clone(),
                "--shipper.sync-interval=1s".to_owned(),
                "--prometheus.get_config_interval=5s".to_owned(),
            ];
            nodes.push(service(component, "sidecar", extra)?);
        }
        nodes.push(service(
            Component::StoreGateway,
            "store-gateway",
            vec![
                format!("--data-dir={}", work.path().join("store-gateway").display()),
                objstore_flag.clone(),
                "--sync-block-duration=1s".to_owned(),
            ],
        )?);
        let endpoints = [
            Component::SidecarA,
            Component::SidecarB,
            Component::StoreGateway,
        ]
        .map(|component| format!("--endpoint={}", grpc[component.index()]));
        let mut querier_args = vec![format!("--query.replica-label={REPLICA_LABEL}")];
        querier_args.extend(endpoints);
        nodes.push(service(Component::Querier, "querier", querier_args)?);

        let mut cluster = Self {
            nodes,
            moto,
            moto_pid,
            history,
            blocks_per_replica,
            objstore_yaml,
            log_dir,
            work,
        };
        if let Err(error) = cluster.boot() {
            cluster.print_logs();
            return Err(error);
        }
        Ok(cluster)
    }

    fn boot(&mut self) -> Result<()> {
        for component in Component::ALL {
            self.spawn_and_wait(component)?;
        }
        self.wait_healthy_stores(3)
    }

    fn spawn_and_wait(&mut self, component: Component) -> Result<()> {
        let log_dir = self.log_dir.clone();
        let node = &mut self.nodes[component.index()];
        node.spawn(&log_dir)?;
        node.wait_ready()
    }

    /// Waits until the querier lists `count` stores without an error.
    pub fn wait_healthy_stores(&self, count: usize) -> Result<()> {
        wait_until(
            &format!("{count} healthy stores in the querier"),
            Duration::from_secs(30),
            || {
                self.healthy_stores()
                    .is_ok_and(|healthy| healthy.len() == count)
            },
        )
    }

    /// The stores the querier lists without an error: `(component type, name, label sets)`.
    pub fn healthy_stores(&self) -> Result<Vec<(String, String, String)>> {
        Ok(self
            .stores()?
            .into_iter()
            .filter(|store| store.3.is_null())
            .map(|store| (store.0, store.1, store.2))
            .collect())
    }

    /// Every store the querier lists: `(component type, name, label sets JSON, lastError)`.
    fn stores(&self) -> Result<Vec<(String, String, String, Value)>> {
        let answer = self.get("/api/v1/stores")?;
        let groups = answer.json["data"]
            .as_object()
            .context("/api/v1/stores without data")?;
        let mut stores = Vec::new();
        for (component, items) in groups {
            for item in items.as_array().into_iter().flatten() {
                stores.push((
                    component.clone(),
                    item["name"].as_str().unwrap_or_default().to_owned(),
                    item["labelSets"].to_string(),
                    item["lastError"].clone(),
                ));
            }
        }
        Ok(stores)
    }

    /// The querier's `lastCheck` of the store at `address` (changes on every health check).
    pub fn last_check(&self, address: SocketAddr) -> Result<String> {
        let answer = self.get("/api/v1/stores")?;
        let groups = answer.json["data"]
            .as_object()
            .context("/api/v1/stores without data")?;
        for item in groups.values().filter_map(Value::as_array).flatten() {
            if item["name"] == address.to_string().as_str() {
                return Ok(item["lastCheck"].to_string());
            }
        }
        bail!("{address} is not listed in /api/v1/stores: {}", answer.json)
    }

    /// Waits until both sidecars uploaded every history block, the store gateway loaded all of
    /// them, and the querier sees the store gateway serve both replicas' label sets.
    pub fn wait_history_in_bucket(&self) -> Result<()> {
        let total = self.blocks_per_replica[0] + self.blocks_per_replica[1];
        for (index, component) in [Component::SidecarA, Component::SidecarB]
            .into_iter()
            .enumerate()
        {
            let expected = self.blocks_per_replica[index] as f64;
            let http = self.http(component);
            wait_until(
                &format!("{} to upload {expected} blocks", component.name()),
                UPLOAD_TIMEOUT,
                || metric(http, "thanos_shipper_uploads_total").is_some_and(|n| n >= expected),
            )
            .inspect_err(|_| self.print_logs())?;
        }
        let store_gateway = self.http(Component::StoreGateway);
        wait_until(
            &format!("store gateway to load {total} blocks"),
            UPLOAD_TIMEOUT,
            || {
                metric(store_gateway, "thanos_bucket_store_blocks_loaded")
                    .is_some_and(|n| n >= total as f64)
            },
        )
        .inspect_err(|_| self.print_logs())?;
        let store_gateway_grpc = self.grpc(Component::StoreGateway).to_string();
        wait_until(
            "querier to see both replicas in the store gateway",
            Duration::from_secs(30),
            || {
                self.healthy_stores().is_ok_and(|stores| {
                    stores.iter().any(|(_, name, label_sets)| {
                        *name == store_gateway_grpc
                            && label_sets.contains("\"replica\":\"a\"")
                            && label_sets.contains("\"replica\":\"b\"")
                    })
                })
            },
        )
        .inspect_err(|_| self.print_logs())
    }

    /// The history every replica started with.
    pub fn history(&self) -> &History {
        &self.history
    }

    /// How many history blocks each replica's TSDB folder held at start (`[a, b]`).
    pub fn blocks_per_replica(&self) -> [usize; 2] {
        self.blocks_per_replica
    }

    /// The objstore YAML every component uses.
    pub fn objstore_yaml(&self) -> &str {
        &self.objstore_yaml
    }

    /// The test's temporary folder (bucket, TSDB folders, logs).
    pub fn work_dir(&self) -> &Path {
        self.work.path()
    }

    /// Kills the S3 server (moto), so that every bucket call fails from now on.
    pub fn stop_bucket(&mut self) {
        if let Some(moto) = self.moto.as_mut() {
            moto.process().kill();
        }
    }

    /// Every line the programs wrote so far, all logs concatenated.
    pub fn all_logs(&self) -> Result<String> {
        let mut all = String::new();
        for entry in std::fs::read_dir(&self.log_dir)? {
            all.push_str(&std::fs::read_to_string(entry?.path())?);
        }
        Ok(all)
    }

    /// The moto server, when the bucket is S3.
    pub fn moto(&self) -> Option<&Moto> {
        self.moto.as_ref()
    }

    /// The HTTP address of `component`.
    pub fn http(&self, component: Component) -> SocketAddr {
        self.nodes[component.index()].http
    }

    /// `http://host:port` of `component`.
    pub fn url(&self, component: Component) -> String {
        format!("http://{}", self.http(component))
    }

    /// The gRPC (StoreAPI) address of a thanos-rs component; Prometheus' HTTP address otherwise.
    pub fn grpc(&self, component: Component) -> SocketAddr {
        let node = &self.nodes[component.index()];
        node.grpc.unwrap_or(node.http)
    }

    /// Whether `component` is running.
    pub fn is_running(&mut self, component: Component) -> bool {
        self.nodes[component.index()]
            .process
            .as_mut()
            .is_some_and(|process| matches!(process.try_wait(), Ok(None)))
    }

    /// The process ids of every running program (moto included).
    pub fn pids(&self) -> Vec<u32> {
        let mut pids: Vec<u32> = self
            .nodes
            .iter()
            .filter_map(|node| node.process.as_ref().map(Process::pid))
            .collect();
        pids.extend(self.moto_pid);
        pids
    }

    /// Kills `component` with SIGKILL (no clean shutdown).
    pub fn kill(&mut self, component: Component) {
        if let Some(mut process) = self.nodes[component.index()].process.take() {
            process.kill();
        }
    }

    /// Starts `component` again with the same flags and addresses and waits for `/-/ready`.
    pub fn restart(&mut self, component: Component) -> Result<()> {
        self.kill(component);
        self.spawn_and_wait(component)
    }

    /// Prints the log of every component (and moto) to stderr.
    pub fn print_logs(&self) {
        for node in &self.nodes {
            if let Some(process) = &node.process {
                process.print_log();
            }
        }
    }

    /// GETs `path_and_query` from the querier.
    pub fn get(&self, path_and_query: &str) -> Result<QueryAnswer> {
        api::get_json(self.http(Component::Querier), path_and_query)
    }

    /// An instant query at `time_ms` with `extra` parameters (`&dedup=false`, ...).
    pub fn query(&self, expr: &str, time_ms: i64, extra: &str) -> Result<QueryAnswer> {
        self.get(&api::query_path(expr, time_ms, extra))
    }

    /// A range query with `extra` parameters.
    pub fn query_range(
        &self,
        expr: &str,
        start_ms: i64,
        end_ms: i64,
        step_ms: i64,
        extra: &str,
    ) -> Result<QueryAnswer> {
        self.get(&api::query_range_path(
            expr, start_ms, end_ms, step_ms, extra,
        ))
    }

    /// Waits until the replicas scraped at least `samples` fresh samples of the `up` series
    /// that continues the history.
    pub fn wait_fresh_samples(&self, samples: usize) -> Result<()> {
        let selector = self.history.up_selector();
        let end = self.history.end_ms;
        wait_until(
            &format!("{samples} fresh samples of {selector}"),
            Duration::from_secs(60),
            || {
                let now = now_millis();
                let window = format!("{selector}[{}ms]", now - end);
                self.query(&window, now, "").is_ok_and(|answer| {
                    answer
                        .result()
                        .first()
                        .is_some_and(|series| api::points(series).len() >= samples)
                })
            },
        )
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // Stop the querier first and Prometheus last, so nothing logs errors about peers that
        // went away during the teardown. `Process` kills on drop (and prints logs on panic).
        for node in self.nodes.iter_mut().rev() {
            drop(node.process.take());
        }
    }
}

/// The sum of every sample of metric `name` on `http`'s `/metrics`.
pub fn metric(http: SocketAddr, name: &str) -> Option<f64> {
    let (status, body) = http_get(http, "/metrics").ok()?;
    if status != 200 {
        return None;
    }
    let mut sum = None;
    for line in body.lines() {
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        if !(rest.starts_with(' ') || rest.starts_with('{')) {
            continue;
        }
        let value: f64 = rest.rsplit(' ').next()?.parse().ok()?;
        sum = Some(sum.unwrap_or(0.0) + value);
    }
    sum
}

/// Polls `probe` every 200 ms until it returns `Ok(true)` or `timeout` passes; the last error
/// is part of the timeout error.
pub fn wait_until_ok(
    what: &str,
    timeout: Duration,
    mut probe: impl FnMut() -> Result<bool>,
) -> Result<()> {
    let deadline = Instant::now() + timeout;
    let mut last_error = None;
    while Instant::now() < deadline {
        match probe() {
            Ok(true) => return Ok(()),
            Ok(false) => {}
            Err(error) => last_error = Some(error),
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    match last_error {
        Some(error) => {
            bail!("timed out after {timeout:?} waiting for {what}; last error: {error:#}")
        }
        None => bail!("timed out after {timeout:?} waiting for {what}"),
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis() as i64)
}

fn prometheus_config(replica: &str, own: SocketAddr, thanos_targets: &[String]) -> String {
    let targets: Vec<String> = thanos_targets
        .iter()
        .map(|target| format!("\"{target}\""))
        .collect();
    format!(
        "global:\n  scrape_interval: {SCRAPE_INTERVAL_MS}ms\n  evaluation_interval: \
         {SCRAPE_INTERVAL_MS}ms\n  external_labels:\n    {REPLICA_LABEL}: \"{replica}\"\n\
         scrape_configs:\n  - job_name: prometheus\n    static_configs:\n      - targets: \
         [\"{own}\"]\n  - job_name: thanos-rs\n    static_configs:\n      - targets: [{}]\n",
        targets.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prometheus_config_names_replica_and_targets() {
        let yaml = prometheus_config(
            "b",
            "127.0.0.1:9090".parse().unwrap(),
            &["127.0.0.1:1".to_owned(), "127.0.0.1:2".to_owned()],
        );
        assert!(yaml.contains("    replica: \"b\"\n"), "{yaml}");
        assert!(
            yaml.contains("targets: [\"127.0.0.1:1\", \"127.0.0.1:2\"]"),
            "{yaml}"
        );
        assert!(yaml.contains("scrape_interval: 2000ms"), "{yaml}");
    }
}
