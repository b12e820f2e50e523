//! A tiny service on the shared runtime, started by `tests/demo_service.rs`: an HTTP server with
//! a `/slow/{millis}` route, a gRPC server with the health service, and a readiness delay.

use std::process::ExitCode;
use std::time::Duration;

use axum::Router;
use axum::extract::Path;
use axum::routing::get;
use service_core::{
    GrpcFlags, GrpcServer, HttpFlags, HttpServer, LogFlags, PromDuration, RunGroup, ServiceConfig,
    ServiceContext, TracingFlags,
};

#[derive(Debug, clap::Args)]
struct Config {
    #[command(flatten)]
    http: HttpFlags,
    #[command(flatten)]
    grpc: GrpcFlags,
    #[command(flatten)]
    log: LogFlags,
    #[command(flatten)]
    tracing: TracingFlags,
    /// How long the service stays not ready after starting.
    #[arg(long = "demo.ready-delay", default_value = "0s")]
    ready_delay: PromDuration,
}

impl ServiceConfig for Config {
    fn log_flags(&self) -> &LogFlags {
        &self.log
    }

    fn tracing_flags(&self) -> &TracingFlags {
        &self.tracing
    }
}

async fn slow(Path(millis): Path<u64>) -> String {
    tracing::info!(millis, "slow request started");
    tokio::time::sleep(Duration::from_millis(millis)).await;
    tracing::info!(millis, "slow request done");
    format!("done after {millis}ms")
}

async fn run(config: Config, ctx: ServiceContext) -> Result<(), service_core::Error> {
    let routes = Router::new().route("/slow/{millis}", get(slow));
    let http = HttpServer::bind(&config.http, &ctx, routes).await?;
    let grpc = GrpcServer::bind(&config.grpc, &ctx).await?;
    tracing::info!(http = %http.local_addr(), grpc = %grpc.local_addr(), "demo listening");

    let mut group = RunGroup::new(ctx.shutdown.clone());
    group.add("http", http.serve(ctx.shutdown.clone()));
    group.add("grpc", grpc.serve(ctx.shutdown.clone()));
    let readiness = ctx.readiness.clone();
    let shutdown = ctx.shutdown.clone();
    let delay = config.ready_delay.get();
    group.add("readiness", async move {
        tokio::select! {
            () = tokio::time::sleep(delay) => readiness.set_ready(),
            () = shutdown.cancelled() => return Ok(()),
        }
        tracing::info!("demo ready");
        shutdown.cancelled().await;
        Ok::<(), service_core::Error>(())
    });
    group.run().await
}

fn main() -> ExitCode {
    service_core::service_main::<Config, _, _, _>(
        "service-core-demo",
        "service-core demo service",
        run,
    )
}
