//! `compactor`: Thanos' `compact` component.

use std::process::ExitCode;

fn main() -> ExitCode {
    service_core::service_main::<compactor::Config, _, _, _>(
        "compactor",
        "Continuously compacts blocks in an object store bucket",
        compactor::run,
    )
}
