//! PromQL evaluation with Prometheus 3 semantics.
//!
//! **Mission.** Turn a PromQL query string plus a source of series into the values Prometheus 3
//! would return: instant queries ([`Engine::instant_query`]) and range queries
//! ([`Engine::range_query`]), with Prometheus' error wording and classification
//! ([`Error::kind`]) and its warning/info annotations where they are cheap to produce. The crate
//! knows nothing about HTTP or gRPC; services wrap it.
//!
//! Queries are parsed with the `promql-parser` crate and turned once into the engine's own plan
//! (`plan`), which the evaluator runs on without reading the parser's types. Every node of the
//! plan is evaluated once for all steps of the query (`batch`): one step for an instant query, every step of a range
//! query at once, so label work (output label sets, groups, vector matching) is done once per
//! series and per-step work touches only numbers. Series
//! come from a [`Queryable`]: a synchronous trait returning lazy streams of series and samples,
//! so a chunk-backed store can decode while the engine consumes. [`MemoryStorage`] is the
//! in-memory implementation used by tests and the conformance runner
//! (`tests/conformance.rs`, which replays Prometheus' own `.test` scripts). Evaluation is
//! synchronous and CPU-bound: async services should run queries on a blocking pool and cancel
//! them through [`QueryOptions::cancel`].
//!
//! # Invariants
//!
//! - Windows are left-open: a range selector `x[d]` at `t` sees samples in `(t-d, t]`, an instant
//!   selector the newest sample in `(t-lookback, t]`. A stale marker (bit pattern
//!   [`prom_model::STALE_NAN_BITS`]) ends a series' lookback and never appears in range windows.
//! - `__name__` removal is delayed: functions and operators only *mark* a result for name
//!   removal ([`value::Element::drop_name`]); the name is removed, and duplicate label sets are
//!   rejected, once at the end of the query. So `label_replace(rate(x[1m]), ...)` still sees
//!   the name, as in Prometheus with `--enable-feature=promql-delayed-name-removal`.
//! - Instant and range queries share one code path: an instant query is a grid of one step.
//!   Range results equal instant queries at each step bit for bit: per-series kernels are
//!   shared and each step sees a vector's series in the same order
//!   (`tests/range_consistency.rs` checks this, including the parallel path).
//! - Per-series work (selectors' lookback, range functions' windows) is split over the
//!   available cores in contiguous chunks (`batch::parallel`); results and annotations keep
//!   series order, so the answer does not depend on the number of threads.
//! - Selector series are selected once per query for the whole time range they can touch
//!   (offsets, `@`, subqueries included) and their samples decoded when read: block by block
//!   by a selector read once, for the whole query otherwise (`eval::selection`). Subquery inner
//!   results are reused across steps, as inner timestamps are aligned to absolute multiples of
//!   the subquery step.
//! - Start timestamps, when the source provides them ([`SelectedSeries::start_timestamps`]),
//!   mark counter resets for `rate`/`increase`/`irate`/`resets` and replace left extrapolation;
//!   subqueries and other expressions drop them, as in Prometheus.
//! - Library code never panics on input: every malformed query or value becomes an [`Error`].
//! - No query can overflow the stack: [`parse_expr`] refuses one nested deeper than
//!   [`MAX_DEPTH`] levels (bounded from its tokens, without recursion) and returns a
//!   [`ParsedExpr`]; parsing, evaluation, printing and dropping a tree run where the stack has
//!   room for its depth, on a segment allocated for the call when the caller's has not (`depth`).
//! - Samples held count against the sample limit as they are taken, at every level: the
//!   batches alive while their parent needs them, and subqueries' buffered inner points
//!   (`batch::subquery`); the deadline and cancellation are checked at every node, subquery
//!   segment and block of series.
//! - With a [`MemoryBudget`] (shared by every query of an engine and its clones), a query
//!   reserves an estimate of what it holds (selector data as it loads, each new peak of held
//!   samples) and returns it when it ends; a reservation that does not fit fails the query
//!   (`budget`).
//!
//! # Module map
//!
//! - [`engine`]: [`Engine`], options, instant/range entry points, final name removal.
//! - `depth`: the depth bound, stack growth for deep trees, [`ParsedExpr`]; `budget`: the
//!   memory budget shared by concurrent queries.
//! - `batch`: the evaluation path: a plan node over a grid of steps (`Grid`, `Batch`, `Row`);
//!   `batch::selector` (selectors, range functions over windows, streaming by blocks),
//!   `batch::aggregate`, `batch::binary`, `batch::functions`, `batch::subquery`, and
//!   `batch::parallel` (per-series work over the cores), `batch::info` (`info()`) and
//!   `batch::matrix` (a range vector at the root of an instant query). It is the only
//!   evaluation path.
//! - `plan`: the engine's own expression tree, built once per query from the parser's AST
//!   (`plan::build`): selectors with resolved matchers, `offset` and `@`, functions and
//!   aggregations as enums, vector matching, subquery steps, step invariance. The evaluator
//!   runs on the plan and never reads the parser's types.
//! - `eval`: the per-query state: selector data loading (selections indexed by selector id),
//!   sample accounting, annotations.
//! - `binary`: arithmetic, comparison and set operators, vector matching, `fill` modifiers
//!   (the per-step kernels `batch::binary` applies).
//! - `aggregate`: aggregation operators and their update rules.
//! - `functions`, `range_functions`, `histogram`: the function library's kernels (per value,
//!   per window, per bucket set), applied by `batch::functions` and `batch::selector`.
//! - `parse`: glue to `promql-parser` (durations, `@`, offsets, matchers).
//! - `syntax`: Prometheus-worded parse errors, Go string unquoting.
//! - `annotations`, `format`, `hash`: annotation texts, Go-compatible number formatting,
//!   Prometheus' label hash (for `limit_ratio`).
//! - [`storage`]: [`Queryable`], [`SelectHints`], [`MemoryStorage`].
//! - [`value`]: result types.
//!
//! # Where Prometheus 2 differs
//!
//! Prometheus 2.x used closed windows `[t-d, t]` for range and lookback selection, removed
//! `__name__` eagerly, applied the rate zero-point clamp before the 1.1×-average-gap check, summed
//! without Kahan compensation before 2.54, and had no `limitk`/`limit_ratio`, `fill` modifiers,
//! `first_over_time`, `ts_of_*_over_time`, `mad_over_time` or `start()`/`end()` functions. Results
//! on window boundaries therefore differ from a 2.x server; this crate follows 3.x only.
//!
//! # Error messages
//!
//! Parse errors read as Prometheus 3 words them, `<line>:<col>: parse error: <message>` (the
//! HTTP layer adds `invalid parameter "query": `), with `errorType` `bad_data`. `promql-parser`
//! decides whether a query parses; when it does not, the `syntax` module re-reads the query
//! with its own lexer and checker, modelled on Prometheus' lexer errors, the grammar's error
//! rules ("unexpected X in aggregation", `... in grouping opts, expected "("`, ...), the checks
//! made while building nodes and the type checks made afterwards, and reports the first problem
//! at Prometheus' position. `tests/differential.rs` compares `errorType` and message with
//! Prometheus 2.42 on 80 listed invalid queries (lexer, grammar, node, type and execution
//! errors: 80 equal) and on 300 seeded mutations of valid queries (201 still fail after
//! leaving out 2.42-specific wordings: 201 equal).
//!
//! Known differences:
//!
//! - Prometheus 2.42 versus 3 (the engine follows 3): matcher regexes are anchored as
//!   `^(?s:...)$` in regex errors (2.42: `^(?:...)$`); a letter inside brackets is "unexpected
//!   character: 'x', expected ':'" (2.42 lexes it as a colon: "unexpected colon 'x'"); the `@`
//!   item is named `<op:@>` (2.42: `"<Item 57385>" <op:@>`); the two series named in "found
//!   duplicate series" are sorted; and 3 accepts what 2.42 rejects: bare numbers as durations
//!   (`x[5]`, `offset 1`), quoted label names (`{"x"}`, `by ("a")`) and any UTF-8 label name in
//!   `label_replace`, `label_join` and `count_values`.
//! - Not reproduced: Go `regexp` messages other than unbalanced parentheses (others read
//!   `error parsing regexp: invalid regular expression: ...`); errors for queries `promql-parser`
//!   accepts but Prometheus rejects (numbers beyond the float range such as `1e999`, `@`
//!   timestamps beyond the int64 range); and queries using syntax the parser cannot read (the
//!   `anchored`/`smoothed` modifiers, duration arithmetic), which report `promql-parser`'s own
//!   message without a position.
//! - String literals are read as Go reads them, as bytes: a label name given as a literal
//!   that is not UTF-8 (`label_replace(x, "\xff", ...)`) fails with Prometheus' `execution`
//!   error, raised when the query is parsed rather than when the call is evaluated.
//!
//! # Not supported yet
//!
//! Native histograms (samples are floats only), and the `anchored`/`smoothed` range modifiers
//! and duration arithmetic (the parser cannot read them). The sample limit counts what each
//! node's result holds while it lives and, for range functions, the samples in all windows of
//! one step, which approximates Prometheus' peak accounting.

mod aggregate;
mod annotations;
mod batch;
mod binary;
mod budget;
mod depth;
pub mod engine;
mod error;
mod eval;
mod format;
mod functions;
mod hash;
mod histogram;
mod parse;
mod plan;
mod range_functions;
pub mod storage;
mod syntax;
pub mod value;

pub use budget::{MemoryBudget, QUERY_ALLOWANCE, Reservation};
pub use depth::{MAX_DEPTH, MAX_FORMAT_COST, ParsedExpr, depth_bound, expr_depth};
pub use engine::{Engine, EngineOptions, QueryOptions};
pub use error::{Error, ErrorKind, Result};
pub use parse::{parse_expr, selector_matchers};
pub use storage::{
    MemoryStorage, Queryable, SampleStream, SelectHints, SelectedSeries, SeriesStream, StorageError,
};
pub use value::{Element, Point, QueryResult, Series, Value};
