//! Flag blocks shared by every service, mirroring Thanos' names, defaults and help.
//!
//! A service's `Config` flattens the blocks it needs:
//!
//! ```
//! #[derive(Debug, clap::Args)]
//! struct Config {
//!     #[command(flatten)]
//!     http: service_core::HttpFlags,
//!     #[command(flatten)]
//!     log: service_core::LogFlags,
//! }
//! ```

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, ValueEnum};

use crate::duration::PromDuration;

/// Parses a listen address (`--http-address`, `--grpc-address`) as Go's `net.Listen` spells it:
/// `ip:port`, or `:port` with the host left out for every interface (read as `0.0.0.0:port`).
pub fn parse_listen_address(text: &str) -> Result<SocketAddr, std::net::AddrParseError> {
    match text.strip_prefix(':') {
        Some(port) => format!("0.0.0.0:{port}").parse(),
        None => text.parse(),
    }
}

/// Where and how the HTTP server listens (`--http-address`, `--http-grace-period`,
/// `--http.config`).
#[derive(Debug, Clone, Args)]
pub struct HttpFlags {
    /// Listen host:port for HTTP endpoints.
    #[arg(
        long = "http-address",
        value_name = "ADDRESS",
        default_value = "0.0.0.0:10902",
        value_parser = parse_listen_address
    )]
    pub http_address: SocketAddr,

    /// Time to wait after an interrupt received for HTTP Server.
    #[arg(
        long = "http-grace-period",
        value_name = "DURATION",
        default_value = "2m"
    )]
    pub http_grace_period: PromDuration,

    /// [EXPERIMENTAL] Path to the configuration file that can enable TLS or authentication for
    /// all HTTP endpoints.
    #[arg(long = "http.config", value_name = "FILE")]
    pub http_config: Option<PathBuf>,

    /// Longest a client may take to send a request's headers, and again its body; a slower
    /// request is answered 408 (body) or dropped (headers) and its connection closed.
    #[arg(
        long = "http.read-timeout",
        value_name = "DURATION",
        default_value = "1m"
    )]
    pub http_read_timeout: PromDuration,
}

/// Where and how the gRPC server listens (`--grpc-address`, `--grpc-server-tls-*`, ...).
#[derive(Debug, Clone, Args)]
pub struct GrpcFlags {
    /// Listen ip:port address for gRPC endpoints (StoreAPI). Make sure this address is routable
    /// from other components.
    #[arg(
        long = "grpc-address",
        value_name = "ADDRESS",
        default_value = "0.0.0.0:10901",
        value_parser = parse_listen_address
    )]
    pub grpc_address: SocketAddr,

    /// Time to wait after an interrupt received for GRPC Server.
    #[arg(
        long = "grpc-grace-period",
        value_name = "DURATION",
        default_value = "2m"
    )]
    pub grpc_grace_period: PromDuration,

    /// TLS Certificate for gRPC server, leave blank to disable TLS
    #[arg(long = "grpc-server-tls-cert", value_name = "FILE")]
    pub grpc_server_tls_cert: Option<PathBuf>,

    /// TLS Key for the gRPC server, leave blank to disable TLS
    #[arg(long = "grpc-server-tls-key", value_name = "FILE")]
    pub grpc_server_tls_key: Option<PathBuf>,

    /// TLS CA to verify clients against. If no client CA is specified, there is no client
    /// verification on server side. (tls.NoClientCert)
    #[arg(long = "grpc-server-tls-client-ca", value_name = "FILE")]
    pub grpc_server_tls_client_ca: Option<PathBuf>,

    /// TLS supported minimum version for gRPC server. If no version is specified, it'll default
    /// to 1.3. Allowed values: ["1.0", "1.1", "1.2", "1.3"]
    #[arg(
        long = "grpc-server-tls-min-version",
        value_name = "VERSION",
        default_value = "1.3"
    )]
    pub grpc_server_tls_min_version: TlsVersion,

    /// The grpc server max connection age. This controls how often to re-establish connections
    /// and redo TLS handshakes.
    #[arg(
        long = "grpc-server-max-connection-age",
        value_name = "DURATION",
        default_value = "60m"
    )]
    pub grpc_server_max_connection_age: PromDuration,
}

/// How this process talks to other gRPC servers (`--grpc-client-tls-*`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Args)]
pub struct GrpcClientFlags {
    /// Use TLS when talking to the gRPC server
    #[arg(long = "grpc-client-tls-secure")]
    pub grpc_client_tls_secure: bool,

    /// Disable TLS certificate verification i.e self signed, signed by fake CA
    #[arg(long = "grpc-client-tls-skip-verify")]
    pub grpc_client_tls_skip_verify: bool,

    /// TLS Certificates to use to identify this client to the server
    #[arg(long = "grpc-client-tls-cert", value_name = "FILE")]
    pub grpc_client_tls_cert: Option<PathBuf>,

    /// TLS Key for the client's certificate
    #[arg(long = "grpc-client-tls-key", value_name = "FILE")]
    pub grpc_client_tls_key: Option<PathBuf>,

    /// TLS CA Certificates to use to verify gRPC servers
    #[arg(long = "grpc-client-tls-ca", value_name = "FILE")]
    pub grpc_client_tls_ca: Option<PathBuf>,

    /// Server name to verify the hostname on the returned gRPC certificates. See
    /// https://tools.ietf.org/html/rfc4366#section-3.1
    #[arg(long = "grpc-client-server-name", value_name = "NAME")]
    pub grpc_client_server_name: Option<String>,
}

/// Logging (`--log.level`, `--log.format`).
#[derive(Debug, Clone, Args)]
pub struct LogFlags {
    /// Log filtering level.
    #[arg(
        long = "log.level",
        value_name = "LEVEL",
        value_enum,
        default_value = "info"
    )]
    pub log_level: LogLevel,

    /// Log format to use. Possible options: logfmt or json.
    #[arg(
        long = "log.format",
        value_name = "FORMAT",
        value_enum,
        default_value = "logfmt"
    )]
    pub log_format: LogFormat,
}

impl Default for LogFlags {
    fn default() -> Self {
        Self {
            log_level: LogLevel::Info,
            log_format: LogFormat::Logfmt,
        }
    }
}

/// Tracing (`--tracing.config`, `--tracing.config-file`), parsed by
/// [`TracingConfig::from_flags`](crate::TracingConfig::from_flags).
#[derive(Debug, Clone, Default, Args)]
pub struct TracingFlags {
    /// Path to YAML file with tracing configuration. See format details:
    /// https://thanos.io/tip/thanos/tracing.md/#configuration
    #[arg(
        long = "tracing.config-file",
        value_name = "FILE",
        conflicts_with = "tracing_config"
    )]
    pub tracing_config_file: Option<PathBuf>,

    /// Alternative to 'tracing.config-file' flag (mutually exclusive). Content of YAML file with
    /// tracing configuration. See format details:
    /// https://thanos.io/tip/thanos/tracing.md/#configuration
    #[arg(long = "tracing.config", value_name = "YAML")]
    pub tracing_config: Option<String>,
}

/// Object storage (`--objstore.config-file`, `--objstore.config`); the `objstore` crate parses
/// the YAML.
#[derive(Debug, Clone, Default, Args)]
pub struct ObjstoreFlags {
    /// Path to YAML file that contains object store configuration. See format details:
    /// https://thanos.io/tip/thanos/storage.md/#configuration
    #[arg(
        long = "objstore.config-file",
        value_name = "FILE",
        conflicts_with = "objstore_config"
    )]
    pub objstore_config_file: Option<PathBuf>,

    /// Alternative to 'objstore.config-file' flag (mutually exclusive). Content of YAML file that
    /// contains object store configuration. See format details:
    /// https://thanos.io/tip/thanos/storage.md/#configuration
    #[arg(long = "objstore.config", value_name = "YAML")]
    pub objstore_config: Option<String>,
}

/// Per-request StoreAPI limits as Thanos' store, sidecar and receive take them
/// (`--store.limits.request-series`, `--store.limits.request-samples`; 0 = no limit).
#[derive(Debug, Clone, Copy, Default, Args)]
pub struct StoreLimitsFlags {
    /// The maximum series allowed for a single Series request. The Series call fails if this
    /// limit is exceeded. 0 means no limit.
    #[arg(
        long = "store.limits.request-series",
        value_name = "N",
        default_value_t = 0
    )]
    pub request_series_limit: u64,

    /// The maximum samples allowed for a single Series request, The Series call fails if this
    /// limit is exceeded. 0 means no limit. NOTE: For efficiency the limit is internally
    /// implemented as 'chunks limit' considering each chunk contains a maximum of 120 samples.
    #[arg(
        long = "store.limits.request-samples",
        value_name = "N",
        default_value_t = 0
    )]
    pub request_samples_limit: u64,
}

/// `--log.level` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogLevel {
    /// Everything, including debug events.
    Debug,
    /// Info and above (the default).
    Info,
    /// Warnings and errors.
    Warn,
    /// Errors only.
    Error,
}

/// `--log.format` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// `key=value` pairs, one event a line (the default).
    Logfmt,
    /// One JSON object a line.
    Json,
}

/// Minimum TLS protocol version accepted by a server (`--grpc-server-tls-min-version`,
/// web-config `min_version`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, ValueEnum)]
pub enum TlsVersion {
    /// TLS 1.0; refused when building a server: rustls speaks 1.2 and 1.3 only.
    #[value(name = "1.0")]
    Tls10,
    /// TLS 1.1; refused when building a server: rustls speaks 1.2 and 1.3 only.
    #[value(name = "1.1")]
    Tls11,
    /// TLS 1.2.
    #[value(name = "1.2")]
    Tls12,
    /// TLS 1.3.
    #[value(name = "1.3")]
    Tls13,
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct AllFlags {
        #[command(flatten)]
        http: HttpFlags,
        #[command(flatten)]
        grpc: GrpcFlags,
        #[command(flatten)]
        grpc_client: GrpcClientFlags,
        #[command(flatten)]
        log: LogFlags,
        #[command(flatten)]
        tracing: TracingFlags,
        #[command(flatten)]
        objstore: ObjstoreFlags,
    }

    fn parse(args: &[&str]) -> Result<AllFlags, clap::Error> {
        AllFlags::try_parse_from(std::iter::once("svc").chain(args.iter().copied()))
    }

    #[test]
    fn defaults_equal_thanos() {
        let flags = parse(&[]).unwrap();
        assert_eq!(flags.http.http_address.to_string(), "0.0.0.0:10902");
        assert_eq!(flags.http.http_grace_period.get(), Duration::from_secs(120));
        assert_eq!(flags.http.http_config, None);
        assert_eq!(flags.grpc.grpc_address.to_string(), "0.0.0.0:10901");
        assert_eq!(flags.grpc.grpc_grace_period.get(), Duration::from_secs(120));
        assert_eq!(flags.grpc.grpc_server_tls_min_version, TlsVersion::Tls13);
        assert_eq!(
            flags.grpc.grpc_server_max_connection_age.get(),
            Duration::from_secs(3600)
        );
        assert_eq!(flags.grpc.grpc_server_tls_cert, None);
        assert!(!flags.grpc_client.grpc_client_tls_secure);
        assert!(!flags.grpc_client.grpc_client_tls_skip_verify);
        assert_eq!(flags.log.log_level, LogLevel::Info);
        assert_eq!(flags.log.log_format, LogFormat::Logfmt);
        assert_eq!(flags.tracing.tracing_config, None);
        assert_eq!(flags.objstore.objstore_config_file, None);
    }

    #[test]
    fn parses_thanos_spelling() {
        let flags = parse(&[
            "--http-address=127.0.0.1:0",
            "--http-grace-period",
            "1h30m",
            "--http.config=/etc/web.yml",
            "--grpc-address=[::1]:10901",
            "--grpc-server-tls-min-version=1.2",
            "--grpc-server-max-connection-age=5m",
            "--grpc-client-tls-secure",
            "--grpc-client-server-name=store.local",
            "--log.level=debug",
            "--log.format=json",
            "--tracing.config=type: OTLP",
            "--objstore.config-file=/etc/bucket.yml",
        ])
        .unwrap();
        assert_eq!(flags.http.http_address.to_string(), "127.0.0.1:0");
        assert_eq!(
            flags.http.http_grace_period.get(),
            Duration::from_secs(5400)
        );
        assert_eq!(flags.http.http_config, Some(PathBuf::from("/etc/web.yml")));
        assert_eq!(flags.grpc.grpc_address.to_string(), "[::1]:10901");
        assert_eq!(flags.grpc.grpc_server_tls_min_version, TlsVersion::Tls12);
        assert_eq!(
            flags.grpc.grpc_server_max_connection_age.get(),
            Duration::from_secs(300)
        );
        assert!(flags.grpc_client.grpc_client_tls_secure);
        assert_eq!(
            flags.grpc_client.grpc_client_server_name.as_deref(),
            Some("store.local")
        );
        assert_eq!(flags.log.log_level, LogLevel::Debug);
        assert_eq!(flags.log.log_format, LogFormat::Json);
        assert_eq!(flags.tracing.tracing_config.as_deref(), Some("type: OTLP"));
        assert_eq!(
            flags.objstore.objstore_config_file,
            Some(PathBuf::from("/etc/bucket.yml"))
        );
    }

    #[test]
    fn listen_addresses_accept_go_form() {
        for (text, expected) in [
            (":10901", "0.0.0.0:10901"),
            (":0", "0.0.0.0:0"),
            ("127.0.0.1:10902", "127.0.0.1:10902"),
            ("0.0.0.0:10902", "0.0.0.0:10902"),
            ("[::]:10901", "[::]:10901"),
            ("[::1]:1", "[::1]:1"),
        ] {
            assert_eq!(
                parse_listen_address(text).map(|address| address.to_string()),
                Ok(expected.to_owned()),
                "{text}"
            );
        }
        for bad in [
            "",
            ":",
            "::",
            ":::1",
            ":port",
            ":65536",
            "10901",
            "localhost",
            "localhost:10901",
            "::1:10901",
            " :10901",
        ] {
            assert!(parse_listen_address(bad).is_err(), "{bad:?}");
        }
        let flags = parse(&["--grpc-address=:10911", "--http-address", ":10912"]).unwrap();
        assert_eq!(flags.grpc.grpc_address.to_string(), "0.0.0.0:10911");
        assert_eq!(flags.http.http_address.to_string(), "0.0.0.0:10912");
    }

    #[test]
    fn refuses_bad_values_and_conflicts() {
        for bad in [
            &["--log.level=trace"][..],
            &["--log.format=text"],
            &["--http-grace-period=2"],
            &["--grpc-server-tls-min-version=1.4"],
            &["--http-address=localhost"],
            &["--grpc-address=:"],
            &["--http-address=:x"],
            &["--objstore.config-file=a", "--objstore.config=b"],
            &["--tracing.config-file=a", "--tracing.config=b"],
        ] {
            assert!(parse(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn help_names_every_thanos_flag() {
        let help = <AllFlags as clap::CommandFactory>::command()
            .render_long_help()
            .to_string();
        for flag in [
            "--http-address",
            "--http-grace-period",
            "--http.config",
            "--grpc-address",
            "--grpc-grace-period",
            "--grpc-server-tls-cert",
            "--grpc-server-tls-key",
            "--grpc-server-tls-client-ca",
            "--grpc-server-tls-min-version",
            "--grpc-server-max-connection-age",
            "--grpc-client-tls-secure",
            "--grpc-client-tls-skip-verify",
            "--grpc-client-tls-cert",
            "--grpc-client-tls-key",
            "--grpc-client-tls-ca",
            "--grpc-client-server-name",
            "--log.level",
            "--log.format",
            "--tracing.config-file",
            "--tracing.config",
            "--objstore.config-file",
            "--objstore.config",
        ] {
            assert!(help.contains(flag), "help lacks {flag}");
        }
        assert!(help.contains("[default: 60m]"));
    }
}
