//! `store-gateway`: Thanos' `store` component.

use std::process::ExitCode;

fn main() -> ExitCode {
    service_core::service_main::<store_gateway::Config, _, _, _>(
        "store-gateway",
        "Store node giving access to blocks in a bucket provider",
        store_gateway::run,
    )
}
