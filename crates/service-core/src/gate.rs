//! Thanos' concurrency gate: at most `max` requests run at once, the others wait their turn, with
//! the metrics Thanos' `pkg/gate` exposes under a component's prefix
//! (`thanos_query_concurrent_` for the querier's `--query.max-concurrent`,
//! `thanos_bucket_store_series_` for the store gateway's `--store.grpc.series-max-concurrency`):
//! `<prefix>gate_queries_max`, `<prefix>gate_queries_in_flight`, `<prefix>gate_queries_total` and
//! `<prefix>gate_duration_seconds` (time spent waiting). The mixin's `ThanosQueryOverload` and
//! `ThanosStoreSeriesGateLatencyHigh` alerts read them.

use std::sync::Arc;
use std::time::Instant;

use prometheus::{Histogram, HistogramOpts, IntCounter, IntGauge, Opts, Registry};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Thanos' buckets for the time spent waiting at a gate.
const WAIT_BUCKETS: [f64; 16] = [
    0.01, 0.1, 0.3, 0.6, 1.0, 3.0, 6.0, 9.0, 20.0, 30.0, 60.0, 90.0, 120.0, 240.0, 360.0, 720.0,
];

/// A concurrency gate with its metrics; cheap to clone.
#[derive(Debug, Clone)]
pub struct Gate {
    semaphore: Arc<Semaphore>,
    in_flight: IntGauge,
    total: IntCounter,
    waited: Histogram,
}

/// The gate was closed: the service is shutting down.
#[derive(Debug, thiserror::Error)]
#[error("gate closed")]
pub struct GateClosed;

/// A turn at the gate; the next waiter goes in when it is dropped.
#[derive(Debug)]
pub struct GatePermit {
    _permit: OwnedSemaphorePermit,
    in_flight: IntGauge,
}

impl Drop for GatePermit {
    fn drop(&mut self) {
        self.in_flight.dec();
    }
}

impl Gate {
    /// A gate letting `max` requests (at least one) through at once, its metrics registered
    /// in `registry` under `prefix`.
    pub fn new(registry: &Registry, prefix: &str, max: usize) -> Result<Self, prometheus::Error> {
        let max = max.max(1);
        let maximum = IntGauge::with_opts(Opts::new(
            format!("{prefix}gate_queries_max"),
            "Maximum number of concurrent queries.",
        ))?;
        maximum.set(i64::try_from(max).unwrap_or(i64::MAX));
        let in_flight = IntGauge::with_opts(Opts::new(
            format!("{prefix}gate_queries_in_flight"),
            "Number of queries that are currently in flight.",
        ))?;
        let total = IntCounter::with_opts(Opts::new(
            format!("{prefix}gate_queries_total"),
            "Total number of queries.",
        ))?;
        let waited = Histogram::with_opts(
            HistogramOpts::new(
                format!("{prefix}gate_duration_seconds"),
                "How many seconds it took for queries to wait at the gate.",
            )
            .buckets(WAIT_BUCKETS.to_vec()),
        )?;
        registry.register(Box::new(maximum))?;
        registry.register(Box::new(in_flight.clone()))?;
        registry.register(Box::new(total.clone()))?;
        registry.register(Box::new(waited.clone()))?;
        Ok(Self {
            semaphore: Arc::new(Semaphore::new(max)),
            in_flight,
            total,
            waited,
        })
    }

    /// Waits for a turn; the time waited is observed whether or not a turn came.
    pub async fn start(&self) -> Result<GatePermit, GateClosed> {
        self.total.inc();
        let started = Instant::now();
        let permit = Arc::clone(&self.semaphore).acquire_owned().await;
        self.waited.observe(started.elapsed().as_secs_f64());
        let permit = permit.map_err(|_| GateClosed)?;
        self.in_flight.inc();
        Ok(GatePermit {
            _permit: permit,
            in_flight: self.in_flight.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(registry: &Registry, name: &str) -> f64 {
        registry
            .gather()
            .iter()
            .find(|family| family.name() == name)
            .map(|family| {
                let metric = &family.get_metric()[0];
                if family.name().ends_with("_seconds") {
                    metric.get_histogram().get_sample_count() as f64
                } else if family.name().ends_with("_total") {
                    metric.get_counter().get_value()
                } else {
                    metric.get_gauge().get_value()
                }
            })
            .unwrap_or(f64::NAN)
    }

    #[tokio::test]
    async fn counts_turns_waiters_and_in_flight() {
        let registry = Registry::new();
        let gate = Gate::new(&registry, "thanos_query_concurrent_", 2).expect("registers");
        let max = "thanos_query_concurrent_gate_queries_max";
        let in_flight = "thanos_query_concurrent_gate_queries_in_flight";
        let total = "thanos_query_concurrent_gate_queries_total";
        let waited = "thanos_query_concurrent_gate_duration_seconds";
        assert_eq!(value(&registry, max), 2.0);
        let first = gate.start().await.expect("turn");
        let second = gate.start().await.expect("turn");
        assert_eq!(value(&registry, in_flight), 2.0);
        // A third waits until one is done.
        let waiting = tokio::spawn({
            let gate = gate.clone();
            async move { gate.start().await.map(|_| ()) }
        });
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert!(!waiting.is_finished());
        assert_eq!(value(&registry, total), 3.0);
        drop(first);
        waiting.await.expect("joins").expect("turn");
        drop(second);
        assert_eq!(value(&registry, in_flight), 0.0);
        assert_eq!(value(&registry, waited), 3.0);
        // A second gate under the same prefix is refused by the registry, not silently shared.
        assert!(Gate::new(&registry, "thanos_query_concurrent_", 1).is_err());
    }
}
