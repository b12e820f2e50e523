//! `querier`: Thanos' `query` component.

use std::process::ExitCode;

fn main() -> ExitCode {
    service_core::service_main::<querier::Config, _, _, _>(
        "querier",
        "Query node exposing PromQL enabled Query API with data retrieved from multiple store nodes",
        querier::run,
    )
}
