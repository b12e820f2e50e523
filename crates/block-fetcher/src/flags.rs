//! The block-selection flags Thanos' `store`, `compact` and `tools bucket` commands share:
//! `--min-time`, `--max-time`, `--selector.relabel-config-file` and `--selector.relabel-config`.

use std::path::PathBuf;

use crate::error::{Error, Result};
use crate::relabel::RelabelConfig;
use crate::time::TimeBound;

/// Which blocks a component reads, by time and by external labels; flatten it into a service's
/// flags.
#[derive(Debug, Clone, clap::Args)]
pub struct SelectionFlags {
    /// Start of time range limit: only blocks with data later than this value are read. Option
    /// can be a constant time in RFC3339 format or time duration relative to current time, such
    /// as -1d or 2h45m. Valid duration units are ms, s, m, h, d, w, y.
    #[arg(
        long = "min-time",
        value_name = "TIME",
        default_value = "0000-01-01T00:00:00Z",
        allow_hyphen_values = true
    )]
    pub min_time: TimeBound,

    /// End of time range limit: only blocks with data earlier than this value are read. Same
    /// formats as --min-time.
    #[arg(
        long = "max-time",
        value_name = "TIME",
        default_value = "9999-12-31T23:59:59Z",
        allow_hyphen_values = true
    )]
    pub max_time: TimeBound,

    /// Path to YAML file with relabeling configuration that allows selecting blocks. It follows
    /// native Prometheus relabel-config syntax.
    #[arg(
        long = "selector.relabel-config-file",
        value_name = "FILE",
        conflicts_with = "selector_relabel_config"
    )]
    pub selector_relabel_config_file: Option<PathBuf>,

    /// Alternative to 'selector.relabel-config-file' flag (mutually exclusive). Content of YAML
    /// file with relabeling configuration that allows selecting blocks.
    #[arg(long = "selector.relabel-config", value_name = "YAML")]
    pub selector_relabel_config: Option<String>,
}

impl SelectionFlags {
    /// The relabel selection from the file or the inline YAML; none given selects every block.
    pub fn relabel(&self) -> Result<RelabelConfig> {
        let yaml = match (
            &self.selector_relabel_config_file,
            &self.selector_relabel_config,
        ) {
            (Some(path), _) => std::fs::read_to_string(path).map_err(|error| Error::Relabel {
                message: format!("read {}: {error}", path.display()),
            })?,
            (None, Some(text)) => text.clone(),
            (None, None) => String::new(),
        };
        if yaml.trim().is_empty() {
            return Ok(RelabelConfig::default());
        }
        RelabelConfig::parse(&yaml)
    }
}

#[cfg(test)]
mod tests {
    use clap::{Args, Command, FromArgMatches};

    use super::*;

    fn parse(args: &[&str]) -> Result<SelectionFlags, clap::Error> {
        let command = SelectionFlags::augment_args(Command::new("test"));
        let matches =
            command.try_get_matches_from(std::iter::once("test").chain(args.iter().copied()))?;
        SelectionFlags::from_arg_matches(&matches)
    }

    #[test]
    fn parses_times_and_reads_the_relabel_selection() {
        let flags = parse(&["--min-time=-2h", "--max-time", "-30m"]).unwrap();
        assert_eq!(flags.min_time, TimeBound::Relative(-7_200_000));
        assert_eq!(flags.max_time, TimeBound::Relative(-1_800_000));
        assert!(flags.relabel().is_ok());
        assert!(parse(&["--min-time=soon"]).is_err());
        assert!(
            parse(&[
                "--selector.relabel-config=x",
                "--selector.relabel-config-file=y"
            ])
            .is_err()
        );
        let flags =
            parse(&["--selector.relabel-config=- action: keep\n  source_labels: [a]\n"]).unwrap();
        assert!(flags.relabel().is_ok());
        let flags = parse(&["--selector.relabel-config=- action: explode\n"]).unwrap();
        assert!(matches!(flags.relabel(), Err(Error::Relabel { .. })));
        let flags = parse(&["--selector.relabel-config-file=/nonexistent/relabel.yml"]).unwrap();
        let error = flags.relabel().unwrap_err().to_string();
        assert!(error.contains("/nonexistent/relabel.yml"), "{error}");
    }
}
