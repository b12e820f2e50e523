//! The compactor (Thanos' `compact`): keeps a bucket's blocks compacted, de-duplicated,
//! downsampled and within retention.
//!
//! **Modules.** [`merge`] (source blocks → one output block, streamed), [`downsample`] (raw → 5m →
//! 1h aggregate blocks, streamed), [`plan`] (groups, Thanos' planner, retention and garbage
//! collection decisions over metas; no I/O).

pub mod downsample;
pub mod merge;
pub mod plan;

/// The compactor's flags, named as Thanos' `compact` names them.
#[derive(Debug, Clone, clap::Args)]
pub struct Config {
    #[command(flatten)]
    #[allow(missing_docs)]
    pub log: service_core::LogFlags,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub tracing: service_core::TracingFlags,
}

impl service_core::ServiceConfig for Config {
    fn log_flags(&self) -> &service_core::LogFlags {
        &self.log
    }

    fn tracing_flags(&self) -> &service_core::TracingFlags {
        &self.tracing
    }
}

/// Runs the compactor.
pub async fn run(_config: Config, _ctx: service_core::ServiceContext) -> anyhow::Result<()> {
    anyhow::bail!("the compactor is being built")
}
