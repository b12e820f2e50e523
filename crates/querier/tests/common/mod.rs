//! Shared helpers: in-process stores, the real `querier` binary, HTTP calls.

#![allow(dead_code, missing_docs, unreachable_pub, clippy::unwrap_used)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::Duration;

use prom_model::{Labels, Sample};
use serde_json::Value;
use storeapi::transport::{RunningServer, serve_store};
use storeapi::{MemoryStore, SeriesData};
use test_harness::{Process, free_port, http_get, wait_until};

/// Starts an in-memory store on 127.0.0.1 with `external` labels.
pub async fn start_store(external: &[(&str, &str)], series: Vec<SeriesData>) -> RunningServer {
    let store = MemoryStore::new(Labels::from_pairs(external.iter().copied()), series);
    serve_store("127.0.0.1:0", store.clone(), store)
        .await
        .unwrap()
}

/// One series from labels and `(t, v)` pairs.
pub fn series(
    labels: &[(&str, &str)],
    samples: impl IntoIterator<Item = (i64, f64)>,
) -> SeriesData {
    SeriesData::new(
        Labels::from_pairs(labels.iter().copied()),
        samples
            .into_iter()
            .map(|(t, v)| Sample::new(t, v))
            .collect(),
    )
}

/// `count` series `{__name__=metric, job="j0"}` … `job="j<count-1>"`, each with `points`
/// samples of `value` every 15 s from `start`.
pub fn series_per_job(
    metric: &str,
    count: usize,
    start: i64,
    points: i64,
    value: f64,
) -> Vec<SeriesData> {
    (0..count)
        .map(|index| {
            let job = format!("j{index}");
            series(
                &[("__name__", metric), ("job", job.as_str())],
                (0..points).map(|i| (start + i * 15_000, value)),
            )
        })
        .collect()
}

/// The running querier binary, killed on drop.
pub struct Querier {
    pub process: Process,
    pub http: SocketAddr,
    pub grpc: SocketAddr,
    /// `--web.route-prefix`, normalised (`/thanos` or empty).
    pub prefix: String,
    _dir: tempfile::TempDir,
}

impl Querier {
    /// Starts the querier with `args`, waits for `/-/ready` and for `healthy_stores` healthy
    /// stores.
    pub fn start(args: &[String], healthy_stores: usize) -> Querier {
        let dir = tempfile::tempdir().unwrap();
        let http: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let grpc: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let mut command = Command::new(env!("CARGO_BIN_EXE_querier"));
        command
            .arg(format!("--http-address={http}"))
            .arg(format!("--grpc-address={grpc}"))
            .arg("--log.level=debug")
            .args(args);
        let process = Process::spawn("querier", command, dir.path()).unwrap();
        let prefix = args
            .iter()
            .find_map(|arg| arg.strip_prefix("--web.route-prefix="))
            .map(|prefix| prefix.trim_end_matches('/').to_owned())
            .unwrap_or_default();
        let querier = Querier {
            process,
            http,
            grpc,
            prefix,
            _dir: dir,
        };
        let ready = wait_until("querier ready", Duration::from_secs(30), || {
            matches!(http_get(http, "/-/ready"), Ok((200, _)))
        });
        if let Err(error) = ready {
            querier.process.print_log();
            panic!("{error}");
        }
        let healthy = wait_until("healthy stores", Duration::from_secs(30), || {
            querier.healthy_stores() >= healthy_stores
        });
        if let Err(error) = healthy {
            querier.process.print_log();
            panic!("{error}");
        }
        querier
    }

    /// How many stores `/api/v1/stores` lists without an error.
    pub fn healthy_stores(&self) -> usize {
        let Ok((200, body)) = http_get(self.http, &format!("{}/api/v1/stores", self.prefix)) else {
            return 0;
        };
        let Ok(json) = serde_json::from_str::<Value>(&body) else {
            return 0;
        };
        json["data"]
            .as_object()
            .map(|groups| {
                groups
                    .values()
                    .flat_map(|items| items.as_array().cloned().unwrap_or_default())
                    .filter(|item| item["lastError"].is_null())
                    .count()
            })
            .unwrap_or(0)
    }

    /// GET: status and parsed JSON body.
    pub fn get(&self, path_and_query: &str) -> (u16, Value) {
        let (status, body) = http_get(self.http, path_and_query).unwrap();
        let json = serde_json::from_str(&body)
            .unwrap_or_else(|error| panic!("{path_and_query}: {error}: {body}"));
        (status, json)
    }

    /// GET expecting 200; the JSON body.
    pub fn ok(&self, path_and_query: &str) -> Value {
        let (status, json) = self.get(path_and_query);
        assert_eq!(status, 200, "{path_and_query}: {json}");
        assert_eq!(json["status"], "success", "{json}");
        json
    }

    /// POST a urlencoded form: status and parsed JSON body.
    pub fn post(&self, path: &str, form: &str) -> (u16, Value) {
        let mut stream = TcpStream::connect_timeout(&self.http, Duration::from_secs(2)).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        write!(
            stream,
            "POST {path} HTTP/1.0\r\nHost: {}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{form}",
            self.http,
            form.len()
        )
        .unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        let (head, body) = response.split_once("\r\n\r\n").unwrap();
        let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
        (
            status,
            serde_json::from_str(body).unwrap_or_else(|error| panic!("{error}: {body}")),
        )
    }
}

/// `--endpoint=<addr>` for each server.
pub fn endpoints(servers: &[&RunningServer]) -> Vec<String> {
    servers
        .iter()
        .map(|server| format!("--endpoint={}", server.address()))
        .collect()
}

/// Percent-encodes a query parameter value.
pub fn enc(value: &str) -> String {
    let mut out = String::new();
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || b"-_.~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// `(t_ms, value)` pairs of a matrix series' `values`.
pub fn points(series: &Value) -> Vec<(i64, f64)> {
    series["values"]
        .as_array()
        .unwrap()
        .iter()
        .map(|pair| {
            let t = (pair[0].as_f64().unwrap() * 1000.0).round() as i64;
            let v: f64 = pair[1].as_str().unwrap().parse().unwrap();
            (t, v)
        })
        .collect()
}
