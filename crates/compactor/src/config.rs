//! The compactor's flags, named, defaulted and documented as Thanos' `compact` has them. Every
//! boolean also takes kingpin's `--no-` form (the last one given wins).

use std::path::PathBuf;

use service_core::{HttpFlags, LogFlags, ObjstoreFlags, PromDuration, TracingFlags};

/// `--deduplication.func`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum DedupFuncFlag {
    /// `""`: one-to-one merge of identical samples (Prometheus' compacting merge).
    #[default]
    #[value(name = "")]
    OneToOne,
    /// `penalty`: the querier's penalty de-duplication, for replicas with different gaps.
    Penalty,
}

/// The compactor's flags, named as Thanos' `compact` names them.
#[derive(Debug, Clone, clap::Args)]
pub struct Config {
    #[command(flatten)]
    #[allow(missing_docs)]
    pub http: HttpFlags,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub log: LogFlags,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub tracing: TracingFlags,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub objstore: ObjstoreFlags,

    /// Data directory in which to cache blocks and process compactions.
    #[arg(long = "data-dir", value_name = "DIR", default_value = "./data")]
    pub data_dir: PathBuf,

    /// Do not exit after all compactions have been processed and wait for new work.
    #[arg(short = 'w', long = "wait", overrides_with = "no_wait")]
    pub wait: bool,
    #[arg(long = "no-wait", overrides_with = "wait", hide = true)]
    #[allow(missing_docs)]
    pub no_wait: bool,

    /// Wait interval between consecutive compaction runs and bucket refreshes. Only works when
    /// --wait flag specified.
    #[arg(long = "wait-interval", value_name = "DURATION", default_value = "5m")]
    pub wait_interval: PromDuration,

    /// Minimum age of fresh (non-compacted) blocks before they are being processed. Malformed
    /// blocks older than the maximum of consistency-delay and 48h0m0s will be removed.
    #[arg(
        long = "consistency-delay",
        value_name = "DURATION",
        default_value = "30m"
    )]
    pub consistency_delay: PromDuration,

    /// Time before a block marked for deletion is deleted from bucket. If delete-delay is non
    /// zero, blocks will be marked for deletion and compactor component will delete blocks
    /// marked for deletion from the bucket. If delete-delay is 0, blocks will be deleted
    /// straight away.
    #[arg(long = "delete-delay", value_name = "DURATION", default_value = "48h")]
    pub delete_delay: PromDuration,

    /// How long to retain raw samples in bucket. Setting this to 0d will retain samples of this
    /// resolution forever.
    #[arg(
        long = "retention.resolution-raw",
        value_name = "DURATION",
        default_value = "0d"
    )]
    pub retention_raw: PromDuration,

    /// How long to retain samples of resolution 1 (5 minutes) in bucket. Setting this to 0d will
    /// retain samples of this resolution forever.
    #[arg(
        long = "retention.resolution-5m",
        value_name = "DURATION",
        default_value = "0d"
    )]
    pub retention_5m: PromDuration,

    /// How long to retain samples of resolution 2 (1 hour) in bucket. Setting this to 0d will
    /// retain samples of this resolution forever.
    #[arg(
        long = "retention.resolution-1h",
        value_name = "DURATION",
        default_value = "0d"
    )]
    pub retention_1h: PromDuration,

    /// Disables downsampling. This is not recommended as querying long time ranges without
    /// non-downsampled data is not efficient and useful e.g it is not possible to render all
    /// samples for a human eye anyway.
    #[arg(
        long = "downsampling.disable",
        overrides_with = "no_downsampling_disable"
    )]
    pub downsampling_disable: bool,
    #[arg(
        long = "no-downsampling.disable",
        overrides_with = "downsampling_disable",
        hide = true
    )]
    #[allow(missing_docs)]
    pub no_downsampling_disable: bool,

    /// Number of goroutines to use when compacting groups.
    #[arg(long = "compact.concurrency", value_name = "N", default_value_t = 1)]
    pub compact_concurrency: usize,

    /// Number of goroutines to use when download block during compaction.
    #[arg(
        long = "compact.blocks-fetch-concurrency",
        value_name = "N",
        default_value_t = 1
    )]
    pub blocks_fetch_concurrency: usize,

    /// Number of goroutines to use when downsampling blocks.
    #[arg(long = "downsample.concurrency", value_name = "N", default_value_t = 1)]
    pub downsample_concurrency: usize,

    /// Number of goroutines to use when fetching/uploading block files from object storage.
    #[arg(
        long = "block-files-concurrency",
        value_name = "N",
        default_value_t = 1
    )]
    pub block_files_concurrency: usize,

    /// Number of goroutines to use when fetching block metadata from object storage.
    #[arg(
        long = "block-meta-fetch-concurrency",
        value_name = "N",
        default_value_t = 32
    )]
    pub block_meta_fetch_concurrency: usize,

    /// One of concurrent, recursive. When set to concurrent, stores will concurrently issue one
    /// call per directory to discover active blocks in the bucket. The recursive strategy
    /// iterates through all objects in the bucket, recursively traversing into each directory.
    /// This avoids N+1 calls at the expense of having slower bucket iterations.
    #[arg(
        long = "block-discovery-strategy",
        value_name = "STRATEGY",
        default_value = "concurrent",
        value_parser = ["concurrent", "recursive"]
    )]
    pub block_discovery_strategy: String,

    /// Repeat interval for syncing the blocks between local and remote view for /global Block
    /// Viewer UI.
    #[arg(
        long = "block-viewer.global.sync-block-interval",
        value_name = "DURATION",
        default_value = "1m"
    )]
    pub block_viewer_sync_interval: PromDuration,

    /// Maximum time for syncing the blocks between local and remote view for /global Block
    /// Viewer UI.
    #[arg(
        long = "block-viewer.global.sync-block-timeout",
        value_name = "DURATION",
        default_value = "5m"
    )]
    pub block_viewer_sync_timeout: PromDuration,

    /// How often we should clean up partially uploaded blocks and blocks with deletion mark in
    /// the background when --wait has been enabled. Setting it to "0s" disables it - the
    /// cleaning will only happen at the end of an iteration.
    #[arg(
        long = "compact.cleanup-interval",
        value_name = "DURATION",
        default_value = "5m"
    )]
    pub cleanup_interval: PromDuration,

    /// Frequency of calculating the compaction progress in the background when --wait has been
    /// enabled. Setting it to "0s" disables it. Now compaction, downsampling and retention
    /// progress are supported.
    #[arg(
        long = "compact.progress-interval",
        value_name = "DURATION",
        default_value = "5m"
    )]
    pub progress_interval: PromDuration,

    /// Label to treat as a replica indicator of blocks that can be deduplicated (repeated flag).
    /// This will merge multiple replica blocks into one. This process is irreversible.
    /// Flag may be specified multiple times as well as a comma separated list of labels.
    #[arg(
        long = "deduplication.replica-label",
        value_name = "LABEL",
        value_delimiter = ','
    )]
    pub replica_labels: Vec<String>,

    /// Experimental. Deduplication algorithm for merging overlapping blocks. Possible values
    /// are: "", "penalty". If no value is specified, the default compact deduplication merger is
    /// used, which performs 1:1 deduplication for samples. When set to penalty, penalty based
    /// deduplication algorithm will be used. At least one replica label has to be set via
    /// --deduplication.replica-label flag.
    #[arg(
        long = "deduplication.func",
        value_name = "FUNC",
        default_value = "",
        hide_default_value = true
    )]
    pub dedup_func: DedupFuncFlag,

    /// Experimental. When set to true, compactor will allow overlaps and perform **irreversible**
    /// vertical compaction. See https://thanos.io/tip/components/compact.md/#vertical-compactions
    /// to read more. Please note that by default this uses a NAIVE algorithm for merging. If you
    /// need a different deduplication algorithm (e.g one that works well with Prometheus
    /// replicas), please set it via --deduplication.func. NOTE: This flag is ignored and (enabled)
    /// when --deduplication.replica-label flag is set.
    #[arg(
        long = "compact.enable-vertical-compaction",
        overrides_with = "no_vertical_compaction",
        hide = true
    )]
    pub vertical_compaction: bool,
    #[arg(
        long = "no-compact.enable-vertical-compaction",
        overrides_with = "vertical_compaction",
        hide = true
    )]
    #[allow(missing_docs)]
    pub no_vertical_compaction: bool,

    /// When set to true, mark blocks containing index with out of order chunks for no compact
    /// instead of halting the compaction.
    #[arg(
        long = "compact.skip-block-with-out-of-order-chunks",
        overrides_with = "no_skip_out_of_order",
        hide = true
    )]
    pub skip_out_of_order: bool,
    #[arg(
        long = "no-compact.skip-block-with-out-of-order-chunks",
        overrides_with = "skip_out_of_order",
        hide = true
    )]
    #[allow(missing_docs)]
    pub no_skip_out_of_order: bool,

    /// Maximum compaction level, default is 4: 2h → 8h → 2d → 14d.
    #[arg(
        long = "debug.max-compaction-level",
        value_name = "N",
        default_value_t = 4,
        hide = true
    )]
    pub max_compaction_level: usize,

    /// Halt the process if a critical compaction error is detected. thanos-rs stops only the
    /// group the error affects and keeps compacting the others; `--no-debug.halt-on-error` makes
    /// such an error end the process instead (`--wait` mode).
    #[arg(
        long = "debug.halt-on-error",
        overrides_with = "no_halt_on_error",
        hide = true
    )]
    pub halt_on_error: bool,
    #[arg(
        long = "no-debug.halt-on-error",
        overrides_with = "halt_on_error",
        hide = true
    )]
    #[allow(missing_docs)]
    pub no_halt_on_error: bool,

    /// Accept malformed index (Thanos' hidden flag; the merge reads what it can and refuses
    /// what it cannot either way).
    #[arg(
        long = "debug.accept-malformed-index",
        overrides_with = "no_accept_malformed_index",
        hide = true
    )]
    pub accept_malformed_index: bool,
    #[arg(
        long = "no-debug.accept-malformed-index",
        overrides_with = "accept_malformed_index",
        hide = true
    )]
    #[allow(missing_docs)]
    pub no_accept_malformed_index: bool,

    /// Maximum index size for the resulted block during any compaction. Note that due to
    /// implementation details, this is guaranteed to be the maximum only if
    /// --compact.concurrency=1 and --max-compaction-level=4.
    #[arg(
        long = "compact.block-max-index-size",
        value_name = "BYTES",
        default_value = "64GB",
        hide = true
    )]
    pub block_max_index_size: String,

    /// Specify which hash function to use when calculating the hashes of produced files. If no
    /// function has been specified, it does not happen. This permits avoiding downloading some
    /// files twice albeit at some performance cost. Possible values are: "", "SHA256".
    #[arg(
        long = "hash-func",
        value_name = "FUNC",
        default_value = "",
        hide_default_value = true,
        value_parser = ["", "SHA256"]
    )]
    pub hash_func: String,

    /// `--min-time`, `--max-time`, `--selector.relabel-config[-file]`: the blocks compacted.
    #[command(flatten)]
    pub selection: block_fetcher::SelectionFlags,

    /// External Thanos label name (and value as template) used to title the block streams of
    /// the block viewer.
    #[arg(long = "bucket-web-label", value_name = "LABEL")]
    pub bucket_web_label: Option<String>,

    /// Disable the UI's and API's admin operations (marking blocks).
    #[arg(
        long = "disable-admin-operations",
        overrides_with = "no_disable_admin_operations"
    )]
    pub disable_admin_operations: bool,
    #[arg(
        long = "no-disable-admin-operations",
        overrides_with = "disable_admin_operations",
        hide = true
    )]
    #[allow(missing_docs)]
    pub no_disable_admin_operations: bool,

    /// Disable Block Viewer UI.
    #[arg(long = "web.disable", overrides_with = "no_web_disable")]
    pub web_disable: bool,
    #[arg(long = "no-web.disable", overrides_with = "web_disable", hide = true)]
    #[allow(missing_docs)]
    pub no_web_disable: bool,

    /// Prefix for API and UI endpoints. This allows thanos UI to be served on a sub-path.
    /// Defaults to the value of --web.external-prefix.
    #[arg(long = "web.route-prefix", value_name = "PREFIX", default_value = "")]
    pub web_route_prefix: String,

    /// Static prefix for all HTML links and redirect URLs in the bucket web UI interface.
    #[arg(
        long = "web.external-prefix",
        value_name = "PREFIX",
        default_value = ""
    )]
    pub web_external_prefix: String,

    /// Name of HTTP request header used for dynamic prefixing of UI links and redirects.
    #[arg(long = "web.prefix-header", value_name = "HEADER", default_value = "")]
    pub web_prefix_header: String,

    /// Whether to disable CORS headers to be set by Thanos. By default Thanos sets CORS headers
    /// to be allowed by all.
    #[arg(long = "web.disable-cors", overrides_with = "no_web_disable_cors")]
    pub web_disable_cors: bool,
    #[arg(
        long = "no-web.disable-cors",
        overrides_with = "web_disable_cors",
        hide = true
    )]
    #[allow(missing_docs)]
    pub no_web_disable_cors: bool,
}

impl Config {
    /// `--debug.halt-on-error` (default on).
    pub fn halt_on_error(&self) -> bool {
        !self.no_halt_on_error
    }

    /// Whether overlapping blocks are merged: `--compact.enable-vertical-compaction`, forced on
    /// by a replica label.
    pub fn vertical_compaction(&self) -> bool {
        (self.vertical_compaction && !self.no_vertical_compaction)
            || !self.replica_labels.is_empty()
    }

    /// Whether downsampling runs.
    pub fn downsampling(&self) -> bool {
        !self.downsampling_disable || self.no_downsampling_disable
    }

    /// Whether `--wait` is on.
    pub fn wait(&self) -> bool {
        self.wait && !self.no_wait
    }

    /// Whether the block viewer is served (only with `--wait`, as Thanos does).
    pub fn web_enabled(&self) -> bool {
        self.wait() && (!self.web_disable || self.no_web_disable)
    }

    /// Whether blocks with out-of-order chunks are marked no-compact instead of failing.
    pub fn skip_out_of_order(&self) -> bool {
        self.skip_out_of_order && !self.no_skip_out_of_order
    }

    /// Whether marking through the block viewer is refused.
    pub fn admin_disabled(&self) -> bool {
        self.disable_admin_operations && !self.no_disable_admin_operations
    }
}

impl service_core::ServiceConfig for Config {
    fn log_flags(&self) -> &LogFlags {
        &self.log
    }

    fn tracing_flags(&self) -> &TracingFlags {
        &self.tracing
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use clap::{Args, Command, FromArgMatches};

    use super::*;

    fn parse(args: &[&str]) -> Result<Config, clap::Error> {
        let command = Config::augment_args(Command::new("compactor"));
        let matches = command
            .try_get_matches_from(std::iter::once("compactor").chain(args.iter().copied()))?;
        Config::from_arg_matches(&matches)
    }

    #[test]
    fn defaults_follow_thanos_compact() {
        let config = parse(&[]).unwrap();
        assert_eq!(config.data_dir, PathBuf::from("./data"));
        assert!(!config.wait());
        assert_eq!(config.wait_interval.get(), Duration::from_secs(300));
        assert_eq!(config.consistency_delay.get(), Duration::from_secs(1800));
        assert_eq!(config.delete_delay.get(), Duration::from_secs(48 * 3600));
        assert_eq!(config.retention_raw.get(), Duration::ZERO);
        assert_eq!(config.retention_5m.get(), Duration::ZERO);
        assert_eq!(config.retention_1h.get(), Duration::ZERO);
        assert!(config.downsampling());
        assert_eq!(
            (
                config.compact_concurrency,
                config.downsample_concurrency,
                config.block_meta_fetch_concurrency
            ),
            (1, 1, 32)
        );
        assert_eq!(config.cleanup_interval.get(), Duration::from_secs(300));
        assert_eq!(config.dedup_func, DedupFuncFlag::OneToOne);
        assert!(!config.vertical_compaction());
        assert_eq!(config.max_compaction_level, 4);
        assert!(config.halt_on_error());
        assert_eq!(config.block_max_index_size, "64GB");
        assert_eq!(config.block_discovery_strategy, "concurrent");
        assert!(!config.web_enabled());
        assert_eq!(config.http.http_address.to_string(), "0.0.0.0:10902");
    }

    #[test]
    fn booleans_take_the_kingpin_no_form_and_the_last_one_wins() {
        let config = parse(&["-w", "--downsampling.disable"]).unwrap();
        assert!(config.wait());
        assert!(!config.downsampling());
        assert!(config.web_enabled());
        let config = parse(&["--wait", "--no-wait", "--no-downsampling.disable"]).unwrap();
        assert!(!config.wait());
        assert!(config.downsampling());
        let config = parse(&["--no-wait", "--wait", "--web.disable"]).unwrap();
        assert!(config.wait());
        assert!(!config.web_enabled());
        let config = parse(&["--no-debug.halt-on-error"]).unwrap();
        assert!(!config.halt_on_error());
        let config = parse(&["--no-debug.halt-on-error", "--debug.halt-on-error"]).unwrap();
        assert!(config.halt_on_error());
    }

    #[test]
    fn replica_label_forces_vertical_compaction() {
        let config = parse(&[
            "--deduplication.replica-label=replica",
            "--deduplication.replica-label",
            "rule_replica,prometheus_replica",
            "--deduplication.func=penalty",
        ])
        .unwrap();
        assert_eq!(
            config.replica_labels,
            ["replica", "rule_replica", "prometheus_replica"]
        );
        assert!(config.vertical_compaction());
        assert_eq!(config.dedup_func, DedupFuncFlag::Penalty);
        assert!(parse(&["--deduplication.func=median"]).is_err());
        assert!(parse(&["--hash-func=MD5"]).is_err());
        let config = parse(&["--compact.enable-vertical-compaction"]).unwrap();
        assert!(config.vertical_compaction());
    }
}
