//! The HTTP client for the Prometheus next to the sidecar: readiness, external labels, flags,
//! the lowest sample time, label APIs and remote read.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use prom_model::{Label, Labels, Matcher};
use prost::Message;
use reqwest::Url;
use serde::Deserialize;
use service_core::CancellationToken;
use tracing::{debug, info};

use crate::error::{Error, Result};
use crate::http_client::HttpClientConfig;
use crate::remote_read::{BodyLimits, DEFAULT_SAMPLES_ANSWER_LIMIT, ReadAnswer, read_response};
use storeapi::proto::prometheus::ReadRequest;

/// Oldest time Prometheus' HTTP API accepts comfortably (year 1, ms).
const API_MIN_TIME_MS: i64 = -62_135_596_800_000;
/// Newest time Prometheus' HTTP API accepts comfortably (year 9999, ms).
const API_MAX_TIME_MS: i64 = 253_402_300_799_000;

/// A client for one Prometheus server.
#[derive(Debug, Clone)]
pub struct PrometheusClient {
    http: reqwest::Client,
    auth: HttpClientConfig,
    base: Url,
    api_timeout: Duration,
    read_timeout: Duration,
    samples_answer_limit: u64,
}

#[derive(Deserialize)]
struct ApiAnswer<T> {
    status: String,
    data: Option<T>,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Deserialize)]
struct ConfigData {
    yaml: String,
}

#[derive(Deserialize, Default)]
struct PromConfigFile {
    #[serde(default)]
    global: Option<GlobalConfig>,
}

#[derive(Deserialize, Default)]
struct GlobalConfig {
    #[serde(default)]
    external_labels: Option<BTreeMap<String, String>>,
}

impl PrometheusClient {
    /// A client for `base_url` whose API calls time out after `api_timeout`; remote reads after
    /// `read_timeout`.
    pub fn new(base_url: &str, api_timeout: Duration, read_timeout: Duration) -> Result<Self> {
        Self::with_http_config(
            base_url,
            api_timeout,
            read_timeout,
            HttpClientConfig::default(),
        )
    }

    /// [`Self::new`] with credentials and TLS settings from `--prometheus.http-client(-file)`.
    pub fn with_http_config(
        base_url: &str,
        api_timeout: Duration,
        read_timeout: Duration,
        auth: HttpClientConfig,
    ) -> Result<Self> {
        let mut base = Url::parse(base_url).map_err(|error| Error::InvalidFlag {
            flag: "prometheus.url",
            detail: format!("{base_url:?}: {error}"),
        })?;
        if !base.path().ends_with('/') {
            let path = format!("{}/", base.path());
            base.set_path(&path);
        }
        objstore::tls::install_crypto_provider();
        let http = auth
            .configure(reqwest::Client::builder().connect_timeout(Duration::from_secs(5)))
            .build()
            .map_err(|source| Error::PrometheusRequest {
                url: base.to_string(),
                source,
            })?;
        Ok(Self {
            http,
            auth,
            base,
            api_timeout,
            read_timeout,
            samples_answer_limit: DEFAULT_SAMPLES_ANSWER_LIMIT,
        })
    }

    /// Sets the largest `SAMPLES` remote read answer accepted, compressed or decompressed.
    pub fn with_samples_answer_limit(mut self, bytes: u64) -> Self {
        self.samples_answer_limit = bytes;
        self
    }

    /// The base URL.
    pub fn url(&self) -> &Url {
        &self.base
    }

    fn endpoint(&self, path: &str) -> Result<Url> {
        self.base
            .join(path.trim_start_matches('/'))
            .map_err(|error| Error::InvalidFlag {
                flag: "prometheus.url",
                detail: format!("join {path}: {error}"),
            })
    }

    async fn get_bytes(&self, url: Url) -> Result<Bytes> {
        let shown = url.to_string();
        let response = self
            .auth
            .authorize(self.http.get(url))
            .timeout(self.api_timeout)
            .send()
            .await
            .map_err(|source| Error::PrometheusRequest {
                url: shown.clone(),
                source,
            })?;
        let status = response.status();
        let body = response
            .bytes()
            .await
            .map_err(|source| Error::PrometheusRequest {
                url: shown.clone(),
                source,
            })?;
        if !status.is_success() {
            return Err(Error::PrometheusStatus {
                url: shown,
                status: status.as_u16(),
                body: String::from_utf8_lossy(&body[..body.len().min(512)]).into_owned(),
            });
        }
        Ok(body)
    }

    async fn api_get<T: for<'de> Deserialize<'de>>(&self, url: Url) -> Result<T> {
        let shown = url.to_string();
        let body = self.get_bytes(url).await?;
        let answer: ApiAnswer<T> =
            serde_json::from_slice(&body).map_err(|error| Error::PrometheusDecode {
                url: shown.clone(),
                detail: error.to_string(),
            })?;
        if answer.status != "success" {
            return Err(Error::PrometheusDecode {
                url: shown,
                detail: answer.error.unwrap_or_else(|| answer.status.clone()),
            });
        }
        answer.data.ok_or_else(|| Error::PrometheusDecode {
            url: shown,
            detail: "no data".to_owned(),
        })
    }

    /// One `/-/ready` probe.
    pub async fn ready(&self) -> Result<()> {
        self.get_bytes(self.endpoint("-/ready")?).await.map(|_| ())
    }

    /// Probes `/-/ready` every second until it answers 200, `timeout` passes or `shutdown` is
    /// cancelled.
    pub async fn wait_ready(&self, timeout: Duration, shutdown: &CancellationToken) -> Result<()> {
        let started = tokio::time::Instant::now();
        let mut logged = false;
        loop {
            let last_error = match self.ready().await {
                Ok(()) => return Ok(()),
                Err(error) => error.to_string(),
            };
            if started.elapsed() >= timeout || shutdown.is_cancelled() {
                return Err(Error::PrometheusNotReady {
                    url: self.base.to_string(),
                    waited_secs: started.elapsed().as_secs(),
                    last_error,
                });
            }
            if !logged {
                info!(url = %self.base, error = %last_error, "waiting for prometheus to be ready");
                logged = true;
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = shutdown.cancelled() => {}
            }
        }
    }

    /// The external labels of Prometheus' loaded configuration (`global.external_labels`).
    pub async fn external_labels(&self) -> Result<Labels> {
        let url = self.endpoint("api/v1/status/config")?;
        let shown = url.to_string();
        let data: ConfigData = self.api_get(url).await?;
        parse_external_labels(&data.yaml)
            .map_err(|detail| Error::PrometheusDecode { url: shown, detail })
    }

    /// Prometheus' command-line flags (`/api/v1/status/flags`).
    pub async fn flags(&self) -> Result<BTreeMap<String, String>> {
        self.api_get(self.endpoint("api/v1/status/flags")?).await
    }

    /// The oldest sample time Prometheus holds (`prometheus_tsdb_lowest_timestamp` on its
    /// `/metrics`), or `None` when it holds nothing or does not say.
    pub async fn lowest_timestamp(&self) -> Result<Option<i64>> {
        let body = self.get_bytes(self.endpoint("metrics")?).await?;
        Ok(parse_lowest_timestamp(&String::from_utf8_lossy(&body)))
    }

    /// `/api/v1/labels` over `[start, end]` (ms) for series selected by `matchers` (all when
    /// empty).
    pub async fn label_names(
        &self,
        matchers: &[Matcher],
        start: i64,
        end: i64,
    ) -> Result<Vec<String>> {
        let url = self.label_url("api/v1/labels", matchers, start, end)?;
        self.api_get(url).await
    }

    /// `/api/v1/label/<name>/values` over `[start, end]` (ms) for series selected by
    /// `matchers`.
    pub async fn label_values(
        &self,
        name: &str,
        matchers: &[Matcher],
        start: i64,
        end: i64,
    ) -> Result<Vec<String>> {
        let mut url = self.endpoint("api/v1/label/")?;
        url.path_segments_mut()
            .map_err(|()| Error::InvalidFlag {
                flag: "prometheus.url",
                detail: "cannot be a base URL".to_owned(),
            })?
            .pop_if_empty()
            .push(name)
            .push("values");
        add_range_and_matchers(&mut url, matchers, start, end);
        self.api_get(url).await
    }

    fn label_url(&self, path: &str, matchers: &[Matcher], start: i64, end: i64) -> Result<Url> {
        let mut url = self.endpoint(path)?;
        add_range_and_matchers(&mut url, matchers, start, end);
        Ok(url)
    }

    /// Sends a remote read request (`POST /api/v1/read`) and checks the answer: a streamed
    /// answer is returned to be read frame by frame, a `SAMPLES` answer is read and decoded.
    /// Waiting for the answer, and each wait for more of its body, is bounded by the read
    /// timeout; a reader that pauses (a slow client) does not count.
    pub(crate) async fn remote_read(&self, request: &ReadRequest) -> Result<ReadAnswer> {
        let url = self.endpoint("api/v1/read")?;
        let shown = url.to_string();
        let body = snap::raw::Encoder::new()
            .compress_vec(&request.encode_to_vec())
            .map_err(|error| Error::InvalidRequest {
                detail: format!("snappy-compress remote read request: {error}"),
            })?;
        let sending = self
            .auth
            .authorize(self.http.post(url))
            .header("Content-Type", "application/x-protobuf")
            .header("Content-Encoding", "snappy")
            .header("X-Prometheus-Remote-Read-Version", "0.1.0")
            .body(body)
            .send();
        let response = tokio::time::timeout(self.read_timeout, sending)
            .await
            .map_err(|_| Error::PrometheusTimeout {
                url: shown.clone(),
                waited: self.read_timeout,
            })?
            .map_err(|source| Error::PrometheusRequest {
                url: shown.clone(),
                source,
            })?;
        debug!(url = %shown, status = %response.status(), "remote read answered");
        let limits = BodyLimits {
            idle_timeout: self.read_timeout,
            samples_limit: self.samples_answer_limit,
        };
        read_response(shown, response, limits).await
    }
}

fn add_range_and_matchers(url: &mut Url, matchers: &[Matcher], start: i64, end: i64) {
    let mut pairs = url.query_pairs_mut();
    pairs.append_pair("start", &api_time(start));
    pairs.append_pair("end", &api_time(end));
    if !matchers.is_empty() {
        pairs.append_pair("match[]", &selector(matchers));
    }
}

/// A series selector `{a="b",c=~"d"}` for `match[]`.
pub(crate) fn selector(matchers: &[Matcher]) -> String {
    let inner: Vec<String> = matchers.iter().map(ToString::to_string).collect();
    format!("{{{}}}", inner.join(","))
}

/// Milliseconds as the seconds Prometheus' HTTP API takes, clamped to what it accepts.
pub(crate) fn api_time(millis: i64) -> String {
    let millis = millis.clamp(API_MIN_TIME_MS, API_MAX_TIME_MS);
    format!("{:.3}", millis as f64 / 1000.0)
}

/// `global.external_labels` of a Prometheus configuration (empty when absent).
pub(crate) fn parse_external_labels(yaml: &str) -> Result<Labels, String> {
    let config: PromConfigFile =
        serde_yaml_ng::from_str(yaml).map_err(|error| error.to_string())?;
    let labels = config
        .global
        .and_then(|global| global.external_labels)
        .unwrap_or_default();
    Ok(Labels::from_sorted(
        labels
            .into_iter()
            .map(|(name, value)| Label::new(name, value))
            .collect(),
    ))
}

fn parse_lowest_timestamp(metrics: &str) -> Option<i64> {
    let value = metrics.lines().find_map(|line| {
        line.strip_prefix("prometheus_tsdb_lowest_timestamp ")
            .map(str::trim)
    })?;
    let value: f64 = value.parse().ok()?;
    // An empty TSDB reports MaxInt64.
    if !value.is_finite() || value >= 9.2e18 {
        return None;
    }
    Some(value as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn external_labels_come_from_global() {
        let yaml = "global:\n  scrape_interval: 5s\n  external_labels:\n    replica: a\n    cluster: eu\nscrape_configs: []\n";
        let labels = parse_external_labels(yaml).unwrap();
        assert_eq!(labels.to_string(), r#"{cluster="eu", replica="a"}"#);
        assert!(
            parse_external_labels("global:\n  scrape_interval: 5s\n")
                .unwrap()
                .is_empty()
        );
        assert!(
            parse_external_labels("scrape_configs: []\n")
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn api_times_are_seconds_with_millis() {
        assert_eq!(api_time(1_500), "1.500");
        assert_eq!(api_time(-1), "-0.001");
        assert_eq!(api_time(0), "0.000");
        assert_eq!(api_time(i64::MAX), "253402300799.000");
    }

    #[test]
    fn lowest_timestamp_is_read_from_metrics() {
        let text = "# HELP x\nprometheus_tsdb_lowest_timestamp_seconds 1.7e+09\nprometheus_tsdb_lowest_timestamp 1.700000000123e+12\n";
        assert_eq!(parse_lowest_timestamp(text), Some(1_700_000_000_123));
        assert_eq!(
            parse_lowest_timestamp("prometheus_tsdb_lowest_timestamp 9.223372036854776e+18\n"),
            None
        );
        assert_eq!(parse_lowest_timestamp(""), None);
    }

    #[tokio::test]
    async fn credentials_from_the_http_client_file_are_sent() {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let mut request = Vec::new();
            let mut buffer = [0_u8; 1024];
            while !request.ends_with(b"\r\n\r\n") {
                let read = stream.read(&mut buffer).unwrap();
                if read == 0 {
                    break;
                }
                request.extend_from_slice(&buffer[..read]);
            }
            stream
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nOK")
                .unwrap();
            String::from_utf8_lossy(&request).to_lowercase()
        });
        let auth = HttpClientConfig {
            basic_auth: Some(("admin".to_owned(), "s3cret".to_owned())),
            ..HttpClientConfig::default()
        };
        let timeout = Duration::from_secs(5);
        let client =
            PrometheusClient::with_http_config(&format!("http://{addr}"), timeout, timeout, auth)
                .unwrap();
        client.ready().await.unwrap();
        let request = server.join().unwrap();
        assert!(request.starts_with("get /-/ready "), "{request}");
        assert!(
            request.contains("authorization: basic ywrtaw46cznjcmv0"),
            "{request}"
        );
    }

    #[test]
    fn selector_quotes_values() {
        let matchers = vec![Matcher::equal("a", "x\"y"), Matcher::equal("b", "z")];
        assert_eq!(selector(&matchers), r#"{a="x\"y",b="z"}"#);
    }
}
