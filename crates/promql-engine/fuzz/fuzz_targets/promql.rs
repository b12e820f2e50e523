//! PromQL text from outside (an HTTP `query` parameter): parsing never panics or overflows the
//! stack, the depth bound checked before parsing really bounds the tree, and a query that parses
//! is printed (within the formatting budget), evaluated under a short timeout and a small sample
//! limit, and dropped without a crash. Deep nesting is what this target is for, so inputs are
//! also tried with their first byte repeated as a prefix many times.
#![no_main]

use std::sync::OnceLock;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use prom_model::{Labels, Sample};
use promql_engine::{
    Engine, EngineOptions, MemoryStorage, QueryOptions, depth_bound, expr_depth, parse_expr,
};

fn storage() -> &'static MemoryStorage {
    static STORAGE: OnceLock<MemoryStorage> = OnceLock::new();
    STORAGE.get_or_init(|| {
        let mut storage = MemoryStorage::new();
        for (job, slope) in [("a", 1.0), ("b", -2.5)] {
            let labels = Labels::from_pairs([("__name__", "x"), ("job", job)]);
            storage.append(
                labels,
                (0..=40).map(|i| Sample::new(i * 15_000, slope * i as f64)),
            );
        }
        storage
    })
}

fn check(query: &str) {
    let Ok(expr) = parse_expr(query) else {
        return;
    };
    let depth = expr_depth(&expr);
    let bound = depth_bound(query);
    assert!(
        depth <= bound,
        "depth {depth} above its bound {bound}: {query:?}"
    );
    let _ = expr.prettify();
    let engine = Engine::new(EngineOptions {
        max_samples: 200_000,
        timeout: Duration::from_millis(200),
        ..EngineOptions::default()
    });
    let options = QueryOptions::default();
    let _ = engine.instant_query_expr(storage(), &expr, query, 600_000, &options);
    let _ = engine.range_query_expr(storage(), &expr, query, 0, 600_000, 60_000, &options);
}

fuzz_target!(|data: &[u8]| {
    let Ok(query) = std::str::from_utf8(data) else {
        return;
    };
    check(query);
    // The first character repeated in front: deep parentheses, calls, unary operators.
    if let Some(first) = query.chars().next() {
        let prefix: String = std::iter::repeat_n(first, 3_000).collect();
        check(&format!("{prefix}{query}"));
    }
});
