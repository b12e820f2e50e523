//! The command line as the Prometheus Operator writes it: `sidecar --flag=value ...`.
//!
//! The operator runs Thanos' image with a first argument `sidecar` and may pass Thanos sidecar
//! flags this implementation does not have (`--reloader.*`, `--shipper.ignore-unequal-block-size`,
//! `--hash-func`, ...). [`normalize_args`] drops the subcommand and turns
//! each unknown `--flag[=value]` (with its separate value, if any) into a hidden
//! `--ignored-flag=<original>` that [`crate::run`] logs as a warning. (Go's listen-address form
//! `--grpc-address=:10901` needs no rewrite: service-core's flags accept it.)

use std::ffi::OsString;

use clap::{Args, Command};

use crate::Config;

/// The hidden flag unknown flags are rewritten to.
pub const IGNORED_FLAG: &str = "ignored-flag";

/// Rewrites the process arguments (program name first) into what [`Config`] parses.
pub fn normalize_args(args: impl IntoIterator<Item = OsString>) -> Vec<OsString> {
    let command = Config::augment_args(Command::new("sidecar"));
    let mut known: Vec<String> = command
        .get_arguments()
        .filter_map(|arg| arg.get_long().map(str::to_owned))
        .collect();
    known.extend(["help".to_owned(), "version".to_owned()]);

    let mut args = args.into_iter();
    let mut normalized: Vec<OsString> = args.next().into_iter().collect();
    let mut rest: Vec<OsString> = args.collect();
    if rest.first().is_some_and(|first| first == "sidecar") {
        rest.remove(0);
    }
    let mut index = 0;
    while index < rest.len() {
        let arg = rest[index].clone();
        index += 1;
        let Some(text) = arg.to_str() else {
            normalized.push(arg);
            continue;
        };
        let Some(flag) = text.strip_prefix("--") else {
            normalized.push(arg);
            continue;
        };
        let name = flag.split_once('=').map_or(flag, |(name, _)| name);
        if name.is_empty() || known.iter().any(|known| known == name) {
            normalized.push(arg);
            continue;
        }
        let mut ignored = text.to_owned();
        if !flag.contains('=')
            && let Some(value) = rest.get(index).and_then(|value| value.to_str())
            && !value.starts_with("--")
        {
            ignored = format!("{text} {value}");
            index += 1;
        }
        normalized.push(OsString::from(format!("--{IGNORED_FLAG}={ignored}")));
    }
    normalized
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(input: &[&str], expected: &[&str]) {
        let normalized = normalize_args(input.iter().map(OsString::from));
        let normalized: Vec<String> = normalized
            .into_iter()
            .map(|arg| arg.to_string_lossy().into_owned())
            .collect();
        assert_eq!(normalized, expected);
    }

    #[test]
    fn operator_form_is_accepted() {
        check(
            &[
                "sidecar-bin",
                "sidecar",
                "--prometheus.url=http://localhost:9090/",
                "--tsdb.path",
                "/prometheus",
                "--reloader.watch-interval=5m",
                "--reloader.config-file",
                "/etc/x.yaml",
                "--shipper.ignore-unequal-block-size",
                "--log.level=debug",
                "--grpc-address=:10901",
                "--http-address",
                ":10902",
            ],
            &[
                "sidecar-bin",
                "--prometheus.url=http://localhost:9090/",
                "--tsdb.path",
                "/prometheus",
                "--ignored-flag=--reloader.watch-interval=5m",
                "--ignored-flag=--reloader.config-file /etc/x.yaml",
                "--ignored-flag=--shipper.ignore-unequal-block-size",
                "--log.level=debug",
                "--grpc-address=:10901",
                "--http-address",
                ":10902",
            ],
        );
    }

    #[test]
    fn plain_form_is_unchanged() {
        check(
            &["sidecar", "--grpc-address", "127.0.0.1:1", "--help"],
            &["sidecar", "--grpc-address", "127.0.0.1:1", "--help"],
        );
    }
}
