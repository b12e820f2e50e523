//! The `sidecar` binary: Thanos' sidecar next to a Prometheus (see the library docs).

use std::process::ExitCode;

fn main() -> ExitCode {
    let args = sidecar::args::normalize_args(std::env::args_os());
    service_core::service_main_from::<sidecar::Config, _, _, _, _, _>(
        "sidecar",
        "Sidecar for Prometheus server.",
        args,
        sidecar::run,
    )
}
