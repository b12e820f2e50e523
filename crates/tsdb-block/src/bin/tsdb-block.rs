//! `tsdb-block`: inspect and rewrite Prometheus TSDB blocks.
//!
//! - `tsdb-block dump [DIR]` prints what `promtool tsdb dump DIR` (Prometheus 2.42) prints for the
//!   blocks of `DIR`.
//! - `tsdb-block rewrite BLOCK_DIR OUT_DIR` writes the block again under a new ULID.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

/// Inspect and rewrite Prometheus TSDB blocks.
#[derive(Debug, Parser)]
#[command(name = "tsdb-block", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Dump samples from the blocks of a TSDB folder, as `promtool tsdb dump` does.
    Dump {
        /// Database path.
        #[arg(default_value = "data/")]
        db_path: PathBuf,
        /// Minimum timestamp to dump.
        #[arg(long = "min-time", default_value_t = i64::MIN, allow_hyphen_values = true)]
        min_time: i64,
        /// Maximum timestamp to dump.
        #[arg(long = "max-time", default_value_t = i64::MAX, allow_hyphen_values = true)]
        max_time: i64,
        /// Series selector (default: every series, as promtool's `{__name__=~'(?s:.*)'}`).
        #[arg(long = "match")]
        selector: Option<String>,
    },
    /// Write a block again under a new ULID (chunks copied as they are).
    Rewrite {
        /// The block folder to read.
        block_dir: PathBuf,
        /// The folder to write the new block into.
        out_dir: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            let mut stderr = std::io::stderr().lock();
            let _ = writeln!(stderr, "tsdb-block: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Dump {
            db_path,
            min_time,
            max_time,
            selector,
        } => {
            let matchers = selector.as_deref().map(parse_selector).transpose()?;
            let blocks = tsdb_block::dump::open_blocks(&db_path)
                .with_context(|| format!("open blocks in {}", db_path.display()))?;
            let stdout = std::io::stdout().lock();
            let mut out = std::io::BufWriter::with_capacity(1 << 16, stdout);
            match matchers {
                Some(matchers) => tsdb_block::dump::dump_matching(
                    &blocks, &matchers, min_time, max_time, &mut out,
                ),
                None => tsdb_block::dump::dump(&blocks, min_time, max_time, &mut out),
            }
            .context("dump")?;
            out.flush().context("write stdout")?;
        }
        Command::Rewrite { block_dir, out_dir } => {
            std::fs::create_dir_all(&out_dir)
                .with_context(|| format!("create {}", out_dir.display()))?;
            let (meta, dir) = tsdb_block::writer::rewrite_block(&block_dir, &out_dir)
                .with_context(|| format!("rewrite {}", block_dir.display()))?;
            let mut stdout = std::io::stdout().lock();
            writeln!(stdout, "{} {}", meta.ulid, dir.display()).context("write stdout")?;
        }
    }
    Ok(())
}

/// The matchers of a series selector such as `up{job=~"a|b"}`.
fn parse_selector(selector: &str) -> anyhow::Result<Vec<prom_model::Matcher>> {
    use prom_model::{MatchType, Matcher};
    use promql_parser::label::MatchOp;
    use promql_parser::parser::Expr;

    let expr = promql_parser::parser::parse(selector)
        .map_err(|error| anyhow::anyhow!("parse selector {selector:?}: {error}"))?;
    let Expr::VectorSelector(vector) = expr else {
        anyhow::bail!("{selector:?} is not a series selector");
    };
    if !vector.matchers.or_matchers.is_empty() {
        anyhow::bail!("{selector:?}: `or` in selectors is not supported");
    }
    let mut matchers = Vec::new();
    if let Some(name) = &vector.name
        && !vector
            .matchers
            .matchers
            .iter()
            .any(|m| m.name == "__name__")
    {
        matchers.push(Matcher::equal("__name__", name.as_str()));
    }
    for matcher in &vector.matchers.matchers {
        let kind = match matcher.op {
            MatchOp::Equal => MatchType::Equal,
            MatchOp::NotEqual => MatchType::NotEqual,
            MatchOp::Re(_) => MatchType::Regex,
            MatchOp::NotRe(_) => MatchType::NotRegex,
        };
        matchers.push(
            Matcher::new(kind, matcher.name.as_str(), matcher.value.as_str())
                .with_context(|| format!("selector {selector:?}"))?,
        );
    }
    Ok(matchers)
}
