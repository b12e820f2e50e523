//! The shared `main`: parse flags → build the runtime → init telemetry → run → exit code.

use std::future::Future;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Command};

use crate::build_info::{VERSION_DETAILS, VERSION_SUMMARY, register_build_info};
use crate::flags::{LogFlags, TracingFlags};
use crate::lifecycle::{ServiceContext, wait_for_signal};
use crate::telemetry::init_telemetry;

/// A service's flag struct: a `clap::Args` that contains the logging and tracing blocks.
pub trait ServiceConfig: Args + Send + 'static {
    /// `--log.level` / `--log.format`.
    fn log_flags(&self) -> &LogFlags;
    /// `--tracing.config` / `--tracing.config-file`.
    fn tracing_flags(&self) -> &TracingFlags;
}

/// Everything a service binary's `main` does:
///
/// ```text
/// fn main() -> std::process::ExitCode {
///     service_core::service_main::<sidecar::Config, _, _, _>("sidecar", "Sidecar for Prometheus", sidecar::run)
/// }
/// ```
///
/// Parses the command line (clap handles `--help` and `--version`), builds a multi-threaded
/// runtime, installs logging and tracing, registers `thanos_build_info`, runs `run` while
/// SIGTERM/SIGINT cancel [`ServiceContext::shutdown`], flushes traces, and returns exit code 0,
/// or 1 after printing one line `<name>: <error chain>` on stderr.
pub fn service_main<C, F, Fut, E>(name: &'static str, about: &'static str, run: F) -> ExitCode
where
    C: ServiceConfig,
    F: FnOnce(C, ServiceContext) -> Fut,
    Fut: Future<Output = Result<(), E>> + Send + 'static,
    E: Into<anyhow::Error>,
{
    service_main_from(name, about, std::env::args_os(), run)
}

/// [`service_main`] over an explicit command line (the first item is the program name), for
/// binaries that rewrite their arguments first (the sidecar accepts the Prometheus Operator's
/// `sidecar --flag=value ...` form).
pub fn service_main_from<C, F, Fut, E, I, T>(
    name: &'static str,
    about: &'static str,
    args: I,
    run: F,
) -> ExitCode
where
    C: ServiceConfig,
    F: FnOnce(C, ServiceContext) -> Fut,
    Fut: Future<Output = Result<(), E>> + Send + 'static,
    E: Into<anyhow::Error>,
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    match try_service_main(name, about, args, run) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            // The one place a library prints: the last words of a failing process.
            #[allow(clippy::print_stderr)]
            {
                eprintln!("{name}: {}", one_line(&format!("{error:#}")));
            }
            ExitCode::FAILURE
        }
    }
}

fn one_line(text: &str) -> String {
    text.split('\n')
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

fn try_service_main<C, F, Fut, E, I, T>(
    name: &'static str,
    about: &'static str,
    args: I,
    run: F,
) -> anyhow::Result<()>
where
    C: ServiceConfig,
    F: FnOnce(C, ServiceContext) -> Fut,
    Fut: Future<Output = Result<(), E>> + Send + 'static,
    E: Into<anyhow::Error>,
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let command = C::augment_args(
        Command::new(name)
            .about(about)
            .version(VERSION_SUMMARY)
            .long_version(VERSION_DETAILS),
    );
    let matches = command.get_matches_from(args);
    let config = match C::from_arg_matches(&matches) {
        Ok(config) => config,
        Err(error) => error.exit(),
    };

    crate::malloc::limit_arenas();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name(name)
        .build()
        .map_err(|error| anyhow::anyhow!("build async runtime: {error}"))?;
    let telemetry = {
        let _runtime_context = runtime.enter();
        init_telemetry(name, config.log_flags(), config.tracing_flags())?
    };
    let ctx = ServiceContext::new();
    register_build_info(&ctx.registry)?;
    tracing::info!(version = VERSION_SUMMARY, "starting {name}");

    let shutdown = ctx.shutdown.clone();
    let service = run(config, ctx);
    let outcome = runtime.block_on(async move {
        let signal_shutdown = shutdown.clone();
        let signals = tokio::spawn(async move {
            match wait_for_signal(&signal_shutdown).await {
                Ok(Some(signal)) => {
                    tracing::info!(signal, "caught signal, exiting");
                    signal_shutdown.cancel();
                }
                Ok(None) => {}
                Err(error) => {
                    tracing::error!(error = %crate::status::error_chain(&error), "no signal handling");
                }
            }
        });
        let outcome = service.await.map_err(Into::into);
        shutdown.cancel();
        let _ = signals.await;
        outcome
    });
    match &outcome {
        Ok(()) => tracing::info!("exiting"),
        Err(error) => tracing::error!(error = %format!("{error:#}"), "exiting with error"),
    }
    let _ =
        runtime.block_on(async { tokio::task::spawn_blocking(move || telemetry.shutdown()).await });
    runtime.shutdown_timeout(Duration::from_secs(1));
    outcome
}

#[cfg(test)]
mod tests {
    use super::one_line;

    #[test]
    fn error_chains_print_on_one_line() {
        assert_eq!(
            one_line("bind 0.0.0.0:10902:\n  address in use\n\n"),
            "bind 0.0.0.0:10902: address in use"
        );
        assert_eq!(one_line("plain"), "plain");
    }
}
