//! The differential test's query grammar: a seeded generator of PromQL expressions over the
//! dataset of `dataset.rs`, which tags every expression with the [`Shape`]s it contains so the
//! test can tally them and fail when a shape is never generated.
//!
//! The grammar stays inside what Prometheus 2.42 and 3.x (whose semantics the engine follows)
//! answer identically; the reasons are in the differential test's documentation. The rules
//! that concern this file:
//!
//! - Every range, offset and subquery step is whole seconds, and every subquery step a multiple
//!   of 5 s. A nested subquery's inner range is 2 or 3 s more than a multiple of 5 s, so an inner
//!   subquery evaluated at an outer step (a multiple of 5 s) never has one of its own steps on its
//!   window boundary (2.42 includes that point, 3.x does not).
//! - `@` timestamps on a subquery carry the evaluation times' 50 ms fraction (a whole-second `@`
//!   could put an inner step on the window's start); on selectors they may be whole seconds,
//!   as samples never sit on a whole second.
//! - `topk`/`bottomk` only rank tie-free inputs, `count_values` only counts integral values,
//!   `rate` over a subquery only wraps raw counters, `or` only combines a metric with itself,
//!   and nothing reads `__name__` after a function that drops it.
//!
//! Includers need the modules `dataset` and `query_shapes` at their crate root.

use std::collections::BTreeSet;

use crate::dataset::Rng;
use crate::query_shapes::Shape;

/// One generated expression and the shapes it contains (the query kinds are added per run).
#[derive(Debug, Clone)]
pub(crate) struct Generated {
    /// The PromQL text.
    pub(crate) text: String,
    /// The shapes the text contains.
    pub(crate) shapes: BTreeSet<Shape>,
}

/// The query grammar. Nonterminals are methods; every choice is drawn from the seeded [`Rng`].
pub(crate) struct QueryGen {
    rng: Rng,
    shapes: BTreeSet<Shape>,
    /// Whole seconds between which `@` timestamps are drawn.
    at_range_s: (i64, i64),
}

const RANGES: [&str; 6] = ["1m", "2m", "90s", "5m", "10m", "3m"];
/// Subquery ranges whose step is a multiple of 5 s (see the module docs).
const SUBQUERY_STEPS: [&str; 4] = ["1m", "30s", "45s", ""];
/// Inner ranges of nested subqueries: 2 or 3 s more than a multiple of 5 s.
const NESTED_INNER_RANGES: [&str; 4] = ["5m7s", "4m3s", "2m13s", "10m2s"];
const NESTED_INNER_STEPS: [&str; 4] = ["20s", "30s", "15s", ""];
const GROUPINGS: [&str; 9] = [
    "by (job)",
    "by (job, instance)",
    "by (instance)",
    "without (instance)",
    "without (method, code)",
    "by (code)",
    "",
    "without (job)",
    "by (method)",
];

impl QueryGen {
    /// A generator drawing from `seed`, with `@` timestamps between the whole seconds
    /// `at_range_s`.
    pub(crate) fn new(seed: u64, at_range_s: (i64, i64)) -> Self {
        Self {
            rng: Rng::new(seed),
            shapes: BTreeSet::new(),
            at_range_s,
        }
    }

    /// The next expression.
    pub(crate) fn query(&mut self) -> Generated {
        self.shapes.clear();
        let text = if self.rng.chance(0.04) {
            self.scalar()
        } else {
            let depth = self.rng.below(3) + 1;
            self.vector(depth)
        };
        Generated {
            text,
            shapes: std::mem::take(&mut self.shapes),
        }
    }

    fn mark(&mut self, shape: Shape) {
        self.shapes.insert(shape);
    }

    fn pick(&mut self, items: &[&str]) -> String {
        self.rng.pick(items).to_string()
    }

    fn mark_matcher(&mut self, matcher: &str) {
        let shape = if matcher.contains("!~") {
            Shape::MatchNotRegex
        } else if matcher.contains("=~") {
            Shape::MatchRegex
        } else if matcher.contains("!=") {
            Shape::MatchNotEqual
        } else {
            Shape::MatchEqual
        };
        self.mark(shape);
    }

    fn matchers(&mut self, metric: &str) -> String {
        let mut options = vec![
            r#"job="api""#,
            r#"job!="web""#,
            r#"job=~"api|batch""#,
            r#"job!~"b.*""#,
            r#"instance=~"host-[0-2]:.*""#,
            r#"instance!~".*:9101""#,
            r#"instance="host-3:9100""#,
        ];
        if metric == "app_requests_total" {
            options.extend([r#"method="get""#, r#"code=~"5..""#, r#"code!="200""#]);
        }
        if metric == "app_errors_total" {
            options.extend([r#"kind="timeout""#, r#"kind=~"t.*|r.*""#]);
        }
        let count = self.rng.below(3);
        let mut chosen: Vec<String> = Vec::new();
        for _ in 0..count {
            let matcher = self.pick(&options);
            if !chosen.contains(&matcher) {
                self.mark_matcher(&matcher);
                chosen.push(matcher);
            }
        }
        if chosen.is_empty() && self.rng.chance(0.2) {
            self.mark(Shape::MatchEqual);
            return format!(r#"{{__name__="{metric}"}}"#);
        }
        if chosen.is_empty() {
            return metric.to_string();
        }
        if self.rng.chance(0.15) {
            self.mark(Shape::MatchRegex);
            return format!(r#"{{__name__=~"{metric}", {}}}"#, chosen.join(", "));
        }
        format!("{metric}{{{}}}", chosen.join(", "))
    }

    /// An `@` timestamp: whole seconds, or with the evaluation times' 50 ms fraction (always on
    /// a subquery, see the module docs).
    fn at(&mut self, subquery: bool) -> String {
        match self.rng.below(5) {
            0 => {
                self.mark(Shape::AtStart);
                " @ start()".into()
            }
            1 => {
                self.mark(Shape::AtEnd);
                " @ end()".into()
            }
            _ => {
                self.mark(Shape::AtTimestamp);
                let (from, to) = self.at_range_s;
                let seconds = from + self.rng.below((to - from) as usize) as i64;
                if subquery || self.rng.chance(0.5) {
                    format!(" @ {seconds}.050")
                } else {
                    format!(" @ {seconds}")
                }
            }
        }
    }

    fn plain_offset(&mut self) -> String {
        self.mark(Shape::Offset);
        self.pick(&[" offset 5m", " offset 90s", " offset 1h"])
    }

    /// Optional `@` and `offset` of a selector or subquery.
    fn modifiers(&mut self, subquery: bool) -> String {
        match self.rng.below(20) {
            0..=2 => self.plain_offset(),
            3 | 4 => self.at(subquery),
            5 => {
                let at = self.at(subquery);
                format!("{at}{}", self.plain_offset())
            }
            _ => String::new(),
        }
    }

    /// An optional `offset` without `@`.
    fn offset_only(&mut self) -> String {
        if self.rng.chance(0.2) {
            self.plain_offset()
        } else {
            String::new()
        }
    }

    fn counter(&mut self) -> String {
        let metric = self.pick(&["app_requests_total", "app_errors_total"]);
        self.matchers(&metric)
    }

    fn gauge(&mut self) -> String {
        let metric = self.pick(&["app_memory_bytes", "app_temperature_celsius"]);
        self.matchers(&metric)
    }

    fn counter_function(&mut self) -> String {
        let function = self.pick(&["rate", "irate", "increase", "resets", "changes", "rate"]);
        let shape = if function == "resets" || function == "changes" {
            Shape::CounterChanges
        } else {
            Shape::RateFamily
        };
        self.mark(shape);
        let (selector, range, modifiers) =
            (self.counter(), self.pick(&RANGES), self.modifiers(false));
        format!("{function}({selector}[{range}]{modifiers})")
    }

    fn gauge_function(&mut self) -> String {
        let (shape, function) = *self.rng.pick(&[
            (Shape::DeltaFamily, "delta({})"),
            (Shape::DeltaFamily, "idelta({})"),
            (Shape::Regression, "deriv({})"),
            (Shape::Regression, "predict_linear({}, 600)"),
            (Shape::OverTimeStatistics, "quantile_over_time(0.75, {})"),
            (Shape::OverTimeStatistics, "stddev_over_time({})"),
            (Shape::OverTimeStatistics, "stdvar_over_time({})"),
            (Shape::OverTime, "count_over_time({})"),
            (Shape::OverTime, "last_over_time({})"),
            (Shape::OverTime, "min_over_time({})"),
            (Shape::OverTime, "max_over_time({})"),
            (Shape::OverTime, "sum_over_time({})"),
            (Shape::OverTime, "avg_over_time({})"),
            (Shape::OverTime, "present_over_time({})"),
            (Shape::AbsentOverTime, "absent_over_time({})"),
        ]);
        self.mark(shape);
        let (selector, range) = (self.gauge(), self.pick(&RANGES));
        // 2.42 answers a range query of `predict_linear(v @ t, s)` at its first step(s) only.
        let modifiers = if function.starts_with("predict_linear") {
            self.offset_only()
        } else {
            self.modifiers(false)
        };
        function.replace("{}", &format!("{selector}[{range}]{modifiers}"))
    }

    fn leaf(&mut self) -> String {
        match self.rng.below(6) {
            0 | 1 => self.counter_function(),
            2 | 3 => self.gauge_function(),
            4 => {
                let selector = self.gauge();
                format!("{selector}{}", self.modifiers(false))
            }
            _ => {
                let selector = self.counter();
                format!("{selector}{}", self.modifiers(false))
            }
        }
    }

    fn histogram_quantile(&mut self) -> String {
        self.mark(Shape::HistogramQuantile);
        let q = self.pick(&["0.5", "0.9", "0.99", "0.25"]);
        let matchers = self.pick(&["", r#"{job="api"}"#, r#"{method=~"get|put"}"#]);
        if !matchers.is_empty() {
            self.mark_matcher(&matchers);
        }
        let range = self.pick(&["1m", "5m", "10m"]);
        if self.rng.chance(0.25) {
            return format!(
                "histogram_quantile({q}, rate(app_latency_seconds_bucket{matchers}[{range}]))"
            );
        }
        self.mark(Shape::Sum);
        let grouping = self.pick(&["le", "le, job", "le, instance", "job, le, method"]);
        format!(
            "histogram_quantile({q}, sum by ({grouping}) (rate(app_latency_seconds_bucket{matchers}[{range}])))"
        )
    }

    /// Vector-vector arithmetic and comparisons with every kind of matching.
    fn matching(&mut self) -> String {
        let range = self.pick(&["2m", "5m"]);
        let (shapes, text): (&[Shape], String) = match self.rng.below(11) {
            0 => (
                &[Shape::On, Shape::Sum, Shape::RateFamily, Shape::MatchEqual],
                format!(
                    "sum by (job) (rate(app_requests_total{{code=\"500\"}}[{range}])) / on (job) sum by (job) (rate(app_requests_total[{range}]))"
                ),
            ),
            1 => (
                &[Shape::On, Shape::GroupLeft, Shape::RateFamily],
                format!(
                    "rate(app_requests_total[{range}]) / on (job, instance) group_left app_memory_bytes"
                ),
            ),
            2 => (
                &[Shape::Ignoring, Shape::GroupLeft, Shape::Sum, Shape::RateFamily],
                format!(
                    "sum without (method, code) (rate(app_requests_total[{range}])) * ignoring (kind) group_left sum without (kind) (rate(app_errors_total[{range}]))"
                ),
            ),
            3 => (
                &[Shape::OneToOne, Shape::RateFamily],
                format!(
                    "rate(app_latency_seconds_sum[{range}]) / rate(app_latency_seconds_count[{range}])"
                ),
            ),
            4 => (
                &[Shape::On, Shape::ComparisonBool, Shape::Offset],
                "app_temperature_celsius > bool on (job, instance) app_temperature_celsius offset 10m"
                    .to_string(),
            ),
            5 => (
                &[Shape::On, Shape::GroupRight, Shape::RateFamily],
                format!(
                    "app_memory_bytes * on (job, instance) group_right rate(app_requests_total[{range}])"
                ),
            ),
            6 => (
                &[
                    Shape::Ignoring,
                    Shape::GroupRight,
                    Shape::Sum,
                    Shape::RateFamily,
                    Shape::MatchEqual,
                ],
                format!(
                    "sum by (job, instance) (rate(app_errors_total[{range}])) / ignoring (method, code) group_right rate(app_requests_total{{code=\"500\"}}[{range}])"
                ),
            ),
            7 => (
                &[
                    Shape::On,
                    Shape::GroupLeft,
                    Shape::LabelReplace,
                    Shape::RateFamily,
                    Shape::MatchEqual,
                ],
                format!(
                    r#"rate(app_requests_total{{method="get"}}[{range}]) * on (job, instance) group_left (host) label_replace(app_memory_bytes, "host", "$1", "instance", "([^:]+):.*")"#
                ),
            ),
            8 => (
                &[Shape::OneToOne, Shape::ComparisonFilter, Shape::Offset],
                "app_temperature_celsius > app_temperature_celsius offset 10m".to_string(),
            ),
            9 => (
                // The left side keeps its name in both versions (a raw selector): under
                // delayed name removal a comparison filter keeps the name a function of its
                // left side was going to drop, where 2.42 has dropped it already.
                &[
                    Shape::On,
                    Shape::GroupLeft,
                    Shape::ComparisonFilter,
                    Shape::Sum,
                    Shape::VectorScalar,
                    Shape::Offset,
                ],
                "app_requests_total > on (job, instance) group_left sum by (job, instance) (app_requests_total offset 5m) / 4"
                    .to_string(),
            ),
            _ => (
                &[
                    Shape::Ignoring,
                    Shape::ComparisonBool,
                    Shape::RateFamily,
                    Shape::MatchEqual,
                ],
                format!(
                    "rate(app_requests_total{{code=\"500\"}}[{range}]) <= bool ignoring (code) rate(app_requests_total{{code=\"200\"}}[{range}])"
                ),
            ),
        };
        for shape in shapes {
            self.mark(*shape);
        }
        text
    }

    /// `and`/`or`/`unless`: `or` only combines a metric with itself (delayed name removal),
    /// `and`/`unless` may filter by another metric (only the left side's series are kept).
    fn set_operation(&mut self) -> String {
        let range = self.pick(&["2m", "5m"]);
        let (left_metric, right_metric) = if self.rng.chance(0.7) {
            let metric = self.pick(&["app_requests_total", "app_memory_bytes"]);
            (metric.clone(), metric)
        } else {
            (
                "app_memory_bytes".to_string(),
                "app_errors_total".to_string(),
            )
        };
        let operator = if left_metric == right_metric {
            self.pick(&["and", "or", "unless"])
        } else {
            self.pick(&["and", "unless"])
        };
        self.mark(match operator.as_str() {
            "and" => Shape::And,
            "or" => Shape::Or,
            _ => Shape::Unless,
        });
        let left = self.operand(&left_metric, &range);
        let right = self.operand(&right_metric, &range);
        let matching = if left_metric != right_metric {
            self.mark(Shape::On);
            self.pick(&["on (instance) ", "on (job, instance) "])
        } else {
            match self.rng.below(4) {
                0 => {
                    self.mark(Shape::On);
                    "on (job) ".to_string()
                }
                1 => {
                    self.mark(Shape::Ignoring);
                    "ignoring (instance) ".to_string()
                }
                _ => String::new(),
            }
        };
        format!("{left} {operator} {matching}{right}")
    }

    /// A filtered or transformed form of `metric` for a set operation.
    fn operand(&mut self, metric: &str, range: &str) -> String {
        let selector = self.matchers(metric);
        let counter = metric.ends_with("_total");
        match self.rng.below(3) {
            0 if counter => {
                self.mark(Shape::RateFamily);
                self.mark(Shape::ComparisonFilter);
                let bound = self.pick(&["> 0.5", "< 0.2", "> 0.3"]);
                format!("(rate({selector}[{range}]) {bound})")
            }
            0 => {
                self.mark(Shape::ComparisonFilter);
                let bound = self.pick(&["> 1.0005e9", "< 1e9"]);
                format!("({selector} {bound})")
            }
            1 if counter => {
                self.mark(Shape::RateFamily);
                format!("rate({selector}[{range}])")
            }
            _ => selector,
        }
    }

    fn subquery(&mut self) -> String {
        self.mark(Shape::Subquery);
        let step = self.pick(&SUBQUERY_STEPS);
        let outer = self.pick(&[
            "max_over_time",
            "avg_over_time",
            "min_over_time",
            "rate",
            "deriv",
        ]);
        let inner = if outer == "rate" {
            // A raw counter, not a sum of counters: a sum drops only a little when one member
            // resets, and in a two-point window the extrapolation to zero then falls below
            // 1.1× the gap, where 2.42's clamp order differs.
            self.mark(Shape::RateFamily);
            self.counter()
        } else if self.rng.chance(0.3) {
            self.mark(Shape::NestedSubquery);
            self.inner_subquery()
        } else {
            self.leaf()
        };
        self.mark(if outer == "deriv" {
            Shape::Regression
        } else if outer != "rate" {
            Shape::OverTime
        } else {
            Shape::RateFamily
        });
        let range = self.pick(&["5m", "10m", "15m"]);
        let modifiers = self.modifiers(true);
        format!("{outer}(({inner})[{range}:{step}]{modifiers})")
    }

    /// A subquery evaluated inside another one (see the module docs for its ranges).
    fn inner_subquery(&mut self) -> String {
        let function = self.pick(&["max_over_time", "avg_over_time", "deriv"]);
        self.mark(if function == "deriv" {
            Shape::Regression
        } else {
            Shape::OverTime
        });
        let (inner, range, step) = (
            self.leaf(),
            self.pick(&NESTED_INNER_RANGES),
            self.pick(&NESTED_INNER_STEPS),
        );
        let modifiers = self.modifiers(true);
        format!("{function}(({inner})[{range}:{step}]{modifiers})")
    }

    /// Expressions whose values practically never tie between series.
    fn tie_free(&mut self) -> String {
        let matchers = self.pick(&["", r#"{job=~"api|web"}"#, r#"{instance!="host-1:9101"}"#]);
        if !matchers.is_empty() {
            self.mark_matcher(&matchers);
        }
        match self.rng.below(4) {
            0 => format!("app_memory_bytes{matchers}"),
            1 => {
                self.mark(Shape::OverTime);
                format!("avg_over_time(app_temperature_celsius{matchers}[10m])")
            }
            2 => {
                self.mark(Shape::Regression);
                format!("deriv(app_memory_bytes{matchers}[5m])")
            }
            _ => {
                self.mark(Shape::RateFamily);
                format!("rate(app_latency_seconds_sum{matchers}[5m])")
            }
        }
    }

    /// Expressions with exact integral values whatever the summation order (`count_values`
    /// turns values into labels, so last-bit differences must not exist).
    fn integral(&mut self) -> String {
        let range = self.pick(&RANGES);
        let (shape, text) = match self.rng.below(4) {
            0 => (
                Shape::OverTime,
                format!("count_over_time({}[{range}])", self.gauge()),
            ),
            1 => (
                Shape::CounterChanges,
                format!("changes({}[{range}])", self.counter()),
            ),
            2 => (
                Shape::CounterChanges,
                format!("resets({}[{range}])", self.counter()),
            ),
            _ => {
                self.mark(Shape::MathFunction);
                (
                    Shape::OverTime,
                    format!("floor(max_over_time({}[{range}]))", self.gauge()),
                )
            }
        };
        self.mark(shape);
        text
    }

    /// A scalar expression: a number, `time()`, `scalar(...)` or arithmetic of those.
    fn scalar(&mut self) -> String {
        match self.rng.below(6) {
            0 | 1 => self.pick(&["2", "0.5", "10", "3", "1e3"]),
            2 => {
                self.mark(Shape::Time);
                "time()".into()
            }
            3 => {
                self.mark(Shape::ScalarFunction);
                self.mark(Shape::Sum);
                format!("scalar(sum({}))", self.leaf())
            }
            4 => {
                // Usually one series (a scalar), sometimes several (NaN).
                self.mark(Shape::ScalarFunction);
                let selector = self.pick(&[
                    r#"app_memory_bytes{job="api", instance="host-0:9100"}"#,
                    r#"app_temperature_celsius{instance="host-2:9102", job="web"}"#,
                    r#"app_temperature_celsius{job="batch"}"#,
                ]);
                self.mark(Shape::MatchEqual);
                format!("scalar({selector})")
            }
            _ => {
                self.mark(Shape::ScalarScalar);
                self.mark(Shape::Time);
                let form =
                    self.pick(&["time() % 3600", "time() / 60 - 28333200", "-time() + 1.7e9"]);
                if form.starts_with('-') {
                    self.mark(Shape::UnaryMinus);
                }
                form
            }
        }
    }

    /// `absent` and `absent_over_time` of selectors that exist or not.
    fn absent(&mut self) -> String {
        let selector = match self.rng.below(3) {
            0 => self.leaf_selector(),
            1 => {
                self.mark(Shape::MatchEqual);
                r#"app_requests_total{job="nope", method="get"}"#.to_string()
            }
            _ => {
                self.mark(Shape::MatchEqual);
                self.mark(Shape::MatchRegex);
                r#"app_missing_total{job="api", instance=~"host-.*"}"#.to_string()
            }
        };
        if self.rng.chance(0.5) {
            self.mark(Shape::AbsentOverTime);
            let range = self.pick(&RANGES);
            return format!("absent_over_time({selector}[{range}])");
        }
        self.mark(Shape::Absent);
        if self.rng.chance(0.2) {
            self.mark(Shape::Sum);
            return format!("absent(sum({selector}))");
        }
        format!("absent({selector})")
    }

    fn leaf_selector(&mut self) -> String {
        if self.rng.chance(0.5) {
            self.gauge()
        } else {
            self.counter()
        }
    }

    fn vector(&mut self, depth: usize) -> String {
        if depth == 0 {
            return self.leaf();
        }
        match self.rng.below(24) {
            0 | 1 => self.leaf(),
            2 | 3 => {
                let op = self.pick(&[
                    "sum", "avg", "min", "max", "count", "stddev", "stdvar", "group",
                ]);
                self.mark(match op.as_str() {
                    "sum" => Shape::Sum,
                    "avg" => Shape::Avg,
                    "min" => Shape::Min,
                    "max" => Shape::Max,
                    "count" => Shape::Count,
                    "stddev" => Shape::Stddev,
                    "stdvar" => Shape::Stdvar,
                    _ => Shape::Group,
                });
                let grouping = self.pick(&GROUPINGS);
                format!("{op} {grouping} ({})", self.vector(depth - 1))
            }
            4 => {
                let (name, param) = *self.rng.pick(&[
                    ("topk", "3"),
                    ("bottomk", "2"),
                    ("quantile", "0.9"),
                    ("quantile", "0.1"),
                ]);
                self.mark(match name {
                    "topk" => Shape::Topk,
                    "bottomk" => Shape::Bottomk,
                    _ => Shape::Quantile,
                });
                let grouping = self.pick(&["", "by (job)", "without (instance)"]);
                // topk/bottomk pick arbitrarily among equal values, so they only rank inputs
                // without ties.
                let input = if name == "quantile" {
                    self.vector(depth - 1)
                } else {
                    self.tie_free()
                };
                format!("{name} {grouping} ({param}, {input})")
            }
            5 => {
                self.mark(Shape::MathFunction);
                let function =
                    self.pick(&["abs", "ceil", "floor", "round", "sqrt", "ln", "exp", "sgn"]);
                format!("{function}({})", self.vector(depth - 1))
            }
            6 => {
                let call = self.pick(&[
                    "clamp({}, -5, 5)",
                    "clamp_min({}, 10)",
                    "clamp_max({}, 0.5)",
                    "round({}, 0.25)",
                ]);
                self.mark(if call.starts_with("round") {
                    Shape::MathFunction
                } else {
                    Shape::Clamp
                });
                call.replace("{}", &self.vector(depth - 1))
            }
            7 | 8 => self.vector_scalar(depth),
            9 => self.histogram_quantile(),
            10 => {
                self.mark(Shape::LabelReplace);
                format!(
                    r#"label_replace({}, "host", "$1", "instance", "([^:]+):.*")"#,
                    self.vector(depth - 1)
                )
            }
            11 | 12 => self.matching(),
            13 | 14 => self.subquery(),
            15 => {
                self.mark(Shape::Sort);
                let function = self.pick(&["sort", "sort_desc"]);
                format!("{function}({})", self.vector(depth - 1))
            }
            16 => {
                self.mark(Shape::CountValues);
                let grouping = self.pick(&["", "by (job)"]);
                format!("count_values {grouping} (\"value\", {})", self.integral())
            }
            17 => self.set_operation(),
            18 => {
                self.mark(Shape::LabelJoin);
                let call = self.pick(&[
                    r#"label_join({}, "target", "/", "job", "instance")"#,
                    r#"label_join({}, "job", "-", "job", "instance")"#,
                    r#"label_join({}, "copy", "", "instance")"#,
                ]);
                call.replace("{}", &self.vector(depth - 1))
            }
            19 => self.absent(),
            20 => {
                self.mark(Shape::UnaryMinus);
                if self.rng.chance(0.5) {
                    format!("-({})", self.vector(depth - 1))
                } else {
                    format!("-{}", self.leaf())
                }
            }
            21 => {
                self.mark(Shape::VectorFunction);
                format!("vector({})", self.scalar())
            }
            22 => {
                self.mark(Shape::Timestamp);
                if self.rng.chance(0.6) {
                    // 2.42 finds nothing for `timestamp(v @ t offset d)`: `@` or `offset`.
                    let selector = self.leaf_selector();
                    let modifiers = if self.rng.chance(0.5) {
                        self.offset_only()
                    } else {
                        self.at(false)
                    };
                    format!("timestamp({selector}{modifiers})")
                } else {
                    format!("timestamp({})", self.vector(depth - 1))
                }
            }
            _ => {
                // A comparison between two scalars needs `bool` and gives a scalar.
                self.mark(Shape::VectorFunction);
                self.mark(Shape::ComparisonBool);
                let (left, right) = (self.scalar(), self.scalar());
                format!("vector(({left}) > bool ({right}))")
            }
        }
    }

    /// Vector-scalar (or scalar-vector) arithmetic and comparisons.
    fn vector_scalar(&mut self, depth: usize) -> String {
        if self.rng.chance(0.08) {
            // `%` jumps by its divisor where a value crosses a multiple of it, so it only takes
            // values that are exact whatever the summation order.
            self.mark(Shape::VectorScalar);
            return format!("({}) % 7", self.integral());
        }
        let inner = self.vector(depth - 1);
        if self.rng.chance(0.3) {
            let scalar = self.scalar();
            let operator = self.pick(&["*", "+", "-", "/", "> bool", "<"]);
            self.mark_vector_scalar_operator(&operator);
            return format!("({inner}) {operator} ({scalar})");
        }
        let form = self.pick(&[
            "{} * 2",
            "{} + 1",
            "100 - {}",
            "{} / 3",
            "{} > 10",
            "{} < 1",
            "{} >= bool 0.5",
            "{} != bool 0",
            "{} ^ 2",
            "0.5 < {}",
            "2 == bool {}",
        ]);
        let operator = form.replace("{}", "");
        self.mark_vector_scalar_operator(&operator);
        form.replace("{}", &format!("({inner})"))
    }

    fn mark_vector_scalar_operator(&mut self, operator: &str) {
        if operator.contains("bool") {
            self.mark(Shape::ComparisonBool);
        } else if ["<", ">", "=="].iter().any(|c| operator.contains(c)) {
            self.mark(Shape::ComparisonFilter);
        } else {
            self.mark(Shape::VectorScalar);
        }
    }
}
